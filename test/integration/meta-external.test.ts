/**
 * External meta-data against the real drbdmeta (v08): `meta-disk DEV [N]`
 * (128 MiB slot N) and `flexible-meta-disk DEV` (the whole device). Each way
 * round: what drbdmeta creates udrbd reads and dumps identically (bar the
 * documented flags line), what udrbd creates drbdmeta reads, the superblock
 * and AL bytes are equal, an unclean AL left by udrbd is applied by drbdmeta
 * to the same bitmap udrbd's own recovery produces, wipe-md is understood both
 * ways, and the data disk is never written by any meta-data operation. Plus
 * the write ordering on a separate meta device, seen through recording disks.
 */
import fs from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FileDisk } from '../../src/disk/file-disk.js';
import { MetaData, readMetaSync } from '../../src/meta/metadata.js';
import { applyAl, createMd, dumpMd, getGi, wipeMd, type MetaTarget } from '../../src/meta/tool.js';
import { MD_INDEXED_SLOT_BYTES, computeLayout, type MetaPlacement } from '../../src/meta/superblock.js';
import { MdFlag } from '../../src/meta/types.js';
import {
  CaptureIo,
  copySparse,
  drbdmetaAt,
  dumpBody,
  hashRange,
  normaliseRanges,
  parseDumpBitmap,
  readRange,
  recordDiskOps,
  requireDrbdmeta,
  sparseFile,
  tmpDir,
  withoutFlagsLine,
  writeRange,
} from '../helpers/meta-helpers.js';

const MiB = 1024 * 1024;
const DATA_BYTES = 256 * MiB;

interface Flavour {
  name: string;
  placement: MetaPlacement;
  /** drbdmeta's index argument. */
  index: string;
  metaBytes: number;
}

const FLAVOURS: Flavour[] = [
  { name: 'indexed [0]', placement: { kind: 'indexed', index: 0 }, index: '0', metaBytes: MD_INDEXED_SLOT_BYTES },
  { name: 'indexed [2]', placement: { kind: 'indexed', index: 2 }, index: '2', metaBytes: 3 * MD_INDEXED_SLOT_BYTES },
  { name: 'flexible', placement: { kind: 'flexExternal' }, index: 'flex-external', metaBytes: 8 * MiB },
];

function udrbdDump(target: MetaTarget): string {
  const io = new CaptureIo();
  dumpMd(target, io, { commandLine: 'test' });
  return io.stdout;
}

