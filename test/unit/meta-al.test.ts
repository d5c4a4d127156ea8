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
import type { BlockDevice, BlockDeviceCapabilities, WriteFlags } from '../../src/disk/block-device.js';
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

/**
 * A BlockDevice that models stable storage separately from the volatile
 * (cached) contents, per the BlockDevice contract: a write is durable when it
 * completes if it carried { fua: true } and the device declares canFua;
 * otherwise it becomes durable only when a later flush() completes. Every
 * operation is recorded in order.
 */
class DurabilityDisk implements BlockDevice {
  readonly capabilities: BlockDeviceCapabilities;
  readonly volatile: Buffer;
  readonly durable: Buffer;
  readonly ops: { op: 'write' | 'flush'; offsetBytes?: number; lengthBytes?: number; fua?: boolean }[] = [];
  /** Called when a write is issued, before it lands (lets a test inspect stable storage at that moment). */
  onWrite: (offsetBytes: number, lengthBytes: number) => void = () => {};
  private pending: { offsetBytes: number; lengthBytes: number }[] = [];

  constructor(readonly sizeBytes: number, canFua: boolean) {
    this.capabilities = { canFlush: true, canFua, canTrim: false, maxRequestBytes: 1024 * 1024 };
    this.volatile = Buffer.alloc(sizeBytes);
    this.durable = Buffer.alloc(sizeBytes);
  }

  async read(buffer: Buffer, offsetBytes: number): Promise<void> {
    this.volatile.copy(buffer, 0, offsetBytes, offsetBytes + buffer.length);
  }

  async write(buffer: Buffer, offsetBytes: number, flags?: WriteFlags): Promise<void> {
    this.onWrite(offsetBytes, buffer.length);
    const fua = flags?.fua === true;
    this.ops.push({ op: 'write', offsetBytes, lengthBytes: buffer.length, fua });
    await new Promise((resolve) => setImmediate(resolve)); // completes on a later turn, like real I/O
    buffer.copy(this.volatile, offsetBytes);
    if (fua && this.capabilities.canFua) buffer.copy(this.durable, offsetBytes);
    else this.pending.push({ offsetBytes, lengthBytes: buffer.length });
  }

  async flush(): Promise<void> {
    this.ops.push({ op: 'flush' });
    const done = this.pending;
    this.pending = [];
    await new Promise((resolve) => setImmediate(resolve));
    for (const r of done) this.volatile.copy(this.durable, r.offsetBytes, r.offsetBytes, r.offsetBytes + r.lengthBytes);
  }

  async trim(): Promise<void> {
    throw new Error('trim not supported');
  }

  async close(): Promise<void> {}
}

describe('meta/activity-log durability (BlockDevice contract: FUA, or write + flush)', () => {
  const alOffset = 1024 * 1024;
  const bmOffset = 0;
  function setup(canFua: boolean, alExtents = 67) {
    const disk = new DurabilityDisk(2 * 1024 * 1024, canFua);
    initializedAlArea(1, 8).copy(disk.volatile, alOffset);
    initializedAlArea(1, 8).copy(disk.durable, alOffset);
    const bitmap = new Bitmap(64 * 1024);
    const al = new ActivityLog(disk, bitmap, { alOffsetBytes: alOffset, alStripes: 1, alStripeSize4k: 8, bmOffsetBytes: bmOffset, alExtents });
    return { disk, bitmap, al };
  }
  const durableArea = (disk: DurabilityDisk) => disk.durable.subarray(alOffset, alOffset + 8 * AL_BLOCK_BYTES);

  for (const canFua of [true, false]) {
    it(`the AL transaction for a cold extent is on stable storage before beginWrite resolves (canFua ${canFua})`, async () => {
      const { disk, al } = setup(canFua);
      const extent = 5;
      expect(replayActivityLog(durableArea(disk), 1, 8).extents).toEqual([]);
      // Read stable storage in the resolution itself: nothing may still be on its way to the disk.
      const durableAtResolve = await Promise.resolve(al.beginWrite(extent * AL_EXTENT_BYTES + 100, 4096)).then(() =>
        replayActivityLog(durableArea(disk), 1, 8).extents,
      );
      expect(durableAtResolve).toEqual([extent]);
      const alWrites = disk.ops.filter((o) => o.op === 'write' && o.offsetBytes! >= alOffset);
      expect(alWrites.length).toBe(1);
      if (!canFua) expect(disk.ops[disk.ops.length - 1]!.op).toBe('flush');
      al.endWrite(extent * AL_EXTENT_BYTES + 100, 4096);
    });

    it(`a bitmap page an eviction writes back is on stable storage before the AL transaction that forgets its extent is issued (canFua ${canFua})`, async () => {
      const { disk, bitmap, al } = setup(canFua, 2);
      for (const e of [0, 1]) {
        await al.beginWrite(e * AL_EXTENT_BYTES, 4096);
        al.endWrite(e * AL_EXTENT_BYTES, 4096);
      }
      bitmap.setRange(0, 3); // out-of-sync bits of extent 0 (the LRU one), page 0
      let bitmapByteAtAlWrite = -1;
      disk.onWrite = (offsetBytes) => {
        if (offsetBytes >= alOffset) bitmapByteAtAlWrite = disk.durable[bmOffset]!;
      };
      await al.beginWrite(9 * AL_EXTENT_BYTES, 4096);
      expect(al.isHot(0)).toBe(false);
      expect(bitmapByteAtAlWrite).toBe(0x07);
      expect(replayActivityLog(durableArea(disk), 1, 8).extents).toEqual([1, 9]);
      al.endWrite(9 * AL_EXTENT_BYTES, 4096);
    });
  }
});
