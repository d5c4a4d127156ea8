/**
 * resource/link-rules — the connection-state decisions of DRBD's connect
 * sequence as pure functions: which state a handshake decision leads to,
 * the steps of a resync (bitmap exchange, sync UUID, start, finish), what a
 * peer's P_STATE means locally, the states after a lost link, and the
 * skip-initial-sync rule (drbd_receiver.c: receive_state, receive_uuids,
 * drbd_sync_handshake's callers; drbd_worker.c: drbd_resync_finished).
 * daemon/link calls these and commits what they return through
 * resource/transition; no sockets, disks or timers here.
 */
import { UUID_JUST_CREATED, type GenerationUuids } from '../meta/types.js';
import { type ResourceState, type StateCtx, checkStateChange } from './state.js';
import { ConnState, DiskState, Role, connName } from './states.js';

/** The fields of a state a rule asks for; the rest stays as it is. */
export type StatePatch = Partial<ResourceState>;

/** What the peer last told about itself (P_STATE). */
export interface PeerView {
  role: Role;
  disk: DiskState;
  conn: ConnState;
  userIsp: boolean;
}

export const isSyncState = (c: ConnState): boolean =>
  c === ConnState.SyncSource || c === ConnState.SyncTarget || c === ConnState.PausedSyncS || c === ConnState.PausedSyncT;
const isVerifyState = (c: ConnState): boolean => c === ConnState.VerifyS || c === ConnState.VerifyT;

/** The handshake outcomes that keep the connection (drop / split brain / unrelated go StandAlone). */
export type ConnectOutcome = 'no-sync' | 'sync-source' | 'sync-target';

/** The state right after the handshake decided: Connected, or the bitmap exchange of a resync. */
export function afterHandshake(outcome: ConnectOutcome, peer: PeerView): StatePatch {
  switch (outcome) {
    case 'no-sync':
      return { conn: ConnState.Connected, peer: peer.role, pdsk: peer.disk };
    case 'sync-source':
      return { conn: ConnState.WFBitMapS, peer: peer.role, pdsk: DiskState.Inconsistent };
    case 'sync-target':
      return { conn: ConnState.WFBitMapT, peer: peer.role, pdsk: DiskState.UpToDate };
  }
}

/**
 * drbd_receiver.c receive_state: the first state after the handshake
 * (WFReportParams -> Connected / WFBitMap*) is committed without CS_HARD, so
 * sanitize_state, is_valid_state and the soft transition rules apply
 * (checkStateChange, as _drbd_set_state without CS_HARD). Two Primaries
 * without allow-two-primaries — a split brain resolved by after-sb-2pri
 * violently, or a forced promotion on both sides — fail here and the
 * connection is dropped (C_DISCONNECTING). Returns DRBD's log line, or null.
 */
export function handshakeStateRefusal(os: ResourceState, outcome: ConnectOutcome, peer: PeerView, ctx: StateCtx): string | null {
  // Once Connected (a renegotiation after primary --force or a re-attach) the change is CS_HARD.
  if (os.conn >= ConnState.Connected) return null;
  const checked = checkStateChange(os, { ...os, ...afterHandshake(outcome, peer) }, ctx);
  return checked.ok ? null : `State change failed: ${checked.text}`;
}

/** The target's bitmap exchange is done: wait for the source's P_SYNC_UUID. */
export const bitmapExchangedAsTarget: StatePatch = { conn: ConnState.WFSyncUUID };

/** The resync runs (sanitize_state turns it into PausedSync* while a pause flag is set). */
export function resyncStarts(as: 'source' | 'target'): StatePatch {
  return as === 'source'
    ? { conn: ConnState.SyncSource, pdsk: DiskState.Inconsistent }
    : { conn: ConnState.SyncTarget, disk: DiskState.Inconsistent, pdsk: DiskState.UpToDate };
}

/** DRBD's log line when a resync begins (drbd_start_resync). */
export function resyncBeganLine(as: 'source' | 'target', bitsSet: number): string {
  const conn = as === 'source' ? ConnState.SyncSource : ConnState.SyncTarget;
  return `Began resync as ${connName(conn)} (will sync ${bitsSet * 4} KB [${bitsSet} bits set]).`;
}

/**
 * on-congestion (drbd_req.c: maybe_pull_ahead): `pull-ahead` goes Ahead
 * (sanitize_state makes the peer's disk Consistent at most: it misses
 * writes now); `disconnect` drops the connection, and as for DRBD's
 * C_DISCONNECTING the resource ends StandAlone (drbd_receiver.c:
 * conn_disconnect), waiting for the operator's `connect`/`adjust`.
 * Only from Connected: udrbd does not pull ahead during a resync.
 */
export function onCongestion(local: ResourceState, policy: 'pull-ahead' | 'disconnect'): StatePatch | 'disconnect' | null {
  if (local.conn !== ConnState.Connected || local.disk !== DiskState.UpToDate) return null;
  return policy === 'pull-ahead' ? { conn: ConnState.Ahead } : 'disconnect';
}

/**
 * DRBD's start_resync_timer (drbd_receiver.c got_BarrierAck → drbd_worker.c
 * w_start_resync): once every mirrored write is acknowledged while Ahead, the
 * resync starts this long after, as SyncSource.
 */
export const AHEAD_TO_SYNC_SOURCE_DELAY_MS = 1000;

