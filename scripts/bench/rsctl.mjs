// Benchmark part `rsctl` (`npm run bench -- --only=rsctl`): application write
// throughput during a resync under DRBD 8.4's dynamic resync controller, against
// the same writes with the resync paused (pause-sync: no resync requests), in
// interleaved rounds on one pair so a change in the machine's load hits both
// sides alike. With c-min-rate 250k (8.4's default) the resync steps back while
// the writes run (drbd_rs_should_slow_down); the same rounds with c-min-rate 0
// show what the writes lose without it. The target: writes keep ≥ 70%
// of their unimpeded rate with c-min-rate. Writes are serial 64 KiB io.write
// calls on the Primary over the control socket, protocol C; the resync is a
// full one (invalidate on the SyncTarget) of random data, restarted when it ends.
// Bounded: fixed sizes and phases, every wait has a deadline; cleans up
// processes and temp files even on failure. Writes bench-results/rsctl.json.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { BenchCluster } from './cluster.mjs';
import { median, prefillZeros, row, runCleanups } from './lib.mjs';

const quick = process.argv.includes('--quick');
const MiB = 1024 * 1024;
const DISK_BYTES = (quick ? 256 : 1024) * MiB;
/** The application writes cycle over this region (prefilled, so no side pays first-touch allocation). */
const WRITE_REGION_BYTES = 64 * MiB;
const WRITE_BYTES = 64 * 1024;
const PHASE_MS = quick ? 1_500 : 2_500;
const ROUNDS = quick ? 2 : 5;
/** Bound on the writes of one phase, whatever the machine's speed. */
const PHASE_WRITES_MAX = 100_000;
const STATE_TIMEOUT_MS = 30_000;
/** The tuned controller of the README's recipe; c-min-rate varies per series. */
const CONTROLLER_LINES = ['c-plan-ahead 20;', 'c-fill-target 4M;', 'c-max-rate 100M;', 'resync-rate 100M;'];

/** Writes incompressible bytes over the first `bytes` of `file` and syncs. */
function fillRandom(file, bytes) {
  const chunk = crypto.randomBytes(16 * MiB);
  const fd = fs.openSync(file, 'r+');
  try {
    for (let pos = 0; pos < bytes; pos += chunk.length) fs.writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - pos), pos);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Serial application writes on alpha for PHASE_MS; bytes/s. */
async function writeRateMBps(cluster, data) {
  const slots = WRITE_REGION_BYTES / WRITE_BYTES;
  const t0 = performance.now();
  let writes = 0;
  while (performance.now() - t0 < PHASE_MS && writes < PHASE_WRITES_MAX) {
    await cluster.ioWrite('alpha', ((writes * 7919) % slots) * WRITE_BYTES, data);
    writes++;
  }
  return (writes * WRITE_BYTES) / ((performance.now() - t0) / 1000);
}

/** beta is SyncTarget or PausedSyncT; a resync that ended is started again (invalidate). */
async function ensureResync(cluster) {
  const s = await cluster.status('beta');
  if (s.cstate === 'SyncTarget' || s.cstate === 'PausedSyncT') return;
  await cluster.verb('beta', 'invalidate');
  await cluster.waitStatus('beta', 'SyncTarget', (x) => x.cstate === 'SyncTarget' || x.cstate === 'PausedSyncT', STATE_TIMEOUT_MS);
}

