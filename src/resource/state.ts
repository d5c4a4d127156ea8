/**
 * resource/state — DRBD 8.4's state of a resource, split as the kernel keeps
 * it: a ConnectionState per resource (drbd_tconn: cstate up to
 * WFReportParams / Connected, susp, susp_nod, susp_fen) and a VolumeState
 * per volume (drbd_conf: role, peer, disk, pdsk, the replication state
 * Connected / Sync* / Verify* / PausedSync* / Ahead / Behind, the isp flags).
 * The rules judge the pair (volume, connection) joined into one state word
 * (ResourceState, what drbd_read_state returns): `sanitizeState` (implied
 * clamps, drbd_state.c: sanitize_state), the hard connection-transition rules
 * and the user-visible ("soft") refusals with their SS_* codes and texts
 * (drbd_state.c: is_valid_state, is_valid_soft_transition,
 * is_valid_transition; drbd_strings.c), plus the log renderings of a state
 * (drbd_state.c: print_st, print_state_change). Pure functions only: no I/O,
 * no clock, no byte formats, no sockets.
 */
import { ExitCode } from '../util/errors.js';
import { ConnState, DiskState, Role, connName, diskName, roleName } from './states.js';

/**
 * The state word of one volume joined with its connection (union drbd_state,
 * drbd.h, as drbd_read_state returns it): what sanitizeState and the checks
 * judge. `conn` is the connection's state below Connected, the volume's
 * replication state from Connected on. `susp` is the user's suspend-io flag.
 * Held as a ConnectionState plus one VolumeState per volume (joinState / volumeOf / connectionOf).
 */
export interface ResourceState {
  role: Role;
  peer: Role;
  conn: ConnState;
  disk: DiskState;
  pdsk: DiskState;
  /** IO suspended by the user (suspend-io). */
  susp: boolean;
  /** IO suspended because no UpToDate data is reachable (on-no-data-accessible suspend-io). */
  suspNod: boolean;
  /** IO frozen while the fence-peer handler runs (fencing resource-and-stonith). */
  suspFen: boolean;
  /** Resync paused by the user (pause-sync). */
  userIsp: boolean;
  /** Resync paused by the peer. */
  peerIsp: boolean;
  /** Resync paused by a resync-after dependency. */
  aftrIsp: boolean;
}

/**
 * The per-resource part (drbd_tconn): the connection state up to Connected
 * (StandAlone … WFReportParams, Connected) and the three IO-suspension flags.
 */
export interface ConnectionState {
  /** StandAlone … Connected; a volume's resync / verify / Ahead state is its VolumeState.replication. */
  conn: ConnState;
  susp: boolean;
  suspNod: boolean;
  suspFen: boolean;
}

/**
 * The per-volume part (drbd_conf): roles, disk states, the replication state
 * and the sync-pause flags. `replication` is Connected … Behind; while the
 * connection is below Connected it is Connected (the volume follows the connection).
 */
export interface VolumeState {
  role: Role;
  peer: Role;
  disk: DiskState;
  pdsk: DiskState;
  /** Connected, StartingSync*, WFBitMap*, WFSyncUUID, Sync*, Verify*, PausedSync*, Ahead, Behind. */
  replication: ConnState;
  userIsp: boolean;
  peerIsp: boolean;
  aftrIsp: boolean;
}

/** The state word of `volume` on `connection` (drbd_read_state). */
export function joinState(volume: VolumeState, connection: ConnectionState): ResourceState {
  return {
    role: volume.role,
    peer: volume.peer,
    conn: connection.conn < ConnState.Connected ? connection.conn : volume.replication,
    disk: volume.disk,
    pdsk: volume.pdsk,
    susp: connection.susp,
    suspNod: connection.suspNod,
    suspFen: connection.suspFen,
    userIsp: volume.userIsp,
    peerIsp: volume.peerIsp,
    aftrIsp: volume.aftrIsp,
  };
}

