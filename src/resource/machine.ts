/**
 * resource/machine — a reducer over the resource rules (unit-tested; the
 * resource process does not drive it yet, issue 15):
 * `step(model, event) → { model, actions }`. The model is the state word,
 * the generation UUIDs, the meta-data flags and the config bits that matter;
 * events are admin requests, peer-link news, resync/verify completions and
 * handler results; actions are plain data the daemon carries out (log, write
 * meta-data, send state/UUIDs, exchange bitmaps, start resync, drop the
 * connection, run a handler, reply to the operator). Every state change goes
 * through one function that checks invariants and logs exactly one
 * `conn( A -> B )`-style line. Pure: no I/O, no clock, no randomness (events
 * carry `random` when a new UUID may be needed), no bitmap bookkeeping.
 */
import { assert } from '../util/assert.js';
import { MdFlag, UUID_JUST_CREATED, type GenerationUuids } from '../meta/types.js';
import {
  requestConnect,
  requestDetach,
  requestDisconnect,
  requestInvalidate,
  requestInvalidateRemote,
  requestNewCurrentUuid,
  requestOutdate,
  requestPauseSync,
  requestPrimary,
  requestSecondary,
  requestVerify,
  interpretFencePeer,
  type AdminEffect,
  type AdminResult,
} from './admin.js';
import { checkNetCompatibility, type NetPolicySettings, type RrConflictPolicy } from './after-sb.js';
import {
  checkStateChange,
  failure,
  formatRefusalLog,
  formatRefusalMessage,
  formatStateChange,
  statesEqual,
  unconfiguredState,
  type Fencing,
  type Refusal,
  type ResourceState,
  type StateCtx,
} from './state.js';
import { ConnState, DiskState, Role, connName } from './states.js';
import {
  UuidFlag,
  adminNewCurrentUuid,
  becomePrimaryUuids,
  becomeSecondaryUuids,
  justCreatedUuids,
  newCurrentUuid,
  syncHandshake,
  syncSourceFinish,
  syncSourceStart,
  syncTargetFinish,
  syncTargetStart,
  uuidsEqual,
  formatUuids,
} from './uuid.js';

/** Config bits of one resource that the state machine consults. */
export interface ResourceConfig {
  resourceName: string;
  minor: number;
  /** This node's `on HOST` name. */
  nodeName: string;
  protocol: 'A' | 'B' | 'C';
  fencing: Fencing;
  allowTwoPrimaries: boolean;
  verifyAlg: string | null;
  onNoDataSuspendIo: boolean;
  afterSb0pri: string;
  afterSb1pri: string;
  afterSb2pri: string;
  rrConflict: RrConflictPolicy;
  alwaysAsbp: boolean;
  integrityAlg?: string;
}

export const defaultResourceConfig: ResourceConfig = {
  resourceName: 'r0',
  minor: 0,
  nodeName: 'node',
  protocol: 'C',
  fencing: 'dont-care',
  allowTwoPrimaries: false,
  verifyAlg: null,
  onNoDataSuspendIo: false,
  afterSb0pri: 'disconnect',
  afterSb1pri: 'disconnect',
  afterSb2pri: 'disconnect',
  rrConflict: 'disconnect',
  alwaysAsbp: false,
};

/** What is known about the peer while a connection exists. */
export interface PeerInfo {
  nodeName: string;
  settings: NetPolicySettings;
  uuids: GenerationUuids | null;
  bitsSet: number;
  uuidFlags: number;
  role: Role;
  disk: DiskState;
  conn: ConnState;
}

export interface Model {
  config: ResourceConfig;
  state: ResourceState;
  uuids: GenerationUuids;
  /** MDF_* flags as they should be on disk. */
  mdFlags: number;
  /** In-core CRASHED_PRIMARY flag. */
  crashedPrimary: boolean;
  /** MDF_PRIMARY_IND without MDF_CONNECTED_IND at attach: use degr-wfc-timeout. */
  useDegrWfcTimeout: boolean;
  /** The exposed device is held open (mounted). */
  deviceOpen: boolean;
  /** Net config present (after `connect`, until `disconnect` or a fatal handshake). */
  net: { discardMyData: boolean } | null;
  peer: PeerInfo | null;
  /** This node accepted the connection (RESOLVE_CONFLICTS): it loses ties. */
  resolveConflicts: boolean;
  /** The peer's UUIDs changed while connected: rerun the handshake on its next state. */
  considerResync: boolean;
  /** Number of set bits in the local bitmap, as last reported by the daemon. */
  bitsSet: number;
  /** The running or next resync is a full one. */
  syncFull: boolean;
  /** A P_SYNC_UUID that arrived before our bitmap exchange finished. */
  pendingSyncUuid: bigint | null;
  /** A new current UUID deferred while IO is suspended (DRBD's NEW_CUR_UUID). */
  newCurrentUuidPending: boolean;
  /** What the outstanding fence-peer handler run is for. */
  fencePending: { kind: 'primary'; force: boolean } | { kind: 'connection-loss' } | null;
}

export function initialModel(config: ResourceConfig): Model {
  return {
    config,
    state: { ...unconfiguredState },
    uuids: justCreatedUuids(),
    mdFlags: 0,
    crashedPrimary: false,
    useDegrWfcTimeout: false,
    deviceOpen: false,
    net: null,
    peer: null,
    resolveConflicts: false,
    considerResync: false,
    bitsSet: 0,
    syncFull: false,
    pendingSyncUuid: null,
    newCurrentUuidPending: false,
    fencePending: null,
  };
}