/** ROUNDS interleaved pairs of phases: resync paused (unimpeded) and resync running; medians in bytes/s. */
async function series(cluster, data, label) {
  const unimpeded = [];
  const during = [];
  const restarts = { count: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    const phases = round % 2 === 0 ? ['paused', 'running'] : ['running', 'paused'];
    for (const phase of phases) {
      await ensureResync(cluster);
      if (phase === 'paused') {
        await cluster.admOk('beta', ['pause-sync', cluster.resource]);
        await cluster.waitStatus('beta', 'PausedSyncT', (s) => s.cstate === 'PausedSyncT', STATE_TIMEOUT_MS);
        unimpeded.push(await writeRateMBps(cluster, data));
        await cluster.admOk('beta', ['resume-sync', cluster.resource]);
      } else {
        await cluster.waitStatus('beta', 'SyncTarget', (s) => s.cstate === 'SyncTarget', STATE_TIMEOUT_MS);
        during.push(await writeRateMBps(cluster, data));
        const s = await cluster.status('beta');
        if (s.cstate !== 'SyncTarget') restarts.count++; // the resync ended within the phase: part of it ran unimpeded
      }
    }
    console.log(`${label} round ${round + 1}/${ROUNDS}: writes resync paused ${(unimpeded.at(-1) / 1e6).toFixed(1)} MB/s, resync running ${(during.at(-1) / 1e6).toFixed(1)} MB/s`);
  }
  return { unimpededMBps: median(unimpeded), duringMBps: median(during), unimpeded, during, endedWithinPhase: restarts.count };
}

async function main() {
  const cluster = new BenchCluster({ name: 'rsctl', sizeBytes: DISK_BYTES, minorBase: 246, port: 9091, disk: [...CONTROLLER_LINES, 'c-min-rate 250k;'] });
  // Real bytes for the resync to move (a resync of sparse holes costs the disks nothing), and every
  // block of both files allocated so no phase pays the host file system's first touch.
  fillRandom(cluster.disks.alpha, cluster.dataBytes);
  prefillZeros(cluster.disks.beta, cluster.dataBytes);
  await cluster.admOk('alpha', ['up', cluster.resource]);
  await cluster.admOk('beta', ['up', cluster.resource]);
  await cluster.waitStatus('alpha', 'Connected', (s) => s.cstate === 'Connected', STATE_TIMEOUT_MS);
  // both disks hold zeroes: skip the initial sync, the resyncs measured are the invalidates below
  await cluster.admOk('alpha', ['new-current-uuid', '--clear-bitmap', cluster.resource]);
  await cluster.waitStatus('alpha', 'UpToDate/UpToDate', (s) => s.disk === 'UpToDate' && s.peerDisk === 'UpToDate', STATE_TIMEOUT_MS);
  await cluster.admOk('alpha', ['primary', cluster.resource]);
  const data = crypto.randomBytes(WRITE_BYTES);

  const withMinRate = await series(cluster, data, 'c-min-rate 250k');
  fs.writeFileSync(cluster.configPath, fs.readFileSync(cluster.configPath, 'utf8').replace('c-min-rate 250k;', 'c-min-rate 0;'));
  await cluster.admOk('beta', ['adjust', cluster.resource]);
  const withoutMinRate = await series(cluster, data, 'c-min-rate 0');

  const job = (what) => `${what}, 64 KiB writes during a full resync (median of ${ROUNDS})`;
  const rows = [
    row({ job: job('c-plan-ahead 20, c-min-rate 250k'), anchor: 'writes, resync paused', anchorValue: withMinRate.unimpededMBps, variant: 'writes, resync running', value: withMinRate.duringMBps, unit: 'MB/s', target: 0.7 }),
    row({ job: job('c-plan-ahead 20, c-min-rate 0'), anchor: 'writes, resync paused', anchorValue: withoutMinRate.unimpededMBps, variant: 'writes, resync running', value: withoutMinRate.duringMBps, unit: 'MB/s', note: 'without the throttle (no target)' }),
  ];
  fs.mkdirSync('bench-results', { recursive: true });
  fs.writeFileSync('bench-results/rsctl.json', JSON.stringify({ when: new Date().toISOString(), quick, withMinRate, withoutMinRate, rows }, null, 2) + '\n');
}

try {
  await main();
} catch (err) {
  console.error(`rsctl bench failed: ${err.stack ?? err}`);
  process.exitCode = 1;
} finally {
  await runCleanups();
}
