/**
 * replication/rs-controller — DRBD 8.4's dynamic resync controller and its
 * c-min-rate throttle, as pure arithmetic with no timers or I/O (the
 * SyncTarget's pacing in replication/resync calls them once per step).
 *
 * RsController (drbd_worker.c: drbd_rs_controller / drbd_rs_number_requests):
 * every 100 ms step it decides how many sectors to request, aiming at a fill
 * of requests in flight (c-fill-target sectors, or c-delay-target × the
 * sectors that came in during the last step), spreading each correction
 * over c-plan-ahead steps in a fifo plan, capped at c-max-rate. C integer
 * arithmetic (division truncates toward zero) is kept so the numbers match
 * the kernel's step for step.
 *
 * RsThrottle (drbd_receiver.c: drbd_rs_should_slow_down): once more than 64
 * sectors of application I/O hit the local disk since it last looked, a
 * resync going faster than c-min-rate (averaged from the sync marks, one per
 * 3 s, eight kept) steps back for the rest of this step.
 */

/** One controller step: DRBD's SLEEP_TIME (HZ/10). */
export const RS_STEP_MS = 100;
/** Steps per second (HZ / SLEEP_TIME). */
const STEPS_PER_SECOND = 1000 / RS_STEP_MS;
/** Sectors (512 B) per bitmap block (4 KiB): BM_BLOCK_SHIFT - 9 = 3. */
export const SECTORS_PER_BLOCK = 8;
/** Application I/O since the last look that makes the throttle look again (drbd_rs_should_slow_down). */
const THROTTLE_EVENTS_SECTORS = 64;
/** DRBD_SYNC_MARK_STEP (3 s) and DRBD_SYNC_MARKS (8). */
export const SYNC_MARK_STEP_MS = 3000;
const SYNC_MARKS = 8;
/** KiB per bitmap block (Bit2KB). */
const KIB_PER_BLOCK = 4;

/** The disk { } settings of the controller, in DRBD's units. */
export interface RsControllerSettings {
  /** c-plan-ahead, tenths of a second; 0 turns the controller off (fixed resync-rate). */
  readonly planAheadDs: number;
  /** c-fill-target, sectors; 0 means use c-delay-target. */
  readonly fillTargetSectors: number;
  /** c-delay-target, tenths of a second. */
  readonly delayTargetDs: number;
  /** c-max-rate, KiB/s. */
  readonly maxRateKiBps: number;
  /** c-min-rate, KiB/s; 0 turns the throttle off. */
  readonly minRateKiBps: number;
  /** resync-rate, KiB/s: the controller's first guess at the start of a resync. */
  readonly resyncRateKiBps: number;
}

/** C's `/` on ints: truncates toward zero. */
const cdiv = (a: number, b: number): number => Math.trunc(a / b);

/** One step's trace (the kernel's commented-out dev_warn line), for logs and tests. */
export interface RsControllerStep {
  readonly sectIn: number;
  readonly inFlightSectors: number;
  readonly wantSectors: number;
  readonly correctionSectors: number;
  readonly cpsSectors: number;
  readonly plannedSectors: number;
  readonly currentCorrectionSectors: number;
  readonly requestSectors: number;
}

export class RsController {
  /** The fifo plan: one slot per step planned ahead (c-plan-ahead slots). */
  private readonly plan: number[];
  /** Sum of the plan's slots (plan->total). */
  private plannedSectors = 0;
  /** Requested and not yet answered (rs_in_flight), sectors. */
  private inFlight = 0;
  /** Came in since the last step (rs_sect_in), sectors. */
  private sectIn = 0;
  last: RsControllerStep | null = null;

  /** Changed online (adjust) only with the same planAheadDs: the plan's length is fixed. */
  settings: RsControllerSettings;

  /**
   * @param inFlightSectors resync requests already in flight when the
   *   controller takes over a running resync (c-plan-ahead 0 → > 0 online):
   *   rs_in_flight belongs to the device in DRBD, not to the plan.
   */
  constructor(settings: RsControllerSettings, inFlightSectors = 0) {
    this.settings = settings;
    this.inFlight = inFlightSectors;
    if (!(Number.isSafeInteger(settings.planAheadDs) && settings.planAheadDs > 0)) {
      throw new RangeError(`c-plan-ahead ${settings.planAheadDs} must be a positive integer for the dynamic controller`);
    }
    this.plan = new Array<number>(settings.planAheadDs).fill(0);
  }

  /** Sectors sent as resync requests this step. */
  requested(sectors: number): void {
    this.inFlight += sectors;
  }

  /** Sectors of resync data that came in (a reply, or a refusal that ends the request). */
  received(sectors: number): void {
    this.sectIn += sectors;
  }

  get inFlightSectors(): number {
    return this.inFlight;
  }