/** Peer parameters learned in the connection handshake (P_PROTOCOL, optionally P_UUIDS + P_STATE). */
export interface PeerParams extends NetPolicySettings {
  nodeName: string;
  uuids?: GenerationUuids;
  bitsSet?: number;
  uuidFlags?: number;
  role?: Role;
  disk?: DiskState;
  conn?: ConnState;
  userIsp?: boolean;
  aftrIsp?: boolean;
}

export type NetLostReason = 'timeout' | 'broken-pipe' | 'network-failure' | 'protocol-error' | 'teardown';

type EventBody =
  | { type: 'attach'; uuids: GenerationUuids; mdFlags: number; bitsSet: number }
  | { type: 'detach' }
  | { type: 'primary'; force: boolean }
  | { type: 'secondary' }
  | { type: 'connect'; discardMyData: boolean }
  | { type: 'disconnect' }
  | { type: 'invalidate' }
  | { type: 'invalidate-remote' }
  | { type: 'verify' }
  | { type: 'outdate' }
  | { type: 'pause-sync' }
  | { type: 'resume-sync' }
  | { type: 'new-current-uuid'; clearBitmap: boolean }
  | { type: 'device-open'; open: boolean }
  | { type: 'bits-set'; count: number }
  | { type: 'net-connected'; peer: PeerParams; resolveConflicts: boolean }
  | { type: 'peer-uuids'; uuids: GenerationUuids; bitsSet: number; uuidFlags: number }
  | { type: 'peer-state'; role: Role; disk: DiskState; conn: ConnState; userIsp?: boolean; aftrIsp?: boolean }
  | { type: 'net-lost'; reason: NetLostReason }
  | { type: 'bitmap-exchanged' }
  | { type: 'sync-uuid'; uuid: bigint }
  | { type: 'resync-finished'; ok: boolean; failedBlocks?: number }
  | { type: 'verify-finished'; oosBlocks: number }
  | { type: 'fence-peer-result'; exitCode: number };

/**
 * An event. `random` is a fresh 64-bit random value; supply it on every
 * event (the reducer uses it only when DRBD would generate a UUID: promotion
 * while disconnected, losing the peer as Primary, resync start as source).
 * `selfBitsSet` optionally refreshes the local bitmap weight first.
 */
export type ResourceEvent = EventBody & { random?: bigint; selfBitsSet?: number };

export type LogLevel = 'info' | 'warn' | 'error' | 'alert';

export type Action =
  | { type: 'log'; level: LogLevel; msg: string }
  | { type: 'state-change'; from: ResourceState; to: ResourceState }
  | { type: 'write-md'; uuids: GenerationUuids; mdFlags: number }
  | { type: 'send-uuids'; uuids: GenerationUuids; bitsSet: number; uuidFlags: number }
  | { type: 'send-sync-uuid'; uuid: bigint }
  | { type: 'send-state'; state: ResourceState }
  | { type: 'set-all-bits' }
  | { type: 'clear-all-bits' }
  | { type: 'net-connect' }
  | { type: 'drop-connection'; reason: string; to: 'StandAlone' | 'Unconnected' }
  | { type: 'exchange-bitmap'; as: 'source' | 'target' }
  | { type: 'start-resync'; as: 'source' | 'target'; full: boolean }
  | { type: 'start-verify'; as: 'source' | 'target' }
  | { type: 'run-handler'; name: string }
  | { type: 'reply'; ok: boolean; code: number; text: string; exitCode: number; stderr: string };

export interface StepResult {
  model: Model;
  actions: Action[];
}

// ---------------------------------------------------------------------------
// Meta-data flag derivation (MDF_*, drbd_main.c: drbd_md_sync)

/** MDF_* bits implied by a state (after_state_ch), keeping FULL_SYNC and AL_DISABLED; AL_CLEAN is cleared. */
export function mdFlagsForState(s: ResourceState, prev: number, crashedPrimary: boolean): number {
  let f = prev & (MdFlag.fullSync | MdFlag.alDisabled);
  if (crashedPrimary) f |= MdFlag.crashedPrimary;
  if (s.role === Role.Primary || (s.pdsk < DiskState.Inconsistent && s.peer === Role.Primary)) f |= MdFlag.primaryInd;
  if (s.conn > ConnState.WFReportParams) f |= MdFlag.connectedInd;
  if (s.disk > DiskState.Inconsistent) f |= MdFlag.consistent;
  if (s.disk > DiskState.Outdated) f |= MdFlag.wasUpToDate;
  if (s.pdsk <= DiskState.Outdated && s.pdsk >= DiskState.Inconsistent) f |= MdFlag.peerOutDated;
  return f;
}

export interface AttachDerivation {
  disk: DiskState;
  pdsk: DiskState;
  crashedPrimary: boolean;
  useDegrWfcTimeout: boolean;
  fullSync: boolean;
}

