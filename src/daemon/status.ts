/**
 * daemon/status — a resource process's observable state as one plain
 * snapshot, and the texts drbdadm prints for it: `role` (Primary/Secondary),
 * `cstate` (Connected), `dstate` (UpToDate/UpToDate), DRBD-9-style `status`
 * (events2 lines: daemon/events2). Pure: no sockets, no disks.
 */
import {
  ConnState,
  DiskState,
  Role,
  connName,
  diskName,
  roleName,
} from '../resource/states.js';
import { type ResourceState, formatStateChange } from '../resource/state.js';
import { resyncSuspendedText } from './events2.js';

export interface SyncProgress {
  totalBits: number;
  leftBits: number;
  /** 0…100 with two decimals, as `done:` in status. */
  percentDone: number;
  speedKiBps: number;
  averageKiBps: number;
  etaSeconds: number | undefined;
  bytesTransferred: number;
  /** SyncTarget only: /proc/drbd's `want:` (c_sync_rate: resync-rate, or the dynamic controller's last step), KiB/s. */
  wantKiBps?: number | undefined;
}

/** The resource state as resource/ defines it (role, peer, conn, disk, pdsk, susp*, *isp). */
export type StateSnapshot = ResourceState;

export interface StatusSnapshot extends StateSnapshot {
  resource: string;
  node: string;
  peerNode: string | undefined;
  minor: number;
  /** The volume number (`volume N { }`; 0 without a volume block): events2's `volume:`. */
  volume: number;
  device: string;
  protocol: 'A' | 'B' | 'C' | undefined;
  /** disk { resync-rate } as configured now (changes with `adjust`), KiB/s. */
  resyncRateKiBps?: number | undefined;
  /** The rate limit the data path applies to resync now (resync-rate, or c-max-rate with c-plan-ahead > 0), KiB/s. */
  resyncRateLimitKiBps?: number | undefined;
  uuids: { current: string; bitmap: string; historyStart: string; historyEnd: string } | undefined;
  outOfSyncKiB: number;
  sync: SyncProgress | undefined;
  counters: Record<string, number>;
  /** The device size as the kernel reports it (0 while diskless); events2 `size:`. */
  deviceSizeKiB?: number;
  exposed: boolean;
  /** The block device the Primary's volume is exposed as (daemon/frontend); absent/null when not exposed. */
  frontend?: FrontendStatusView | null;
  pid: number;
  /** Every volume's snapshot in number order when the resource has several (this one's fields are the first's); absent with one. */
  volumes?: StatusSnapshot[];
}

/** daemon/frontend's exposure as status shows it. */
export interface FrontendStatusView {
  kind: 'nbd' | 'fuse' | 'none';
  nbdSocket: string;
  /** `HOST:PORT` of the NBD export on TCP loopback (UDRBD_NBD_TCP); absent when not configured. */
  nbdTcp?: string;
  kernelDevice: string | null;
  devicePath: string | null;
}

export const UNCONFIGURED = 'Unconfigured';

/** True when drbdsetup would print "Unconfigured" (StandAlone + Diskless + Secondary). */
export function isUnconfigured(s: StateSnapshot): boolean {
  return s.conn === ConnState.StandAlone && s.disk === DiskState.Diskless && s.role === Role.Secondary;
}

export function roleText(s: StateSnapshot): string {
  return `${roleName(s.role)}/${roleName(s.peer)}`;
}

export function cstateText(s: StateSnapshot): string {
  return connName(s.conn);
}

export function dstateText(s: StateSnapshot): string {
  return `${diskName(s.disk)}/${diskName(s.pdsk)}`;
}

/** DRBD 9 names the 8.4 connection states it shows as `connection:` (not connected) or `replication:`. */
function connectionText(conn: ConnState): string {
  switch (conn) {
    case ConnState.Unconnected:
    case ConnState.WFConnection:
    case ConnState.WFReportParams:
      return 'Connecting';
    case ConnState.Timeout:
    case ConnState.BrokenPipe:
    case ConnState.NetworkFailure:
    case ConnState.ProtocolError:
    case ConnState.TearDown:
      return connName(conn);
    default:
      return connName(conn);
  }
}

export function replicationText(conn: ConnState): string {
  return conn === ConnState.Connected ? 'Established' : connName(conn);
}

function isConnected(conn: ConnState): boolean {
  return conn >= ConnState.Connected;
}

function isSyncing(conn: ConnState): boolean {
  return (
    conn === ConnState.SyncSource ||
    conn === ConnState.SyncTarget ||
    conn === ConnState.PausedSyncS ||
    conn === ConnState.PausedSyncT ||
    conn === ConnState.VerifyS ||
    conn === ConnState.VerifyT
  );
}

/** `drbdadm status RES` text (drbd-utils 9 against an 8.4-style resource); `verbose` adds the protocol to the peer line. */
export function statusText(s: StatusSnapshot, verbose = false): string {
  const lines: string[] = [];
  lines.push(`${s.resource} role:${roleName(s.role)}${s.susp ? ' suspended:user' : ''}`);
  lines.push(`  disk:${diskName(s.disk)}`);
  // drbd-utils against an 8.4 resource names the connection `peer` (DRBD 9 would print the host name)
  const peerName = 'peer';
  if (isConnected(s.conn)) {
    lines.push(`  ${peerName} role:${roleName(s.peer)}${verbose && s.protocol ? ` protocol:${s.protocol}` : ''}`);
    let repl = `    replication:${replicationText(s.conn)} peer-disk:${diskName(s.pdsk)}`;
    if (s.sync && isSyncing(s.conn)) repl += ` done:${s.sync.percentDone.toFixed(2)}`;
    const suspended = resyncSuspendedText(s);
    if (suspended !== 'no') repl += ` resync-suspended:${suspended}`;
    lines.push(repl);
  } else {
    lines.push(`  ${peerName} connection:${connectionText(s.conn)}${verbose && s.protocol ? ` protocol:${s.protocol}` : ''}`);
  }
  return `${lines.join('\n')}\n\n`;
}

/** `role( Secondary -> Primary ) conn( ... )` — DRBD's kernel-log text, from resource/state. */
export const stateChangeText = formatStateChange;

/** The status snapshot with names instead of enum numbers (`status --json`). */
export function statusJson(s: StatusSnapshot): Record<string, unknown> {
  return {
    resource: s.resource,
    node: s.node,
    minor: s.minor,
    device: s.device,
    role: roleName(s.role),
    peerRole: roleName(s.peer),
    cstate: isUnconfigured(s) ? UNCONFIGURED : connName(s.conn),
    replication: isConnected(s.conn) ? replicationText(s.conn) : connectionText(s.conn),
    disk: diskName(s.disk),
    peerDisk: diskName(s.pdsk),
    peerNode: s.peerNode ?? null,
    protocol: s.protocol ?? null,
    resyncRateKiBps: s.resyncRateKiBps ?? null,
    resyncRateLimitKiBps: s.resyncRateLimitKiBps ?? null,
    suspended: s.susp || s.suspNod || s.suspFen,
    resyncSuspended: { user: s.userIsp, peer: s.peerIsp, dependency: s.aftrIsp },
    uuids: s.uuids ?? null,
    outOfSyncKiB: s.outOfSyncKiB,
    sync: s.sync ?? null,
    counters: s.counters,
    exposed: s.exposed,
    frontend: s.frontend ?? null,
    pid: s.pid,
  };
}
