/**
 * daemon/events2 — the resource as drbdsetup events2 sees it on a DRBD 8.4
 * kernel: the objects (resource, connection, device, peer-device, helper),
 * the key that names each one, the information and statistics the kernel
 * attaches to every notification, and which notifications one state change
 * sends (the kernel's broadcast rules). It owns the vocabulary mapping from
 * 8.4 states to events2 words (`connection:Connecting` for WFConnection,
 * `replication:Established` for Connected, ...).
 * Pure: no sockets, no clock. It must not know what a subscriber prints:
 * which fields appear on a line (only changed ones, statistics with
 * --statistics) is cli/events2-printer's business, as it is drbdsetup's.
 *
 * Facts (drbd-utils user/v84/drbdsetup.c print_notifications/event_key,
 * Linux drivers/block/drbd drbd_nl.c notify_*_state, drbd_state.c):
 *  - keys: `resource name:R`, `connection name:R peer-node-id:0 [conn-name:peer]`,
 *    `device name:R volume:V minor:M`, `peer-device name:R peer-node-id:0
 *    [conn-name:peer] volume:V`, `helper name:R peer-node-id:0 [conn-name:peer]
 *    [volume:V minor:M]`. 8.4 has no node ids (drbdsetup-84 prints 0) and
 *    names the connection `peer` whenever it has a peer address, i.e. not
 *    StandAlone.
 *  - the initial dump per resource: resource, connections, devices,
 *    peer-devices; one `exists -` after all resources.
 *  - a resource of several volumes: one device and one peer-device per
 *    volume, in volume order, after the resource and connection; the
 *    resource's role is the highest of its volumes' (conn_highest_role), the
 *    connection's the highest peer role (conn_highest_peer). One state change
 *    is one batch: resource, connection, each device, each peer-device that
 *    changed (broadcast_state_change).
 *  - connect: `create connection` + `create peer-device` per volume (still
 *    StandAlone), then the changes; Disconnecting -> StandAlone: the changes,
 *    then `destroy peer-device` per volume + `destroy connection`; down:
 *    `destroy device` per volume, `destroy resource`.
 *  - a helper's response status is the raw wait status (exit code << 8).
 */
import { ConnState, connName, diskName, roleName } from '../resource/states.js';
import type { ControlEvent } from '../control/protocol.js';
import { assert } from '../util/assert.js';
import { highestRole, resourcePeerRole, resourceRole, volumesOf, type StateSnapshot, type StatusSnapshot } from './status.js';

/** drbdsetup-84 fakes the peer node id: 8.4's cfg context has none. */
export const EVENTS2_PEER_NODE_ID = 0;
/** drbdsetup-84 always calls the connection "peer" (it hides the address pair). */
export const EVENTS2_CONN_NAME = 'peer';

/** Field names that form an object's key, in the order drbdsetup prints them. */
export const EVENTS2_KEY_FIELDS = ['name', 'peer-node-id', 'conn-name', 'volume', 'minor'] as const;

/** Helpers the 8.4 kernel runs per connection (conn_khelper); all others run per device (drbd_khelper). */
const CONNECTION_HELPERS = new Set(['fence-peer', 'unfence-peer']);

type Fields = Record<string, string>;
type Object2 = Exclude<ControlEvent['object'], '-' | 'helper'>;

/** The line drbdsetup would print for this event if it had seen nothing before (all fields, no statistics). */
function fullText(kind: ControlEvent['kind'], object: ControlEvent['object'], fields: Fields): string {
  const parts: string[] = [kind, object];
  for (const [k, v] of Object.entries(fields)) parts.push(`${k}:${v}`);
  return parts.join(' ');
}

function event(kind: ControlEvent['kind'], object: ControlEvent['object'], fields: Fields, statistics?: Fields): ControlEvent {
  const e: ControlEvent = { kind, object, fields, text: fullText(kind, object, fields) };
  if (statistics) e.statistics = statistics;
  return e;
}