/** Disk state and flags at attach from the on-disk MDF bits (drbd_adm_attach). */
export function diskStateFromMdFlags(flags: number, fencing: Fencing): AttachDerivation {
  let disk: DiskState;
  if (flags & MdFlag.consistent) disk = flags & MdFlag.wasUpToDate ? DiskState.Consistent : DiskState.Outdated;
  else disk = DiskState.Inconsistent;
  const pdsk: DiskState = flags & MdFlag.peerOutDated ? DiskState.Outdated : DiskState.DUnknown;
  if (disk === DiskState.Consistent && (pdsk === DiskState.Outdated || fencing === 'dont-care')) disk = DiskState.UpToDate;
  const crashedPrimary = (flags & (MdFlag.crashedPrimary | MdFlag.primaryInd)) !== 0;
  const useDegrWfcTimeout = (flags & MdFlag.primaryInd) !== 0 && (flags & MdFlag.connectedInd) === 0;
  const fullSync = (flags & MdFlag.fullSync) !== 0 || (crashedPrimary && (flags & MdFlag.alDisabled) !== 0);
  return { disk, pdsk, crashedPrimary, useDegrWfcTimeout, fullSync };
}

// ---------------------------------------------------------------------------
// The reducer

interface Work {
  m: Model;
  out: Action[];
  random: bigint | undefined;
  sendUuids: boolean;
  sendState: boolean;
  skipInitialSync: boolean;
  syncUuid: bigint | null;
  late: Action[];
  reply: Action | null;
}

export function stateCtxOf(m: Model): StateCtx {
  return {
    fencing: m.config.fencing,
    allowTwoPrimaries: m.config.allowTwoPrimaries,
    deviceOpen: m.deviceOpen,
    hasNetConfig: m.net !== null,
    verifyAlg: m.config.verifyAlg,
    onNoDataSuspendIo: m.config.onNoDataSuspendIo,
    stateSent: false,
  };
}

function log(w: Work, msg: string, level: LogLevel = 'info'): void {
  w.out.push({ type: 'log', level, msg });
}

const alertPatterns = ['Split-Brain detected but unresolved', 'Unrelated data', 'To resolve this'];
const warnPatterns = ['Split-Brain detected', 'Doing a full sync', 'Forced', 'bm UUID was already set', 'Becoming SyncTarget, violating'];
const errorPatterns = ['incompatible', 'I shall become', 'State change failed', 'state = {', 'wanted = {', 'Configuration error', 'broken'];
function levelOf(msg: string): LogLevel {
  if (alertPatterns.some((p) => msg.includes(p))) return 'alert';
  if (errorPatterns.some((p) => msg.includes(p))) return 'error';
  if (warnPatterns.some((p) => msg.includes(p))) return 'warn';
  return 'info';
}
function logAll(w: Work, lines: readonly string[]): void {
  for (const l of lines) log(w, l, levelOf(l));
}

function needRandom(w: Work): bigint {
  assert(w.random !== undefined, 'event carries a random value when a new UUID is generated');
  return w.random;
}

function checkInvariants(s: ResourceState): void {
  assert(s.role !== Role.Unknown, 'local role is Primary or Secondary');
  assert(s.disk !== DiskState.DUnknown, 'local disk is never DUnknown');
  if (s.conn < ConnState.Connected) {
    assert(s.peer === Role.Unknown, 'peer role Unknown while not connected');
    assert(
      s.pdsk === DiskState.DUnknown || s.pdsk === DiskState.Inconsistent || s.pdsk === DiskState.Outdated,
      'pdsk DUnknown/Inconsistent/Outdated while not connected',
    );
  }
  if (s.conn === ConnState.SyncSource) assert(s.disk === DiskState.UpToDate && s.pdsk === DiskState.Inconsistent, 'SyncSource is UpToDate/Inconsistent');
  if (s.conn === ConnState.SyncTarget) assert(s.disk === DiskState.Inconsistent && s.pdsk === DiskState.UpToDate, 'SyncTarget is Inconsistent/UpToDate');
  const paused = s.userIsp || s.peerIsp || s.aftrIsp;
  if (s.conn === ConnState.SyncSource || s.conn === ConnState.SyncTarget) assert(!paused, 'Sync* without pause flags');
  if (s.conn === ConnState.PausedSyncS || s.conn === ConnState.PausedSyncT) assert(paused, 'PausedSync* has a pause flag');
}

/** The one place a state changes: invariants, the log line, after-state effects. */
function commit(w: Work, ns: ResourceState): void {
  const os = w.m.state;
  if (statesEqual(os, ns)) return;
  checkInvariants(ns);
  log(w, formatStateChange(os, ns));
  w.out.push({ type: 'state-change', from: os, to: ns });
  w.m.state = ns;

  // Losing contact with the peer's good disk as Primary starts a new data generation.
  const goodPeer = (d: DiskState): boolean => d >= DiskState.Inconsistent && d !== DiskState.DUnknown && d !== DiskState.Outdated;
  if (goodPeer(os.pdsk) && !goodPeer(ns.pdsk) &&
      (ns.role === Role.Primary || ns.peer === Role.Primary) &&
      w.m.uuids.bitmap === 0n && ns.disk >= DiskState.UpToDate) {
    if (ns.susp || ns.suspFen || ns.suspNod) {
      w.m.newCurrentUuidPending = true;
    } else {
      applyNewCurrentUuid(w);
    }
  }
  if (ns.disk === DiskState.UpToDate && ns.pdsk === DiskState.UpToDate) w.m.crashedPrimary = false;
  if (ns.disk >= DiskState.Inconsistent) w.m.mdFlags = mdFlagsForState(ns, w.m.mdFlags, w.m.crashedPrimary);

  const localChanged = os.role !== ns.role || os.disk !== ns.disk || os.conn !== ns.conn ||
    os.userIsp !== ns.userIsp || os.aftrIsp !== ns.aftrIsp;
  if (localChanged && ns.conn >= ConnState.Connected) w.sendState = true;
}

