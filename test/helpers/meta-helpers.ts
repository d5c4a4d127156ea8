/**
 * Shared helpers for the meta-data interop tests: run the real drbdmeta on a
 * plain file, capture udrbd tool output, hash regions, make sparse files.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FileDisk } from '../../src/disk/file-disk.js';
import type { ToolIo } from '../../src/meta/tool.js';

export const DRBDMETA = '/usr/sbin/drbdmeta';

export function requireDrbdmeta(): void {
  if (!fs.existsSync(DRBDMETA)) {
    throw new Error(`${DRBDMETA} is missing: install Debian's drbd-utils (scripts/setup.sh does)`);
  }
}

export function drbdmeta(file: string, ...args: string[]): { code: number; stdout: string; stderr: string } {
  return drbdmetaAt(file, 'internal', ...args);
}

/** drbdmeta on meta-data at `index`: `internal`, `flex-external` or a slot number. */
export function drbdmetaAt(file: string, index: string, ...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(DRBDMETA, ['--force', '/dev/drbd9', 'v08', file, index, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-meta-'));
}

export function sparseFile(dir: string, name: string, sizeBytes: number): string {
  const file = path.join(dir, name);
  const fd = fs.openSync(file, 'w');
  fs.ftruncateSync(fd, sizeBytes);
  fs.closeSync(fd);
  return file;
}

export function copySparse(from: string, to: string): void {
  execFileSync('cp', ['--sparse=always', from, to]);
}

export class CaptureIo implements ToolIo {
  stdout = '';
  stderr = '';
  constructor(
    readonly force = true,
    readonly stdinIsTty = false,
    private readonly answers: string[] = [],
  ) {}
  out(text: string): void {
    this.stdout += text;
  }
  err(text: string): void {
    this.stderr += text;
  }
  async readLine(): Promise<string | null> {
    return this.answers.shift() ?? null;
  }
}

/** dump-md text without the three header lines (date, host and command line differ by design). */
export function dumpBody(text: string): string {
  const lines = text.split('\n');
  const at = lines.indexOf('#');
  return lines.slice(at + 1).join('\n');
}

/** drbd-utils 9.22 prints v08 flags as 0 (documented bug); normalise that one line for comparison. */
export function withoutFlagsLine(text: string): string {
  return text.replace(/^ {4}flags 0x[0-9A-F]{8};$/m, '    flags <normalised>;');
}

export function hashRange(file: string, offset: number, length: number): string {
  const fd = fs.openSync(file, 'r');
  try {
    const h = crypto.createHash('sha256');
    const buf = Buffer.alloc(4 * 1024 * 1024);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, length - done), offset + done);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      done += n;
    }
    return h.digest('hex');
  } finally {
    fs.closeSync(fd);
  }
}

export function readRange(file: string, offset: number, length: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    fs.readSync(fd, buf, 0, length, offset);
    return buf;
  } finally {
    fs.closeSync(fd);
  }
}

