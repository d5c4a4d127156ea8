/**
 * MetaData.grow on a real file, judged by the real drbdmeta: after the
 * backing file grew, the internal meta-data moves to its new end with the
 * bitmap's bits kept and the activity log's hot extents named in the new
 * ring — so a crash right after the move (no clean close) still marks every
 * write that was in flight when drbdmeta apply-al runs. A crash before the
 * new superblock's 4 KiB write leaves the old meta-data whole: udrbd says
 * where it is, and with the disk shrunk back drbdmeta and udrbd read it
 * with every bit and hot extent.
 */
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { FileDisk } from '../../src/disk/file-disk.js';
import { MetaData } from '../../src/meta/metadata.js';
import { computeLayout } from '../../src/meta/superblock.js';
import { MdFlag } from '../../src/meta/types.js';
import { drbdmeta, requireDrbdmeta, sparseFile, tmpDir } from '../helpers/meta-helpers.js';

const MiB = 1024 * 1024;
const dirs: string[] = [];

afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

describe('MetaData.grow (internal meta-data)', () => {
  it('moves superblock, AL ring and bitmap to the new end; drbdmeta apply-al + dump-md after a crash show every bit and every hot extent', async () => {
    requireDrbdmeta();
    const dir = tmpDir();
    dirs.push(dir);
    const file = sparseFile(dir, 'rz.img', 64 * MiB);
    expect(drbdmeta(file, 'create-md').code).toBe(0);
    const disk = FileDisk.open(file);
    try {
      const md = MetaData.open(disk);
      md.attach();
      md.setFlags(md.flags | MdFlag.primaryInd | MdFlag.consistent);
      md.writeSuperblock();
      const al = md.activityLog!;
      // two writes in flight on extents 3 and 9 (4 MiB each), and a few out-of-sync bits elsewhere
      await al.beginWrite(3 * 4 * MiB, 4096);
      await al.beginWrite(9 * 4 * MiB, 4096);
      md.bitmap.setRange(100, 110);
      await md.flushBitmap();

      fs.truncateSync(file, 96 * MiB + 8192);
      disk.refreshSizeSync();
      const plan = md.growthPlan();
      const layout = computeLayout(96 * MiB + 8192);
      expect(plan).toMatchObject({ mdMoved: true, grows: true, dataSizeBytes: layout.dataSizeBytes });
      await md.grow(plan);
      expect(md.layout.mdOffsetBytes).toBe(layout.mdOffsetBytes);
      expect(md.dataSizeBytes).toBe(layout.dataSizeBytes);
      md.setLaSizeSectors(layout.dataSizeBytes / 512);
      md.writeSuperblock();
      md.close({ clean: false }); // a crash: the superblock stays unclean
    } finally {
      disk.closeSync();
    }
    const apply = drbdmeta(file, 'apply-al');
    expect(apply.code, apply.stderr).toBe(0);
    const dump = drbdmeta(file, 'dump-md');
    expect(dump.code, dump.stderr).toBe(0);
    const layout = computeLayout(96 * MiB + 8192);
    expect(dump.stdout).toContain(`# md_offset ${layout.mdOffsetBytes}`);
    expect(dump.stdout).toContain(`# bm_offset ${layout.bmOffsetBytes}`);
    expect(dump.stdout).toContain(`la-size-sect ${layout.dataSizeBytes / 512};`);
    // 10 bits + 2 extents × 1024 bits from the replayed AL
    expect(dump.stdout).toContain(`# bits-set ${10 + 2 * 1024};`);
  });

  it('a crash before the new superblock is written leaves the old meta-data whole: shrunk back, drbdmeta and udrbd read every bit', async () => {
    requireDrbdmeta();
    const dir = tmpDir();
    dirs.push(dir);
    const oldBytes = 64 * MiB;
    const newBytes = 96 * MiB + 8192;
    const file = sparseFile(dir, 'rz.img', oldBytes);
    expect(drbdmeta(file, 'create-md').code).toBe(0);
    const oldLayout = computeLayout(oldBytes);
    const newLayout = computeLayout(newBytes);
    const disk = FileDisk.open(file);
    let uuidsBefore: unknown;
    try {
      const md = MetaData.open(disk);
      md.attach();
      md.setFlags(md.flags | MdFlag.primaryInd | MdFlag.consistent);
      md.writeSuperblock();
      uuidsBefore = md.uuids;
      await md.activityLog!.beginWrite(3 * 4 * MiB, 4096);
      await md.activityLog!.beginWrite(9 * 4 * MiB, 4096);
      md.bitmap.setRange(100, 110);
      await md.flushBitmap();

      fs.truncateSync(file, newBytes);
      disk.refreshSizeSync();
      // The process dies at the superblock write: it never reaches the disk, nothing after it runs.
      const writeSync = disk.writeSync.bind(disk);
      let crashed = false;
      disk.writeSync = (buffer: Buffer, offsetBytes: number): void => {
        if (offsetBytes === newLayout.mdOffsetBytes) {
          crashed = true;
          throw new Error('power lost');
        }
        writeSync(buffer, offsetBytes);
      };
      await expect(md.grow(md.growthPlan())).rejects.toThrow('power lost');
      expect(crashed).toBe(true);
    } finally {
      disk.closeSync();
    }

    // Grown: no superblock at the end, and udrbd names where the old one is instead of suggesting create-md.
    const grown = FileDisk.open(file);
    try {
      expect(() => MetaData.open(grown)).toThrow(`v08 meta-data is at byte offset ${oldLayout.mdOffsetBytes}`);
      expect(() => MetaData.open(grown)).toThrow(`Do not run create-md: shrink the disk back (truncate -s ${oldBytes} ${file})`);
    } finally {
      grown.closeSync();
    }
    // drbdmeta finds it there too ("dumping meta data from the last known position")
    const grownDump = drbdmeta(file, 'dump-md');
    expect(grownDump.code, grownDump.stderr).toBe(0);
    expect(grownDump.stdout).toContain('Device seems to have been resized!');
    expect(grownDump.stdout).toContain(`la-size-sect ${oldLayout.dataSizeBytes / 512};`);

    fs.truncateSync(file, oldBytes);
    const apply = drbdmeta(file, 'apply-al');
    expect(apply.code, apply.stderr).toBe(0);
    const dump = drbdmeta(file, 'dump-md');
    expect(dump.code, dump.stderr).toBe(0);
    expect(dump.stdout).toContain(`# md_offset ${oldLayout.mdOffsetBytes}`);
    expect(dump.stdout).toContain(`la-size-sect ${oldLayout.dataSizeBytes / 512};`);
    expect(dump.stdout).toContain(`# bits-set ${10 + 2 * 1024};`);
    const shrunk = FileDisk.open(file);
    try {
      const md = MetaData.open(shrunk);
      expect(md.uuids).toEqual(uuidsBefore);
      md.attach();
      expect(md.bitmap.countSet()).toBe(10 + 2 * 1024);
      md.close({ clean: true });
    } finally {
      shrunk.closeSync();
    }
  });
});