/** The connection's part of a state word: cstate is Connected from Connected on. */
export function connectionOf(s: ResourceState): ConnectionState {
  return { conn: s.conn < ConnState.Connected ? s.conn : ConnState.Connected, susp: s.susp, suspNod: s.suspNod, suspFen: s.suspFen };
}

/** The volume's part of a state word; replication is Connected while the connection is below it. */
export function volumeOf(s: ResourceState): VolumeState {
  return {
    role: s.role,
    peer: s.peer,
    disk: s.disk,
    pdsk: s.pdsk,
    replication: s.conn < ConnState.Connected ? ConnState.Connected : s.conn,
    userIsp: s.userIsp,
    peerIsp: s.peerIsp,
    aftrIsp: s.aftrIsp,
  };
}

export function connectionStatesEqual(a: ConnectionState, b: ConnectionState): boolean {
  return a.conn === b.conn && a.susp === b.susp && a.suspNod === b.suspNod && a.suspFen === b.suspFen;
}

export function volumeStatesEqual(a: VolumeState, b: VolumeState): boolean {
  return (
    a.role === b.role && a.peer === b.peer && a.disk === b.disk && a.pdsk === b.pdsk && a.replication === b.replication &&
    a.userIsp === b.userIsp && a.peerIsp === b.peerIsp && a.aftrIsp === b.aftrIsp
  );
}

export type Fencing = 'dont-care' | 'resource-only' | 'resource-and-stonith';

/** Configuration and environment facts the state rules consult. */
export interface StateCtx {
  fencing: Fencing;
  allowTwoPrimaries: boolean;
  /** The exposed device is open / mounted (DRBD's open_cnt > 0); may be a getter (the check scans /proc), read by requests only. */
  deviceOpen: boolean;
  /** A net section is configured (DRBD has net_conf only after `connect`). */
  hasNetConfig: boolean;
  /** verify-alg from the net section, or null when not set. */
  verifyAlg: string | null;
  /** on-no-data-accessible suspend-io (default io-error). */
  onNoDataSuspendIo: boolean;
  /** The local state was already sent to the peer during the handshake (DRBD's STATE_SENT). */
  stateSent: boolean;
}

export const defaultStateCtx: StateCtx = {
  fencing: 'dont-care',
  allowTwoPrimaries: false,
  deviceOpen: false,
  hasNetConfig: false,
  verifyAlg: null,
  onNoDataSuspendIo: false,
  stateSent: false,
};

/** State of a resource whose minor exists but nothing is attached or connected. */
export const unconfiguredState: ResourceState = Object.freeze({
  role: Role.Secondary,
  peer: Role.Unknown,
  conn: ConnState.StandAlone,
  disk: DiskState.Diskless,
  pdsk: DiskState.DUnknown,
  susp: false,
  suspNod: false,
  suspFen: false,
  userIsp: false,
  peerIsp: false,
  aftrIsp: false,
});

/** The connection of a resource that is not connected, with IO running. */
export const unconfiguredConnection: ConnectionState = Object.freeze(connectionOf(unconfiguredState));
/** A volume whose minor exists, nothing attached. */
export const unconfiguredVolume: VolumeState = Object.freeze(volumeOf(unconfiguredState));

/** DRBD's SS_* state-change refusal codes (enum drbd_state_rv, drbd.h). */
export const SsCode = {
  /** SS_SUCCESS: the change was made (the peer's answer to a state change request). */
  success: 1,
  twoPrimaries: -1,
  noUpToDateDisk: -2,
  noLocalDisk: -4,
  noRemoteDisk: -5,
  connectedOutdates: -6,
  primaryNop: -7,
  resyncRunning: -8,
  alreadyStandalone: -9,
  cwFailedByPeer: -10,
  isDiskless: -11,
  deviceInUse: -12,
  noNetConfig: -13,
  noVerifyAlg: -14,
  needConnection: -15,
  lowerThanOutdated: -16,
  notSupported: -17,
  inTransientState: -18,
  concurrentStateChange: -19,
  otherVolPeerPrimary: -20,
  outdateWithoutConnection: -21,
} as const;
export type SsCode = (typeof SsCode)[keyof typeof SsCode];