function applyNewCurrentUuid(w: Work): void {
  const r = newCurrentUuid(w.m.uuids, w.m.state.role, needRandom(w));
  w.m.uuids = r.uuids;
  w.m.newCurrentUuidPending = false;
  logAll(w, r.logLines);
  if (w.m.state.conn >= ConnState.Connected) w.sendUuids = true;
}

/** Applies a wanted state with the kernel's checks; logs and returns the refusal if any. */
function request(w: Work, wanted: ResourceState, hard: boolean): Refusal | null {
  const r = checkStateChange(w.m.state, wanted, stateCtxOf(w.m), { hard });
  if (!r.ok) {
    logAll(w, formatRefusalLog(r.code as never, w.m.state, wanted));
    return r;
  }
  logAll(w, r.warnings.filter((x) => !x.startsWith('Implicitly')));
  commit(w, r.state);
  return null;
}

function force(w: Work, patch: Partial<ResourceState>): void {
  const r = request(w, { ...w.m.state, ...patch }, true);
  assert(r === null, `hard state change to ${JSON.stringify(patch)} accepted`);
}

/** Drop the connection after a fatal handshake result: → Disconnecting → StandAlone, net config gone. */
function dropConnection(w: Work, reason: string): void {
  if (w.m.state.conn !== ConnState.StandAlone) {
    force(w, { conn: ConnState.Disconnecting });
    log(w, 'Connection closed');
    force(w, { conn: ConnState.StandAlone });
  }
  w.m.net = null;
  w.m.peer = null;
  w.m.considerResync = false;
  w.sendState = false;
  w.sendUuids = false;
  w.out.push({ type: 'drop-connection', reason, to: 'StandAlone' });
}

function uuidFlagsOf(w: Work): number {
  let f = 0;
  if (w.m.net?.discardMyData) f |= UuidFlag.discardMyData;
  if (w.m.crashedPrimary) f |= UuidFlag.crashedPrimary;
  if (w.m.state.disk === DiskState.Inconsistent) f |= UuidFlag.inconsistent;
  if (w.skipInitialSync) f |= UuidFlag.skipInitialSync;
  return f;
}

function selfSettings(m: Model): NetPolicySettings {
  return {
    protocol: m.config.protocol,
    afterSb0pri: m.config.afterSb0pri,
    afterSb1pri: m.config.afterSb1pri,
    afterSb2pri: m.config.afterSb2pri,
    allowTwoPrimaries: m.config.allowTwoPrimaries,
    discardMyData: m.net?.discardMyData ?? false,
    integrityAlg: m.config.integrityAlg ?? '',
  };
}

/** The peer's disk as seen by the handshake: a Negotiating peer is Inconsistent or Consistent by its flag 4. */
function realPeerDisk(p: PeerInfo): DiskState {
  if (p.disk !== DiskState.Negotiating) return p.disk;
  return p.uuidFlags & UuidFlag.inconsistent ? DiskState.Inconsistent : DiskState.Consistent;
}

/** receive_state with "consider resync": run the sync handshake and move to its result. */
function handshake(w: Work): void {
  const m = w.m;
  const p = m.peer;
  assert(p !== null && p.uuids !== null, 'handshake has the peer UUIDs');
  const os = m.state;
  const peerDisk = realPeerDisk(p);
  let conn: ConnState = ConnState.Connected;
  m.considerResync = false;

  if (os.disk >= DiskState.Inconsistent && peerDisk >= DiskState.Inconsistent) {
    const d = syncHandshake({
      self: {
        uuids: m.uuids, bitsSet: m.bitsSet, role: os.role, disk: os.disk, nodeName: m.config.nodeName,
        crashedPrimary: m.crashedPrimary, discardMyData: m.net?.discardMyData ?? false,
      },
      peer: {
        uuids: p.uuids, bitsSet: p.bitsSet, role: p.role, disk: peerDisk, nodeName: p.nodeName, uuidFlags: p.uuidFlags,
      },
      afterSb0pri: m.config.afterSb0pri,
      afterSb1pri: m.config.afterSb1pri,
      afterSb2pri: m.config.afterSb2pri,
      rrConflict: m.config.rrConflict,
      alwaysAsbp: m.config.alwaysAsbp,
      resolveConflicts: m.resolveConflicts,
      canDemote: () => !m.deviceOpen,
    });
    logAll(w, d.logLines);
    for (const h of d.handlers) w.out.push({ type: 'run-handler', name: h });
    if (!uuidsEqual(d.selfUuids, m.uuids)) m.uuids = d.selfUuids;
    p.uuids = d.peerUuids;
    if (m.net) m.net.discardMyData = false; // one-shot
    if (d.demoted) {
      force(w, { role: Role.Secondary });
      m.uuids = becomeSecondaryUuids(m.uuids);
    }
    switch (d.kind) {
      case 'unrelated':
      case 'drop':
      case 'split-brain-unresolved':
        dropConnection(w, d.kind);
        return;
      case 'no-sync':
        conn = ConnState.Connected;
        break;
      case 'sync-source':
        conn = ConnState.WFBitMapS;
        break;
      case 'sync-target':
        conn = ConnState.WFBitMapT;
        break;
    }
    m.syncFull = d.full;
    if (d.full) {
      w.out.push({ type: 'set-all-bits' });
    }
  }

  const wanted: ResourceState = {
    ...m.state,
    conn,
    peer: p.role,
    pdsk: peerDisk,
    peerIsp: false,
  };
  const hard = !(os.conn < ConnState.Connected);
  const refused = request(w, wanted, hard);
  if (refused) {
    dropConnection(w, refused.text);
    return;
  }
  if (conn === ConnState.WFBitMapS) w.late.push({ type: 'exchange-bitmap', as: 'source' });
  if (conn === ConnState.WFBitMapT) w.late.push({ type: 'exchange-bitmap', as: 'target' });
}

