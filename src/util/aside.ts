/**
 * util/aside — work a caller deliberately does not await (a packet handler that
 * must return before the disk write it started finishes, an event callback).
 * Each call site says in one line why not waiting is safe; these helpers make
 * sure the work's failure is still logged or kept, never an unhandled
 * rejection and never lost. An InvariantError (a bug) is logged and then
 * rethrown, so it still crashes the process loudly.
 */
import type { Logger } from 'pino';
import { InvariantError } from './assert.js';

/** Runs `work` without waiting for it; a rejection is logged as `<what> failed: <message>`. */
export function runAside(work: Promise<unknown>, log: Logger, what: string): void {
  work.catch((err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof InvariantError) {
      log.fatal({ err }, `${what} failed: ${message}`);
      // A broken invariant must not be survived: crash on a clean stack, as an uncaught throw would.
      process.nextTick(() => {
        throw err;
      });
      return;
    }
    log.error({ err }, `${what} failed: ${message}`);
  });
}

/**
 * Keeps `work` in `pending` until it fulfils, so `await Promise.all(pending)` waits for
 * what is still running. A rejected one is left in the set: that Promise.all rethrows it.
 */
export function trackUntilFulfilled<T>(pending: Set<Promise<T>>, work: Promise<T>): void {
  pending.add(work);
  work.then(
    () => pending.delete(work),
    () => undefined, // stays in `pending`: the caller's Promise.all(pending) reports it
  );
}
