/**
 * test/unit/rs-controller — DRBD 8.4's dynamic resync controller and c-min-rate
 * throttle, step by step against values computed by hand from drbd_rs_controller
 * and drbd_rs_should_slow_down (C integer arithmetic).
 */
import { describe, expect, it } from 'vitest';
import { controllerRateKiBps, RsController, type RsControllerSettings, RsThrottle } from '../../src/replication/rs-controller.js';

const base: RsControllerSettings = { planAheadDs: 5, fillTargetSectors: 0, delayTargetDs: 10, maxRateKiBps: 102400, minRateKiBps: 250, resyncRateKiBps: 250 };

describe('RsController', () => {
  it('starts from resync-rate over the plan, then aims at c-delay-target × sectors in', () => {
    const c = new RsController(base);
    // want = (250·2/10)·5 = 250; cps = 50; the first slot goes now
    expect(c.step()).toBe(50);
    expect(c.last).toMatchObject({ wantSectors: 250, correctionSectors: 250, cpsSectors: 50, plannedSectors: 200 });
    c.requested(48);
    c.received(48);
    // sect_in 48, in flight 0: want = 48·10 = 480; correction = 480 − 0 − 200 = 280; cps 56; slot 50+56
    expect(c.step()).toBe(48 + 106);
    expect(c.last).toMatchObject({ sectIn: 48, inFlightSectors: 0, wantSectors: 480, correctionSectors: 280, cpsSectors: 56, plannedSectors: 374 });
  });

  it('with c-fill-target holds that many sectors in flight', () => {
    const c = new RsController({ ...base, planAheadDs: 2, fillTargetSectors: 100 });
    expect(c.step()).toBe(50); // want 50·2 = 100, cps 50
    c.requested(50);
    expect(c.step()).toBe(50); // want 100 − 50 in flight − 50 planned = 0: the planned slot goes
    c.requested(50);
    expect(c.inFlightSectors).toBe(100);
    expect(c.step()).toBe(0); // full: nothing more
    c.received(100);
    expect(c.step()).toBe(150); // 100 came in (replace them) + cps 50
  });

  it('truncates a negative correction toward zero as C does', () => {
    const c = new RsController({ ...base, planAheadDs: 3, fillTargetSectors: 100 });
    expect(c.step()).toBe(50); // want 150, cps 50, planned 100
    c.requested(50);
    // correction = 100 − 50 − 100 = −50; cps = −16 (not −17); slot 50 − 16 = 34
    expect(c.step()).toBe(34);
    expect(c.last).toMatchObject({ correctionSectors: -50, cpsSectors: -16, plannedSectors: 18 });
  });

  it('never asks for less than nothing', () => {
    const c = new RsController({ ...base, planAheadDs: 2, fillTargetSectors: 100 });
    c.step();
    c.requested(400); // more in flight than the target
    expect(c.step()).toBe(0);
    expect(c.last!.currentCorrectionSectors).toBeLessThan(0);
  });

  it('caps each step at c-max-rate, in 4 KiB blocks as drbd_rs_number_requests', () => {
    const c = new RsController({ ...base, maxRateKiBps: 1000, resyncRateKiBps: 102400 });
    expect(c.step()).toBe(200); // 1000 KiB/s · 2 / 10
    const d = new RsController({ ...base, maxRateKiBps: 1000, resyncRateKiBps: 102400 });
    expect(d.stepBlocks()).toBe(25);
    expect(controllerRateKiBps(25)).toBe(1000);
  });

  it('refuses c-plan-ahead 0 (that is the fixed-rate mode)', () => {
    expect(() => new RsController({ ...base, planAheadDs: 0 })).toThrow(/c-plan-ahead 0/);
  });
});

describe('RsThrottle (c-min-rate)', () => {
  it('looks only after more than 64 sectors of application I/O, and slows down above c-min-rate', () => {
    const t = new RsThrottle(250, 1000, 1000, 0);
    const left = (n: number) => () => n;
    expect(t.shouldSlowDown(1064, left(500), 2000)).toBe(false); // only 64 sectors of application I/O
    // 500 blocks in 2 s: 250/s · 4 = 1000 KiB/s > 250
    expect(t.shouldSlowDown(1100, left(500), 2000)).toBe(true);
    expect(t.shouldSlowDown(1100, left(500), 2000)).toBe(false); // no new application I/O since that look
    // 100 blocks in 2 s: 50/s · 4 = 200 KiB/s ≤ 250
    expect(t.shouldSlowDown(1200, left(900), 2000)).toBe(false);
  });

  it('never slows down a resync on a node without application I/O', () => {
    const t = new RsThrottle(250, 1000, 0, 0);
    expect(t.shouldSlowDown(0, () => 0, 2000)).toBe(false); // 2000 KiB/s, but no application I/O
    expect(t.shouldSlowDown(65, () => 0, 2000)).toBe(true);
  });

  it('a resume starts every mark afresh', () => {
    const t = new RsThrottle(250, 1000, 1000, 0);
    t.resetMarks(100, 10_000);
    // 0 blocks since the resume: 0 KiB/s, even though 900 went before the pause
    expect(t.shouldSlowDown(1100, () => 100, 10_500)).toBe(false);
  });

  it('is off with c-min-rate 0', () => {
    const t = new RsThrottle(0, 1000, 1000, 0);
    expect(t.shouldSlowDown(99_999, () => 0, 2000)).toBe(false);
    t.setMinRate(250);
    expect(t.shouldSlowDown(99_999, () => 0, 2000)).toBe(true);
  });

  it('averages from the mark before the newest (marks every 3 s)', () => {
    const t = new RsThrottle(250, 1000, 1000, 0);
    t.advanceMarks(800, 3000);
    t.advanceMarks(700, 4000); // < 3 s after the newest: no mark
    t.advanceMarks(600, 6000);
    // the mark before the newest is (3000 ms, 800 left): 300 blocks in 4 s = 75/s · 4 = 300 KiB/s
    expect(t.shouldSlowDown(1100, () => 500, 7000)).toBe(true);
    // 800 − 740 = 60 blocks in 4 s = 15/s · 4 = 60 KiB/s
    expect(t.shouldSlowDown(1200, () => 740, 7000)).toBe(false);
  });
});