function applyAdminResult(w: Work, res: AdminResult, kind: string): void {
  if (res.kind === 'fence-peer') {
    w.out.push({ type: 'run-handler', name: 'fence-peer' });
    return;
  }
  if (res.kind === 'refused') {
    for (const s of res.states) commit(w, s);
    logAll(w, res.logLines);
    replyRefusal(w, res.refusal);
    return;
  }
  logAll(w, res.logLines);
  for (const s of res.states) commit(w, s);
  applyEffects(w, res.effects, kind);
  w.reply = { type: 'reply', ok: true, code: 1, text: '', exitCode: 0, stderr: '' };
}

function replyRefusal(w: Work, r: Refusal): void {
  w.reply = {
    type: 'reply', ok: false, code: r.code, text: r.text, exitCode: r.exitCode,
    stderr: formatRefusalMessage(w.m.config.minor, r),
  };
}

function applyEffects(w: Work, effects: readonly AdminEffect[], kind: string): void {
  const m = w.m;
  for (const e of effects) {
    switch (e) {
      case 'new-current-uuid': {
        const r = kind === 'new-current-uuid'
          ? adminNewCurrentUuid(m.uuids, m.state.role, needRandom(w))
          : newCurrentUuid(m.uuids, m.state.role, needRandom(w));
        m.uuids = r.uuids;
        logAll(w, r.logLines);
        break;
      }
      case 'uuid-primary-bit':
        m.uuids = becomePrimaryUuids(m.uuids);
        break;
      case 'uuid-secondary-bit':
        m.uuids = becomeSecondaryUuids(m.uuids);
        break;
      case 'clear-discard-my-data':
        if (m.net) m.net.discardMyData = false;
        break;
      case 'set-all-bits':
        w.out.push({ type: 'set-all-bits' });
        break;
      case 'clear-all-bits':
        w.out.push({ type: 'clear-all-bits' });
        break;
      case 'skip-initial-sync':
        m.uuids = { ...m.uuids, bitmap: 0n };
        w.skipInitialSync = true;
        w.sendUuids = true;
        break;
      case 'send-uuids':
        w.sendUuids = true;
        break;
      case 'send-state':
        if (m.state.conn >= ConnState.WFReportParams) w.sendState = true;
        break;
      case 'start-verify':
        w.late.push({ type: 'start-verify', as: 'source' });
        break;
      case 'net-connect':
        w.late.push({ type: 'net-connect' });
        break;
      case 'net-disconnect':
        m.peer = null;
        m.net = null;
        m.considerResync = false;
        w.out.push({ type: 'drop-connection', reason: 'disconnect', to: 'StandAlone' });
        break;
    }
  }
}

const lostStates: Record<NetLostReason, ConnState> = {
  timeout: ConnState.Timeout,
  'broken-pipe': ConnState.BrokenPipe,
  'network-failure': ConnState.NetworkFailure,
  'protocol-error': ConnState.ProtocolError,
  teardown: ConnState.TearDown,
};

function cloneModel(m: Model): Model {
  return {
    ...m,
    state: { ...m.state },
    uuids: { ...m.uuids },
    net: m.net ? { ...m.net } : null,
    peer: m.peer ? { ...m.peer, settings: { ...m.peer.settings }, uuids: m.peer.uuids ? { ...m.peer.uuids } : null } : null,
    fencePending: m.fencePending ? { ...m.fencePending } : null,
  };
}

/**
 * The reducer. Never mutates `model`; returns the next model and the actions
 * to carry out in order.
 */