const ssTexts: Record<number, string> = {
  [-1]: 'Multiple primaries not allowed by config',
  [-2]: 'Need access to UpToDate data',
  [-4]: 'Can not resync without local disk',
  [-5]: 'Can not resync without remote disk',
  [-6]: 'Refusing to be Outdated while Connected',
  [-7]: 'Refusing to be Primary while peer is not outdated',
  [-8]: 'Can not start OV/resync since it is already active',
  [-9]: 'Can not disconnect a StandAlone device',
  [-10]: 'State change was refused by peer node',
  [-11]: 'Device is diskless, the requested operation requires a disk',
  [-12]: 'Device is held open by someone',
  [-13]: 'Have no net/connection configuration',
  [-14]: 'Need a verify algorithm to start online verify',
  [-15]: 'Need a connection to start verify or resync',
  [-16]: 'Disk state is lower than outdated',
  [-17]: 'Peer does not support protocol',
  [-18]: 'In transient state, retry after next state change',
  [-19]: 'Concurrent state changes detected and aborted',
  [-20]: 'Other vol primary on peer not allowed by config',
  [-21]: 'Need a connection for a graceful disconnect/outdate peer',
};

/** drbdsetup's text for an SS code. */
export function ssText(code: SsCode): string {
  const text = ssTexts[code];
  if (text === undefined) throw new Error(`unknown SS code ${code}`);
  return text;
}

/** drbdsetup / drbdadm exit code for a refused state change (17, 5, 16, else 11). */
export function ssExitCode(code: SsCode): number {
  if (code === SsCode.noUpToDateDisk) return ExitCode.noUpToDateDisk;
  if (code === SsCode.lowerThanOutdated) return ExitCode.lowerThanOutdated;
  if (code === SsCode.noLocalDisk) return ExitCode.noLocalDisk;
  return ExitCode.stateChangeFailed;
}

/** A refused state change as an operator sees it. */
export interface Refusal {
  ok: false;
  /** SS_* code (negative), or an ERR_* code (> 100) when `failure` is set. */
  code: number;
  text: string;
  /** Exit code drbdadm would return. */
  exitCode: number;
  /** A drbdsetup "Failure:" (ERR_* code, exit 10) rather than a refused state change. */
  failure?: boolean;
}

export function refusal(code: SsCode): Refusal {
  return { ok: false, code, text: ssText(code), exitCode: ssExitCode(code) };
}

/** Result of checking a wanted state: the sanitized new state, or a refusal. */
export type StateCheck =
  | { ok: true; state: ResourceState; changed: boolean; warnings: string[] }
  | Refusal;

export function statesEqual(a: ResourceState, b: ResourceState): boolean {
  return (
    a.role === b.role && a.peer === b.peer && a.conn === b.conn && a.disk === b.disk &&
    a.pdsk === b.pdsk && a.susp === b.susp && a.suspNod === b.suspNod && a.suspFen === b.suspFen &&
    a.userIsp === b.userIsp && a.peerIsp === b.peerIsp && a.aftrIsp === b.aftrIsp
  );
}

const isNetworkError = (c: ConnState): boolean => c >= ConnState.Timeout && c <= ConnState.TearDown;

/**
 * Applies DRBD's implied state rules to `wanted` (sanitize_state). `warnings`
 * collects DRBD's log lines for implicit changes ("Resync aborted.").
 */
