/**
 * daemon/agreed-bitmap — the out-of-sync bitmap as the data path sees it:
 * only the blocks of the agreed device size (DRBD resizes its in-core bitmap
 * to the device size, drbd_bm_resize). The meta-data's bitmap keeps covering
 * the whole data area on disk; bits at or beyond the agreed size are kept
 * clear, so its count of set bits is the agreed area's. Growing marks the
 * new blocks out of sync, as DRBD does (set_new_bits).
 */
import { BM_BLOCK_BYTES, type DirtyBitmap } from '../meta/types.js';
import { assert } from '../util/assert.js';

export class AgreedBitmap implements DirtyBitmap {
  private limitBits: number;

  constructor(
    private readonly whole: DirtyBitmap,
    sizeBytes: number,
  ) {
    this.limitBits = 0;
    this.resize(sizeBytes, false);
  }

  /** Blocks of the agreed size (the last one may be partial). */
  get bitCount(): number {
    return this.limitBits;
  }

  /** New agreed size: bits beyond it are cleared; grown blocks are set when `setNewBits`. */
  resize(sizeBytes: number, setNewBits: boolean): void {
    const bits = Math.ceil(sizeBytes / BM_BLOCK_BYTES);
    assert(bits > 0 && bits <= this.whole.bitCount, `agreed size of ${bits} blocks fits the bitmap of ${this.whole.bitCount}`);
    const previous = this.limitBits;
    if (bits < this.whole.bitCount) this.whole.clearRange(bits, this.whole.bitCount);
    if (setNewBits && bits > previous) this.whole.setRange(previous, bits);
    this.limitBits = bits;
    assert(this.whole.nextSet(bits) < 0 || this.whole.nextSet(bits) >= this.whole.bitCount, 'no bit set beyond the agreed size');
  }

  test(bit: number): boolean {
    assert(bit >= 0 && bit < this.limitBits, `bit ${bit} lies inside the agreed size (${this.limitBits} blocks)`);
    return this.whole.test(bit);
  }

  /** Ranges reaching past the agreed size (a peer's OutOfSync, a merged bitmap) are clipped. */
  setRange(firstBit: number, endBit: number): number {
    const end = Math.min(endBit, this.limitBits);
    return firstBit >= end ? 0 : this.whole.setRange(firstBit, end);
  }

  clearRange(firstBit: number, endBit: number): number {
    const end = Math.min(endBit, this.limitBits);
    return firstBit >= end ? 0 : this.whole.clearRange(firstBit, end);
  }

  setAll(): void {
    this.whole.setRange(0, this.limitBits);
  }

  countSet(): number {
    return this.whole.countSet();
  }

  nextSet(fromBit: number): number {
    if (fromBit >= this.limitBits) return -1;
    const bit = this.whole.nextSet(fromBit);
    return bit >= this.limitBits ? -1 : bit;
  }

  exportBytes(firstByte: number, out: Buffer): number {
    // Bits at or past the agreed size are kept clear in the whole bitmap (resize, setRange): as they are.
    return this.whole.exportBytes(firstByte, out);
  }

  /** A peer's bits past the agreed size are dropped. */
  orBytes(firstByte: number, bits: Buffer): number {
    const limitBits = this.limitBits - firstByte * 8;
    if (limitBits <= 0) return 0;
    if (bits.length * 8 <= limitBits) return this.whole.orBytes(firstByte, bits);
    const clipped = Buffer.from(bits.subarray(0, Math.ceil(limitBits / 8)));
    if ((limitBits & 7) !== 0) clipped[clipped.length - 1] = clipped[clipped.length - 1]! & ((1 << (limitBits & 7)) - 1);
    return this.whole.orBytes(firstByte, clipped);
  }

  nextClear(fromBit: number): number {
    if (fromBit >= this.limitBits) return this.limitBits;
    return Math.min(this.whole.nextClear(fromBit), this.limitBits);
  }
}