  /** One 100 ms step: the sectors to request now (≥ 0, ≤ c-max-rate's share of a step). */
  step(): number {
    const s = this.settings;
    const sectIn = this.sectIn;
    this.sectIn = 0;
    this.inFlight -= sectIn;
    const steps = this.plan.length;
    let want: number;
    if (this.inFlight + sectIn === 0) {
      // Start of the resync: resync-rate for the whole plan.
      want = cdiv(s.resyncRateKiBps * 2, STEPS_PER_SECOND) * steps;
    } else {
      // c-delay-target is in tenths of a second: HZ / (SLEEP_TIME × 10) = 1.
      want = s.fillTargetSectors > 0 ? s.fillTargetSectors : sectIn * s.delayTargetDs;
    }
    const correction = want - this.inFlight - this.plannedSectors;
    const cps = cdiv(correction, steps);
    for (let i = 0; i < steps; i++) this.plan[i] = this.plan[i]! + cps;
    this.plannedSectors += cps * steps;
    const currentCorrection = this.plan.shift() ?? 0;
    this.plan.push(0);
    this.plannedSectors -= currentCorrection;
    const maxSectors = cdiv(s.maxRateKiBps * 2, STEPS_PER_SECOND);
    const request = Math.min(Math.max(sectIn + currentCorrection, 0), maxSectors);
    this.last = {
      sectIn,
      inFlightSectors: this.inFlight,
      wantSectors: want,
      correctionSectors: correction,
      cpsSectors: cps,
      plannedSectors: this.plannedSectors,
      currentCorrectionSectors: currentCorrection,
      requestSectors: request,
    };
    return request;
  }

  /** drbd_rs_number_requests: 4 KiB blocks to request this step. */
  stepBlocks(): number {
    return Math.floor(this.step() / SECTORS_PER_BLOCK);
  }
}

/** The rate the controller runs at after a step (c_sync_rate), KiB/s. */
export function controllerRateKiBps(blocks: number): number {
  return blocks * STEPS_PER_SECOND * KIB_PER_BLOCK;
}

/** c-min-rate: does the resync step back for application I/O right now? */
export class RsThrottle {
  /** Ring of sync marks: blocks left at a time; lastMark indexes the newest. */
  private readonly markLeft: number[];
  private readonly markAtMs: number[];
  private lastMark = 0;
  private lastEventsSectors: number;

  /**
   * @param appSectors application I/O on the local disk so far (disk sectors
   *   read + written minus the resync's own), sectors
   */
  constructor(
    private minRateKiBps: number,
    leftBlocks: number,
    appSectors: number,
    nowMs: number,
  ) {
    this.markLeft = new Array<number>(SYNC_MARKS).fill(leftBlocks);
    this.markAtMs = new Array<number>(SYNC_MARKS).fill(nowMs);
    this.lastEventsSectors = appSectors;
  }

  setMinRate(minRateKiBps: number): void {
    this.minRateKiBps = minRateKiBps;
  }

  /** Resuming a paused resync: every mark starts now (as 8.4's state change does), paused time is no slow rate. */
  resetMarks(leftBlocks: number, nowMs: number): void {
    this.markLeft.fill(leftBlocks);
    this.markAtMs.fill(nowMs);
  }

  /** drbd_advance_rs_marks: a new mark once the newest is a mark step old. */
  advanceMarks(leftBlocks: number, nowMs: number): void {
    if (nowMs - this.markAtMs[this.lastMark]! < SYNC_MARK_STEP_MS) return;
    const next = (this.lastMark + 1) % SYNC_MARKS;
    this.markLeft[next] = leftBlocks;
    this.markAtMs[next] = nowMs;
    this.lastMark = next;
  }

  /**
   * True when the resync should wait for the next step: more than 64 sectors
   * of application I/O since the last look, and the resync's rate since the
   * mark before the newest (≈ 3–6 s) above c-min-rate.
   */
  shouldSlowDown(appSectors: number, leftBlocks: () => number, nowMs: number): boolean {
    if (this.minRateKiBps === 0) return false;
    // The kernel also looks whenever its event count is still 0; there the
    // meta-data I/O on the same disk ends that at once, here the count is
    // application I/O only and a node without any would never get past it.
    if (appSectors - this.lastEventsSectors <= THROTTLE_EVENTS_SECTORS) return false;
    this.lastEventsSectors = appSectors;
    const i = (this.lastMark + SYNC_MARKS - 1) % SYNC_MARKS;
    const dtSeconds = Math.max(1, Math.floor((nowMs - this.markAtMs[i]!) / 1000));
    const doneBlocks = this.markLeft[i]! - leftBlocks();
    const rateKiBps = Math.floor(doneBlocks / dtSeconds) * KIB_PER_BLOCK;
    return rateKiBps > this.minRateKiBps;
  }
}