export function sanitizeState(
  old: ResourceState,
  wanted: ResourceState,
  ctx: StateCtx,
  warnings: string[] = [],
): ResourceState {
  const ns: ResourceState = { ...wanted };

  // Not connected: nothing is known about the peer except a remembered Inconsistent/Outdated.
  if (ns.conn < ConnState.Connected) {
    ns.peerIsp = false;
    ns.peer = Role.Unknown;
    if (ns.pdsk > DiskState.DUnknown || ns.pdsk < DiskState.Inconsistent) ns.pdsk = DiskState.DUnknown;
  }

  // Becoming unconfigured clears the resync-after dependency pause.
  if (ns.conn === ConnState.StandAlone && ns.disk === DiskState.Diskless && ns.role === Role.Secondary) {
    ns.aftrIsp = false;
  }

  // A failed or missing disk aborts resync / verify.
  if (ns.conn > ConnState.Connected && (ns.disk <= DiskState.Failed || ns.pdsk <= DiskState.Failed)) {
    const verify = ns.conn === ConnState.VerifyS || ns.conn === ConnState.VerifyT;
    warnings.push(verify ? 'Online-verify aborted.' : 'Resync aborted.');
    ns.conn = ConnState.Connected;
  }

  // Consistent and Outdated vanish once connected.
  if (ns.conn >= ConnState.Connected && ns.conn < ConnState.Ahead) {
    if (ns.disk === DiskState.Consistent || ns.disk === DiskState.Outdated) ns.disk = DiskState.UpToDate;
    if (ns.pdsk === DiskState.Consistent || ns.pdsk === DiskState.Outdated) ns.pdsk = DiskState.UpToDate;
  }

  // Clamp disk / pdsk to what the connection state implies.
  let diskMin: DiskState = DiskState.Diskless;
  let diskMax: DiskState = DiskState.UpToDate;
  let pdskMin: DiskState = DiskState.Inconsistent;
  let pdskMax: DiskState = DiskState.DUnknown;
  switch (ns.conn) {
    case ConnState.WFBitMapT:
    case ConnState.PausedSyncT:
    case ConnState.StartingSyncT:
    case ConnState.WFSyncUUID:
    case ConnState.Behind:
      diskMin = DiskState.Inconsistent;
      diskMax = DiskState.Outdated;
      pdskMin = DiskState.UpToDate;
      pdskMax = DiskState.UpToDate;
      break;
    case ConnState.VerifyS:
    case ConnState.VerifyT:
      diskMin = DiskState.UpToDate;
      diskMax = DiskState.UpToDate;
      pdskMin = DiskState.UpToDate;
      pdskMax = DiskState.UpToDate;
      break;
    case ConnState.Connected:
      pdskMin = DiskState.Diskless;
      pdskMax = DiskState.UpToDate;
      break;
    case ConnState.WFBitMapS:
    case ConnState.PausedSyncS:
    case ConnState.StartingSyncS:
    case ConnState.Ahead:
      diskMin = DiskState.UpToDate;
      diskMax = DiskState.UpToDate;
      pdskMin = DiskState.Inconsistent;
      pdskMax = DiskState.Consistent;
      break;
    case ConnState.SyncTarget:
      diskMin = DiskState.Inconsistent;
      diskMax = DiskState.Inconsistent;
      pdskMin = DiskState.UpToDate;
      pdskMax = DiskState.UpToDate;
      break;
    case ConnState.SyncSource:
      diskMin = DiskState.UpToDate;
      diskMax = DiskState.UpToDate;
      pdskMin = DiskState.Inconsistent;
      pdskMax = DiskState.Inconsistent;
      break;
    default:
      break;
  }
  if (ns.disk > diskMax) ns.disk = diskMax;
  if (ns.disk < diskMin) {
    warnings.push('Implicitly upgraded disk');
    ns.disk = diskMin;
  }
  if (ns.pdsk > pdskMax) ns.pdsk = pdskMax;
  if (ns.pdsk < pdskMin) {
    warnings.push('Implicitly upgraded pdsk');
    ns.pdsk = pdskMin;
  }

  // resource-and-stonith: a Primary losing a peer that may hold good data freezes IO.
  const lostPeerAsPrimary = (s: ResourceState): boolean =>
    s.role === Role.Primary && s.conn < ConnState.Connected && s.pdsk > DiskState.Outdated;
  if (ctx.fencing === 'resource-and-stonith' && lostPeerAsPrimary(ns) && !lostPeerAsPrimary(old)) {
    ns.suspFen = true;
  }
  const noData = (s: ResourceState): boolean =>
    s.role === Role.Primary && s.disk < DiskState.UpToDate && s.pdsk < DiskState.UpToDate;
  if (ctx.onNoDataSuspendIo && noData(ns) && !noData(old)) ns.suspNod = true;

  // Pause flags turn Sync* into PausedSync* and back.
  if (ns.aftrIsp || ns.peerIsp || ns.userIsp) {
    if (ns.conn === ConnState.SyncSource) ns.conn = ConnState.PausedSyncS;
    if (ns.conn === ConnState.SyncTarget) ns.conn = ConnState.PausedSyncT;
  } else {
    if (ns.conn === ConnState.PausedSyncS) ns.conn = ConnState.SyncSource;
    if (ns.conn === ConnState.PausedSyncT) ns.conn = ConnState.SyncTarget;
  }
  return ns;
}

