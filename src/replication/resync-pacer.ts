/**
 * replication/resync-pacer — how fast a SyncTarget's resync and a
 * VerifySource's online verify issue their requests. DRBD paces both with the
 * same code (drbd_worker.c: drbd_rs_number_requests, called by
 * w_make_resync_request and w_make_ov_request): a fixed resync-rate
 * (c-plan-ahead 0) or the dynamic controller in 100 ms steps
 * (replication/rs-controller), and in both modes the c-min-rate throttle
 * (drbd_rs_should_slow_down) that steps back while application I/O runs.
 * AnswerThrottle is the answering side's c-min-rate. Owns the timers of
 * the pacing; knows nothing of bitmaps, packets or disks.
 */
import { assert } from '../util/assert.js';
import type { Logger } from '../util/log.js';
import type { ReplicationCounters } from './counters.js';
import { type ReplicationOptions, SECTOR_BYTES } from './options.js';
import { controllerRateKiBps, RS_STEP_MS, RsController, type RsControllerSettings, RsThrottle, SYNC_MARK_STEP_MS } from './rs-controller.js';

/** Bytes per bitmap block (BM_BLOCK_SIZE). */
const BLOCK_BYTES = 4096;
/** Window of the fixed rate's average before idle time stops counting. */
const RATE_WINDOW_MS = 1000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A fixed average rate: how long to wait before the next bytes go out. */
export class RateLimiter {
  private windowStartMs: number;
  private windowBytes = 0;
  constructor(
    private rateKiBps: number,
    private readonly now: () => number,
  ) {
    this.windowStartMs = now();
  }

  /** A new rate (resync-rate changed online): counted from now on. */
  setRate(rateKiBps: number): void {
    this.rateKiBps = rateKiBps;
    this.windowStartMs = this.now();
    this.windowBytes = 0;
  }

  /** Accounts `bytes` and returns the delay (ms) to keep the average at or below the rate. */
  take(bytes: number): number {
    if (this.rateKiBps <= 0) return 0;
    this.windowBytes += bytes;
    const at = this.now();
    const allowedMs = (this.windowBytes / (this.rateKiBps * 1024)) * 1000;
    const delayMs = this.windowStartMs + allowedMs - at;
    if (delayMs <= 0 && at - this.windowStartMs > RATE_WINDOW_MS) {
      // Do not bank idle time: restart the window.
      this.windowStartMs = at;
      this.windowBytes = 0;
    }
    return Math.max(0, delayMs);
  }
}

/** What the resync or verify shares with its pacing. */
export interface PacedWork {
  /** resyncRateKiBps (0 = unlimited) and the c-* settings, at the start; adjust changes them later. */
  readonly options: Pick<ReplicationOptions, 'resyncRateKiBps' | 'resyncController'>;
  /** The local disk's bytes read and written, for the application I/O the throttle looks at. */
  readonly counters: ReplicationCounters;
  readonly log: Logger;
}

export interface ResyncPacerDeps {
  readonly now: () => number;
  /** Blocks still to do (bits set, or blocks not yet verified): the throttle's sync marks. */
  readonly leftBlocks: () => number;
  /** Sectors requested and not answered: the controller's rs_in_flight when it takes over online. */
  readonly inFlightSectors: () => number;
  /** What is paced, for the logs ("resync", "online verify"). */
  readonly what: string;
}

/** One resync's or verify's pacing; start() once, then next()/spend() before each request. */
export class ResyncPacer {
  private controllerSettings: RsControllerSettings;
  private readonly limiter: RateLimiter;
  /** The dynamic controller (c-plan-ahead > 0), else null: fixed rate. */
  private controller: RsController | null = null;
  private throttle: RsThrottle | null = null;
  /** Blocks the controller allows in the current step. */
  private stepBudgetBlocks = 0;
  private nextStepAtMs = 0;
  private stepCount = 0;
  /** Steps ended early by c-min-rate. */
  private throttled = 0;
  /** Sectors of the paced work's own local disk I/O (DRBD's rs_sect_ev): not application I/O. */
  private ownDiskSectors = 0;
  /** The fixed rate (resync-rate), KiB/s. */
  private rateKiBps: number;
  private want: number;

  private readonly deps: ResyncPacerDeps & Omit<PacedWork, 'options'>;