export function writeRange(file: string, offset: number, bytes: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** A half-open range of bitmap bits [start, end). */
export interface BitRange {
  start: number;
  end: number;
}

/** Upper bound on 64-bit words a parsed dump-md bitmap may describe (a 1 TiB volume: 32 MiB / 8). */
const DUMP_BITMAP_WORDS_MAX = 4 * 1024 * 1024;

/**
 * Parses the `bm { … }` section of a drbdmeta dump-md back into the set bits,
 * as sorted, disjoint, maximal ranges. The format (drbd84.md §1): 64-bit words
 * printed as `0x<16 hex>;` (value of the little-endian word, so bit b of word k
 * is bitmap bit 64·k + b), runs of equal words as `N times 0x<16 hex>;`, and
 * `# at <kB>` comments. Anything else in the section is an error.
 */
export function parseDumpBitmap(dump: string): { ranges: BitRange[]; words: number } {
  const open = dump.indexOf('\nbm {');
  if (open < 0) throw new Error('dump-md output has no "bm {" section');
  const close = dump.indexOf('\n}', open + 1);
  if (close < 0) throw new Error('dump-md bm section is not closed');
  const body = dump.slice(open + '\nbm {'.length, close).replace(/#[^\n]*/g, ' ');
  const ranges: BitRange[] = [];
  const addBits = (start: number, end: number) => {
    const last = ranges[ranges.length - 1];
    if (last && last.end === start) last.end = end;
    else ranges.push({ start, end });
  };
  let word = 0;
  const addWord = (value: bigint) => {
    for (let b = 0; b < 64; b++) {
      if (((value >> BigInt(b)) & 1n) === 1n) addBits(word * 64 + b, word * 64 + b + 1);
    }
    word++;
  };
  const tokens = body.split(';').map((t) => t.trim());
  if (tokens[tokens.length - 1] !== '') throw new Error(`dump-md bm section ends without ';': ${tokens[tokens.length - 1]}`);
  for (const token of tokens.slice(0, -1)) {
    const m = /^(?:(\d+) times )?0x([0-9A-F]{16})$/.exec(token);
    if (!m) throw new Error(`unexpected token in dump-md bm section: '${token}'`);
    const count = m[1] === undefined ? 1 : Number(m[1]);
    if (count < 1 || word + count > DUMP_BITMAP_WORDS_MAX) throw new Error(`bad word count in '${token}'`);
    const value = BigInt(`0x${m[2]}`);
    if (value === 0n) {
      word += count;
    } else if (value === 0xffffffffffffffffn) {
      addBits(word * 64, (word + count) * 64);
      word += count;
    } else {
      for (let k = 0; k < count; k++) addWord(value);
    }
  }
  return { ranges, words: word };
}

/** Sorted, disjoint, maximal form of arbitrary (possibly overlapping or adjacent) ranges. */
export function normaliseRanges(input: readonly BitRange[]): BitRange[] {
  const sorted = input.filter((r) => r.end > r.start).sort((a, b) => a.start - b.start);
  const out: BitRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end) last.end = Math.max(last.end, r.end);
    else out.push({ ...r });
  }
  return out;
}

export function rangeBits(ranges: readonly BitRange[]): number {
  return ranges.reduce((n, r) => n + (r.end - r.start), 0);
}

/**
 * Records the writes and flushes of `disk` into `events` as
 * `<name>.write(<area>[,fua])` / `<name>.flush` / `<name>.writeSync` /
 * `<name>.flushSync` (area: sb, al, bm by the
 * meta-data layout, or data for name 'data'); the disk still does them.
 */
export function recordDiskOps(disk: FileDisk, name: string, events: string[], layout: { mdOffsetBytes: number; alOffsetBytes: number; alBytes: number }): void {
  const write = disk.write.bind(disk);
  const flush = disk.flush.bind(disk);
  const flushSync = disk.flushSync.bind(disk);
  const writeSync = disk.writeSync.bind(disk);
  disk.writeSync = (buffer, offsetBytes) => {
    events.push(`${name}.writeSync`);
    writeSync(buffer, offsetBytes);
  };
  disk.flushSync = () => {
    events.push(`${name}.flushSync`);
    flushSync();
  };
  disk.write = (buffer, offsetBytes, flags) => {
    const inAl = offsetBytes >= layout.alOffsetBytes && offsetBytes < layout.alOffsetBytes + layout.alBytes;
    const inSb = offsetBytes >= layout.mdOffsetBytes && offsetBytes < layout.mdOffsetBytes + 4096;
    const area = name === 'data' ? 'data' : inAl ? 'al' : inSb ? 'sb' : 'bm';
    events.push(`${name}.write(${area}${flags?.fua === true ? ',fua' : ''})`);
    return write(buffer, offsetBytes, flags);
  };
  disk.flush = () => {
    events.push(`${name}.flush`);
    return flush();
  };
}