/** drbdsetup's susp_str(): `no`, or user,no-data,fencing joined by commas. */
export function suspendedText(s: Pick<StateSnapshot, 'susp' | 'suspNod' | 'suspFen'>): string {
  const parts: string[] = [];
  if (s.susp) parts.push('user');
  if (s.suspNod) parts.push('no-data');
  if (s.suspFen) parts.push('fencing');
  return parts.length > 0 ? parts.join(',') : 'no';
}

/** drbdsetup's resync_susp_str(): `no`, or user,peer,dependency. */
export function resyncSuspendedText(s: Pick<StateSnapshot, 'userIsp' | 'peerIsp' | 'aftrIsp'>): string {
  const parts: string[] = [];
  if (s.userIsp) parts.push('user');
  if (s.peerIsp) parts.push('peer');
  if (s.aftrIsp) parts.push('dependency');
  return parts.length > 0 ? parts.join(',') : 'no';
}

/**
 * The connection's own state on 8.4: connection-wide changes only, so it
 * stays at WFReportParams while the device goes Connected, SyncSource, ...
 */
export function connectionCstate(conn: ConnState): ConnState {
  return conn > ConnState.WFReportParams ? ConnState.WFReportParams : conn;
}

/** drbdsetup-84's drbd_conn_str9(): WFConnection is Connecting, WFReportParams is Connected. */
export function connectionText(cstate: ConnState): string {
  if (cstate === ConnState.WFConnection) return 'Connecting';
  if (cstate === ConnState.WFReportParams) return 'Connected';
  return connName(cstate);
}

/** drbdsetup-84's drbd_repl_str9(): WFReportParams is Off, Connected is Established, the rest by name. */
export function replicationText(conn: ConnState): string {
  if (conn === ConnState.WFReportParams) return 'Off';
  if (conn === ConnState.Connected) return 'Established';
  return connName(conn);
}

const NOT_REPLICATING = new Set(['Off', ...[
  ConnState.StandAlone, ConnState.Disconnecting, ConnState.Unconnected, ConnState.Timeout, ConnState.BrokenPipe,
  ConnState.NetworkFailure, ConnState.ProtocolError, ConnState.TearDown, ConnState.WFConnection,
].map(connName)]);

/** True when a peer-device `replication:` value means the device is connected (8.4 cstate >= Connected). */
export function isReplicating(replication: string | undefined): boolean {
  return replication !== undefined && !NOT_REPLICATING.has(replication);
}

/** The `status:` of a response line: the wait status the kernel got (exit code << 8; a failure to run as u32 -1). */
export function helperStatus(exitCode: number): number {
  return exitCode < 0 ? 0xffffffff : (exitCode & 0xff) << 8;
}

// ---- keys ----------------------------------------------------------------------------------

function keyOf(object: Object2, s: StatusSnapshot, hasPeerAddress: boolean): Fields {
  const key: Fields = { name: s.resource };
  if (object === 'connection' || object === 'peer-device') key['peer-node-id'] = String(EVENTS2_PEER_NODE_ID);
  if ((object === 'connection' || object === 'peer-device') && hasPeerAddress) key['conn-name'] = EVENTS2_CONN_NAME;
  if (object === 'device' || object === 'peer-device') key.volume = String(s.volume);
  if (object === 'device') key.minor = String(s.minor);
  return key;
}

// ---- information and statistics ------------------------------------------------------------

function infoOf(object: Object2, s: StateSnapshot): Fields {
  switch (object) {
    case 'resource':
      return { role: roleName(s.role), suspended: suspendedText(s) };
    case 'connection':
      return { connection: connectionText(connectionCstate(s.conn)), role: roleName(s.peer) };
    case 'device':
      return { disk: diskName(s.disk) };
    case 'peer-device':
      return { replication: replicationText(s.conn), 'peer-disk': diskName(s.pdsk), 'resync-suspended': resyncSuspendedText(s) };
  }
}

const counter = (s: StatusSnapshot, name: string): string => String(Math.max(0, Math.floor(s.counters[name] ?? 0)));

