/**
 * cli/wait-sync — when `wait-sync` may stop waiting, as drbdsetup 8.4's
 * wait-sync decides it: first the connection must be up (the wait-connect
 * part: Unconnected … WFReportParams keep waiting), then no resync or online
 * verify may run (StartingSync*, WFBitMap*, WFSyncUUID, Sync*, PausedSync*,
 * Verify* keep waiting). StandAlone / Disconnecting end the wait (a split
 * brain or a disconnect will not resolve by waiting) unless
 * `--wait-after-sb` asks to wait on. Pure: a connection state name in, a
 * verdict out.
 */
import { ConnState, parseConnState } from '../resource/states.js';

export type WaitSyncVerdict = 'done' | 'waiting-for-connection' | 'waiting-for-sync';

const SYNCING: ReadonlySet<ConnState> = new Set([
  ConnState.StartingSyncS,
  ConnState.StartingSyncT,
  ConnState.WFBitMapS,
  ConnState.WFBitMapT,
  ConnState.WFSyncUUID,
  ConnState.SyncSource,
  ConnState.SyncTarget,
  ConnState.VerifyS,
  ConnState.VerifyT,
  ConnState.PausedSyncS,
  ConnState.PausedSyncT,
]);

/** `cstate` as `status --json` reports it (a connection state name or `Unconfigured`). */
export function waitSyncVerdict(cstate: string, waitAfterSplitBrain: boolean): WaitSyncVerdict {
  // Unconfigured = StandAlone + Diskless: nothing to wait for, like StandAlone.
  const conn = cstate === 'Unconfigured' ? ConnState.StandAlone : parseConnState(cstate);
  if (conn === undefined) throw new Error(`wait-sync: unknown connection state '${cstate}'`);
  if (conn < ConnState.Unconnected) return waitAfterSplitBrain ? 'waiting-for-connection' : 'done';
  if (conn < ConnState.Connected) return 'waiting-for-connection';
  return SYNCING.has(conn) ? 'waiting-for-sync' : 'done';
}