/** is_valid_conn_transition + the "cannot fail again once diskless" rule. Null = allowed. */
export function isValidTransition(old: ResourceState, ns: ResourceState): SsCode | null {
  if (ns.disk === DiskState.Failed && old.disk === DiskState.Diskless) return SsCode.isDiskless;
  const oc = old.conn;
  const nc = ns.conn;
  if (oc === nc) return null;
  if (oc === ConnState.StandAlone && nc === ConnState.Disconnecting) return SsCode.alreadyStandalone;
  if (oc === ConnState.StandAlone && nc !== ConnState.Unconnected) return SsCode.needConnection;
  if (oc < ConnState.WFReportParams && nc >= ConnState.Connected) return SsCode.needConnection;
  if (isNetworkError(oc) && nc !== ConnState.Unconnected && nc !== ConnState.Disconnecting) {
    return SsCode.inTransientState;
  }
  if (oc === ConnState.Disconnecting && nc !== ConnState.StandAlone) return SsCode.inTransientState;
  return null;
}

/** is_valid_state: checks one (sanitized) state on its own. Null = valid. */
export function isValidState(ns: ResourceState, ctx: StateCtx): SsCode | null {
  if (ctx.hasNetConfig && !ctx.allowTwoPrimaries && ns.role === Role.Primary && ns.peer === Role.Primary) {
    return SsCode.twoPrimaries;
  }
  if (ns.role === Role.Secondary && ctx.deviceOpen) return SsCode.deviceInUse;
  if (ns.role === Role.Primary && ns.conn < ConnState.Connected && ns.disk < DiskState.UpToDate) {
    return SsCode.noUpToDateDisk;
  }
  if (
    ctx.fencing !== 'dont-care' && ns.role === Role.Primary && ns.conn < ConnState.Connected &&
    ns.pdsk >= DiskState.DUnknown
  ) {
    return SsCode.primaryNop;
  }
  if (ns.role === Role.Primary && ns.disk <= DiskState.Inconsistent && ns.pdsk <= DiskState.Inconsistent) {
    return SsCode.noUpToDateDisk;
  }
  if (ns.conn > ConnState.Connected && ns.disk < DiskState.Inconsistent) return SsCode.noLocalDisk;
  if (ns.conn > ConnState.Connected && ns.pdsk < DiskState.Inconsistent) return SsCode.noRemoteDisk;
  if (ns.conn > ConnState.Connected && ns.disk < DiskState.UpToDate && ns.pdsk < DiskState.UpToDate) {
    return SsCode.noUpToDateDisk;
  }
  if (
    (ns.conn === ConnState.Connected || ns.conn === ConnState.WFBitMapS ||
      ns.conn === ConnState.SyncSource || ns.conn === ConnState.PausedSyncS) &&
    ns.disk === DiskState.Outdated
  ) {
    return SsCode.connectedOutdates;
  }
  const verify = ns.conn === ConnState.VerifyS || ns.conn === ConnState.VerifyT;
  if (verify && !ctx.verifyAlg) return SsCode.noVerifyAlg;
  if (ns.role === Role.Primary && ns.disk < DiskState.UpToDate && ns.pdsk < DiskState.UpToDate) {
    return SsCode.noUpToDateDisk;
  }
  if (ns.conn >= ConnState.Connected && ns.pdsk === DiskState.DUnknown) return SsCode.connectedOutdates;
  return null;
}

