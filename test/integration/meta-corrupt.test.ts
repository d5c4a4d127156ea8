import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { FileDisk } from '../../src/disk/file-disk.js';
import { MetaData } from '../../src/meta/metadata.js';
import { applyAl, createMd, dumpMd } from '../../src/meta/tool.js';
import { computeLayout, MD_MAGIC_09 } from '../../src/meta/superblock.js';
import { alBlockIndex, AL_BLOCK_BYTES } from '../../src/meta/activity-log.js';
import { MdFlag } from '../../src/meta/types.js';
import { UdrbdError } from '../../src/util/errors.js';
import { CaptureIo, copySparse, drbdmeta, hashRange, readRange, requireDrbdmeta, sparseFile, tmpDir, writeRange } from '../helpers/meta-helpers.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const layout = computeLayout(SIZE);
/** drbdmeta's no-TTY line first, then how to force (issue 3: "it refuses with a message saying how to force"). */
const NO_TTY_REFUSAL =
  'stdin not a TTY, not waiting for confirmation\n' +
  'Operation refused. Run with --force to overwrite without confirmation (udrbdadm create-md --force <resource>).\n';

async function preparedDisk(dir: string, name = 'c.img'): Promise<{ file: string; dataHash: string }> {
  const file = sparseFile(dir, name, SIZE);
  await createMd(file, new CaptureIo());
  // Recognisable data at both ends of the data area (no file-system signature).
  writeRange(file, 4 * MiB, crypto.randomBytes(MiB));
  writeRange(file, layout.dataSizeBytes - MiB, crypto.randomBytes(MiB));
  return { file, dataHash: hashRange(file, 0, layout.dataSizeBytes) };
}

function udrbdDumpError(file: string): UdrbdError {
  try {
    dumpMd(file, new CaptureIo(), { commandLine: 'test' });
  } catch (err) {
    return err as UdrbdError;
  }
  throw new Error('dump-md unexpectedly succeeded');
}

function openError(file: string): UdrbdError {
  const disk = FileDisk.open(file);
  try {
    MetaData.open(disk);
  } catch (err) {
    return err as UdrbdError;
  } finally {
    disk.closeSync();
  }
  throw new Error('MetaData.open unexpectedly succeeded');
}

describe('meta: corrupted inputs', () => {
  let dir = '';
  beforeAll(() => requireDrbdmeta());
  afterEach(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    dir = '';
  });

  it('a torn superblock is refused with an error naming the device, as drbdmeta does, and the data area is untouched', async () => {
    dir = tmpDir();
    const { file, dataHash } = await preparedDisk(dir);
    writeRange(file, layout.mdOffsetBytes + 0x40, crypto.randomBytes(32));
    const err = udrbdDumpError(file);
    expect(err.exitCode).toBe(1);
    expect(err.message).toContain(file);
    expect(err.message).toContain('No valid meta data found');
    expect(openError(file).message).toContain(file);
    expect(drbdmeta(file, 'dump-md').code).toBe(1);
    expect(hashRange(file, 0, layout.dataSizeBytes)).toBe(dataHash);
  });

  it('a wrong magic (v09) is refused like drbdmeta v08 refuses it', async () => {
    dir = tmpDir();
    const { file, dataHash } = await preparedDisk(dir);
    const magic = Buffer.alloc(4);
    magic.writeUInt32BE(MD_MAGIC_09);
    writeRange(file, layout.mdOffsetBytes + 0x3c, magic);
    const err = udrbdDumpError(file);
    expect(err.exitCode).toBe(1);
    expect(err.message).toContain('v08 Magic number not found (found 0x8374026D)');
    expect(drbdmeta(file, 'dump-md').code).toBe(1);
    expect(hashRange(file, 0, layout.dataSizeBytes)).toBe(dataHash);
  });

  it('a truncated device no longer has meta-data where it must be: refused, nothing written', async () => {
    dir = tmpDir();
    const { file } = await preparedDisk(dir);
    fs.truncateSync(file, SIZE - MiB);
    const smaller = computeLayout(SIZE - MiB);
    const before = hashRange(file, 0, smaller.dataSizeBytes);
    const err = udrbdDumpError(file);
    expect(err.exitCode).toBe(1);
    expect(err.message).toContain('No valid meta data found');
    expect(openError(file).exitCode).toBe(1);
    expect(drbdmeta(file, 'dump-md').code).toBe(1);
    expect(hashRange(file, 0, smaller.dataSizeBytes)).toBe(before);
    expect(fs.statSync(file).size).toBe(SIZE - MiB);
  });

  it('an AL transaction with a bad crc is skipped by udrbd recovery exactly as by drbdmeta apply-al', async () => {
    dir = tmpDir();
    const { file, dataHash } = await preparedDisk(dir);
    const disk = FileDisk.open(file);
    try {
      const md = MetaData.open(disk, { alExtents: 67 });
      md.attach();
      md.setFlags(MdFlag.primaryInd | MdFlag.consistent);
      md.writeSuperblock();
      for (let e = 0; e < 5; e++) {
        await md.activityLog!.beginWrite(e * 4 * MiB, 4096);
        md.activityLog!.endWrite(e * 4 * MiB, 4096);
      }
      md.close({ clean: false });
    } finally {
      disk.closeSync();
    }
    // Corrupt the newest transaction (tr 4): its extent 4 must not be applied.
    const newest = layout.alOffsetBytes + alBlockIndex(4, 1, 8) * AL_BLOCK_BYTES;
    const block = readRange(file, newest, AL_BLOCK_BYTES);
    block[3000]! ^= 0xff;
    writeRange(file, newest, block);
    const theirs = `${file}.drbdmeta`;
    copySparse(file, theirs);
    const real = drbdmeta(theirs, 'apply-al');
    expect(real.code).toBe(0);
    expect(real.stderr).toContain('1 corrupt AL transactions found');
    const io = new CaptureIo();
    applyAl(file, io);
    expect(io.stderr).toContain('1 corrupt AL transactions found');
    expect(io.stderr).toContain('Marked additional 16 MB as out-of-sync based on AL.');
    expect(real.stderr).toContain('Marked additional 16 MB as out-of-sync based on AL.');
    const md = computeLayout(SIZE);
    const mdLen = SIZE - md.bmOffsetBytes;
    expect(readRange(file, md.bmOffsetBytes, mdLen).equals(readRange(theirs, md.bmOffsetBytes, mdLen))).toBe(true);
    expect(hashRange(file, 0, layout.dataSizeBytes)).toBe(dataHash);
  });
});

