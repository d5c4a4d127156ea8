/**
 * daemon/state-handlers — handlers DRBD 8.4 runs from after_state_ch, judged
 * on each state change (before, after) of the runtime:
 *   pri-on-incon-degr — the node becomes (or stays, with something else
 *   changing into) a Primary with neither its own disk nor the peer's
 *   UpToDate: `!(Primary && disk < UpToDate && pdsk < UpToDate)` before and
 *   that condition after (drbd_state.c). Typical case: a Primary SyncTarget
 *   that loses its peer. Knows nothing of the link or the data path.
 */
import { DiskState, Role, diskName } from '../resource/states.js';
import type { StateSnapshot } from './status.js';
import type { ResourceRuntime } from './runtime.js';
import { runAside } from '../util/aside.js';

/** A Primary without UpToDate data on either node: its I/O has nowhere good to go. */
export function isPrimaryWithoutGoodData(s: Pick<StateSnapshot, 'role' | 'disk' | 'pdsk'>): boolean {
  return s.role === Role.Primary && s.disk < DiskState.UpToDate && s.pdsk < DiskState.UpToDate;
}

/** The handlers to run for one state change, in DRBD's order. */
export function stateChangeHandlers(before: StateSnapshot, after: StateSnapshot): string[] {
  return !isPrimaryWithoutGoodData(before) && isPrimaryWithoutGoodData(after) ? ['pri-on-incon-degr'] : [];
}

/** Runs stateChangeHandlers' handlers after every state change of `runtime` (not awaited, as DRBD's khelper runs aside). */
export function watchStateHandlers(runtime: ResourceRuntime): void {
  runtime.stateHooks.push((before, after, vnr) => {
    for (const name of stateChangeHandlers(before, after)) {
      runtime.log.warn(`${name}: Primary with neither local nor peer disk UpToDate (${diskName(after.disk)}/${diskName(after.pdsk)})`);
      // Handlers run aside as DRBD's khelper calls do; runHandler logs and resolves on every failure.
      runAside(runtime.runHandler(name, vnr), runtime.log, `handler ${name}`);
    }
  });
}