/** Ahead, drained, the delay passed: become SyncSource; null once the state moved on (link lost). */
export function aheadToSyncSource(local: ResourceState): StatePatch | null {
  return local.conn === ConnState.Ahead ? resyncStarts('source') : null;
}

/** receive_sync_uuid while Behind: the Ahead peer started the resync; become SyncTarget. */
export function behindToSyncTarget(local: ResourceState): StatePatch | null {
  return local.conn === ConnState.Behind ? resyncStarts('target') : null;
}

/** The target's resync ended (drbd_resync_finished): UpToDate, or still Inconsistent after failed blocks. */
export function targetResyncFinished(ok: boolean): StatePatch {
  return ok ? { conn: ConnState.Connected, disk: DiskState.UpToDate, pdsk: DiskState.UpToDate } : { conn: ConnState.Connected };
}

export interface PeerStateNews {
  patch: StatePatch;
  /** This node was SyncSource and the peer reports the resync done (UpToDate, Connected). */
  sourceResyncDone: boolean;
  /** This node was VerifyT and the peer's verify ended. */
  verifyEnded: boolean;
}

/**
 * receive_state: the peer's role and pause flag always; its disk state
 * outside a resync; the end of a resync (source side) or a verify.
 */
export function peerStateNews(local: ResourceState, peer: PeerView): PeerStateNews {
  const patch: StatePatch = { peer: peer.role, peerIsp: peer.userIsp };
  let sourceResyncDone = false;
  let verifyEnded = false;
  const c = local.conn;
  if (c === ConnState.SyncSource || c === ConnState.PausedSyncS) {
    if (peer.disk === DiskState.UpToDate && peer.conn === ConnState.Connected) {
      patch.conn = ConnState.Connected;
      patch.pdsk = DiskState.UpToDate;
      sourceResyncDone = true;
    }
  } else if (isVerifyState(c) && peer.conn === ConnState.Connected) {
    patch.conn = ConnState.Connected;
    verifyEnded = c === ConnState.VerifyT;
  } else if (!isSyncState(c) && c !== ConnState.WFBitMapS && c !== ConnState.WFBitMapT && c !== ConnState.WFSyncUUID) {
    patch.pdsk = peer.disk;
    // receive_state: "if (peer_state.conn == C_AHEAD) ns.conn = C_BEHIND" — sanitize_state then
    // makes this disk Outdated at best: it misses the writes the peer only marks.
    if (peer.conn === ConnState.Ahead && c === ConnState.Connected) patch.conn = ConnState.Behind;
  }
  return { patch, sourceResyncDone, verifyEnded };
}

/** The reason a live link ended, as the connection state DRBD shows for it. */
export type LinkLoss = 'NetworkFailure' | 'BrokenPipe' | 'Timeout' | 'ProtocolError' | 'Disconnecting';

/**
 * The connection states after a lost link: the loss itself, then (while
 * the resource keeps its net config) Unconnected → WFConnection to dial
 * again. A local teardown shows as TearDown, which may go on to Unconnected.
 */
export function linkLostStates(loss: LinkLoss, reconnect: boolean): ConnState[] {
  const lost: Record<LinkLoss, ConnState> = {
    NetworkFailure: ConnState.NetworkFailure,
    BrokenPipe: ConnState.BrokenPipe,
    Timeout: ConnState.Timeout,
    ProtocolError: ConnState.ProtocolError,
    Disconnecting: ConnState.TearDown,
  };
  return reconnect ? [lost[loss], ConnState.Unconnected, ConnState.WFConnection] : [lost[loss]];
}

/** The connection states of `disconnect` / a fatal handshake: Disconnecting → StandAlone. */
export function standAloneStates(local: ResourceState): ConnState[] {
  if (local.conn === ConnState.StandAlone) return [];
  if (local.conn === ConnState.Disconnecting) return [ConnState.StandAlone];
  return [ConnState.Disconnecting, ConnState.StandAlone];
}

/** A peer's cluster-wide request (P_STATE_CHG_REQ) and the local state it asks for. */
export function peerRequestTarget(requested: ConnState | undefined): ConnState | null {
  switch (requested) {
    case ConnState.StartingSyncS: // the peer ran invalidate: it becomes the target
      return ConnState.StartingSyncS;
    case ConnState.StartingSyncT: // the peer ran invalidate-remote
      return ConnState.StartingSyncT;
    case ConnState.VerifyT:
      return ConnState.VerifyT;
    default:
      return null;
  }
}

export type SkipInitialSync =
  | { accept: true; uuids: GenerationUuids; patch: StatePatch; line: string }
  | { accept: false; line: string };

/**
 * receive_uuids with UUID_FLAG_SKIP_INITIAL_SYNC: a fresh (just created),
 * Connected node adopts the peer's current UUID, clears its bitmap and both
 * disks become UpToDate; anything else ignores the request.
 */
export function skipInitialSync(local: ResourceState, uuids: GenerationUuids, peerCurrent: bigint): SkipInitialSync {
  if (local.conn !== ConnState.Connected || (uuids.current & ~1n) !== UUID_JUST_CREATED) {
    return { accept: false, line: 'peer asked to skip the initial sync, but this node is not a fresh connected node; ignored' };
  }
  const current = local.role === Role.Primary ? peerCurrent | 1n : peerCurrent & ~1n;
  return {
    accept: true,
    uuids: { ...uuids, current, bitmap: 0n },
    patch: { disk: DiskState.UpToDate, pdsk: DiskState.UpToDate },
    line: 'Accepted new current UUID, preparing to skip initial sync',
  };
}
