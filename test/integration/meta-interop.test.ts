import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import { FileDisk } from '../../src/disk/file-disk.js';
import { MetaData, readMetaSync } from '../../src/meta/metadata.js';
import { createMd, dumpMd, getGi, showGi, dstate } from '../../src/meta/tool.js';
import { computeLayout } from '../../src/meta/superblock.js';
import { MdFlag } from '../../src/meta/types.js';
import {
  type BitRange,
  CaptureIo,
  copySparse,
  drbdmeta,
  dumpBody,
  normaliseRanges,
  parseDumpBitmap,
  rangeBits,
  readRange,
  requireDrbdmeta,
  sparseFile,
  tmpDir,
  withoutFlagsLine,
} from '../helpers/meta-helpers.js';

const MiB = 1024 * 1024;
const SIZES = [512 * MiB, 1024 * MiB];

function udrbdDump(file: string): string {
  const io = new CaptureIo();
  dumpMd(file, io, { commandLine: 'test' });
  return io.stdout;
}

describe('meta interop with drbdmeta', () => {
  let dir = '';
  beforeAll(() => requireDrbdmeta());
  afterEach(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    dir = '';
  });

  for (const size of SIZES) {
    it(`udrbd create-md on ${size / MiB} MiB writes the same meta-data bytes as drbdmeta and both dump-md agree`, async () => {
      dir = tmpDir();
      const ours = sparseFile(dir, 'ours.img', size);
      const theirs = sparseFile(dir, 'theirs.img', size);
      const io = new CaptureIo();
      await createMd(ours, io);
      expect(io.stdout).toContain('New drbd meta data block successfully created.');
      expect(drbdmeta(theirs, 'create-md').code).toBe(0);
      const layout = computeLayout(size);
      const mdLen = size - layout.bmOffsetBytes;
      expect(readRange(ours, layout.bmOffsetBytes, mdLen).equals(readRange(theirs, layout.bmOffsetBytes, mdLen))).toBe(true);
      const real = drbdmeta(ours, 'dump-md');
      expect(real.code).toBe(0);
      const mine = udrbdDump(ours);
      expect(withoutFlagsLine(dumpBody(mine))).toBe(withoutFlagsLine(dumpBody(real.stdout)));
      expect(mine).toContain('    flags 0x00000080;');
      expect(mine).toContain(`# md_offset ${layout.mdOffsetBytes}`);
    });

    it(`udrbd reads a drbdmeta-created ${size / MiB} MiB disk with the same UUIDs, flags, sizes and offsets`, () => {
      dir = tmpDir();
      const file = sparseFile(dir, 'd.img', size);
      expect(drbdmeta(file, 'create-md').code).toBe(0);
      expect(drbdmeta(file, 'set-gi', '1122334455667788:99AABBCCDDEEFF00:0123456789ABCDEF:FEDCBA9876543210:1:1:0:1:0:1:0').code).toBe(0);
      const disk = FileDisk.open(file, { readOnly: true });
      try {
        const read = readMetaSync(disk);
        expect(read.ok).toBe(true);
        if (!read.ok) return;
        const expected = computeLayout(size);
        expect(read.layout).toEqual(expected);
        expect(read.sb.uuids.current).toBe(0x1122334455667788n);
        expect(read.sb.uuids.historyEnd).toBe(0xfedcba9876543210n);
        expect(read.sb.flags).toBe(MdFlag.alClean | MdFlag.consistent | MdFlag.wasUpToDate | MdFlag.connectedInd | MdFlag.peerOutDated);
      } finally {
        disk.closeSync();
      }
      const gi = new CaptureIo();
      getGi(file, gi);
      expect(gi.stdout).toBe(drbdmeta(file, 'get-gi').stdout);
      const show = new CaptureIo();
      showGi(file, show);
      expect(show.stdout).toBe(drbdmeta(file, 'show-gi').stdout);
      const ds = new CaptureIo();
      dstate(file, ds);
      expect(ds.stdout).toBe(drbdmeta(file, 'dstate').stdout);
      expect(withoutFlagsLine(dumpBody(udrbdDump(file)))).toBe(withoutFlagsLine(dumpBody(drbdmeta(file, 'dump-md').stdout)));
    });
  }

  for (const size of SIZES) {
    it(`after udrbd sets UUIDs, flags and bitmap bits on ${size / MiB} MiB, drbdmeta dump-md shows exactly those (UUIDs, flags, bits-set and the bitmap ranges)`, async () => {
      dir = tmpDir();
      const file = sparseFile(dir, 'u.img', size);
      await createMd(file, new CaptureIo());
      const bitCount = computeLayout(size).dataSizeBytes / 4096;
      // Runs, single words, a run ending on the device's last bit, and a long run so the dump folds "N times".
      const setRanges: BitRange[] = [
        { start: 0, end: 1 },
        { start: 100, end: 164 },
        { start: 5000, end: 5000 + 3 * 4096 },
        { start: 70_000, end: 70_037 },
        { start: bitCount - 1, end: bitCount },
      ];
      for (let k = 0; k < 50; k++) setRanges.push({ start: 90_000 + k * 37, end: 90_000 + k * 37 + (k % 5) + 1 });
      const expected = normaliseRanges(setRanges);
      const disk = FileDisk.open(file);
      try {
        const md = MetaData.open(disk);
        md.attach();
        md.setUuids({ current: 0xdeadbeefcafe0001n, bitmap: 0x1234n, historyStart: 0xabcdefn, historyEnd: 0x42n });
        md.setFlags(MdFlag.consistent | MdFlag.wasUpToDate | MdFlag.peerOutDated);
        const bm = md.bitmap;
        expect(bm.bitCount).toBe(bitCount);
        for (const r of setRanges) bm.setRange(r.start, r.end);
        expect(bm.countSet()).toBe(rangeBits(expected));
        await md.flushBitmap();
        md.close({ clean: true });
      } finally {
        disk.closeSync();
      }
      const real = drbdmeta(file, 'dump-md');
      expect(real.code).toBe(0);
      expect(real.stdout).toContain(`# bits-set ${rangeBits(expected)};`);
      expect(real.stdout).toContain('0xDEADBEEFCAFE0001; 0x0000000000001234; 0x0000000000ABCDEF; 0x0000000000000042;');
      expect(real.stdout).toContain(' times 0xFFFFFFFFFFFFFFFF;');
      // Strict: drbdmeta's bitmap, read back bit by bit, is exactly the ranges set above.
      const parsed = parseDumpBitmap(real.stdout);
      expect(parsed.words).toBe(Math.ceil(bitCount / 64));
      expect(parsed.ranges).toEqual(expected);
      expect(withoutFlagsLine(dumpBody(udrbdDump(file)))).toBe(withoutFlagsLine(dumpBody(real.stdout)));
      expect(drbdmeta(file, 'get-gi').stdout).toBe('DEADBEEFCAFE0001:0000000000001234:0000000000ABCDEF:0000000000000042:1:1:0:0:0:1:0\n');
    });

    it(`an AL written by udrbd on ${size / MiB} MiB and left unclean is applied by drbdmeta apply-al to the same bitmap udrbd recovery produces`, async () => {
      dir = tmpDir();
      const file = sparseFile(dir, 'al.img', size);
      await createMd(file, new CaptureIo());
      const layout = computeLayout(size);
      const extentBytes = 4 * MiB;
      const extentBits = extentBytes / 4096;
      // Whole extents only (the device's last partial extent is skipped); 37 is coprime to 127 and 255.
      const extentCount = Math.floor(layout.dataSizeBytes / extentBytes);
      const touched: number[] = [];
      const disk = FileDisk.open(file);
      try {
        const md = MetaData.open(disk, { alExtents: 67 });
        md.attach();
        md.setFlags(MdFlag.primaryInd | MdFlag.consistent | MdFlag.wasUpToDate);
        md.writeSuperblock();
        const al = md.activityLog!;
        // 80 distinct extents through 67 slots forces evictions.
        for (let k = 0; k < 80; k++) {
          const extent = (k * 37) % extentCount;
          touched.push(extent);
          const offset = extent * extentBytes + 8192;
          await al.beginWrite(offset, 4096);
          al.endWrite(offset, 4096);
        }
        md.close({ clean: false }); // crash-like: superblock stays unclean, AL keeps its transactions
      } finally {
        disk.closeSync();
      }
      expect(new Set(touched).size).toBe(80);
      // Each extent was touched once, so the hot set is the 67 most recent ones.
      const hot = touched.slice(-67);
      const expected = normaliseRanges(hot.map((e) => ({ start: e * extentBits, end: (e + 1) * extentBits })));
      // drbdmeta sees the superblock unclean (--force makes it dump anyway, marked as untrustworthy).
      const unclean = drbdmeta(file, 'dump-md');
      expect(unclean.stderr).toContain('Found meta data is "unclean", please apply-al first');
      expect(unclean.stdout).toContain("This_is_an_unclean_meta_data_dump._Don't_trust_the_bitmap.");
      const theirs = `${file}.drbdmeta`;
      copySparse(file, theirs);
      expect(drbdmeta(theirs, 'apply-al').code).toBe(0);
      // udrbd's own recovery: open + attach (replays the AL), then a clean close.
      const d2 = FileDisk.open(file);
      let recoveredBits = 0;
      try {
        const md = MetaData.open(d2);
        const { applyAl } = md.attach();
        expect([...applyAl.appliedExtents].sort((a, b) => a - b)).toEqual([...hot].sort((a, b) => a - b));
        recoveredBits = md.bitmap.countSet();
        md.close({ clean: true });
      } finally {
        d2.closeSync();
      }
      expect(recoveredBits).toBe(67 * extentBits);
      const bmLen = layout.bmAreaBytes;
      expect(readRange(file, layout.bmOffsetBytes, bmLen).equals(readRange(theirs, layout.bmOffsetBytes, bmLen))).toBe(true);
      const dumpTheirs = drbdmeta(theirs, 'dump-md');
      expect(dumpTheirs.stdout).toContain(`# bits-set ${67 * extentBits};`);
      expect(parseDumpBitmap(dumpTheirs.stdout).ranges).toEqual(expected);
      const bmSection = (t: string) => t.slice(t.indexOf('# bm-bytes'));
      expect(bmSection(drbdmeta(file, 'dump-md').stdout)).toBe(bmSection(dumpTheirs.stdout));
    });
  }
});
