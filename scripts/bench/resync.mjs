// Benchmark part `resync`: udrbd's full initial sync and a 10% bitmap resync
// against `dd` copying the same bytes between two files on the same disk, with
// the resync rate unlimited (c-plan-ahead 0, resync-rate 4096M); the full sync
// (initial, then invalidate-remote) and the bitmap resync run 5 rounds each,
// every round next to its own dd (which of the two goes first alternates),
// medians reported; each timed section ends at the state-change event, not a
// status poll. Also checks how many bytes the bitmap resync moved (SyncSource
// `ns` counter) against the bytes changed. Writes bench-results/resync.json.
// Bounded: fixed sizes, every wait has a deadline; cleans up processes and
// temp files even on failure.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { computeLayout } from '../../dist/meta/superblock.js';
import { BenchCluster } from './cluster.mjs';
import { dropCaches, median, row, runCleanups, sleep } from './lib.mjs';

const quick = process.argv.includes('--quick');
const MiB = 1024 * 1024;
const DISK_BYTES = (quick ? 128 : 1024) * MiB;
const CHANGED_FRACTION = 0.1;
/** Changed chunks of the bitmap resync: scattered, each this big. */
const CHUNK_BYTES = MiB;
/** Bitmap resync measurements (each against its own dd anchor); the median is reported. */
const BITMAP_ROUNDS = quick ? 1 : 5;
/** Full syncs measured (the initial one, then invalidate-remote), each against its own dd; medians reported. */
const FULL_ROUNDS = quick ? 1 : 5;
const SYNC_TIMEOUT_MS = 120_000;
/** Connected with both disks UpToDate, from the state events (timed) and from `status --json` (the check after). */
const bothUpToDate = (state) => state.replication === 'Established' && state.disk === 'UpToDate' && state.peerDisk === 'UpToDate';
const statusBothUpToDate = (s) => s.cstate === 'Connected' && s.disk === 'UpToDate' && s.peerDisk === 'UpToDate';

