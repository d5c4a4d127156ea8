/**
 * daemon/kernel-log — the resource process's state changes in the DRBD 8.4
 * kernel module's syslog wording (drbd_state.c: print_state_change), for operators who grep
 * dmesg-style lines: device messages as `block drbd<minor>: …`, connection
 * messages as `drbd <resource>: …`. The kernel logs a change from the
 * connection's side (`drbd r0: conn( WFConnection -> WFReportParams )`,
 * the teardown `drbd r0: peer( Secondary -> Unknown ) conn( Connected ->
 * TearDown ) pdsk( UpToDate -> DUnknown )`) when the connection is being set
 * up or torn down, and from the device's side otherwise (a handshake's
 * outcome `block drbd1: peer( Unknown -> Secondary ) conn( WFReportParams ->
 * Connected ) …`, roles, disk states, resync states). Pure formatting plus
 * the one hook that feeds util/syslog from the runtime's state changes;
 * nothing here runs on the I/O path.
 */
import { ConnState } from '../resource/states.js';
import { formatStateChange, type ResourceState } from '../resource/state.js';
import { Severity, type SyslogSink } from '../util/syslog.js';

export interface KernelLogNames {
  resource: string;
  minor: number;
}

/** The kernel's prefix for a change from `before` to `after`. */
export function kernelLogPrefix(before: ResourceState, after: ResourceState, names: KernelLogNames): string {
  const connectionSide = before.conn !== after.conn && after.conn < ConnState.Connected;
  return connectionSide ? `drbd ${names.resource}: ` : `block drbd${names.minor}: `;
}

/** The kernel's line for a state change (`block drbd1: role( Secondary -> Primary )`), or undefined when nothing changed. */
export function kernelStateLine(before: ResourceState, after: ResourceState, names: KernelLogNames): string | undefined {
  const text = formatStateChange(before, after);
  if (!text) return undefined;
  return `${kernelLogPrefix(before, after, names)}${text}`;
}

/** The runtime's state hooks call this: one syslog line per state change. */
export function stateChangeToSyslog(sink: SyslogSink, names: KernelLogNames): (before: ResourceState, after: ResourceState) => void {
  return (before, after) => {
    const line = kernelStateLine(before, after, names);
    if (line) sink.write(Severity.info, line);
  };
}
