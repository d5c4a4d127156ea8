// Micro-benchmark (not a test): activity-log commits/s and bitmap set+flush
// throughput on a 1 TiB sparse file. Imports the built code from dist/.
// Bounded: fixed iteration counts and a time cap per phase. Writes JSON to
// bench-results/meta.json and removes its temp file.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FileDisk } from '../../dist/disk/file-disk.js';
import { MetaData } from '../../dist/meta/metadata.js';
import { createMd } from '../../dist/meta/tool.js';

const TiB = 1024 ** 4;
const AL_COMMITS_MAX = 2000;
const BITMAP_ROUNDS_MAX = 200;
const PHASE_TIME_MAX_MS = 20_000;
const quietIo = { out() {}, err() {}, force: true, stdinIsTty: false, readLine: async () => null };

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-bench-meta-'));
const file = path.join(dir, 'tib.img');
const results = {};
try {
  fs.closeSync(fs.openSync(file, 'w'));
  fs.truncateSync(file, TiB);
  let t0 = performance.now();
  await createMd(file, quietIo);
  results.createMdMs = Math.round(performance.now() - t0);

  const disk = FileDisk.open(file);
  try {
    t0 = performance.now();
    const md = MetaData.open(disk, { alExtents: 1237 });
    md.attach();
    results.openAttachMs = Math.round(performance.now() - t0);
    const al = md.activityLog;
    const extents = Math.floor(md.dataSizeBytes / (4 * 1024 * 1024));

    // AL: every write goes to a cold extent (stride > hot set), so each one commits a transaction.
    t0 = performance.now();
    let commits = 0;
    for (let k = 0; k < AL_COMMITS_MAX && performance.now() - t0 < PHASE_TIME_MAX_MS; k++) {
      const extent = (k * 7919) % extents;
      const offset = extent * 4 * 1024 * 1024;
      await al.beginWrite(offset, 4096);
      al.endWrite(offset, 4096);
      commits++;
    }
    const alMs = performance.now() - t0;
    results.alCommits = commits;
    results.alCommitsPerSec = Math.round(commits / (alMs / 1000));

    // Bitmap: set scattered 1 MiB ranges then flush dirty pages (fdatasync each round).
    const bm = md.bitmap;
    t0 = performance.now();
    let rounds = 0;
    let bitsSet = 0;
    let pagesWritten = 0;
    for (let r = 0; r < BITMAP_ROUNDS_MAX && performance.now() - t0 < PHASE_TIME_MAX_MS; r++) {
      for (let k = 0; k < 64; k++) {
        const first = ((r * 64 + k) * 104729 * 256) % (bm.bitCount - 256);
        bitsSet += bm.setRange(first, first + 256);
      }
      pagesWritten += await md.flushBitmap();
      rounds++;
    }
    const bmMs = performance.now() - t0;
    results.bitmapRounds = rounds;
    results.bitmapSetFlushRoundsPerSec = Math.round(rounds / (bmMs / 1000));
    results.bitmapPagesWrittenPerSec = Math.round(pagesWritten / (bmMs / 1000));
    results.bitmapBitsSetPerSec = Math.round(bitsSet / (bmMs / 1000));

    t0 = performance.now();
    bm.setAll();
    bm.clearAll();
    results.bitmapSetAllClearAll1TiBMs = Math.round(performance.now() - t0);
    t0 = performance.now();
    md.close({ clean: true });
    results.cleanCloseMs = Math.round(performance.now() - t0);
  } finally {
    disk.closeSync();
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}

console.log('meta micro-benchmark (1 TiB sparse file)');
for (const [k, v] of Object.entries(results)) console.log(`  ${k.padEnd(34)} ${v}`);
fs.mkdirSync('bench-results', { recursive: true });
// Micro-benchmark rows have no anchor: they are reported, not compared.
const rows = [
  { job: 'AL commit (FUA), 1 TiB', variant: 'udrbd meta', value: results.alCommitsPerSec, unit: 'ops/s', ratio: null, holds: null },
  { job: 'bitmap 64x1 MiB set + flush, 1 TiB', variant: 'udrbd meta', value: results.bitmapSetFlushRoundsPerSec, unit: 'ops/s', ratio: null, holds: null },
  { job: 'bitmap pages written, 1 TiB', variant: 'udrbd meta', value: results.bitmapPagesWrittenPerSec, unit: 'ops/s', ratio: null, holds: null },
];
fs.writeFileSync('bench-results/meta.json', JSON.stringify({ when: new Date().toISOString(), ...results, rows }, null, 2) + '\n');
