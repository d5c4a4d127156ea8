import { describe, expect, it } from 'vitest';
import { Bitmap, BM_BITS_PER_PAGE } from '../../src/meta/bitmap.js';
import { MemoryDisk } from '../../src/disk/memory-disk.js';

/** Naive per-bit model the word-level bitmap must agree with. */
class ModelBitmap {
  readonly bits: Uint8Array;
  constructor(readonly bitCount: number) {
    this.bits = new Uint8Array(bitCount);
  }
  set(a: number, b: number): number {
    let n = 0;
    for (let i = a; i < b; i++) if (!this.bits[i]) { this.bits[i] = 1; n++; }
    return n;
  }
  clear(a: number, b: number): number {
    let n = 0;
    for (let i = a; i < b; i++) if (this.bits[i]) { this.bits[i] = 0; n++; }
    return n;
  }
  nextSet(from: number): number {
    for (let i = from; i < this.bitCount; i++) if (this.bits[i]) return i;
    return -1;
  }
  nextClear(from: number): number {
    for (let i = from; i < this.bitCount; i++) if (!this.bits[i]) return i;
    return this.bitCount;
  }
  count(): number {
    let n = 0;
    for (const b of this.bits) n += b;
    return n;
  }
}

/** Deterministic PRNG so failures reproduce. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 0x100000000;
  };
}

describe('meta/bitmap', () => {
  it('uses little-endian bit numbering exactly as on disk (bit i in byte i>>3, mask 1<<(i&7))', () => {
    const bm = new Bitmap(100_000);
    bm.setRange(0, 1);
    bm.setRange(15, 16);
    bm.setRange(64, 72);
    expect(bm.buffer[0]).toBe(0x01);
    expect(bm.buffer[1]).toBe(0x80);
    expect(bm.buffer[8]).toBe(0xff);
    expect(bm.countSet()).toBe(10);
    expect(bm.buffer.readBigUInt64LE(0)).toBe(0x8001n);
  });

  it('agrees with a per-bit model over random set/clear/nextSet/nextClear/countRange', () => {
    const bitCount = 3 * BM_BITS_PER_PAGE + 777;
    const bm = new Bitmap(bitCount);
    const model = new ModelBitmap(bitCount);
    const rnd = prng(42);
    for (let step = 0; step < 400; step++) {
      const a = Math.floor(rnd() * bitCount);
      const len = rnd() < 0.5 ? Math.floor(rnd() * 70) : Math.floor(rnd() * 2 * BM_BITS_PER_PAGE);
      const b = Math.min(bitCount, a + len);
      if (rnd() < 0.55) expect(bm.setRange(a, b)).toBe(model.set(a, b));
      else expect(bm.clearRange(a, b)).toBe(model.clear(a, b));
      const probe = Math.floor(rnd() * bitCount);
      expect(bm.nextSet(probe)).toBe(model.nextSet(probe));
      expect(bm.nextClear(probe)).toBe(model.nextClear(probe));
      expect(bm.test(probe)).toBe(model.bits[probe] === 1);
      expect(bm.countSet()).toBe(model.count());
      const c0 = Math.floor(rnd() * bitCount);
      const c1 = Math.min(bitCount, c0 + Math.floor(rnd() * 3 * BM_BITS_PER_PAGE));
      let expected = 0;
      for (let i = c0; i < c1; i++) expected += model.bits[i]!;
      expect(bm.countRange(c0, c1)).toBe(expected);
    }
  });

  it('exportBytes / orBytes (the bitmap exchange) agree with the per-bit model, at any byte offset and length', () => {
    const bitCount = 3 * BM_BITS_PER_PAGE + 777; // the last byte is partial
    const bm = new Bitmap(bitCount);
    const model = new ModelBitmap(bitCount);
    const rnd = prng(7);
    const totalBytes = Math.ceil(bitCount / 8);
    for (let step = 0; step < 300; step++) {
      const firstByte = rnd() < 0.2 ? totalBytes - 1 - Math.floor(rnd() * 8) : Math.floor(rnd() * totalBytes);
      const length = 1 + Math.floor(rnd() * (rnd() < 0.5 ? 13 : 6000));
      const incoming = Buffer.alloc(length);
      for (let i = 0; i < length; i++) incoming[i] = rnd() < 0.7 ? 0 : Math.floor(rnd() * 256);
      let expected = 0;
      for (let i = 0; i < length * 8; i++) {
        const bit = firstByte * 8 + i;
        if (bit < bitCount && (incoming[i >>> 3]! >>> (i & 7)) & 1) expected += model.set(bit, bit + 1);
      }
      expect(bm.orBytes(firstByte, incoming)).toBe(expected);
      expect(bm.countSet()).toBe(model.count());
      if (rnd() < 0.3) {
        const a = Math.floor(rnd() * bitCount);
        const b = Math.min(bitCount, a + Math.floor(rnd() * 5000));
        expect(bm.clearRange(a, b)).toBe(model.clear(a, b));
      }
      const out = Buffer.alloc(1 + Math.floor(rnd() * 6000), 0xee); // stale bytes: must be overwritten
      const from = Math.floor(rnd() * (totalBytes + 4));
      const reported = bm.exportBytes(from, out);
      let set = 0;
      const wrong: number[] = [];
      for (let i = 0; i < out.length * 8; i++) {
        const bit = from * 8 + i;
        const on = bit < bitCount && model.bits[bit] === 1;
        set += on ? 1 : 0;
        if ((((out[i >>> 3]! >>> (i & 7)) & 1) === 1) !== on) wrong.push(bit);
      }
      expect(wrong).toEqual([]);
      expect(reported).toBe(set);
    }
    // Whatever orBytes changed is marked for writing out.
    const fresh = new Bitmap(8 * BM_BITS_PER_PAGE);
    fresh.orBytes(2 * (BM_BITS_PER_PAGE / 8) + 100, Buffer.from([0, 0x81]));
    expect(fresh.countSet()).toBe(2);
    expect(fresh.dirtyPageCount).toBe(1);
    expect(fresh.isPageDirty(2)).toBe(true);
  });

  it('setAll sets exactly bitCount bits and leaves surplus bits of the last page zero', () => {
    const bm = new Bitmap(1000, 4096);
    bm.setAll();
    expect(bm.countSet()).toBe(1000);
    expect(bm.buffer[124]).toBe(0xff);
    expect(bm.buffer[125]).toBe(0x00);
    expect(bm.nextClear(0)).toBe(1000);
    expect(bm.nextSet(999)).toBe(999);
  });

  it('tracks dirty 4 KiB pages and writes only those, then reads back identically', async () => {
    const disk = new MemoryDisk(1024 * 1024);
    const bmOffset = 8192;
    const bm = new Bitmap(8 * BM_BITS_PER_PAGE);
    expect(bm.dirtyPageCount).toBe(0);
    bm.setRange(5, 6);
    bm.setRange(3 * BM_BITS_PER_PAGE + 10, 3 * BM_BITS_PER_PAGE + 20);
    expect(bm.dirtyPageCount).toBe(2);
    expect(bm.isPageDirty(0) && bm.isPageDirty(3) && !bm.isPageDirty(1)).toBe(true);
    // A no-op change does not dirty a page.
    bm.clearRange(BM_BITS_PER_PAGE, 2 * BM_BITS_PER_PAGE);
    expect(bm.isPageDirty(1)).toBe(false);
    expect(await bm.writeDirtyPages(disk, bmOffset)).toBe(2);
    expect(bm.dirtyPageCount).toBe(0);
    expect(disk.data[bmOffset]).toBe(0x20);
    expect(disk.flushCount).toBe(1);
    const back = new Bitmap(8 * BM_BITS_PER_PAGE);
    await back.readFrom(disk, bmOffset);
    expect(back.countSet()).toBe(11);
    expect(back.nextSet(6)).toBe(3 * BM_BITS_PER_PAGE + 10);
    expect(back.buffer.equals(bm.buffer)).toBe(true);
  });

  it('clears surplus bits found on disk past the device end', async () => {
    const disk = new MemoryDisk(8192);
    disk.data.fill(0xff, 0, 4096);
    const bm = new Bitmap(100, 4096);
    await bm.readFrom(disk, 0);
    expect(bm.countSet()).toBe(100);
    expect(bm.surplusBitsCleared).toBe(4096 * 8 - 100);
  });

  it('maps byte ranges outward when setting and inward when clearing', () => {
    const bm = new Bitmap(100);
    expect(bm.setBytes(4095, 2)).toBe(2);
    expect(bm.clearBytes(4000, 4096)).toBe(0);
    expect(bm.clearBytes(4096, 4096)).toBe(1);
    expect(bm.test(0)).toBe(true);
  });

  it('handles a 1 TiB volume (32 MiB bitmap) with word-level ranges (speed is measured by npm run bench, not here)', () => {
    const bitCount = (1024 ** 4) / 4096;
    const bm = new Bitmap(bitCount);
    expect(bm.areaBytes).toBe(32 * 1024 * 1024);
    bm.setAll();
    expect(bm.countSet()).toBe(bitCount);
    bm.clearRange(1000, bitCount - 1000);
    expect(bm.countSet()).toBe(2000);
    expect(bm.nextSet(1000)).toBe(bitCount - 1000);
    expect(bm.nextClear(0)).toBe(1000);
  });
});
