// scripts/bench/lib — shared helpers for `npm run bench`: temp work dirs on
// the real disk, child processes that are always cleaned up, fio runs parsed
// from JSON, and the result table. Benchmarks report ratios measured side by
// side in one run; nothing here asserts a timing.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';

const cleanups = [];

/** Register a cleanup step; steps run in reverse order at exit or on signal. */
export function onCleanup(fn) {
  cleanups.push(fn);
}

export async function runCleanups() {
  while (cleanups.length > 0) {
    const fn = cleanups.pop();
    try {
      await fn();
    } catch (err) {
      process.stderr.write(`bench cleanup: ${err.message}\n`);
    }
  }
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    runCleanups().finally(() => process.exit(130));
  });
}

/** A fresh directory under /var/tmp (a real disk, like the backing files users have). */
export function workDir(name) {
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/var/tmp') ? '/var/tmp' : os.tmpdir(), `udrbd-bench-${name}-`));
  onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * The sides of a comparison in the order they run in round `round`: rotated
 * one step per round, so over the rounds every side runs first, second, ...
 * equally often. On this VM the side that runs right after another side's
 * page-cache drop pays host page faults more often (free page reporting
 * hands the dropped pages to the host 2-6 s later): with a fixed order the
 * second side's seq reads ran at 700-800 instead of ~1900 MB/s in 3 of 5
 * rounds while the same build in first place did not.
 */
export function rotated(sides, round) {
  const k = round % sides.length;
  return [...sides.slice(k), ...sides.slice(0, k)];
}

/** Median of a non-empty list of numbers. */
export function median(values) {
  const v = [...values].sort((a, b) => a - b);
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/**
 * Writes zeros over the first `bytes` of `file` and syncs: the blocks then
 * exist, like the LV a DRBD user has, and no side of a comparison pays the
 * host file system's first-touch allocation while the other does not.
 */
export function prefillZeros(file, bytes) {
  const zeros = Buffer.alloc(16 * 1024 * 1024);
  const fd = fs.openSync(file, 'r+');
  try {
    for (let pos = 0; pos < bytes; pos += zeros.length) fs.writeSync(fd, zeros, 0, Math.min(zeros.length, bytes - pos), pos);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export function sparseFile(file, sizeBytes) {
  const fd = fs.openSync(file, 'w');
  fs.ftruncateSync(fd, sizeBytes);
  fs.closeSync(fd);
  return file;
}

/** Start a long-running child; it is killed at cleanup. */
export function startProcess(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], ...opts });
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d.toString();
    if (stderr.length > 65536) stderr = stderr.slice(-65536);
  });
  child.stderrText = () => stderr;
  onCleanup(() => stopProcess(child));
  return child;
}

export async function stopProcess(child, timeoutMs = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

/** Resolve once a unix socket accepts connections (bounded wait). */
export async function waitForSocket(socketPath, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(socketPath);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`socket ${socketPath} did not come up within ${timeoutMs} ms`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Run one fio job and return { bwBytesPerSec, iops } of its read or write side.
 * `job` is a map of fio options (without --name and --output-format).
 */
export function fio(job, side) {
  const args = ['--name=bench', '--output-format=json'];
  for (const [k, v] of Object.entries(job)) args.push(v === true ? `--${k}` : `--${k}=${v}`);
  const out = execFileSync('fio', args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const json = JSON.parse(out.slice(out.indexOf('{')));
  const j = json.jobs[0];
  if (j.error) throw new Error(`fio job failed with error ${j.error}`);
  const s = j[side];
  return { bwBytesPerSec: s.bw_bytes, iops: s.iops };
}

export function hasCommand(cmd) {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function dropCaches() {
  try {
    execFileSync('sync');
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
  } catch {
    // not root: caches stay; both sides of a comparison see the same conditions
  }
}

/**
 * Before a write job: `sync` only, so no job inherits another's writeback, and
 * the page cache stays warm. Not drop_caches: on this kind of VM the balloon's
 * free page reporting hands dropped pages back to the host in bursts 2-6 s
 * later, and whichever process touches fresh pages meanwhile pays host faults
 * (0.5-2 CPU s per GiB written, varying run to run): more noise than the
 * differences measured. Read jobs still start from dropped caches.
 */
export function settleWrites() {
  execFileSync('sync');
}

/** Format one number for the table. */
export function fmt(value, unit) {
  if (value === null || value === undefined || Number.isNaN(value)) return 'n/a';
  if (unit === 'MB/s') return `${(value / 1e6).toFixed(1)} MB/s`;
  if (unit === 'IOPS') return `${Math.round(value)} IOPS`;
  if (unit === 'MiB') return `${value.toFixed(1)} MiB`;
  if (unit === 's/GiB') return `${value.toFixed(2)} s/GiB`;
  if (unit === 'ops/s') return `${Math.round(value)} ops/s`;
  return `${value} ${unit}`;
}

/**
 * A result row. `higherIsBetter` decides the ratio direction: the ratio is
 * always "udrbd relative to anchor" with >1 meaning udrbd is better.
 */
export function row({ job, anchor, anchorValue, variant, value, unit, target, higherIsBetter = true, note }) {
  let ratio = null;
  if (anchorValue && value) ratio = higherIsBetter ? value / anchorValue : anchorValue / value;
  const holds = target === undefined || ratio === null ? null : ratio >= target;
  return { job, anchor, anchorValue, variant, value, unit, ratio, target, holds, note };
}

export function printTable(rows, out = process.stdout) {
  const header = ['job', 'anchor', 'anchor value', 'udrbd variant', 'udrbd value', 'ratio', 'target', 'holds'];
  const lines = rows.map((r) => [
    r.job,
    r.anchor ?? '',
    r.anchorValue === undefined ? '' : fmt(r.anchorValue, r.unit),
    r.variant,
    r.value === null ? `n/a${r.note ? ` (${r.note})` : ''}` : fmt(r.value, r.unit),
    r.ratio === null ? '' : r.ratio.toFixed(2),
    r.target === undefined ? '' : `>= ${r.target}`,
    r.holds === null ? '' : r.holds ? 'yes' : 'NO',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => String(l[i]).length)));
  const fmtLine = (cells) => '| ' + cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ') + ' |';
  out.write(fmtLine(header) + '\n');
  out.write('| ' + widths.map((w) => '-'.repeat(w)).join(' | ') + ' |\n');
  for (const l of lines) out.write(fmtLine(l) + '\n');
}