  constructor(work: PacedWork, deps: ResyncPacerDeps) {
    this.deps = { ...deps, counters: work.counters, log: work.log };
    this.controllerSettings = work.options.resyncController;
    this.rateKiBps = work.options.resyncRateKiBps;
    this.limiter = new RateLimiter(this.rateKiBps, deps.now);
    this.want = this.rateKiBps;
  }

  /** The `want:` of /proc/drbd (c_sync_rate), KiB/s: the fixed limit, or what the last step asked for. */
  get wantKiBps(): number {
    return this.want;
  }

  /** Times the pacing stepped back for application I/O (c-min-rate). */
  get throttledSteps(): number {
    return this.throttled;
  }

  /** drbd_rs_controller_reset: an empty plan, the application I/O counted from now. */
  start(): void {
    assert(this.throttle === null, 'pacing started once');
    const s = this.controllerSettings;
    this.controller = s.planAheadDs > 0 ? new RsController(s) : null;
    // c_sync_rate starts at resync-rate under the controller too.
    this.want = s.planAheadDs > 0 ? s.resyncRateKiBps : this.rateKiBps;
    this.throttle = new RsThrottle(s.minRateKiBps, this.deps.leftBlocks(), this.applicationSectors(), this.deps.now());
    this.nextStepAtMs = this.deps.now();
  }

  /**
   * c-* settings changed online (`adjust`, or the peer's P_SYNC_PARAM): they
   * apply from the next step on. As drbd_adm_disk_opts, the fifo plan is kept
   * unless c-plan-ahead (its length) changed; c-plan-ahead 0 switches to the
   * fixed rate and back.
   */
  setController(settings: RsControllerSettings): void {
    this.controllerSettings = settings;
    if (this.throttle === null) return;
    this.throttle.setMinRate(settings.minRateKiBps);
    if (settings.planAheadDs === 0) {
      this.controller = null;
      this.want = this.rateKiBps;
    } else if (this.controller?.settings.planAheadDs === settings.planAheadDs) {
      this.controller.settings = settings;
    } else {
      this.controller = new RsController(settings, this.deps.inFlightSectors());
      this.stepBudgetBlocks = 0;
    }
  }

  /** resync-rate changed online (`adjust`): the fixed rate obeys it from now on. */
  setRateKiBps(rateKiBps: number): void {
    this.rateKiBps = rateKiBps;
    this.limiter.setRate(rateKiBps);
    if (this.controller === null) this.want = rateKiBps;
  }

  /** After a pause (PausedSync*): the marks start again, so the pause does not count as a slow resync. */
  resume(): void {
    this.throttle?.resetMarks(this.deps.leftBlocks(), this.deps.now());
  }

  /**
   * Before the next request: how many blocks it may cover (0 = look again: a
   * step went by, or the work paused or ended meanwhile). With the
   * controller a new step every 100 ms sets the budget; c-min-rate ends the
   * step early (fixed rate: waits a step) when application I/O is running
   * and the work goes faster than c-min-rate.
   */
  async next(): Promise<number> {
    const throttle = this.throttle;
    assert(throttle !== null, 'pacing started');
    const now = this.deps.now();
    throttle.advanceMarks(this.deps.leftBlocks(), now);
    if (this.controller !== null && this.stepBudgetBlocks <= 0) {
      await this.nextStep();
      return 0;
    }
    if (throttle.shouldSlowDown(this.applicationSectors(), this.deps.leftBlocks, now)) {
      this.stepBudgetBlocks = 0;
      if (this.throttled === 0) {
        this.deps.log.debug({ cMinRateKiBps: this.controllerSettings.minRateKiBps }, `${this.deps.what} yields to application I/O (faster than c-min-rate)`);
      }
      this.throttled++;
      if (this.controller !== null) await this.nextStep();
      else await sleep(RS_STEP_MS);
      return 0;
    }
    return this.controller !== null ? this.stepBudgetBlocks : Number.MAX_SAFE_INTEGER;
  }

  /**
   * The request of `blocks` goes out: the controller's step budget shrinks,
   * or the fixed rate waits here — before the request takes an in-flight
   * slot, so `adjust` changing the rate does not find runs committed to the old one.
   */
  async spend(blocks: number): Promise<void> {
    assert(blocks > 0, 'a request covers blocks');
    if (this.controller !== null) {
      this.stepBudgetBlocks -= blocks;
      return;
    }
    const delayMs = this.limiter.take(blocks * BLOCK_BYTES);
    if (delayMs > 0) await sleep(delayMs);
  }

