/**
 * resource/fencing — DRBD 8.4's resource-level fencing (`disk { fencing
 * resource-only | resource-and-stonith; }`) as pure rules over states:
 *  - when the fence-peer handler runs: a Primary losing the connection to a
 *    peer whose disk may be good (conn_disconnect: pdsk ≥ DUnknown), and a
 *    disconnected node asked to become Primary without knowing the peer
 *    outdated (drbd_set_role's -7 / Consistent paths);
 *  - what each handler exit code does to the state (conn_try_outdate_peer);
 *  - when I/O is frozen (susp_fen, sanitize_state under resource-and-stonith)
 *    and when it is released (after_state_ch: the peer became Outdated, or
 *    the connection came back).
 * No I/O, no clock, no handler runs: daemon/fencing carries these out.
 */
import type { Fencing, ResourceState } from './state.js';
import { ConnState, DiskState, Role } from './states.js';

/** What a fence-peer exit code means for the state (conn_try_outdate_peer). */
export interface FenceOutcome {
  /** The answer DRBD's caller acts on: the peer is known Outdated or worse (given the patch applies). */
  peerOutdated: boolean;
  /** State changes the handler's answer implies (pdsk, or own disk for 6). */
  patch: Partial<ResourceState>;
  /** DRBD's kernel log lines, in order (see fenceLogLevel). */
  logLines: string[];
}

/**
 * Interprets a fence-peer handler exit code (drbd84.md §5.2): 3 peer
 * Inconsistent, 4 Outdated, 5 down (Outdated only if our disk is UpToDate),
 * 6 peer Primary → outdate myself, 7 stonithed; anything else is broken
 * (nothing changes; under resource-and-stonith I/O stays frozen).
 */
export function interpretFencePeer(exitCode: number, state: ResourceState, fencing: Fencing): FenceOutcome {
  const logLines: string[] = [];
  let patch: Partial<ResourceState> = {};
  let text: string;
  switch (exitCode) {
    case 3:
      text = 'peer is inconsistent or worse';
      patch = { pdsk: DiskState.Inconsistent };
      break;
    case 4:
      text = 'peer was fenced';
      patch = { pdsk: DiskState.Outdated };
      break;
    case 5:
      if (state.disk === DiskState.UpToDate) {
        text = 'peer is unreachable, assumed to be dead';
        patch = { pdsk: DiskState.Outdated };
      } else {
        text = 'peer unreachable, doing nothing since disk != UpToDate';
      }
      break;
    case 6:
      text = 'peer is active';
      logLines.push('Peer is primary, outdating myself.');
      patch = { disk: DiskState.Outdated };
      break;
    case 7:
      if (fencing !== 'resource-and-stonith') logLines.push('fence-peer() = 7 && fencing != Stonith !!!');
      text = 'peer was stonithed';
      patch = { pdsk: DiskState.Outdated };
      break;
    default:
      logLines.push(`fence-peer helper broken, returned ${exitCode}`);
      return { peerOutdated: false, patch: {}, logLines };
  }
  logLines.push(`fence-peer helper returned ${exitCode} (${text})`);
  const pdsk = patch.pdsk ?? state.pdsk;
  return { peerOutdated: pdsk <= DiskState.Outdated, patch, logLines };
}

/** The level DRBD logs each of interpretFencePeer's lines at (conn_info / conn_warn / conn_err). */
export function fenceLogLevel(line: string): 'info' | 'warn' | 'error' {
  if (line.startsWith('fence-peer helper returned')) return 'info';
  if (line.startsWith('Peer is primary')) return 'warn';
  return 'error';
}

/** DRBD's log line when the handler is not run because this node has no good data to defend. */
export const NOT_CONSISTENT_LINE = "Not fencing peer, I'm not even Consistent myself.";
/** DRBD's log line when the link came back while the handler ran: its answer is stale. */
export const IGNORING_EXIT_CODE_LINE = 'Ignoring fence-peer exit code';
/** DRBD's warning when `primary --force` goes on although the peer could not be outdated. */
export const FORCED_SPLIT_BRAIN_LINE = 'Forced into split brain situation!';

/** A Primary that is not connected while its peer's disk may be better than Outdated (sanitize_state's susp_fen test). */
function primaryMissingPeer(s: ResourceState): boolean {
  return s.role === Role.Primary && s.conn < ConnState.Connected && s.pdsk > DiskState.Outdated;
}

/**
 * The susp_fen flag of a state change (sanitize_state + after_state_ch case 2):
 * resource-and-stonith freezes I/O when a Primary loses the connection to a
 * peer that is not known Outdated; a connection that comes back (Connected
 * or beyond) releases it. Otherwise the flag is kept.
 */
export function fencingSuspended(before: ResourceState, after: ResourceState, fencing: Fencing): boolean {
  if (after.suspFen && before.conn < ConnState.Connected && after.conn >= ConnState.Connected) return false;
  if (fencing === 'resource-and-stonith' && primaryMissingPeer(after) && !primaryMissingPeer(before)) return true;
  return after.suspFen;
}

/** after_state_ch case 1: the fence-peer answer made the peer Outdated (or worse): frozen I/O may go on. */
export function fenceReleasesIo(before: ResourceState, after: ResourceState): boolean {
  return after.suspFen && before.pdsk > DiskState.Outdated && after.pdsk <= DiskState.Outdated;
}

/**
 * conn_disconnect: the connection is gone (below WFReportParams) while this
 * node is Primary and the peer's disk may be good (pdsk DUnknown or better):
 * run fence-peer (asynchronously, as conn_try_outdate_peer_async does).
 */
export function fenceOnConnectionLoss(before: ResourceState, after: ResourceState, fencing: Fencing): boolean {
  return (
    fencing !== 'dont-care' &&
    before.conn >= ConnState.WFReportParams &&
    after.conn < ConnState.WFReportParams &&
    after.role === Role.Primary &&
    after.pdsk >= DiskState.DUnknown
  );
}

/**
 * drbd_set_role: a promotion of a node that is not connected and does not
 * know its peer outdated first runs fence-peer — on the -7 path (UpToDate, or
 * forced UpToDate from Inconsistent…Consistent with --force) and on the -2
 * path of a Consistent disk. Outdated/Inconsistent disks without --force are
 * refused -2 without running it.
 */
export function promotionNeedsFencing(s: ResourceState, fencing: Fencing, force: boolean): boolean {
  if (fencing === 'dont-care' || s.role === Role.Primary) return false;
  if (s.conn >= ConnState.WFReportParams || s.pdsk < DiskState.DUnknown) return false;
  if (s.disk === DiskState.UpToDate || s.disk === DiskState.Consistent) return true;
  return force && s.disk >= DiskState.Inconsistent;
}

/**
 * What the promotion adds after fence-peer answered (drbd_set_role):
 * a Consistent disk whose peer is now Outdated becomes UpToDate; with
 * --force a peer that could not be outdated is taken as Outdated anyway
 * ("Forced into split brain situation!"). Empty: promote as requested.
 */
export function promotionAfterFence(s: ResourceState, force: boolean): { patch: Partial<ResourceState>; logLines: string[] } {
  const peerOutdated = s.pdsk <= DiskState.Outdated;
  if (peerOutdated && s.disk === DiskState.Consistent) return { patch: { disk: DiskState.UpToDate }, logLines: [] };
  if (!peerOutdated && force) return { patch: { pdsk: DiskState.Outdated }, logLines: [FORCED_SPLIT_BRAIN_LINE] };
  return { patch: {}, logLines: [] };
}