/**
 * What the kernel attaches as statistics, in drbdsetup's print order. udrbd
 * does not count bitmap writes or lower-level requests in flight yet: those
 * print 0. Write ordering is `flush` (disk-flushes are always on).
 */
function statisticsOf(object: Object2, s: StatusSnapshot): Fields {
  switch (object) {
    case 'resource':
      return { 'write-ordering': 'flush' };
    case 'connection':
      return { congested: 'no' };
    case 'device': {
      const upperBlocked = s.susp || s.suspNod || s.suspFen;
      return {
        size: String(Math.max(0, Math.floor(s.deviceSizeKiB ?? 0))),
        read: counter(s, 'dr'),
        written: counter(s, 'dw'),
        'al-writes': counter(s, 'al'),
        'bm-writes': '0',
        'upper-pending': counter(s, 'ap'),
        'lower-pending': '0',
        'al-suspended': 'no',
        blocked: upperBlocked ? 'upper' : 'no',
      };
    }
    case 'peer-device':
      return {
        received: counter(s, 'nr'),
        sent: counter(s, 'ns'),
        'out-of-sync': String(Math.max(0, Math.floor(s.outOfSyncKiB))),
        pending: counter(s, 'pe'),
        unacked: counter(s, 'ua'),
      };
  }
}

/** One notification about `object` with the state `info` and the live statistics of `s`. */
function objectEvent(kind: ControlEvent['kind'], object: Object2, s: StatusSnapshot, hasPeerAddress: boolean, info: StateSnapshot = s): ControlEvent {
  const fields = kind === 'destroy' ? keyOf(object, s, hasPeerAddress) : { ...keyOf(object, s, hasPeerAddress), ...infoOf(object, info) };
  return event(kind, object, fields, kind === 'destroy' ? undefined : statisticsOf(object, s));
}

/** Marks all but the last event of one notification batch as continued (drbdsetup keeps one timestamp for them). */
function batch(events: ControlEvent[]): ControlEvent[] {
  for (let i = 0; i < events.length - 1; i++) events[i]!.continues = true;
  return events;
}

// ---- what a subscriber gets -----------------------------------------------------------------

/** The end of the initial dump: `exists -`. */
export function endOfDumpEvent(): ControlEvent {
  return { kind: 'exists', object: '-', fields: {}, text: 'exists -' };
}

export function isEndOfDump(e: ControlEvent): boolean {
  return e.kind === 'exists' && e.object === '-';
}

/** What the resource and connection objects show: the first volume's state with the roles taken over all volumes. */
function resourceLevel(s: StatusSnapshot): StateSnapshot {
  return { ...s, role: resourceRole(s), peer: resourcePeerRole(s) };
}

/** The initial dump of one resource: every object as `exists` (devices and peer-devices per volume), then `exists -`. */
export function existsEvents(s: StatusSnapshot): ControlEvent[] {
  const hasPeerAddress = s.conn !== ConnState.StandAlone;
  const volumes = volumesOf(s);
  const top = resourceLevel(s);
  return [
    ...batch([
      objectEvent('exists', 'resource', s, hasPeerAddress, top),
      objectEvent('exists', 'connection', s, hasPeerAddress, top),
      ...volumes.map((v) => objectEvent('exists', 'device', v, hasPeerAddress)),
      ...volumes.map((v) => objectEvent('exists', 'peer-device', v, hasPeerAddress)),
    ]),
    endOfDumpEvent(),
  ];
}

const changed = (a: Fields, b: Fields): boolean => Object.keys(b).some((k) => a[k] !== b[k]);

/**
 * Each volume's state before a change, by volume number; a volume not in the
 * map did not change. A lone state is the one volume's (the resource must
 * have one volume then).
 */
export type StatesBefore = StateSnapshot | ReadonlyMap<number, StateSnapshot>;

