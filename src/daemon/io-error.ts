/**
 * daemon/io-error — what a resource does when its backing disk fails a
 * request: DRBD 8.4's `on-io-error` (__drbd_chk_io_error_ in drbd_int.h) and
 * `disk-timeout` (the request timer's force-detach).
 *   pass_on: "Local IO failed in <where>."; the disk goes Inconsistent (the
 *     failed range is already marked out of sync by the data path, and a
 *     failed read is retried on an UpToDate peer); the request fails upwards
 *     only when no peer had the data.
 *   detach (the default), call-local-io-error: "Local IO failed in <where>.
 *     Detaching...", disk( X -> Failed ); call-local-io-error runs the
 *     `local-io-error` handler then (after_state_ch); the data path lets go
 *     of the disk, disk( Failed -> Diskless ), and a Primary goes on through
 *     the peer (or fails I/O with EIO when not connected).
 *   disk-timeout: a request older than it detaches whatever on-io-error
 *     says (DRBD_FORCE_DETACH falls through pass_on).
 * The data path reports errors synchronously; the state change runs once,
 * in the background, and later errors of the same disk are not repeated.
 */
import type { OnIoError } from '../config/resolve.js';
import { DiskTimeoutError } from '../disk/deadline-disk.js';
import { DiskState } from '../resource/states.js';
import type { ResourceRuntime } from './runtime.js';
import { runAside } from '../util/aside.js';

/** At most this many "Local IO failed" lines per window (DRBD's ratelimit: 5 per 5 s). */
const LOG_BURST_MAX = 5;
const LOG_WINDOW_MS = 5_000;

export type IoOperation = 'read' | 'write' | 'flush';

/** DRBD's function name for where the error was seen, as its log line says it. */
function where(op: IoOperation): string {
  return op === 'flush' ? 'drbd_flush_after_epoch' : 'drbd_request_endio';
}

export class IoErrorPolicy {
  private detaching: Promise<void> | null = null;
  private logWindowStartMs = 0;
  private logLinesInWindow = 0;

  constructor(
    private readonly runtime: ResourceRuntime,
    private readonly policy: () => OnIoError,
    /** The volume whose disk this policy watches (on-io-error is a disk option: per volume). */
    private readonly vnr: number = runtime.firstVolume,
  ) {}

  /** The data path saw the local disk fail `op` at `offsetBytes`. */
  onLocalIoError(op: IoOperation, offsetBytes: number, error: Error): void {
    const rt = this.runtime;
    const disk = rt.volumeSnapshot(this.vnr).disk;
    if (this.detaching !== null || disk <= DiskState.Failed) return;
    const timedOut = error instanceof DiskTimeoutError;
    const policy = this.policy();
    if (timedOut) rt.log.error({ op, offsetBytes, timeoutMs: error.timeoutMs }, 'Local backing device failed to meet the disk-timeout');
    if (policy === 'pass_on' && !timedOut) {
      if (this.mayLog()) rt.log.error({ op, offsetBytes, err: error.message }, `Local IO failed in ${where(op)}.`);
      // The data path cannot wait for a state change inside its error path; the change is logged if it fails.
      if (disk > DiskState.Inconsistent) runAside(rt.setVolumeState(this.vnr, { disk: DiskState.Inconsistent }, 'on-io-error pass_on'), rt.log, 'on-io-error pass_on');
      return;
    }
    rt.log.error({ op, offsetBytes, err: error.message }, `Local IO failed in ${where(op)}. Detaching...`);
    const callHelper = policy === 'call-local-io-error' && !timedOut;
    this.detaching = rt
      .goDiskless(timedOut ? 'disk-timeout' : `on-io-error ${policy}`, false, async () => {
        if (callHelper) await rt.runHandler('local-io-error', this.vnr);
      }, this.vnr)
      .catch((err: Error) => rt.log.error({ err }, `detach after a local I/O error failed: ${err.message}`))
      .finally(() => {
        this.detaching = null;
      });
  }

  /** Resolves when a detach the policy started has finished (tests, down). */
  settled(): Promise<void> {
    return this.detaching ?? Promise.resolve();
  }

  private mayLog(): boolean {
    const nowMs = Date.now();
    if (nowMs - this.logWindowStartMs > LOG_WINDOW_MS) {
      this.logWindowStartMs = nowMs;
      this.logLinesInWindow = 0;
    }
    this.logLinesInWindow++;
    return this.logLinesInWindow <= LOG_BURST_MAX;
  }
}
