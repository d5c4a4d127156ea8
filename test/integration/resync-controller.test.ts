/**
 * test/integration/resync-controller — the resync pacing of DRBD 8.4 on a
 * real two-node pair: a fixed `resync-rate` (c-plan-ahead 0) throttles a
 * resync; `adjust` to c-plan-ahead > 0 hands the running resync to the
 * dynamic controller, whose rate (/proc/drbd `want:`) is capped by
 * c-max-rate; c-min-rate makes the resync step back while application
 * writes reach the SyncTarget's disk (and the SyncSource holds requests
 * back), and with c-min-rate 0 neither does;
 * online verify is paced by the same rules, the VerifyT's answers waiting
 * for application reads per c-min-rate too.
 * No timing is asserted: a rate bound ("still resyncing after N seconds")
 * with wide margins, and the controller's own numbers. The throughput the
 * writes keep during a resync is measured by `npm run bench -- --only=rsctl`.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import path from 'node:path';
import { execa } from 'execa';
import { Cluster, type NodeName } from '../helpers/cluster.js';
import { NBDSH_ENV, requireTool } from '../helpers/nbd-helpers.js';

const MiB = 1024 * 1024;
const RESYNC_BYTES = 12 * MiB;
/** Bound on the application writes of one phase, whatever the machine's speed. */
const PHASE_WRITES_MAX = 5_000;
const PHASE_READS_MAX = 200;
const WRITE_BYTES = 64 * 1024;

let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function editConfig(c: Cluster, edit: (text: string) => string): void {
  const text = fs.readFileSync(c.configPath, 'utf8');
  const edited = edit(text);
  expect(edited).not.toBe(text);
  fs.writeFileSync(c.configPath, edited);
}

interface ResyncResultLine { ok: boolean; syncedBlocks: number; throttledSteps: number }

function resyncResults(c: Cluster): ResyncResultLine[] {
  return c.logText('beta').split('\n').filter((l) => l.includes('"resync result"')).map((l) => JSON.parse(l) as ResyncResultLine);
}

/** A connected, synced pair without the initial full sync (both disks are zeroes), alpha Primary. */
async function syncedWithoutInitialSync(c: Cluster): Promise<void> {
  await c.upConnected();
  await c.admOk('alpha', ['new-current-uuid', '--clear-bitmap', c.resource]);
  await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate');
  await c.admOk('alpha', ['primary', c.resource]);
}

/** beta disconnects, alpha writes `bytes` of random data, beta reconnects: a bitmap resync of those bytes to beta. */
async function resyncAfterWritesOnAlpha(c: Cluster, bytes: number): Promise<void> {
  await c.admOk('beta', ['disconnect', c.resource]);
  await c.waitState('alpha', 'cstate', 'WFConnection');
  for (let at = 0; at < bytes; at += MiB) await c.write('alpha', at, crypto.randomBytes(MiB));
  await c.admOk('beta', ['connect', c.resource]);
  await c.waitState('beta', 'cstate', /SyncTarget/);
}

async function syncStatus(c: Cluster): Promise<{ cstate: string; outOfSyncKiB: number; wantKiBps: number | undefined }> {
  const s = await c.statusJson('beta');
  const sync = s.sync as { wantKiBps?: number } | null;
  return { cstate: s.cstate as string, outOfSyncKiB: s.outOfSyncKiB as number, wantKiBps: sync?.wantKiBps };
}

/** Serial 64 KiB application writes on alpha (replicated to the SyncTarget) for about `phaseMs`. */
async function writeFor(c: Cluster, phaseMs: number): Promise<number> {
  const client = await c.client('alpha');
  const base64 = crypto.randomBytes(WRITE_BYTES).toString('base64');
  const slots = Math.floor(RESYNC_BYTES / WRITE_BYTES);
  const startMs = Date.now();
  let writes = 0;
  while (Date.now() - startMs < phaseMs && writes < PHASE_WRITES_MAX) {
    const reply = await client.request('io.write', { offsetBytes: ((writes * 7919) % slots) * WRITE_BYTES, base64 });
    if (!reply.ok) throw new Error(`io.write on alpha failed (${reply.exitCode}): ${reply.stderr}`);
    writes++;
  }
  return writes;
}

/** Whole-device reads of node's NBD export (nbdcopy to null:) for about `phaseMs`, at most PHASE_READS_MAX. */
async function readFor(c: Cluster, node: NodeName, phaseMs: number): Promise<number> {
  const socket = path.join(c.env.UDRBD_RUN_DIR!, `${c.resource}.${node}.nbd`);
  const startMs = Date.now();
  let reads = 0;
  while (Date.now() - startMs < phaseMs && reads < PHASE_READS_MAX) {
    const r = await execa('nbdcopy', [`nbd+unix:///${c.resource}?socket=${socket}`, 'null:'], { reject: false, timeout: 30_000, env: NBDSH_ENV });
    if (r.exitCode !== 0) throw new Error(`nbdcopy from ${node} failed (${r.exitCode}): ${r.stderr}`);
    reads++;
  }
  return reads;
}

