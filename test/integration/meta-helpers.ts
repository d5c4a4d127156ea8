/**
 * Shared helpers for the meta-data interop tests: run the real drbdmeta on a
 * plain file, capture udrbd tool output, hash regions, make sparse files.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ToolIo } from '../../src/meta/tool.js';

export const DRBDMETA = '/usr/sbin/drbdmeta';

export function requireDrbdmeta(): void {
  if (!fs.existsSync(DRBDMETA)) {
    throw new Error(`${DRBDMETA} is missing: install Debian's drbd-utils (scripts/setup.sh does)`);
  }
}

export function drbdmeta(file: string, ...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(DRBDMETA, ['--force', '/dev/drbd9', 'v08', file, 'internal', ...args], { encoding: 'utf8', timeout: 60_000 });
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
