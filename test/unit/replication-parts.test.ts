import { describe, it, expect } from 'vitest';
import { Bitmap } from '../../src/meta/bitmap.js';
import { encodeBitmapChunk, mergeBitmapChunk } from '../../src/replication/bitmap-exchange.js';
import { BlockIdAllocator, BlockIdTag, blockIdTag } from '../../src/replication/block-id.js';
import { blockDigest, crc32c } from '../../src/util/digest.js';
import { RangeLock } from '../../src/replication/range-lock.js';
import { syncPerMille } from '../../src/replication/resync.js';
import { RateLimiter } from '../../src/replication/resync-pacer.js';
import { TransferLog } from '../../src/replication/transfer-log.js';
import { setInSync, setOutOfSync } from '../../src/replication/volume.js';

describe('replication parts', () => {
  it('range lock: overlapping ranges are granted in arrival order, disjoint ones at once', async () => {
    const lock = new RangeLock();
    const order: string[] = [];
    const first = lock.acquire(0, 8192);
    expect(first).not.toBeInstanceOf(Promise);
    const disjoint = lock.acquire(8192, 16384);
    expect(disjoint).not.toBeInstanceOf(Promise);
    const second = lock.acquire(4096, 12288) as Promise<unknown>;
    const third = lock.acquire(0, 4096) as Promise<unknown>; // overlaps only `first`, but must not pass `second`? no: it does not overlap second
    void second.then(() => order.push('second'));
    void third.then(() => order.push('third'));
    lock.release(first as never);
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(['third']); // second still waits for `disjoint`
    lock.release(disjoint as never);
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(['third', 'second']);
  });

  it('transfer log: BarrierAck drops exactly its epoch; clear returns the rest', () => {
    const tl = new TransferLog();
    tl.add(0, 4096, 1);
    tl.add(4096, 4096, 1);
    tl.epochClosed(1);
    expect(tl.newestClosedEpoch).toBe(1);
    tl.add(8192, 512, 2);
    expect(() => tl.add(0, 512, 3)).toThrow(/invariant/); // epoch 2 is still open
    expect(tl.epochsInFlight).toBe(2);
    expect(tl.barrierAcked(1)).toBe(2);
    expect(tl.size).toBe(1);
    tl.epochClosed(2);
    expect(tl.barrierAcked(2)).toBe(1);
    expect(tl.barrierAcked(3)).toBe(0); // an epoch this volume wrote nothing in (another volume's)
    tl.add(0, 512, 4);
    expect(() => tl.barrierAcked(4)).toThrow(/invariant/); // never closed: no Barrier went out for it
    expect(tl.size).toBe(1);
    expect(tl.clear().map((e) => e.offsetBytes)).toEqual([0]);
  });

  it('bitmap chunks round-trip in LE bit order and OR into the receiver', () => {
    const a = new Bitmap(100_000);
    a.setRange(3, 9);
    a.setRange(40_000, 40_100);
    const chunk = Buffer.alloc(4096);
    expect(encodeBitmapChunk(a, 0, chunk)).toBe(6);
    expect(chunk[0]).toBe(0b11111000);
    expect(chunk[1]).toBe(0b00000001);
    const b = new Bitmap(100_000);
    b.setRange(5, 20);
    expect(mergeBitmapChunk(b, 0, chunk)).toBe(2); // bits 3,4 are new
    expect(b.countSet()).toBe(17);
    const chunk2 = Buffer.alloc(4096);
    encodeBitmapChunk(a, 32768, chunk2);
    mergeBitmapChunk(b, 4096, chunk2);
    expect(b.countRange(40_000, 40_100)).toBe(100);
  });

  it('out-of-sync marks every touched block; in-sync clears only fully covered blocks', () => {
    const bm = new Bitmap(16);
    expect(setOutOfSync(bm, 4096 + 512, 4096)).toBe(2);
    expect(setInSync(bm, 4096 + 512, 4096)).toBe(0);
    expect(setInSync(bm, 4096, 8192)).toBe(2);
  });

  it('block ids carry their tag', () => {
    const ids = new BlockIdAllocator(BlockIdTag.resync);
    const id = ids.next();
    expect(blockIdTag(id)).toBe(BlockIdTag.resync);
    expect(blockIdTag(new BlockIdAllocator(BlockIdTag.verify).next())).toBe(BlockIdTag.verify);
  });

  it('crc32c matches the standard check value; verify-alg names resolve', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(blockDigest('sha1').digestBytes).toBe(20);
    expect(blockDigest('md5').digestBytes).toBe(16);
    expect(() => blockDigest('nosuch')).toThrow(/verify-alg/);
  });

  it('per-mille done follows /proc/drbd (1000 - (left>>10)*1000/((total>>10)+1))', () => {
    const totalBits = 1048576 / 4; // 1 GiB
    // left 699052 KiB = 174763 bits: (174763>>10)=170, (262144>>10)+1=257 → 1000-661
    expect(syncPerMille(totalBits, 699052 / 4)).toBe(339);
    expect(syncPerMille(1000, 500)).toBe(1000); // below 1024 bits the shifted left is 0
    expect(syncPerMille(totalBits, 0)).toBe(1000);
  });

  it('rate limiter delays to keep the average at the rate', () => {
    let now = 0;
    const limiter = new RateLimiter(1024, () => now);
    expect(limiter.take(512 * 1024)).toBe(500);
    now = 500;
    expect(limiter.take(512 * 1024)).toBe(500);
    expect(new RateLimiter(0, () => 0).take(1e9)).toBe(0);
  });
});