/** is_valid_soft_transition: rules about the step from `os` to `ns`. Null = allowed. */
export function isValidSoftTransition(os: ResourceState, ns: ResourceState, ctx: StateCtx): SsCode | null {
  let rv: SsCode | null = null;
  const startingSync = (c: ConnState): boolean => c === ConnState.StartingSyncS || c === ConnState.StartingSyncT;
  const verify = (c: ConnState): boolean => c === ConnState.VerifyS || c === ConnState.VerifyT;
  // Later checks override earlier ones, as in the kernel.
  if (startingSync(ns.conn) && os.conn > ConnState.Connected) rv = SsCode.resyncRunning;
  if (ns.conn === ConnState.Disconnecting && os.conn === ConnState.StandAlone) rv = SsCode.alreadyStandalone;
  if (ns.disk > DiskState.Attaching && os.disk === DiskState.Diskless) rv = SsCode.isDiskless;
  if (ns.conn === ConnState.WFConnection && os.conn < ConnState.Unconnected) rv = SsCode.noNetConfig;
  if (ns.disk === DiskState.Outdated && os.disk < DiskState.Outdated && os.disk !== DiskState.Attaching) {
    rv = SsCode.lowerThanOutdated;
  }
  if (ns.conn === ConnState.Disconnecting && os.conn === ConnState.Unconnected) rv = SsCode.inTransientState;
  if (
    ctx.stateSent &&
    !((ns.conn === ConnState.WFReportParams && os.conn === ConnState.WFConnection) ||
      (ns.conn >= ConnState.Connected && os.conn === ConnState.WFReportParams))
  ) {
    rv = SsCode.inTransientState;
  }
  if (
    os.role !== Role.Primary && ns.role === Role.Primary && ns.pdsk === DiskState.UpToDate &&
    ns.disk !== DiskState.UpToDate && ns.disk !== DiskState.Diskless &&
    (ns.conn <= ConnState.WFSyncUUID || ns.conn !== os.conn)
  ) {
    rv = SsCode.inTransientState;
  }
  if (verify(ns.conn) && os.conn < ConnState.Connected) rv = SsCode.needConnection;
  if (verify(ns.conn) && ns.conn !== os.conn && os.conn > ConnState.Connected) rv = SsCode.resyncRunning;
  if (startingSync(ns.conn) && os.conn < ConnState.Connected) rv = SsCode.needConnection;
  if ((ns.conn === ConnState.SyncTarget || ns.conn === ConnState.SyncSource) && os.conn < ConnState.WFReportParams) {
    rv = SsCode.needConnection;
  }
  if (
    ns.conn === ConnState.Disconnecting && ns.pdsk === DiskState.Outdated && os.conn < ConnState.Connected &&
    os.pdsk > DiskState.Outdated
  ) {
    rv = SsCode.outdateWithoutConnection;
  }
  return rv;
}

export interface CheckOptions {
  /** CS_HARD: skip the user-level checks (network events, handshake results). */
  hard?: boolean;
}

/**
 * Sanitizes `wanted` and checks the change from `old` the way the kernel's
 * __drbd_set_state does: hard transition rules always, then (unless `hard`)
 * state validity — an invalid new state is tolerated if the old one was
 * invalid for the same reason — and the soft transition rules.
 */