  /** Sectors sent as requests (rs_in_flight grows). */
  requested(sectors: number): void {
    this.controller?.requested(sectors);
  }

  /** Sectors answered: data, an equal checksum, a digest, or a refusal (rs_sect_in). */
  received(sectors: number): void {
    this.controller?.received(sectors);
  }

  /** The paced work's own local disk I/O, which the throttle must not take for application I/O. */
  ownDiskIo(bytes: number): void {
    this.ownDiskSectors += bytes / SECTOR_BYTES;
  }

  /** Application I/O on the local disk so far: every disk sector read or written minus the paced work's own. */
  private applicationSectors(): number {
    const { counters } = this.deps;
    return Math.floor((counters.diskWrittenBytes + counters.diskReadBytes) / SECTOR_BYTES) - this.ownDiskSectors;
  }

  /** Waits for the next controller step (100 ms after the previous one) and takes its budget. */
  private async nextStep(): Promise<void> {
    const waitMs = this.nextStepAtMs - this.deps.now();
    if (waitMs > 0) await sleep(waitMs);
    this.nextStepAtMs = this.deps.now() + RS_STEP_MS;
    this.stepBudgetBlocks = this.controller?.stepBlocks() ?? 0;
    if (this.controller !== null) this.want = controllerRateKiBps(this.stepBudgetBlocks);
    const last = this.controller?.last;
    // One trace a second (every 10th step) at debug: the kernel's si/if/wa/co/cps/pl/cc/rs line.
    if (last && ++this.stepCount % 10 === 0) {
      this.deps.log.debug({ ...last, throttledSteps: this.throttled }, `${this.deps.what} controller step`);
    }
  }
}

/**
 * The answering side's c-min-rate (drbd_receiver.c: receive_DataRequest):
 * before a resync request is served, the receiver sleeps 100 ms when
 * application I/O reaches this disk and the resync runs faster than
 * c-min-rate — every request behind it waits too, as behind DRBD's receiver
 * thread. Not while the peer is Primary: its application reads would wait
 * as well, so the SyncTarget alone throttles then.
 */
export class AnswerThrottle {
  private throttle: RsThrottle | null = null;
  private lastRequestMs = Number.NEGATIVE_INFINITY;
  private waitUntilMs = 0;
  /** Sectors of the answers' own disk reads (rs_sect_ev). */
  private ownDiskSectors = 0;
  private throttled = 0;

  constructor(
    private readonly work: PacedWork,
    private readonly deps: { readonly now: () => number; readonly leftBlocks: () => number; readonly what: string },
  ) {}

  /** Requests that waited for application I/O. */
  get throttledAnswers(): number {
    return this.throttled;
  }

  ownDiskIo(bytes: number): void {
    this.ownDiskSectors += bytes / SECTOR_BYTES;
  }

  /** Resolves when the next request may be served. */
  async beforeAnswer(peerPrimary: boolean): Promise<void> {
    const now = this.deps.now();
    const minRateKiBps = this.work.options.resyncController.minRateKiBps;
    // A pause longer than a sync mark step: a new resync, whose marks start now (drbd_start_resync).
    if (this.throttle === null || now - this.lastRequestMs > SYNC_MARK_STEP_MS) {
      this.throttle = new RsThrottle(minRateKiBps, this.deps.leftBlocks(), this.applicationSectors(), now);
    }
    this.lastRequestMs = now;
    if (this.waitUntilMs > now) {
      await sleep(this.waitUntilMs - now);
      return;
    }
    if (peerPrimary) return;
    this.throttle.setMinRate(minRateKiBps);
    this.throttle.advanceMarks(this.deps.leftBlocks(), now);
    if (!this.throttle.shouldSlowDown(this.applicationSectors(), this.deps.leftBlocks, now)) return;
    if (this.throttled === 0) {
      this.work.log.debug({ cMinRateKiBps: minRateKiBps }, `${this.deps.what} answers wait for application I/O (faster than c-min-rate)`);
    }
    this.throttled++;
    this.waitUntilMs = now + RS_STEP_MS;
    await sleep(RS_STEP_MS);
  }

  private applicationSectors(): number {
    const { counters } = this.work;
    return Math.floor((counters.diskWrittenBytes + counters.diskReadBytes) / SECTOR_BYTES) - this.ownDiskSectors;
  }
}
