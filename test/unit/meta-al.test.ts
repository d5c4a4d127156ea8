import { describe, expect, it } from 'vitest';
import { crc32c } from '../../src/meta/crc32c.js';
import {
  ActivityLog,
  AL_BLOCK_BYTES,
  alBlockIndex,
  decodeAlTransaction,
  encodeAlTransaction,
  initializedAlArea,
  initializedAlBlock,
  replayActivityLog,
  AL_TR_UPDATE,
} from '../../src/meta/activity-log.js';
import { Bitmap } from '../../src/meta/bitmap.js';
import { MemoryDisk } from '../../src/disk/memory-disk.js';
import { AL_EXTENT_BYTES } from '../../src/meta/types.js';

describe('meta/crc32c', () => {
  it('is CRC32C with seed 0 and no final xor: the fresh AL block sums to 0x709CC651 (drbd84.md §1.8)', () => {
    const block = Buffer.alloc(4096);
    block.writeUInt32BE(0x69cb65a2, 0);
    block.writeUInt16BE(0xffff, 12);
    expect(crc32c(block)).toBe(0x709cc651);
    expect(initializedAlBlock().readUInt32BE(8)).toBe(0x709cc651);
  });
  it('matches the standard check value when used as iSCSI CRC32C (init ~0, final xor)', () => {
    expect((crc32c(Buffer.from('123456789'), 0xffffffff) ^ 0xffffffff) >>> 0).toBe(0xe3069283);
  });
});

describe('meta/activity-log codec and replay', () => {
  it('round-trips a transaction and rejects a flipped byte by crc', () => {
    const buf = encodeAlTransaction({
      trNumber: 7,
      type: AL_TR_UPDATE,
      updates: [{ slot: 3, extent: 42 }],
      contextSize: 1237,
      contextStartSlot: 919,
      context: [1, 2, 3],
    });
    const d = decodeAlTransaction(buf);
    expect(d.valid).toBe(true);
    expect(d.tr.trNumber).toBe(7);
    expect(d.tr.updates).toEqual([{ slot: 3, extent: 42 }]);
    expect(d.tr.context[2]).toBe(3);
    expect(d.tr.context[3]).toBe(0xffffffff);
    buf[2000]! ^= 1;
    const bad = decodeAlTransaction(buf);
    expect(bad.magicOk).toBe(true);
    expect(bad.crcOk).toBe(false);
  });

  it('places transactions across stripes like the kernel', () => {
    expect([0, 1, 2, 3, 4].map((t) => alBlockIndex(t, 2, 4))).toEqual([0, 4, 1, 5, 2]);
    expect(alBlockIndex(9, 1, 8)).toBe(1);
  });

  it('replays a freshly initialised ring as clean and a zeroed ring as no data', () => {
    expect(replayActivityLog(initializedAlArea(1, 8), 1, 8).status).toBe('clean');
    const zero = replayActivityLog(Buffer.alloc(8 * AL_BLOCK_BYTES), 1, 8);
    expect(zero.status).toBe('nodata');
    expect(zero.messages[0]).toBe('No usable activity log found. Do you need to create-md?');
  });
});

describe('meta/activity-log runtime', () => {
  const alOffset = 1024 * 1024;
  const bmOffset = 0;
  function setup(alExtents: number) {
    const disk = new MemoryDisk(2 * 1024 * 1024);
    initializedAlArea(1, 8).copy(disk.data, alOffset);
    const bitmap = new Bitmap(64 * 1024);
    const al = new ActivityLog(disk, bitmap, { alOffsetBytes: alOffset, alStripes: 1, alStripeSize4k: 8, bmOffsetBytes: bmOffset, alExtents });
    return { disk, bitmap, al };
  }
  const area = (disk: MemoryDisk) => disk.data.subarray(alOffset, alOffset + 8 * AL_BLOCK_BYTES);

  it('commits a transaction before a write to a cold extent and none for a hot one', async () => {
    const { disk, al } = setup(67);
    const p = al.beginWrite(5 * AL_EXTENT_BYTES + 100, 4096);
    expect(p).toBeInstanceOf(Promise);
    await p;
    expect(al.transactionCount).toBe(1);
    expect(disk.flushCount).toBeGreaterThanOrEqual(0);
    al.endWrite(5 * AL_EXTENT_BYTES + 100, 4096);
    expect(al.beginWrite(5 * AL_EXTENT_BYTES, 8192)).toBeUndefined();
    al.endWrite(5 * AL_EXTENT_BYTES, 8192);
    expect(al.transactionCount).toBe(1);
    expect(replayActivityLog(area(disk), 1, 8).extents).toEqual([5]);
  });

  it('evicts the least recently used extent, writing its bitmap page first, and replay sees exactly the hot set', async () => {
    const { disk, bitmap, al } = setup(67);
    for (let e = 0; e < 67; e++) {
      await al.beginWrite(e * AL_EXTENT_BYTES, 4096);
      al.endWrite(e * AL_EXTENT_BYTES, 4096);
    }
    // Touch extent 0 so extent 1 is now the least recently used.
    expect(al.beginWrite(0, 4096)).toBeUndefined();
    al.endWrite(0, 4096);
    bitmap.setRange(1 * 1024, 1 * 1024 + 3); // bits of extent 1, page 0
    expect(bitmap.isPageDirty(0)).toBe(true);
    await al.beginWrite(100 * AL_EXTENT_BYTES, 4096);
    al.endWrite(100 * AL_EXTENT_BYTES, 4096);
    expect(al.isHot(1)).toBe(false);
    expect(al.isHot(100)).toBe(true);
    expect(bitmap.isPageDirty(0)).toBe(false);
    expect(disk.data[bmOffset + 128]).toBe(0x07);
    const replay = replayActivityLog(area(disk), 1, 8);
    expect(replay.status).toBe('updates');
    expect(replay.extents).toEqual(al.hotExtents());
  });

  it('never evicts an extent with a write in flight', async () => {
    const { al } = setup(1);
    await al.beginWrite(0, 4096);
    let done = false;
    const second = Promise.resolve(al.beginWrite(AL_EXTENT_BYTES, 4096)).then(() => {
      done = true;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false);
    al.endWrite(0, 4096);
    await second;
    expect(done).toBe(true);
    expect(al.hotExtents()).toEqual([1]);
  });
});