function beforeOf(before: StatesBefore, after: StatusSnapshot): { volumes: StateSnapshot[]; top: StateSnapshot } {
  const volumes = volumesOf(after);
  let states: StateSnapshot[];
  if (before instanceof Map) {
    const map = before as ReadonlyMap<number, StateSnapshot>;
    for (const vnr of map.keys()) assert(volumes.some((v) => v.volume === vnr), `events2: volume ${vnr} changed, but ${after.resource} has no such volume`);
    states = volumes.map((v) => map.get(v.volume) ?? v);
  } else {
    assert(volumes.length === 1, `events2: one state before a change of ${after.resource}, which has ${volumes.length} volumes; pass them by volume number`);
    states = [before as StateSnapshot];
  }
  const first = states[0]!;
  return {
    volumes: states,
    top: { ...first, role: highestRole(states.map((v) => v.role)), peer: highestRole(states.map((v) => v.peer)) },
  };
}

/**
 * The notifications one state change sends, in the kernel's order: create
 * connection/peer-devices when it leaves StandAlone, the change of every
 * object whose information changed, destroy peer-devices/connection when it
 * reaches StandAlone.
 */
export function changeEvents(before: StatesBefore, after: StatusSnapshot): ControlEvent[] {
  const was = beforeOf(before, after);
  const volumes = volumesOf(after);
  const top = resourceLevel(after);
  const leftStandAlone = was.top.conn === ConnState.StandAlone && after.conn !== ConnState.StandAlone;
  const reachedStandAlone = was.top.conn !== ConnState.StandAlone && after.conn === ConnState.StandAlone;
  const hasPeerAddress = !(was.top.conn === ConnState.StandAlone && after.conn === ConnState.StandAlone);
  const out: ControlEvent[] = [];
  if (leftStandAlone) {
    // drbd_adm_connect: created while still StandAlone, before the change to Unconnected
    out.push(...batch([
      objectEvent('create', 'connection', after, true, was.top),
      ...volumes.map((v, i) => objectEvent('create', 'peer-device', v, true, was.volumes[i])),
    ]));
  }
  const changes: ControlEvent[] = [];
  for (const object of ['resource', 'connection'] as const) {
    if (changed(infoOf(object, was.top), infoOf(object, top))) changes.push(objectEvent('change', object, after, hasPeerAddress, top));
  }
  for (const object of ['device', 'peer-device'] as const) {
    volumes.forEach((v, i) => {
      if (changed(infoOf(object, was.volumes[i]!), infoOf(object, v))) changes.push(objectEvent('change', object, v, hasPeerAddress));
    });
  }
  out.push(...batch(changes));
  if (reachedStandAlone) {
    out.push(...batch([...volumes.map((v) => objectEvent('destroy', 'peer-device', v, true)), objectEvent('destroy', 'connection', after, true)]));
  }
  return out;
}

/** `down` finished: every device and the resource are deleted (and the connection, if it was still there). */
export function downEvents(s: StatusSnapshot): ControlEvent[] {
  const volumes = volumesOf(s);
  const out: ControlEvent[] = [];
  if (s.conn !== ConnState.StandAlone) out.push(...volumes.map((v) => objectEvent('destroy', 'peer-device', v, true)), objectEvent('destroy', 'connection', s, true));
  out.push(...volumes.map((v) => objectEvent('destroy', 'device', v, false)), objectEvent('destroy', 'resource', s, false));
  return batch(out);
}

/** `call helper ...` before a handler runs, `response helper ... status:N` after it. */
export function helperEvent(kind: 'call' | 'response', s: StatusSnapshot, helper: string, exitCode = 0): ControlEvent {
  const fields: Fields = { name: s.resource, 'peer-node-id': String(EVENTS2_PEER_NODE_ID) };
  if (s.conn !== ConnState.StandAlone) fields['conn-name'] = EVENTS2_CONN_NAME;
  if (!CONNECTION_HELPERS.has(helper)) {
    fields.volume = String(s.volume);
    fields.minor = String(s.minor);
  }
  fields.helper = helper;
  if (kind === 'response') fields.status = String(helperStatus(exitCode));
  return event(kind, 'helper', fields);
}