export function checkStateChange(
  old: ResourceState,
  wanted: ResourceState,
  ctx: StateCtx,
  opts: CheckOptions = {},
): StateCheck {
  const warnings: string[] = [];
  const ns = sanitizeState(old, wanted, ctx, warnings);
  if (statesEqual(ns, old)) return { ok: true, state: old, changed: false, warnings: [] };
  const hardRv = isValidTransition(old, ns);
  if (hardRv !== null) return refusal(hardRv);
  if (!opts.hard) {
    let rv = isValidState(ns, ctx);
    if (rv !== null) {
      if (isValidState(old, ctx) === rv) rv = isValidSoftTransition(old, ns, ctx);
    } else {
      rv = isValidSoftTransition(old, ns, ctx);
    }
    if (rv !== null) return refusal(rv);
  }
  return { ok: true, state: ns, changed: true, warnings };
}

const flag = (b: boolean): number => (b ? 1 : 0);

/**
 * The kernel log line for a state change: only the changed parts, in DRBD's
 * order `role( A -> B ) peer( … ) conn( … ) disk( … ) pdsk( … ) susp( 0 -> 1 )
 * aftr_isp( … ) peer_isp( … ) user_isp( … )`. Empty string when nothing changed.
 */
export function formatStateChange(os: ResourceState, ns: ResourceState): string {
  return formatStateChangeOf(os, ns, STATE_LOG_FIELDS);
}

/** The parts of a state-change log line, in DRBD's order (print_state_change, drbd_pr_state_change). */
export type StateLogField = 'role' | 'peer' | 'conn' | 'disk' | 'pdsk' | 'susp' | 'aftr_isp' | 'peer_isp' | 'user_isp';
export const STATE_LOG_FIELDS: readonly StateLogField[] = ['role', 'peer', 'conn', 'disk', 'pdsk', 'susp', 'aftr_isp', 'peer_isp', 'user_isp'];

/** formatStateChange limited to `fields` (always printed in DRBD's order). */
export function formatStateChangeOf(os: ResourceState, ns: ResourceState, fields: readonly StateLogField[]): string {
  const want = new Set(fields);
  const parts: string[] = [];
  if (want.has('role') && os.role !== ns.role) parts.push(`role( ${roleName(os.role)} -> ${roleName(ns.role)} )`);
  if (want.has('peer') && os.peer !== ns.peer) parts.push(`peer( ${roleName(os.peer)} -> ${roleName(ns.peer)} )`);
  if (want.has('conn') && os.conn !== ns.conn) parts.push(`conn( ${connName(os.conn)} -> ${connName(ns.conn)} )`);
  if (want.has('disk') && os.disk !== ns.disk) parts.push(`disk( ${diskName(os.disk)} -> ${diskName(ns.disk)} )`);
  if (want.has('pdsk') && os.pdsk !== ns.pdsk) parts.push(`pdsk( ${diskName(os.pdsk)} -> ${diskName(ns.pdsk)} )`);
  const oSusp = os.susp || os.suspNod || os.suspFen;
  const nSusp = ns.susp || ns.suspNod || ns.suspFen;
  if (want.has('susp') && oSusp !== nSusp) parts.push(`susp( ${flag(oSusp)} -> ${flag(nSusp)} )`);
  if (want.has('aftr_isp') && os.aftrIsp !== ns.aftrIsp) parts.push(`aftr_isp( ${flag(os.aftrIsp)} -> ${flag(ns.aftrIsp)} )`);
  if (want.has('peer_isp') && os.peerIsp !== ns.peerIsp) parts.push(`peer_isp( ${flag(os.peerIsp)} -> ${flag(ns.peerIsp)} )`);
  if (want.has('user_isp') && os.userIsp !== ns.userIsp) parts.push(`user_isp( ${flag(os.userIsp)} -> ${flag(ns.userIsp)} )`);
  return parts.join(' ');
}