describe('meta: create-md refusals and prompts', () => {
  let dir = '';
  afterEach(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    dir = '';
  });

  it('refuses with exit 40 when an XFS file system would be truncated, even with --force, like drbdmeta', async () => {
    requireDrbdmeta();
    if (!fs.existsSync('/usr/sbin/mkfs.xfs') && !fs.existsSync('/sbin/mkfs.xfs')) throw new Error('mkfs.xfs missing: install xfsprogs');
    dir = tmpDir();
    const file = sparseFile(dir, 'x.img', 512 * MiB);
    execFileSync('mkfs.xfs', ['-q', '-f', file]);
    const hash = hashRange(file, 0, 512 * MiB);
    const io = new CaptureIo(true, false);
    await expect(createMd(file, io)).rejects.toMatchObject({ exitCode: 40 });
    expect(io.stdout).toContain('Found xfs filesystem');
    expect(io.stdout).toContain('Operation refused.');
    const real = drbdmeta(file, 'create-md');
    expect(real.code).toBe(40);
    expect(io.stdout).toBe(real.stdout);
    expect(hashRange(file, 0, 512 * MiB)).toBe(hash);
  });

  it('without a terminal it prints how it would ask and cancels with exit 1 on existing data', async () => {
    dir = tmpDir();
    const file = sparseFile(dir, 'p.img', SIZE);
    writeRange(file, 0, Buffer.from('not a file system, but not zero'));
    const io = new CaptureIo(false, false);
    await expect(createMd(file, io)).rejects.toMatchObject({ exitCode: 1 });
    expect(io.stdout).toContain('Found some data');
    expect(io.stdout).toContain(' ==> This might destroy existing data! <==');
    expect(io.stderr).toContain(NO_TTY_REFUSAL);
    expect(io.stdout).toContain('Operation canceled.');
    const disk = FileDisk.open(file);
    try {
      expect(() => MetaData.open(disk)).toThrow(/No valid meta data found/);
    } finally {
      disk.closeSync();
    }
  });

  it('without a terminal it refuses to overwrite existing v08 meta-data, says how to force, and writes nothing', async () => {
    dir = tmpDir();
    const file = sparseFile(dir, 'e.img', SIZE);
    await createMd(file, new CaptureIo());
    // Make the existing meta-data distinguishable from what a new create-md would write.
    const disk = FileDisk.open(file);
    try {
      const md = MetaData.open(disk);
      md.attach();
      md.setUuids({ current: 0x1111222233334444n, bitmap: 0n, historyStart: 0n, historyEnd: 0n });
      md.bitmap.setRange(0, 4096);
      await md.flushBitmap();
      md.close({ clean: true });
    } finally {
      disk.closeSync();
    }
    writeRange(file, 4 * MiB, crypto.randomBytes(MiB));
    const before = hashRange(file, 0, SIZE);
    const io = new CaptureIo(false, false);
    await expect(createMd(file, io)).rejects.toMatchObject({ exitCode: 1 });
    expect(io.stderr).toContain(`already in place on ${file} at byte offset ${layout.mdOffsetBytes}`);
    expect(io.stderr).toContain(NO_TTY_REFUSAL);
    expect(io.stdout).toContain('Operation cancelled.');
    expect(io.stdout).not.toContain('initializing activity log');
    expect(hashRange(file, 0, SIZE)).toBe(before);
    expect(fs.statSync(file).size).toBe(SIZE);
  });

  it('on a terminal only the exact word yes overwrites existing meta-data', async () => {
    dir = tmpDir();
    const file = sparseFile(dir, 'y.img', SIZE);
    await createMd(file, new CaptureIo());
    const no = new CaptureIo(false, true, ['y']);
    await expect(createMd(file, no)).rejects.toMatchObject({ exitCode: 1 });
    expect(no.stderr).toContain("[need to type 'yes' to confirm] ");
    expect(no.stdout).toContain('Operation cancelled.');
    const yes = new CaptureIo(false, true, ['yes']);
    await createMd(file, yes);
    expect(yes.stdout).toContain('New drbd meta data block successfully created.');
  });
});