async function waitBothUpToDate(c: Cluster): Promise<void> {
  await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 90_000);
  await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 30_000);
  expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
}

describe('resync pacing (resync-rate, c-plan-ahead, c-max-rate, c-min-rate)', () => {
  it('resync-rate 1M throttles a 12 MiB resync; adjust to c-plan-ahead 20 hands it to the controller, capped at c-max-rate', async () => {
    cluster = new Cluster({ resource: 'rc1', port: 9001, minorBase: 230, diskSizeBytes: 16 * MiB, disk: ['c-plan-ahead 0;', 'resync-rate 1M;'] });
    const c = cluster;
    await syncedWithoutInitialSync(c);
    await resyncAfterWritesOnAlpha(c, RESYNC_BYTES);
    await sleep(3_000);
    // the resync is throttled: at 1 MiB/s about 3 of the 12 MiB are done; unthrottled it is over in well under a second
    const fixed = await syncStatus(c);
    expect(fixed.cstate).toBe('SyncTarget');
    expect(fixed.outOfSyncKiB).toBeGreaterThanOrEqual(6 * 1024);
    expect(fixed.wantKiBps).toBe(1024);

    // live: the controller takes over the running resync (adjust on beta; its P_SYNC_PARAM updates alpha)
    editConfig(c, (t) => t.replace('c-plan-ahead 0;', 'c-plan-ahead 20; c-fill-target 1M; c-max-rate 2M;'));
    expect(await c.admOk('beta', ['-d', 'adjust', c.resource])).toContain('--c-plan-ahead=20');
    await c.admOk('beta', ['adjust', c.resource]);
    // want: is the controller's c_sync_rate now: whole 4 KiB blocks per 100 ms step (40 KiB/s each), never above c-max-rate
    let stepRates = 0;
    await c.waitFor('beta paced by the controller', async () => {
      const s = await syncStatus(c);
      if (s.cstate !== 'SyncTarget' || s.wantKiBps === undefined || s.wantKiBps === 1024) return s.cstate !== 'SyncTarget';
      expect(s.wantKiBps % 40).toBe(0);
      expect(s.wantKiBps).toBeLessThanOrEqual(2048);
      return ++stepRates >= 3;
    });
    expect(stepRates).toBeGreaterThanOrEqual(3);
    expect(c.logText('beta')).toContain('adjust: disk-options changed c-plan-ahead, c-fill-target, c-max-rate');
    await waitBothUpToDate(c);
    const [result] = resyncResults(c);
    expect(result).toMatchObject({ ok: true, syncedBlocks: RESYNC_BYTES / 4096 });
  }, 150_000);

  it('c-min-rate: the resync steps back while application writes reach the SyncTarget; with c-min-rate 0 it never does', async () => {
    cluster = new Cluster({
      resource: 'rc2',
      port: 9003,
      minorBase: 232,
      diskSizeBytes: 16 * MiB,
      disk: ['c-plan-ahead 20;', 'c-fill-target 1M;', 'c-max-rate 2M;', 'c-min-rate 250k;', 'resync-rate 1M;'],
    });
    const c = cluster;
    await syncedWithoutInitialSync(c);

    await resyncAfterWritesOnAlpha(c, RESYNC_BYTES);
    const throttledWrites = await writeFor(c, 3_000);
    expect((await syncStatus(c)).cstate).toBe('SyncTarget'); // the writes ran against the resync
    await waitBothUpToDate(c);
    expect(c.logText('beta')).toContain('resync yields to application I/O (faster than c-min-rate)');
    // the SyncSource too holds requests back while its peer is Secondary (receive_DataRequest), once per link logged
    const sourceWaits = (): number => c.logText('alpha').split('resync answers wait for application I/O (faster than c-min-rate)').length - 1;
    expect(sourceWaits()).toBe(1);

    editConfig(c, (t) => t.replace('c-min-rate 250k;', 'c-min-rate 0;'));
    await c.admOk('beta', ['adjust', c.resource]);
    await c.admOk('alpha', ['adjust', c.resource]);
    await resyncAfterWritesOnAlpha(c, RESYNC_BYTES);
    const unthrottledWrites = await writeFor(c, 3_000);
    expect((await syncStatus(c)).cstate).toBe('SyncTarget');
    await waitBothUpToDate(c);

    const [withMinRate, withoutMinRate] = resyncResults(c);
    console.log(`c-min-rate: ${throttledWrites} writes with 250k (${withMinRate?.throttledSteps} throttled steps), ${unthrottledWrites} with 0`);
    expect(throttledWrites).toBeGreaterThan(0);
    expect(withMinRate).toMatchObject({ ok: true });
    expect(withMinRate!.throttledSteps).toBeGreaterThan(0);
    expect(withoutMinRate).toMatchObject({ ok: true, throttledSteps: 0 });
    expect(sourceWaits()).toBe(1);
  }, 180_000);

  it('c-min-rate on the VerifyT: its answers wait while application reads reach its disk; with c-min-rate 0 they never do', async () => {
    await requireTool('nbdcopy');
    cluster = new Cluster({
      resource: 'rc4', port: 9007, minorBase: 240, diskSizeBytes: 16 * MiB, net: ['verify-alg crc32c;'],
      disk: ['c-plan-ahead 20;', 'c-fill-target 1M;', 'c-max-rate 2M;', 'c-min-rate 250k;', 'resync-rate 1M;'],
    });
    const c = cluster;
    await syncedWithoutInitialSync(c);
    const targetWaits = (): number => c.logText('alpha').split('online verify answers wait for application I/O (faster than c-min-rate)').length - 1;
    const results = (): Array<{ ok: boolean; outOfSyncBlocks: number }> =>
      c.logText('beta').split('\n').filter((l) => l.includes('"verify result"')).map((l) => JSON.parse(l) as { ok: boolean; outOfSyncBlocks: number });
    const verifyWhileReading = async (): Promise<void> => {
      const before = results().length;
      // beta (Secondary) is VerifyS; alpha, the Primary, answers as VerifyT. Application reads reach
      // only alpha's disk, so only the VerifyT's c-min-rate sees them (VerifyS's would see writes).
      await c.admOk('beta', ['verify', c.resource]);
      await c.waitState('alpha', 'cstate', 'VerifyT');
      expect(await readFor(c, 'alpha', 3_000)).toBeGreaterThan(0);
      await c.waitFor('verify finished', () => results().length > before, 90_000);
    };
    await verifyWhileReading();
    expect(c.logText('alpha')).toContain('Online Verify start sector: 0');
    expect(targetWaits()).toBe(1); // logged once per link, as the SyncSource's line
    expect(c.logText('beta')).not.toContain('online verify yields to application I/O');
    expect(results()[0]).toMatchObject({ ok: true, outOfSyncBlocks: 0 });

    // c-min-rate 0 on alpha and a new link (the line is logged once per link): no answer waits
    editConfig(c, (t) => t.replace('c-min-rate 250k;', 'c-min-rate 0;'));
    await c.admOk('alpha', ['adjust', c.resource]);
    await c.admOk('beta', ['adjust', c.resource]);
    await c.admOk('beta', ['disconnect', c.resource]);
    await c.admOk('beta', ['connect', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    await verifyWhileReading();
    expect(targetWaits()).toBe(1);
    expect(results()[1]).toMatchObject({ ok: true, outOfSyncBlocks: 0 });
  }, 240_000);

  it('online verify is paced as a resync is: resync-rate 1M holds a 16 MiB verify back, adjust releases it', async () => {
    cluster = new Cluster({
      resource: 'rc3', port: 9005, minorBase: 238, diskSizeBytes: 16 * MiB, net: ['verify-alg crc32c;'], disk: ['c-plan-ahead 0;', 'resync-rate 1M;'],
    });
    const c = cluster;
    await syncedWithoutInitialSync(c);
    await c.admOk('alpha', ['verify', c.resource]);
    await sleep(3_000);
    // w_make_ov_request asks drbd_rs_number_requests: at 1 MiB/s about 3 of the ~16 MiB are verified
    const s = await c.statusJson('alpha');
    const sync = s.sync as { leftBits: number; totalBits: number; wantKiBps?: number } | null;
    expect(s.cstate).toBe('VerifyS');
    expect(sync).not.toBeNull();
    expect(sync!.wantKiBps).toBe(1024);
    expect(sync!.leftBits).toBeGreaterThanOrEqual(sync!.totalBits / 2);
    editConfig(c, (t) => t.replace('resync-rate 1M;', 'resync-rate 100M;'));
    await c.admOk('alpha', ['adjust', c.resource]);
    await c.waitFor('verify finished', () => c.logText('alpha').includes('Online verify done'), 60_000);
    const result = c.logText('alpha').split('\n').find((l) => l.includes('"verify result"'));
    expect(JSON.parse(result!) as { ok: boolean; outOfSyncBlocks: number }).toMatchObject({ ok: true, outOfSyncBlocks: 0 });
  }, 120_000);
});