/** The kernel's state dump for refusals: `{ cs:X ro:R/P ds:D/PD r----- }` (flags s/r a p u F N). */
export function formatStateLine(s: ResourceState): string {
  const flags =
    (s.susp || s.suspNod || s.suspFen ? 's' : 'r') +
    (s.aftrIsp ? 'a' : '-') +
    (s.peerIsp ? 'p' : '-') +
    (s.userIsp ? 'u' : '-') +
    (s.suspFen ? 'F' : '-') +
    (s.suspNod ? 'N' : '-');
  return (
    `{ cs:${connName(s.conn)} ro:${roleName(s.role)}/${roleName(s.peer)} ` +
    `ds:${diskName(s.disk)}/${diskName(s.pdsk)} ${flags} }`
  );
}

/** The three kernel log lines for a refused change (State change failed / state / wanted). */
export function formatRefusalLog(code: SsCode, old: ResourceState, wanted: ResourceState): string[] {
  return [
    `State change failed: ${ssText(code)}`,
    `  state = ${formatStateLine(old)}`,
    ` wanted = ${formatStateLine(wanted)}`,
  ];
}

/** drbdsetup's stderr line for a refusal: `<minor>: State change failed: (<code>) <text>`. */
export function formatRefusalMessage(minor: number, r: Refusal): string {
  if (r.failure) return `${minor}: Failure: (${r.code}) ${r.text}`;
  return `${minor}: State change failed: (${r.code}) ${r.text}`;
}

/** DRBD ERR_* codes udrbd reports (drbdsetup prints `Failure: (code) text`, exit 10). */
export const ErrCode = {
  diskTooSmall: 111,
  discardImpossible: 123,
  diskConfigured: 124,
  netConfigured: 125,
  resizeResync: 130,
  noPrimary: 131,
  resyncAfter: 132,
  resyncAfterCycle: 133,
  pauseIsSet: 134,
  pauseIsClear: 135,
  noDisk: 138,
  connected: 151,
  /** ERR_CONG_NOT_PROTO_A: on-congestion other than block with protocol B or C (drbd_nl.c: _check_net_options). */
  /** ERR_STONITH_AND_PROT_A: fencing resource-and-stonith with protocol A (drbd_nl.c: _check_net_options, drbd_adm_attach). */
  stonithAndProtA: 154,
  congNotProtoA: 155,
  /** ERR_MINOR_INVALID: a minor verb before `new-minor` created it. */
  minorInvalid: 127,
  /** ERR_RES_NOT_KNOWN: a resource verb before `new-resource` created it. */
  resourceNotKnown: 158,
  minorExists: 161,
  mdLayoutNoFit: 169,
  implicitShrink: 170,
} as const;

const errTexts: Record<number, string> = {
  111: 'Low.dev. smaller than requested DRBD-dev. size.',
  130: 'Resize not allowed during resync.',
  131: 'Need one Primary node to resize.',
  169: 'Resulting AL does not fit into available meta data space',
  170: 'Implicit device shrinking not allowed. See kernel log.',
  123: '--discard-my-data not allowed when primary.',
  125: 'Device has a net-config (use disconnect first)',
  132: 'The resync-after minor number is invalid',
  133: 'This would cause a resync-after dependency cycle',
  134: 'Sync-pause flag is already set',
  135: 'Sync-pause flag is already cleared',
  138: 'Device does not have a disk',
  151: 'Device is connected',
  154: 'Fencing policy resource-and-stonith only with prot B or C allowed',
  155: 'on-congestion policy pull-ahead only with prot A allowed',
  127: 'Device minor not allocated',
  158: 'Unknown resource',
  161: 'Minor or volume exists already (delete it first)',
};

export function failure(code: number): Refusal {
  const text = errTexts[code];
  if (text === undefined) throw new Error(`unknown ERR code ${code}`);
  return { ok: false, code, text, exitCode: ExitCode.configInvalid, failure: true };
}