describe('external meta-data interop with drbdmeta', () => {
  let dir = '';
  beforeAll(() => requireDrbdmeta());
  afterEach(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    dir = '';
  });

  for (const f of FLAVOURS) {
    const setup = () => {
      dir = tmpDir();
      const data = sparseFile(dir, 'data.img', DATA_BYTES);
      writeRange(data, DATA_BYTES - MiB, Buffer.alloc(MiB, 0x5a)); // the last MiB is data, not meta-data
      const meta = sparseFile(dir, 'meta.img', f.metaBytes);
      const target: MetaTarget = { mdPath: meta, placement: f.placement, dataPath: data };
      return { data, meta, target, dataHash: hashRange(data, 0, DATA_BYTES) };
    };

    it(`${f.name}: drbdmeta create-md → udrbd reads it, dump-md equal, offsets as drbdmeta prints them`, () => {
      const { data, meta, target, dataHash } = setup();
      expect(drbdmetaAt(meta, f.index, 'create-md').code).toBe(0);
      const real = drbdmetaAt(meta, f.index, 'dump-md');
      expect(real.code).toBe(0);
      const mine = udrbdDump(target);
      expect(withoutFlagsLine(dumpBody(mine))).toBe(withoutFlagsLine(dumpBody(real.stdout)));
      const layout = computeLayout(f.metaBytes, { placement: f.placement });
      expect(real.stdout).toContain(`# md_offset ${layout.mdOffsetBytes}\n# al_offset ${layout.alOffsetBytes}\n# bm_offset ${layout.bmOffsetBytes}\n`);
      expect(real.stdout).toContain(`# md_size_sect ${layout.mdSizeSectors}\n`);
      const gi = new CaptureIo();
      getGi(target, gi);
      expect(gi.stdout).toBe(drbdmetaAt(meta, f.index, 'get-gi').stdout);
      expect(hashRange(data, 0, DATA_BYTES)).toBe(dataHash);
    });

    it(`${f.name}: udrbd create-md writes the bytes drbdmeta writes; drbdmeta reads it; data disk untouched`, async () => {
      const { data, meta, target, dataHash } = setup();
      const theirs = sparseFile(dir, 'theirs.img', f.metaBytes);
      const io = new CaptureIo();
      await createMd(target, io);
      expect(io.stdout).toContain('New drbd meta data block successfully created.');
      expect(drbdmetaAt(theirs, f.index, 'create-md').code).toBe(0);
      const layout = computeLayout(f.metaBytes, { placement: f.placement });
      // superblock + activity log + the first bitmap pages, byte for byte
      const len = 4096 + layout.alBytes + 4096;
      expect(readRange(meta, layout.mdOffsetBytes, len).equals(readRange(theirs, layout.mdOffsetBytes, len))).toBe(true);
      const real = drbdmetaAt(meta, f.index, 'dump-md');
      expect(real.code).toBe(0);
      expect(withoutFlagsLine(dumpBody(real.stdout))).toBe(withoutFlagsLine(dumpBody(udrbdDump(target))));
      expect(hashRange(data, 0, DATA_BYTES)).toBe(dataHash);
      // a second create-md finds it and asks, as drbdmeta does for external meta-data
      const again = new CaptureIo(false, false);
      await expect(createMd(target, again)).rejects.toMatchObject({ exitCode: 1 });
      expect(again.stderr).toContain('Valid meta data seems to be in place.');
      expect(again.stderr).toContain('Do you really want to overwrite?');
    });

    it(`${f.name}: an AL left unclean by udrbd is applied by drbdmeta apply-al to the bitmap udrbd recovery produces`, async () => {
      const { data, meta, target, dataHash } = setup();
      await createMd(target, new CaptureIo());
      const extentBits = (4 * MiB) / 4096;
      const touched = [0, 3, 17, 40, 63];
      const mdDisk = FileDisk.open(meta);
      const dataDisk = FileDisk.open(data);
      try {
        const md = MetaData.open(mdDisk, { placement: f.placement, dataDisk, alExtents: 67 });
        expect(md.dataSizeBytes).toBe(DATA_BYTES);
        md.attach();
        md.setFlags(MdFlag.primaryInd | MdFlag.consistent | MdFlag.wasUpToDate);
        md.writeSuperblock();
        for (const e of touched) {
          await md.activityLog!.beginWrite(e * 4 * MiB, 4096);
          md.activityLog!.endWrite(e * 4 * MiB, 4096);
        }
        md.close({ clean: false });
      } finally {
        mdDisk.closeSync();
        dataDisk.closeSync();
      }
      const theirs = `${meta}.drbdmeta`;
      copySparse(meta, theirs);
      expect(drbdmetaAt(theirs, f.index, 'apply-al').code).toBe(0);
      const io = new CaptureIo();
      applyAl(target, io);
      const layout = computeLayout(f.metaBytes, { placement: f.placement });
      const bmLen = Math.ceil(DATA_BYTES / 4096 / 8 / 4096) * 4096;
      expect(readRange(meta, layout.mdOffsetBytes, 4096).equals(readRange(theirs, layout.mdOffsetBytes, 4096))).toBe(true);
      expect(readRange(meta, layout.bmOffsetBytes, bmLen).equals(readRange(theirs, layout.bmOffsetBytes, bmLen))).toBe(true);
      const dump = drbdmetaAt(theirs, f.index, 'dump-md');
      expect(dump.code).toBe(0);
      expect(dump.stdout).toContain(`la-size-sect ${DATA_BYTES / 512};`);
      expect(parseDumpBitmap(dump.stdout).ranges).toEqual(normaliseRanges(touched.map((e) => ({ start: e * extentBits, end: (e + 1) * extentBits }))));
      expect(hashRange(data, 0, DATA_BYTES)).toBe(dataHash);
    });

    it(`${f.name}: wipe-md by either tool leaves meta-data the other finds gone`, async () => {
      const { meta, target } = setup();
      await createMd(target, new CaptureIo());
      expect(drbdmetaAt(meta, f.index, 'wipe-md').code).toBe(0);
      expect(() => udrbdDump(target)).toThrow(/No valid meta data found/);
      expect(drbdmetaAt(meta, f.index, 'create-md').code).toBe(0);
      const io = new CaptureIo();
      await wipeMd(target, io);
      expect(io.stdout).toContain('DRBD meta data block successfully wiped out.');
      const after = drbdmetaAt(meta, f.index, 'dump-md');
      expect(after.code).toBe(1);
      expect(after.stderr + after.stdout).toContain('No valid meta data found');
    });
  }

  it('two indexed slots of one meta device are independent: each resource sees its own meta-data', async () => {
    dir = tmpDir();
    const data = sparseFile(dir, 'data.img', 64 * MiB);
    const meta = sparseFile(dir, 'meta.img', 2 * MD_INDEXED_SLOT_BYTES);
    await createMd({ mdPath: meta, placement: { kind: 'indexed', index: 0 }, dataPath: data }, new CaptureIo());
    expect(drbdmetaAt(meta, '1', 'create-md').code).toBe(0);
    expect(drbdmetaAt(meta, '1', 'set-gi', '1234567890ABCDEF:::').code).toBe(0);
    const gi0 = new CaptureIo();
    getGi({ mdPath: meta, placement: { kind: 'indexed', index: 0 } }, gi0);
    expect(gi0.stdout.startsWith('0000000000000004:')).toBe(true);
    const gi1 = new CaptureIo();
    getGi({ mdPath: meta, placement: { kind: 'indexed', index: 1 } }, gi1);
    expect(gi1.stdout.startsWith('1234567890ABCDEF:')).toBe(true);
  });

  it('a meta device too small for its slot is refused, naming it (the kernel: "Meta device too small")', async () => {
    dir = tmpDir();
    const meta = sparseFile(dir, 'meta.img', 200 * MiB);
    await expect(createMd({ mdPath: meta, placement: { kind: 'indexed', index: 1 } }, new CaptureIo())).rejects.toThrow(
      /meta\.img \(209715200 bytes\) is too small for meta-data index 1: slot 1 needs 256 MiB on the meta device \(Meta device too small\)/,
    );
    const disk = FileDisk.open(meta, { readOnly: true });
    try {
      expect(readMetaSync(disk, { kind: 'indexed', index: 1 })).toMatchObject({ ok: false, reason: expect.stringContaining('Meta device too small') });
    } finally {
      disk.closeSync();
    }
  });

  it('flexible meta-data tracks at most what its bitmap covers: a 96 KiB meta device gives 60 KiB of bitmap = 1920 MiB of data', async () => {
    dir = tmpDir();
    const data = sparseFile(dir, 'data.img', 2048 * MiB);
    const meta = sparseFile(dir, 'meta.img', 96 * 1024);
    await createMd({ mdPath: meta, placement: { kind: 'flexExternal' }, dataPath: data }, new CaptureIo());
    const mdDisk = FileDisk.open(meta);
    const dataDisk = FileDisk.open(data);
    try {
      const md = MetaData.open(mdDisk, { placement: { kind: 'flexExternal' }, dataDisk });
      expect(md.layout.bmAreaBytes).toBe(60 * 1024);
      expect(md.dataSizeBytes).toBe(1920 * MiB);
    } finally {
      mdDisk.closeSync();
      dataDisk.closeSync();
    }
  });
});