export function step(model: Model, event: ResourceEvent): StepResult {
  const w: Work = {
    m: cloneModel(model),
    out: [],
    random: event.random,
    sendUuids: false,
    sendState: false,
    skipInitialSync: false,
    syncUuid: null,
    late: [],
    reply: null,
  };
  const m = w.m;
  const oldUuids = { ...model.uuids };
  const oldFlags = model.mdFlags;
  if (event.selfBitsSet !== undefined) m.bitsSet = event.selfBitsSet;
  const ctx = (): StateCtx => stateCtxOf(m);
  const adminCtx = () => ({ ...ctx(), bitmapUuid: m.uuids.bitmap });

  switch (event.type) {
    case 'attach':
      onAttach(w, event);
      break;
    case 'detach':
      applyAdminResult(w, requestDetach(m.state, ctx()), event.type);
      break;
    case 'primary': {
      const res = requestPrimary(m.state, { force: event.force }, adminCtx());
      if (res.kind === 'fence-peer') m.fencePending = { kind: 'primary', force: event.force };
      applyAdminResult(w, res, event.type);
      break;
    }
    case 'secondary':
      applyAdminResult(w, requestSecondary(m.state, { deviceOpen: m.deviceOpen }, ctx()), event.type);
      break;
    case 'connect': {
      const res = requestConnect(m.state, { discardMyData: event.discardMyData }, ctx());
      if (res.kind === 'ok') m.net = { discardMyData: event.discardMyData };
      applyAdminResult(w, res, event.type);
      break;
    }
    case 'disconnect':
      applyAdminResult(w, requestDisconnect(m.state, ctx()), event.type);
      break;
    case 'invalidate': {
      const res = requestInvalidate(m.state, ctx());
      if (res.kind === 'ok') m.syncFull = true;
      applyAdminResult(w, res, event.type);
      break;
    }
    case 'invalidate-remote': {
      const res = requestInvalidateRemote(m.state, ctx());
      if (res.kind === 'ok') m.syncFull = true;
      applyAdminResult(w, res, event.type);
      break;
    }
    case 'verify':
      applyAdminResult(w, requestVerify(m.state, ctx()), event.type);
      break;
    case 'outdate':
      applyAdminResult(w, requestOutdate(m.state, ctx()), event.type);
      break;
    case 'pause-sync':
      applyAdminResult(w, requestPauseSync(m.state, true, ctx()), event.type);
      break;
    case 'resume-sync':
      applyAdminResult(w, requestPauseSync(m.state, false, ctx()), event.type);
      break;
    case 'new-current-uuid':
      applyAdminResult(
        w,
        requestNewCurrentUuid(m.state, {
          clearBitmap: event.clearBitmap,
          currentIsJustCreated: (m.uuids.current & ~1n) === UUID_JUST_CREATED,
        }),
        event.type,
      );
      break;
    case 'device-open':
      m.deviceOpen = event.open;
      break;
    case 'bits-set':
      m.bitsSet = event.count;
      break;
    case 'net-connected':
      onNetConnected(w, event.peer, event.resolveConflicts);
      break;
    case 'peer-uuids':
      onPeerUuids(w, event);
      break;
    case 'peer-state':
      onPeerState(w, event);
      break;
    case 'net-lost':
      onNetLost(w, event.reason);
      break;
    case 'bitmap-exchanged':
      onBitmapExchanged(w);
      break;
    case 'sync-uuid':
      onSyncUuid(w, event.uuid);
      break;
    case 'resync-finished':
      onResyncFinished(w, event.ok, event.failedBlocks ?? 0);
      break;
    case 'verify-finished':
      onVerifyFinished(w, event.oosBlocks);
      break;
    case 'fence-peer-result':
      onFencePeerResult(w, event.exitCode);
      break;
  }

  // Post-conditions and the trailing actions, in DRBD's order: md, UUIDs, sync UUID, state.
  if (m.state.role === Role.Primary && m.state.disk >= DiskState.Inconsistent) {
    assert((m.uuids.current & 1n) === 1n, 'bit 0 of the current UUID is set while Primary');
  }
  if (!uuidsEqual(oldUuids, m.uuids) || oldFlags !== m.mdFlags) {
    if (m.state.disk >= DiskState.Inconsistent || event.type === 'detach') {
      w.out.push({ type: 'write-md', uuids: { ...m.uuids }, mdFlags: m.mdFlags });
    }
  }
  if (w.sendUuids && m.state.conn >= ConnState.WFReportParams) {
    w.out.push({ type: 'send-uuids', uuids: { ...m.uuids }, bitsSet: m.bitsSet, uuidFlags: uuidFlagsOf(w) });
  }
  if (w.syncUuid !== null) w.out.push({ type: 'send-sync-uuid', uuid: w.syncUuid });
  if (w.sendState && m.state.conn >= ConnState.WFReportParams) w.out.push({ type: 'send-state', state: { ...m.state } });
  w.out.push(...w.late);
  if (w.reply) w.out.push(w.reply);
  return { model: m, actions: w.out };
}

function onAttach(w: Work, ev: { uuids: GenerationUuids; mdFlags: number; bitsSet: number }): void {
  const m = w.m;
  if (m.state.disk !== DiskState.Diskless) {
    replyRefusal(w, { ok: false, code: 124, text: 'Device is already attached to a disk (use detach first)', exitCode: 10, failure: true });
    return;
  }
  if (m.state.conn >= ConnState.WFReportParams) {
    replyRefusal(w, failure(151));
    return;
  }
  const d = diskStateFromMdFlags(ev.mdFlags, m.config.fencing);
  m.uuids = { ...ev.uuids };
  m.mdFlags = ev.mdFlags;
  m.bitsSet = ev.bitsSet;
  m.crashedPrimary = d.crashedPrimary;
  m.useDegrWfcTimeout = d.useDegrWfcTimeout;
  force(w, { disk: DiskState.Attaching });
  if (d.fullSync) {
    log(w, 'Assuming that all blocks are out of sync (aka FullSync)');
    w.out.push({ type: 'set-all-bits' });
    m.mdFlags &= ~MdFlag.fullSync;
  }
  force(w, { disk: d.disk, pdsk: d.pdsk });
  // The kernel rewrites the superblock at attach (flags recomputed, AL_CLEAN dropped).
  m.mdFlags = mdFlagsForState(m.state, m.mdFlags, m.crashedPrimary);
  w.reply = { type: 'reply', ok: true, code: 1, text: '', exitCode: 0, stderr: '' };
}