/** Fills the data area of `file` with incompressible bytes (a resync of zeros would prove little). */
function fillData(file, bytes) {
  const pattern = crypto.randomBytes(16 * MiB);
  const fd = fs.openSync(file, 'r+');
  try {
    for (let pos = 0; pos < bytes; pos += pattern.length) {
      const n = Math.min(pattern.length, bytes - pos);
      // vary each round so no two MiB are equal
      pattern.writeUInt32LE(pos >>> 0, 0);
      fs.writeSync(fd, pattern, 0, n, pos);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Seconds for dd to copy `count` MiB from `src` to `dst` (same offsets), fsync at the end. */
function ddCopySeconds(src, dst, count, skipMiB = 0) {
  dropCaches();
  const t0 = performance.now();
  execFileSync('dd', [`if=${src}`, `of=${dst}`, 'bs=1M', `count=${count}`, `skip=${skipMiB}`, `seek=${skipMiB}`, 'conv=notrunc,fsync', 'status=none']);
  return (performance.now() - t0) / 1000;
}

async function main() {
  const cluster = new BenchCluster({ name: 'resync', sizeBytes: DISK_BYTES, minorBase: 70 });
  const dataBytes = computeLayout(DISK_BYTES).dataSizeBytes;
  const dataMiB = Math.floor(dataBytes / MiB);
  fillData(cluster.disks.alpha, dataMiB * MiB);

  // ---- full sync: the initial one, then (full run) `invalidate-remote` twice; each round
  // next to its own dd of the whole data area into a file on the same disk; medians reported.
  const ddTarget = path.join(cluster.dir, 'dd-target.img');
  fs.writeFileSync(ddTarget, '');
  fs.truncateSync(ddTarget, DISK_BYTES);
  await cluster.admOk('alpha', ['up', cluster.resource]);
  await cluster.admOk('beta', ['up', cluster.resource]);
  await cluster.waitStatus('alpha', 'Connected', (s) => s.cstate === 'Connected', 30_000);
  const fullRounds = { ddS: [], syncS: [] };
  const fullSyncSeconds = async (round) => {
    dropCaches();
    const watch = await cluster.watchState('alpha');
    try {
      const t0 = performance.now();
      if (round === 0) await cluster.verb('alpha', 'primary', { force: true });
      else await cluster.verb('alpha', 'invalidate-remote');
      const t1 = await watch.until(bothUpToDate, 'UpToDate/UpToDate', SYNC_TIMEOUT_MS);
      await cluster.waitStatus('alpha', 'UpToDate/UpToDate', statusBothUpToDate, 5_000); // confirms; not timed
      return (t1 - t0) / 1000;
    } finally {
      watch.close();
    }
  };
  for (let round = 0; round < FULL_ROUNDS; round++) {
    // Which of the two runs first alternates (see lib.mjs rotated() for why order matters here).
    let ddS = 0;
    let syncS = 0;
    if (round % 2 === 0) {
      ddS = ddCopySeconds(cluster.disks.alpha, ddTarget, dataMiB);
      syncS = await fullSyncSeconds(round);
    } else {
      syncS = await fullSyncSeconds(round);
      ddS = ddCopySeconds(cluster.disks.alpha, ddTarget, dataMiB);
    }
    fullRounds.ddS.push(ddS);
    fullRounds.syncS.push(syncS);
    console.log(
      `full sync round ${round + 1}/${FULL_ROUNDS} (${round === 0 ? 'initial' : 'invalidate-remote'}): dd ${((dataMiB * MiB) / ddS / 1e6).toFixed(1)} MB/s (${ddS.toFixed(2)} s), ` +
        `udrbd ${(dataBytes / syncS / 1e6).toFixed(1)} MB/s (${syncS.toFixed(2)} s)`,
    );
  }
  const ddFullS = median(fullRounds.ddS);
  const ddFullRate = (dataMiB * MiB) / ddFullS;
  const fullS = median(fullRounds.syncS);
  const fullRate = dataBytes / fullS;

  // ---- 10% bitmap resync: disconnect, write scattered chunks on the Primary, reconnect.
  // Rounds interleaved with the dd anchor (a 0.1-0.3 s measurement on a shared VM drifts a lot);
  // the table reports the medians and the largest bytes-moved ratio.
  const chunks = Math.floor(dataMiB * CHANGED_FRACTION);
  const stride = Math.floor(dataMiB / chunks);
  const changedBytes = chunks * CHUNK_BYTES;
  const data = crypto.randomBytes(CHUNK_BYTES);
  const rounds = { bitmapS: [], ddBitmapS: [], ddContigS: [], movedBytes: [], oosBytes: [] };
  for (let round = 0; round < BITMAP_ROUNDS; round++) {
    await cluster.admOk('alpha', ['disconnect', cluster.resource]);
    await cluster.waitStatus('beta', 'WFConnection', (s) => s.cstate === 'WFConnection', 30_000);
    for (let k = 0; k < chunks; k++) {
      data.writeUInt32LE(k, 0);
      data.writeUInt32LE(round, 4); // every round changes every chunk again
      await cluster.ioWrite('alpha', k * stride * MiB, data);
    }
    const before = await cluster.status('alpha');
    const nsBefore = before.counters.ns * 1024;
    const resync = async () => {
      dropCaches();
      const watch = await cluster.watchState('alpha');
      try {
        const t1 = performance.now();
        await cluster.verb('alpha', 'connect', { discardMyData: false });
        const t2 = await watch.until(bothUpToDate, 'Connected, UpToDate/UpToDate', SYNC_TIMEOUT_MS);
        const status = await cluster.waitStatus('alpha', 'Connected, UpToDate/UpToDate', statusBothUpToDate, 5_000); // confirms; not timed
        return { after: status, bitmapS: (t2 - t1) / 1000 };
      } finally {
        watch.close();
      }
    };
    // anchor: dd the same number of bytes (the same scattered chunks) between the two files
    const ddAnchor = () => {
      dropCaches();
      const t2 = performance.now();
      for (let k = 0; k < chunks; k++) {
        execFileSync('dd', [`if=${cluster.disks.alpha}`, `of=${ddTarget}`, 'bs=1M', 'count=1', `skip=${k * stride}`, `seek=${k * stride}`, 'conv=notrunc', 'status=none']);
      }
      execFileSync('sync', [ddTarget]);
      const scatteredS = (performance.now() - t2) / 1000;
      // one dd process per chunk costs process start-up too; also time one contiguous dd of the same byte count
      return { scatteredS, contiguousS: ddCopySeconds(cluster.disks.alpha, ddTarget, chunks) };
    };
    // Which runs first alternates, as for the full sync.
    let synced;
    let anchor;
    if (round % 2 === 0) {
      synced = await resync();
      anchor = ddAnchor();
    } else {
      anchor = ddAnchor();
      synced = await resync();
    }
    const { after, bitmapS } = synced;
    const ddBitmapS = anchor.scatteredS;
    const ddContigS = anchor.contiguousS;
    rounds.bitmapS.push(bitmapS);
    rounds.ddBitmapS.push(ddBitmapS);
    rounds.ddContigS.push(ddContigS);
    rounds.movedBytes.push(after.counters.ns * 1024 - nsBefore);
    rounds.oosBytes.push(before.outOfSyncKiB * 1024);
    console.log(
      `bitmap resync round ${round + 1}/${BITMAP_ROUNDS}: changed ${changedBytes / MiB} MiB (bitmap ${before.outOfSyncKiB / 1024} MiB), ` +
        `moved ${(rounds.movedBytes[round] / MiB).toFixed(1)} MiB in ${bitmapS.toFixed(3)} s; dd ${ddBitmapS.toFixed(3)} s scattered, ${ddContigS.toFixed(3)} s contiguous`,
    );
  }
  const bitmapS = median(rounds.bitmapS);
  const bitmapRate = changedBytes / bitmapS;
  const ddBitmapRate = changedBytes / median(rounds.ddBitmapS.map((x, i) => Math.min(x, rounds.ddContigS[i])));
  const movedBytes = Math.max(...rounds.movedBytes);
  const oosBytes = Math.max(...rounds.oosBytes);
  const ddBitmapS = median(rounds.ddBitmapS);
  const ddContigS = median(rounds.ddContigS);

  const rows = [
    row({ job: `full sync, ${dataMiB} MiB (median of ${FULL_ROUNDS})`, anchor: 'dd between files', anchorValue: ddFullRate, variant: 'udrbd resync (unlimited)', value: fullRate, unit: 'MB/s', target: 0.8 }),
    row({ job: `10% bitmap resync, ${changedBytes / MiB} MiB (median of ${BITMAP_ROUNDS})`, anchor: 'dd same bytes', anchorValue: ddBitmapRate, variant: 'udrbd resync (unlimited)', value: bitmapRate, unit: 'MB/s', target: 0.8 }),
    {
      job: 'bitmap resync bytes moved / changed',
      anchor: 'changed bytes',
      anchorValue: changedBytes / MiB,
      variant: 'udrbd ns counter',
      value: movedBytes / MiB,
      unit: 'MiB',
      ratio: changedBytes / movedBytes,
      target: 0.909, // moved ≤ 1.1 × changed
      holds: movedBytes <= 1.1 * changedBytes,
      note: `moved ${(movedBytes / changedBytes).toFixed(3)}x changed (largest of ${BITMAP_ROUNDS} round(s))`,
    },
  ];
  fs.mkdirSync('bench-results', { recursive: true });
  fs.writeFileSync(
    'bench-results/resync.json',
    JSON.stringify({ when: new Date().toISOString(), quick, dataBytes, ddFullS, fullS, fullRounds, changedBytes, oosBytes, movedBytes, bitmapS, ddBitmapS, ddContigS, bitmapRounds: rounds, rows }, null, 2) + '\n',
  );
  await sleep(0);
}

try {
  await main();
} catch (err) {
  console.error(`resync bench failed: ${err.stack ?? err}`);
  process.exitCode = 1;
} finally {
  await runCleanups();
}
