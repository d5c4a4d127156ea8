/**
 * test/integration/resync-controller — DRBD 8.4's dynamic resync controller
 * on a real two-node pair (c-plan-ahead > 0): while application writes run
 * during a resync, c-min-rate makes the resync step back (it stays near
 * c-min-rate) so the writes keep ≥ 70% of the rate they had on the same pair
 * without a resync (measured in the same test, in interleaved rounds with the
 * resync paused and resumed); with no
 * application I/O the resync runs faster than c-min-rate and never above
 * c-max-rate.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';

const WRITE_BYTES = 64 * 1024;
const PHASE_MS = 1_500;
const ROUNDS = 3;
const WARM_UP_MS = 3_000;
const IDLE_MS = 3_000;
/** Bound on the writes of one phase, whatever the machine's speed. */
const PHASE_WRITES_MAX = 20_000;
const C_MIN_RATE_KIBPS = 250;
const C_MAX_RATE_KIBPS = 4096;

let cluster: Cluster | null = null;
afterEach(async () => {
  await cluster?.destroy();
  cluster = null;
});

/** Serial application writes on alpha for phaseMs; KiB/s. */
async function applicationWriteRateKiBps(c: Cluster, diskBytes: number, phaseMs: number): Promise<number> {
  const data = Buffer.alloc(WRITE_BYTES, 0x5a);
  const slots = Math.floor(diskBytes / WRITE_BYTES);
  const base64 = data.toString('base64');
  const client = await c.client('alpha'); // one control connection for the whole phase (closed by destroy)
  const startMs = Date.now();
  let writes = 0;
  while (Date.now() - startMs < phaseMs && writes < PHASE_WRITES_MAX) {
    const reply = await client.request('io.write', { offsetBytes: ((writes * 7919) % slots) * WRITE_BYTES, base64 });
    if (!reply.ok) throw new Error(`io.write on alpha failed (${reply.exitCode}): ${reply.stderr}`);
    writes++;
  }
  return (writes * WRITE_BYTES) / 1024 / ((Date.now() - startMs) / 1000);
}

async function outOfSyncKiB(c: Cluster): Promise<number> {
  return (await c.statusJson('beta')).outOfSyncKiB as number;
}

describe('dynamic resync controller (c-plan-ahead, c-min-rate, c-max-rate)', () => {
  it('application writes keep ≥ 70% of their unimpeded rate during a resync; without them the resync runs up to c-max-rate', async () => {
    cluster = new Cluster({
      resource: 'rc1',
      port: 8601,
      minorBase: 230,
      diskSizeBytes: 64 * 1024 * 1024,
      disk: ['c-plan-ahead 20;', 'c-fill-target 100s;', `c-max-rate ${C_MAX_RATE_KIBPS}k;`, `c-min-rate ${C_MIN_RATE_KIBPS}k;`],
    });
    const c = cluster;
    // A synced pair without the initial full sync (that is the resync this test makes later).
    await c.upConnected();
    await c.admOk('alpha', ['new-current-uuid', '--clear-bitmap', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate');
    await c.admOk('alpha', ['primary', c.resource]);
    const diskBytes = c.dataSizeBytes('alpha');

    // Warm-up: the first pass allocates the sparse files' blocks; the measured passes rewrite them.
    await applicationWriteRateKiBps(c, diskBytes, WARM_UP_MS);

    await c.admOk('beta', ['invalidate', c.resource]);
    await c.waitState('beta', 'cstate', 'SyncTarget');
    // Interleaved rounds on the same pair, so a change in the machine's load hits both sides alike:
    // pause-sync (no resync requests: the unimpeded rate) and resume-sync (the resync running).
    let unimpededSum = 0;
    let duringSum = 0;
    let resyncDuringKiB = 0;
    let resyncDuringMs = 0;
    for (let round = 0; round < ROUNDS; round++) {
      await c.admOk('beta', ['pause-sync', c.resource]);
      await c.waitState('beta', 'cstate', 'PausedSyncT');
      unimpededSum += await applicationWriteRateKiBps(c, diskBytes, PHASE_MS);
      await c.admOk('beta', ['resume-sync', c.resource]);
      await c.waitState('beta', 'cstate', 'SyncTarget');
      const leftAtWritesKiB = await outOfSyncKiB(c);
      const writesStartMs = Date.now();
      duringSum += await applicationWriteRateKiBps(c, diskBytes, PHASE_MS);
      // The writes themselves clear blocks on the SyncTarget, so this over-counts the resync: an upper bound.
      resyncDuringKiB += Math.max(0, leftAtWritesKiB - (await outOfSyncKiB(c)));
      resyncDuringMs += Date.now() - writesStartMs;
    }
    const unimpededKiBps = unimpededSum / ROUNDS;
    const duringKiBps = duringSum / ROUNDS;
    const resyncDuringKiBps = resyncDuringKiB / (resyncDuringMs / 1000);
    // still resyncing: the writes above really ran against a resync
    expect(await c.query('beta', 'cstate')).toBe('SyncTarget');

    // No application I/O: the resync speeds up to c-max-rate, and no further.
    const leftBeforeKiB = await outOfSyncKiB(c);
    const idleStartMs = Date.now();
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const leftAfterKiB = await outOfSyncKiB(c);
    const idleSeconds = (Date.now() - idleStartMs) / 1000;
    const idleResyncKiBps = (leftBeforeKiB - leftAfterKiB) / idleSeconds;
    expect(await c.query('beta', 'cstate')).toBe('SyncTarget');

    const ratio = duringKiBps / unimpededKiBps;
    console.log(`resync-controller: writes unimpeded ${unimpededKiBps.toFixed(0)} KiB/s, during resync ${duringKiBps.toFixed(0)} KiB/s (ratio ${ratio.toFixed(2)}); resync during the writes ${resyncDuringKiBps.toFixed(0)} KiB/s, idle resync ${idleResyncKiBps.toFixed(0)} KiB/s`);
    expect(ratio).toBeGreaterThanOrEqual(0.7);
    // c-min-rate held the resync near it while the writes ran (131 KiB/s in one run; with c-min-rate 0 the same pair resynced at 1579 KiB/s during the writes)
    expect(resyncDuringKiBps).toBeLessThanOrEqual(2 * C_MIN_RATE_KIBPS);
    expect(idleResyncKiBps).toBeGreaterThan(2 * C_MIN_RATE_KIBPS);
    // 4 KiB of rounding per status sample; the controller caps every 100 ms step at c-max-rate / 10
    expect(idleResyncKiBps).toBeLessThanOrEqual(C_MAX_RATE_KIBPS * 1.05);
  }, 120_000);
});