describe('external meta-data write ordering (recording disks)', () => {
  let dir = '';
  afterEach(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    dir = '';
  });

  it('AL transaction (FUA, meta device) before the data write; data disk flushed before bitmap pages, at eviction and at bitmap write-out', async () => {
    dir = tmpDir();
    const data = sparseFile(dir, 'data.img', 512 * MiB);
    const meta = sparseFile(dir, 'meta.img', 4 * MiB);
    const placement: MetaPlacement = { kind: 'flexExternal' };
    await createMd({ mdPath: meta, placement, dataPath: data }, new CaptureIo());
    const mdDisk = FileDisk.open(meta);
    const dataDisk = FileDisk.open(data);
    const events: string[] = [];
    try {
      const md = MetaData.open(mdDisk, { placement, dataDisk, alExtents: 67 });
      md.attach();
      recordDiskOps(mdDisk, 'md', events, md.layout);
      recordDiskOps(dataDisk, 'data', events, md.layout);
      const al = md.activityLog!;
      // A cold extent: its transaction reaches the meta device (FUA) before the write is allowed.
      await al.beginWrite(0, 4096);
      expect(events).toEqual(['md.write(al,fua)']);
      await dataDisk.write(Buffer.alloc(4096, 1), 0);
      al.endWrite(0, 4096);
      // A hot extent costs nothing on the meta device.
      events.length = 0;
      expect(al.beginWrite(8192, 4096)).toBeUndefined();
      al.endWrite(8192, 4096);
      expect(events).toEqual([]);
      // Fill the 67 slots, then one more: the evicted extent's bitmap page follows a data flush.
      for (let e = 1; e < 67; e++) {
        await al.beginWrite(e * 4 * MiB, 4096);
        al.endWrite(e * 4 * MiB, 4096);
      }
      // Extent 1 (least recently used) has bits a resync set and then cleared after writing the blocks.
      md.bitmap.setRange(1024, 1032);
      md.bitmap.clearRange(1024, 1028);
      events.length = 0;
      await al.beginWrite(100 * 4 * MiB, 4096);
      al.endWrite(100 * 4 * MiB, 4096);
      expect(events).toEqual(['data.flush', 'md.write(bm,fua)', 'md.write(al,fua)']);
      // Bitmap write-out: data first, then the pages, then the meta device flush.
      md.bitmap.setRange(1000, 1001);
      events.length = 0;
      await md.flushBitmap();
      expect(events).toEqual(['data.flush', 'md.write(bm)', 'md.flush']);
      md.close({ clean: true });
    } finally {
      mdDisk.closeSync();
      dataDisk.closeSync();
    }
  });
});
