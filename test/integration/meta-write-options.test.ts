/**
 * md-flushes and al-updates on real files, internal meta-data, seen through
 * recorded disk operations: md-flushes yes writes AL transactions and evicted
 * bitmap pages FUA and flushes bitmap write-out; no writes them plain, in the
 * same order, and does not flush superblock writes while attached. al-updates
 * no writes no AL transaction at all and records MDF_AL_DISABLED in the
 * superblock (cleared again by an attach with yes), which the real drbdmeta
 * reads back.
 */
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { FileDisk } from '../../src/disk/file-disk.js';
import { MetaData } from '../../src/meta/metadata.js';
import { createMd } from '../../src/meta/tool.js';
import { MdFlag } from '../../src/meta/types.js';
import { CaptureIo, readRange, recordDiskOps, sparseFile, tmpDir } from '../helpers/meta-helpers.js';

const MiB = 1024 * 1024;
const SIZE = 512 * MiB;

describe('md-flushes and al-updates', () => {
  let dir = '';
  afterEach(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    dir = '';
  });

  /** Attaches, touches 68 extents through 67 slots (one eviction), writes a bitmap bit out; returns the recorded ops. */
  async function run(options: { mdFlushes?: boolean; alUpdates?: boolean }): Promise<{ events: string[]; transactions: number; file: string }> {
    dir = tmpDir();
    const file = sparseFile(dir, 'disk.img', SIZE);
    await createMd(file, new CaptureIo());
    const disk = FileDisk.open(file);
    const events: string[] = [];
    let transactions = 0;
    try {
      const md = MetaData.open(disk, { alExtents: 67, ...options });
      md.attach();
      recordDiskOps(disk, 'md', events, md.layout);
      const al = md.activityLog!;
      md.bitmap.setRange(0, 1); // extent 0 has a dirty bitmap page when it is evicted
      for (let e = 0; e < 68; e++) {
        await al.beginWrite(e * 4 * MiB, 4096);
        al.endWrite(e * 4 * MiB, 4096);
      }
      md.bitmap.setRange(5000, 5001);
      await md.flushBitmap();
      transactions = al.transactionCount;
      md.setFlags(md.flags | MdFlag.consistent);
      md.writeSuperblock(); // while attached
      events.push('--');
      md.close({ clean: false });
    } finally {
      disk.closeSync();
    }
    return { events, transactions, file };
  }

  it('md-flushes yes (default): AL transactions and the evicted bitmap page FUA, bitmap write-out flushed', async () => {
    const { events, transactions } = await run({});
    expect(transactions).toBe(68);
    expect(events.filter((e) => e === 'md.write(al,fua)')).toHaveLength(68);
    expect(events).not.toContain('md.write(al)');
    expect(events).toContain('md.write(bm,fua)');
    const mark = events.indexOf('--');
    expect(events.slice(mark - 4, mark)).toEqual(['md.write(bm)', 'md.flush', 'md.writeSync', 'md.flushSync']);
  });

  it('md-flushes no: the same writes in the same order, none FUA, no flush', async () => {
    const { events, transactions } = await run({ mdFlushes: false });
    expect(transactions).toBe(68);
    expect(events.filter((e) => e === 'md.write(al)')).toHaveLength(68);
    expect(events.some((e) => e.includes('fua') || e === 'md.flush' || e === 'md.flushSync')).toBe(false);
    const mark = events.indexOf('--');
    expect(events.slice(mark - 2, mark)).toEqual(['md.write(bm)', 'md.writeSync']);
    // the evicted extent's page still precedes the transaction that forgets it
    const page = events.indexOf('md.write(bm)');
    expect(page).toBeGreaterThan(0);
    expect(events[page + 1]).toBe('md.write(al)');
  });

  it('al-updates no: no AL transaction, MDF_AL_DISABLED on disk; an attach with al-updates yes clears it', async () => {
    const { events, transactions, file } = await run({ alUpdates: false });
    expect(transactions).toBe(0);
    expect(events.some((e) => e.startsWith('md.write(al'))).toBe(false);
    const flagsAt = (): number => readRange(file, SIZE - 4096 + 0x38, 4).readUInt32BE(0);
    expect(flagsAt() & MdFlag.alDisabled).toBe(MdFlag.alDisabled);
    const disk = FileDisk.open(file);
    try {
      const md = MetaData.open(disk);
      md.attach();
      md.close({ clean: true });
    } finally {
      disk.closeSync();
    }
    expect(flagsAt() & MdFlag.alDisabled).toBe(0);
  });
});