function onNetConnected(w: Work, peer: PeerParams, resolveConflicts: boolean): void {
  const m = w.m;
  if (m.state.conn !== ConnState.WFConnection || m.net === null) {
    log(w, `connection from ${peer.nodeName} ignored in ${connName(m.state.conn)}`, 'warn');
    w.out.push({ type: 'drop-connection', reason: 'not waiting for a connection', to: 'Unconnected' });
    return;
  }
  force(w, { conn: ConnState.WFReportParams });
  const bad = checkNetCompatibility(selfSettings(m), peer);
  if (bad) {
    log(w, bad, 'error');
    dropConnection(w, bad);
    return;
  }
  m.resolveConflicts = resolveConflicts;
  m.peer = {
    nodeName: peer.nodeName,
    settings: {
      protocol: peer.protocol, afterSb0pri: peer.afterSb0pri, afterSb1pri: peer.afterSb1pri,
      afterSb2pri: peer.afterSb2pri, allowTwoPrimaries: peer.allowTwoPrimaries, discardMyData: peer.discardMyData,
      integrityAlg: peer.integrityAlg ?? '',
    },
    uuids: peer.uuids ? { ...peer.uuids } : null,
    bitsSet: peer.bitsSet ?? 0,
    uuidFlags: (peer.uuidFlags ?? 0) | (peer.discardMyData ? UuidFlag.discardMyData : 0),
    role: peer.role ?? Role.Unknown,
    disk: peer.disk ?? DiskState.DUnknown,
    conn: peer.conn ?? ConnState.WFReportParams,
  };
  if (peer.uuids && peer.role !== undefined && peer.disk !== undefined) {
    handshake(w);
  }
}

function onPeerUuids(w: Work, ev: { uuids: GenerationUuids; bitsSet: number; uuidFlags: number }): void {
  const m = w.m;
  const p = m.peer;
  if (p === null || m.state.conn < ConnState.WFReportParams) return;
  const changed = p.uuids === null || !uuidsEqual(p.uuids, ev.uuids);
  p.uuids = { ...ev.uuids };
  p.bitsSet = ev.bitsSet;
  p.uuidFlags = ev.uuidFlags;
  const skipInitialSync = m.state.conn === ConnState.Connected && (m.uuids.current & ~1n) === UUID_JUST_CREATED &&
    (ev.uuidFlags & UuidFlag.skipInitialSync) !== 0;
  if (skipInitialSync) {
    log(w, 'Accepted new current UUID, preparing to skip initial sync');
    w.out.push({ type: 'clear-all-bits' });
    const role = m.state.role;
    m.uuids = { ...m.uuids, current: role === Role.Primary ? ev.uuids.current | 1n : ev.uuids.current & ~1n, bitmap: 0n };
    force(w, { disk: DiskState.UpToDate, pdsk: DiskState.UpToDate });
    return;
  }
  if (changed && m.state.conn >= ConnState.Connected) m.considerResync = true;
}

function onPeerState(
  w: Work,
  ev: { role: Role; disk: DiskState; conn: ConnState; userIsp?: boolean; aftrIsp?: boolean },
): void {
  const m = w.m;
  const p = m.peer;
  if (p === null || m.state.conn < ConnState.WFReportParams) return;
  p.role = ev.role;
  p.disk = ev.disk;
  p.conn = ev.conn;
  const os = m.state;
  const peerIsp = Boolean(ev.userIsp) || Boolean(ev.aftrIsp);

  // Mirror of the peer's cluster-wide invalidate / invalidate-remote / verify request.
  if (os.conn === ConnState.Connected && ev.conn === ConnState.StartingSyncT) {
    m.syncFull = true;
    force(w, { conn: ConnState.StartingSyncS, peer: ev.role });
    w.out.push({ type: 'set-all-bits' });
    force(w, { conn: ConnState.WFBitMapS });
    w.late.push({ type: 'exchange-bitmap', as: 'source' });
    return;
  }
  if (os.conn === ConnState.Connected && ev.conn === ConnState.StartingSyncS) {
    m.syncFull = true;
    force(w, { conn: ConnState.StartingSyncT, peer: ev.role });
    w.out.push({ type: 'set-all-bits' });
    force(w, { conn: ConnState.WFBitMapT });
    w.late.push({ type: 'exchange-bitmap', as: 'target' });
    return;
  }
  if (os.conn === ConnState.StartingSyncT &&
      (ev.conn === ConnState.StartingSyncS || ev.conn === ConnState.WFBitMapS)) {
    force(w, { conn: ConnState.WFBitMapT });
    w.late.push({ type: 'exchange-bitmap', as: 'target' });
    return;
  }
  if (os.conn === ConnState.StartingSyncS &&
      (ev.conn === ConnState.StartingSyncT || ev.conn === ConnState.WFBitMapT)) {
    force(w, { conn: ConnState.WFBitMapS });
    w.late.push({ type: 'exchange-bitmap', as: 'source' });
    return;
  }
  if (os.conn === ConnState.Connected && ev.conn === ConnState.VerifyS) {
    force(w, { conn: ConnState.VerifyT, peer: ev.role });
    w.late.push({ type: 'start-verify', as: 'target' });
    return;
  }

  const considerResync = os.conn < ConnState.Connected || m.considerResync ||
    (os.conn === ConnState.Connected && (ev.conn === ConnState.WFBitMapS || ev.conn === ConnState.WFBitMapT));
  if (considerResync && p.uuids !== null) {
    handshake(w);
    return;
  }
  if (os.conn < ConnState.Connected) return; // still waiting for the peer's UUIDs
  const pdsk = realPeerDisk(p);
  force(w, { peer: ev.role, pdsk, peerIsp });
}

function onNetLost(w: Work, reason: NetLostReason): void {
  const m = w.m;
  if (m.state.conn < ConnState.WFReportParams) return;
  force(w, { conn: lostStates[reason] });
  force(w, { conn: ConnState.Unconnected });
  m.peer = null;
  m.considerResync = false;
  m.pendingSyncUuid = null;
  if (m.net !== null) force(w, { conn: ConnState.WFConnection });
  if (m.state.role === Role.Primary && m.state.pdsk >= DiskState.DUnknown && m.config.fencing !== 'dont-care') {
    m.fencePending = { kind: 'connection-loss' };
    w.out.push({ type: 'run-handler', name: 'fence-peer' });
  }
}

