import { describe, expect, it } from 'vitest';
import { BufferPool } from '../../src/disk/buffer-pool.js';

const MiB = 1024 * 1024;
/** The 1 MiB class: 1 MiB plus 1/64 for fixed fields beside the payload. */
const CLASS_1MIB_BYTES = MiB + MiB / 64;

describe('BufferPool', () => {
  it('hands out buffers of the exact requested size and reuses returned backing stores', () => {
    const pool = new BufferPool(8 * 1024 * 1024);
    const a = pool.take(1024 * 1024);
    expect(a.length).toBe(1024 * 1024);
    a.fill(7);
    pool.give(a);
    expect(pool.bytesPooled).toBe(CLASS_1MIB_BYTES);
    const b = pool.take(1000 * 1024); // same 1 MiB class
    expect(b.length).toBe(1000 * 1024);
    expect(b.buffer).toBe(a.buffer);
    expect(pool.reuseCount).toBe(1);
    expect(pool.bytesPooled).toBe(0);
  });

  it('never keeps more than pooledBytesMax', () => {
    const pool = new BufferPool(2 * CLASS_1MIB_BYTES + MiB / 2);
    const bufs = [pool.take(1 << 20), pool.take(1 << 20), pool.take(1 << 20)];
    for (const b of bufs) pool.give(b);
    expect(pool.bytesPooled).toBe(2 * CLASS_1MIB_BYTES);
    expect(pool.takenCount).toBe(0);
  });

  it('fits a frame body of a 1 MiB payload plus its fixed fields in the 1 MiB class, not 2 MiB', () => {
    const pool = new BufferPool(8 * MiB);
    const body = pool.take(MiB + 24);
    expect(body.length).toBe(MiB + 24);
    expect(body.buffer.byteLength).toBe(CLASS_1MIB_BYTES);
    const over = pool.take(CLASS_1MIB_BYTES + 1);
    expect(over.buffer.byteLength).toBe(2 * MiB + (2 * MiB) / 64);
  });

  it('serves small requests from a 4 KiB class and does not pool oversized buffers', () => {
    const pool = new BufferPool(64 * 1024 * 1024);
    const small = pool.take(512);
    expect(small.length).toBe(512);
    expect(small.buffer.byteLength).toBe(4096 + 64);
    pool.give(small);
    expect(pool.bytesPooled).toBe(4096 + 64);
    const big = pool.take(40 * 1024 * 1024);
    expect(big.length).toBe(40 * 1024 * 1024);
    pool.give(big);
    expect(pool.bytesPooled).toBe(4096 + 64);
  });

  it('ignores buffers it did not hand out and a second give of the same buffer', () => {
    const pool = new BufferPool(1 << 20);
    const a = pool.take(4096);
    pool.give(Buffer.from(new ArrayBuffer(4096)));
    pool.give(Buffer.alloc(65536));
    expect(pool.bytesPooled).toBe(0);
    pool.give(a.subarray(512)); // a view of a pooled buffer counts as that buffer
    pool.give(a);
    expect(pool.bytesPooled).toBe(4096 + 64);
    expect(pool.takenCount).toBe(0);
    const b = pool.take(4096);
    const c = pool.take(4096);
    expect(b.buffer).toBe(a.buffer);
    expect(c.buffer).not.toBe(a.buffer);
  });

  it('takes fresh backing stores from its allocator, class-sized or (beyond the largest class) exact', () => {
    const made: number[] = [];
    const pool = new BufferPool(64 * MiB, (bytes) => {
      made.push(bytes);
      return new ArrayBuffer(bytes);
    });
    const a = pool.take(MiB);
    const huge = pool.take(40 * MiB);
    expect(made).toEqual([CLASS_1MIB_BYTES, 40 * MiB]);
    pool.give(a);
    pool.take(MiB); // reused: no new allocation
    expect(made).toHaveLength(2);
    pool.give(huge); // never pooled
    expect(pool.bytesPooled).toBe(0);
  });
});
