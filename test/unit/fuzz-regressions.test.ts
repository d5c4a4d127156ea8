/**
 * Regression tests for the bugs the decoder fuzzers (test/fuzz/) found, each
 * named after what broke, with the shrunk input that broke it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseRequest } from '../../src/control/control-server.js';
import { FileDisk } from '../../src/disk/file-disk.js';
import { initializedAlArea } from '../../src/meta/activity-log.js';
import { MetaData } from '../../src/meta/metadata.js';
import {
  AL_AREA_BYTES_MAX,
  LA_SIZE_SECTORS_MAX,
  bitmapBytesForSectors,
  computeLayout,
  decodeSuperblock,
  encodeSuperblock,
  freshSuperblock,
} from '../../src/meta/superblock.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

describe('v08 meta-data', () => {
  it('a la_size_sect beyond 2^53 bytes no longer crashes attach with "la_size_sect is a non-negative integer"', () => {
    const sizeBytes = 1024 * 1024 + 64 * 1024;
    const layout = computeLayout(sizeBytes);
    const superblock = encodeSuperblock(freshSuperblock(layout));
    superblock.writeBigUInt64BE(0xff00000000000000n, 0x00); // what the fuzzer wrote: an 8-byte garbage la-size
    expect(decodeSuperblock(superblock).laSizeSectors).toBe(LA_SIZE_SECTORS_MAX);

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-fzreg-'));
    dirs.push(dir);
    const file = path.join(dir, 'disk.img');
    fs.writeFileSync(file, Buffer.concat([Buffer.alloc(layout.dataSizeBytes + layout.bmAreaBytes), initializedAlArea(layout.alStripes, layout.alStripeSize4k), superblock]));
    const disk = FileDisk.open(file);
    try {
      const md = MetaData.open(disk);
      md.attach();
      // Written back as a number the superblock can hold, still "too big": the attach path caps it to the disk.
      expect(md.laSizeSectors).toBe(LA_SIZE_SECTORS_MAX);
      md.close({ clean: true });
    } finally {
      disk.closeSync();
    }
    expect(fs.readFileSync(file).readBigUInt64BE(layout.mdOffsetBytes)).toBe(BigInt(LA_SIZE_SECTORS_MAX));
  });
});

describe('v08 meta-data: the activity-log size', () => {
  it('a consistent superblock naming a 16 GiB activity log is refused as invalid meta-data instead of crashing attach with a RangeError', () => {
    // Found by reasoning from the fuzzer's meta target (its 1 MiB device cannot hold such a ring): DRBD allows
    // 4 × 1048576 4k blocks; apply-al read the whole ring into one Buffer, beyond Node's 4 GiB Buffer limit.
    const sizeBytes = 20 * 1024 ** 3;
    const alStripes = 4;
    const alStripeSize4k = 1024 * 1024;
    const alBytes = alStripes * alStripeSize4k * 4096;
    const bmAreaBytes = bitmapBytesForSectors(sizeBytes / 512);
    const mdSizeSectors = (4096 + alBytes + bmAreaBytes) / 512;
    const sb = {
      ...freshSuperblock(computeLayout(sizeBytes)),
      alStripes,
      alStripeSize4k,
      mdSizeSectors,
      alOffsetSectors: -alBytes / 512,
      bmOffsetSectors: -(mdSizeSectors - 8),
    };
    const mdOffsetBytes = Math.floor((sizeBytes - 4096) / 4096) * 4096;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-fzreg-'));
    dirs.push(dir);
    const file = path.join(dir, 'sparse.img');
    fs.writeFileSync(file, '');
    fs.truncateSync(file, sizeBytes); // sparse: only the superblock is written
    const fd = fs.openSync(file, 'r+');
    try {
      fs.writeSync(fd, encodeSuperblock(sb), 0, 4096, mdOffsetBytes);
    } finally {
      fs.closeSync(fd);
    }
    const disk = FileDisk.open(file);
    try {
      expect(() => MetaData.open(disk)).toThrow(`is larger than udrbd reads (${AL_AREA_BYTES_MAX / 1024} KiB)`);
    } finally {
      disk.closeSync();
    }
    expect(() => computeLayout(sizeBytes, { alStripes, alStripeSize4k })).toThrow('is larger than udrbd reads');
  });
});

describe('control socket requests', () => {
  it('args that are an array, a string or a number are refused as malformed instead of reaching the verb as "args"', () => {
    // The shrunk input: {"id":0,"verb":"status","args":[]}
    expect(() => parseRequest('{"id":0,"verb":"status","args":[]}')).toThrow('args must be a JSON object');
    expect(() => parseRequest('{"id":0,"verb":"status","args":"force"}')).toThrow('args must be a JSON object');
    expect(() => parseRequest('{"id":0,"verb":"status","args":7}')).toThrow('args must be a JSON object');
    expect(() => parseRequest('[1,"status"]')).toThrow('a request is a JSON object');
    expect(() => parseRequest('{"id":1.5,"verb":"status"}')).toThrow('missing id or verb');
    expect(parseRequest('{"id":3,"verb":"primary","args":{"force":true}}')).toEqual({ id: 3, verb: 'primary', args: { force: true } });
    expect(parseRequest('{"id":4,"verb":"status","args":null}')).toEqual({ id: 4, verb: 'status', args: {} });
  });
});