function onBitmapExchanged(w: Work): void {
  const m = w.m;
  if (m.state.conn === ConnState.WFBitMapS) {
    const r = syncSourceStart(m.uuids, needRandom(w));
    m.uuids = r.uuids;
    logAll(w, r.logLines);
    w.syncUuid = r.syncUuid;
    force(w, { conn: ConnState.SyncSource });
    log(w, `Began resync as ${connName(m.state.conn)} (will sync ${m.bitsSet * 4} KB [${m.bitsSet} bits set]).`);
    w.late.push({ type: 'start-resync', as: 'source', full: m.syncFull });
    return;
  }
  if (m.state.conn === ConnState.WFBitMapT) {
    force(w, { conn: ConnState.WFSyncUUID });
    if (m.pendingSyncUuid !== null) {
      const u = m.pendingSyncUuid;
      m.pendingSyncUuid = null;
      onSyncUuid(w, u);
    }
    return;
  }
  log(w, `bitmap exchange finished in ${connName(m.state.conn)}, ignored`, 'warn');
}

function onSyncUuid(w: Work, uuid: bigint): void {
  const m = w.m;
  if (m.state.conn === ConnState.WFBitMapT) {
    m.pendingSyncUuid = uuid;
    return;
  }
  if (m.state.conn !== ConnState.WFSyncUUID) {
    log(w, `sync UUID received in ${connName(m.state.conn)}, ignored`, 'warn');
    return;
  }
  m.uuids = syncTargetStart(m.uuids, uuid, m.state.role);
  log(w, `updated sync uuid ${formatUuids(m.uuids)}`);
  force(w, { conn: ConnState.SyncTarget, disk: DiskState.Inconsistent });
  log(w, `Began resync as ${connName(m.state.conn)} (will sync ${m.bitsSet * 4} KB [${m.bitsSet} bits set]).`);
  w.late.push({ type: 'start-resync', as: 'target', full: m.syncFull });
}

function onResyncFinished(w: Work, ok: boolean, failedBlocks: number): void {
  const m = w.m;
  const c = m.state.conn;
  const source = c === ConnState.SyncSource || c === ConnState.PausedSyncS;
  const target = c === ConnState.SyncTarget || c === ConnState.PausedSyncT;
  if (!source && !target) {
    log(w, `resync finished in ${connName(c)}, ignored`, 'warn');
    return;
  }
  m.syncFull = false;
  if (!ok) {
    log(w, `            ${failedBlocks} failed blocks`, 'warn');
    force(w, source
      ? { conn: ConnState.Connected, pdsk: DiskState.Inconsistent, userIsp: false, peerIsp: false, aftrIsp: false }
      : { conn: ConnState.Connected, disk: DiskState.Inconsistent, userIsp: false, peerIsp: false, aftrIsp: false });
    return;
  }
  log(w, 'Resync done');
  if (source) {
    m.uuids = syncSourceFinish(m.uuids);
    force(w, { conn: ConnState.Connected, pdsk: DiskState.UpToDate, userIsp: false, peerIsp: false, aftrIsp: false });
  } else {
    const peerUuids = m.peer?.uuids;
    assert(peerUuids, 'SyncTarget knows the peer UUIDs');
    m.uuids = syncTargetFinish(m.uuids, peerUuids, m.state.role);
    force(w, { conn: ConnState.Connected, disk: DiskState.UpToDate, userIsp: false, peerIsp: false, aftrIsp: false });
    w.late.push({ type: 'run-handler', name: 'after-resync-target' });
  }
  log(w, `updated UUIDs ${formatUuids(m.uuids)}`);
  if (m.peer) m.peer.uuids = { ...m.uuids };
}

function onVerifyFinished(w: Work, oosBlocks: number): void {
  const m = w.m;
  if (m.state.conn !== ConnState.VerifyS && m.state.conn !== ConnState.VerifyT) {
    log(w, `verify finished in ${connName(m.state.conn)}, ignored`, 'warn');
    return;
  }
  log(w, 'Online verify done');
  if (oosBlocks > 0) log(w, `Online verify found ${oosBlocks} 4k block out of sync!`, 'warn');
  force(w, { conn: ConnState.Connected });
}

function onFencePeerResult(w: Work, exitCode: number): void {
  const m = w.m;
  const pending = m.fencePending;
  m.fencePending = null;
  if (pending?.kind === 'primary') {
    const res = requestPrimary(m.state, { force: pending.force, fencePeerExit: exitCode }, {
      ...stateCtxOf(m), bitmapUuid: m.uuids.bitmap,
    });
    assert(res.kind !== 'fence-peer', 'fence-peer runs once per promotion');
    applyAdminResult(w, res, 'primary');
    return;
  }
  const outcome = interpretFencePeer(exitCode, m.state, m.config.fencing);
  logAll(w, outcome.logLines);
  if (m.state.conn >= ConnState.Connected) return; // reconnected meanwhile: the handshake decides
  const patch: Partial<ResourceState> = { ...outcome.patch, suspFen: false };
  force(w, patch);
  if (m.newCurrentUuidPending && !(m.state.susp || m.state.suspFen || m.state.suspNod)) applyNewCurrentUuid(w);
}
