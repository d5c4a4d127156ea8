/**
 * meta/bitmap — the out-of-sync bitmap held in one Buffer laid out exactly as
 * on disk in v08 meta-data: one bit per 4 KiB block, little-endian bit
 * numbering (bit i is byte i>>3, mask 1<<(i&7)), written in 4 KiB pages.
 * Operations work on 32-bit words with per-page set counts, so ranges,
 * counts and searches over a 1 TiB volume (32 MiB bitmap) never loop per bit.
 * It knows where it lives on disk only through the offset its caller passes;
 * it knows nothing of superblocks, the activity log, peers or roles.
 */
import os from 'node:os';
import type { BlockDevice, WriteFlags } from '../disk/block-device.js';
import { assert } from '../util/assert.js';
import { AL_EXTENT_BYTES, BM_BLOCK_BYTES, type DirtyBitmap } from './types.js';

/** Bitmap I/O unit: DRBD reads and writes the bitmap in 4 KiB pages. */
export const BM_PAGE_BYTES = 4096;
/** Bits in one bitmap page (4096 × 8). */
export const BM_BITS_PER_PAGE = BM_PAGE_BYTES * 8;
const BM_WORDS_PER_PAGE = BM_PAGE_BYTES / 4;
const BITS_PER_PAGE_SHIFT = 15;
/** Bitmap bits per activity-log extent (4 MiB / 4 KiB = 1024). */
export const BM_BITS_PER_AL_EXTENT = AL_EXTENT_BYTES / BM_BLOCK_BYTES;
/** Largest bitmap this class holds: 1 TiB of data plus slack (64 MiB of bitmap = 2 TiB). */
export const BM_BYTES_MAX = 64 * 1024 * 1024;
/** Largest single write when flushing a run of dirty pages. */
const BM_WRITE_RUN_BYTES_MAX = 1024 * 1024;
const FUA: WriteFlags = Object.freeze({ fua: true });

// Word-level access through a Uint32Array view equals the on-disk LE bit order
// only on a little-endian host (all platforms udrbd targets are).
assert(os.endianness() === 'LE', 'meta/bitmap requires a little-endian host');

function popcount32(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

/** Index of the lowest set bit of a non-zero 32-bit word. */
function lowestBit32(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/** Mask with bits [fromBit, endBit) of a 32-bit word set; 0 ≤ fromBit < endBit ≤ 32. */
function wordMask(fromBit: number, endBit: number): number {
  const high = endBit === 32 ? 0xffffffff : 2 ** endBit - 1;
  const low = 2 ** fromBit - 1;
  return (high - low) >>> 0;
}

/** Something with synchronous positional I/O (FileDisk), for start-up and shutdown paths. */
export interface SyncDisk {
  readonly sizeBytes: number;
  readSync(buffer: Buffer, offsetBytes: number): void;
  writeSync(buffer: Buffer, offsetBytes: number): void;
  flushSync(): void;
}

export class Bitmap implements DirtyBitmap {
  /** The bitmap bytes as on disk; length = the on-disk bitmap area (multiple of 4 KiB). Replaced by grow(). */
  private bytes: Buffer;
  private pages: number;
  private bits: number;
  private words: Uint32Array;
  /** Set bits per 4 KiB page. */
  private pageSetBits: Uint32Array;
  /** 1 = page changed in memory since it was last written. */
  private pageDirty: Uint8Array;
  private dirtyPages = 0;
  /** Bitmap pages written to disk since load (/proc/drbd `bm:`, drbd-reactor's bm_writes). */
  pagesWritten = 0;
  private setBits = 0;

  /**
   * @param bitCount blocks of 4 KiB the bitmap tracks (usable data size / 4096, rounded up)
   * @param areaBytes on-disk bitmap area size; defaults to the smallest whole number of pages
   */
  constructor(
    bitCount: number,
    areaBytes: number = Math.ceil(bitCount / BM_BITS_PER_PAGE) * BM_PAGE_BYTES,
  ) {
    Bitmap.checkShape(bitCount, areaBytes);
    const arrayBuffer = new ArrayBuffer(areaBytes);
    this.bits = bitCount;
    this.bytes = Buffer.from(arrayBuffer);
    this.words = new Uint32Array(arrayBuffer);
    this.pages = areaBytes / BM_PAGE_BYTES;
    this.pageSetBits = new Uint32Array(this.pages);
    this.pageDirty = new Uint8Array(this.pages);
  }

  private static checkShape(bitCount: number, areaBytes: number): void {
    assert(Number.isSafeInteger(bitCount) && bitCount >= 0, `bitmap bitCount ${bitCount} is a non-negative integer`);
    assert(areaBytes % BM_PAGE_BYTES === 0, `bitmap area ${areaBytes} bytes is a multiple of 4096`);
    assert(areaBytes <= BM_BYTES_MAX, `bitmap area ${areaBytes} bytes ≤ ${BM_BYTES_MAX}`);
    assert(bitCount <= areaBytes * 8, `bitmap of ${bitCount} bits fits in ${areaBytes} bytes`);
  }

  /** Blocks of 4 KiB the bitmap tracks (usable data size / 4096, rounded up). */
  get bitCount(): number {
    return this.bits;
  }

  /** The bitmap bytes as on disk (the on-disk area; a new Buffer after grow()). */
  get buffer(): Buffer {
    return this.bytes;
  }

  get pageCount(): number {
    return this.pages;
  }

  get areaBytes(): number {
    return this.bytes.length;
  }

  /**
   * drbd_bm_resize for a grown device: tracks `bitCount` blocks in an area
   * of `areaBytes`, keeping every bit it had; the new bits start clear (the
   * caller sets them when the grown area must be resynced, DRBD's
   * set_new_bits). Every page is marked dirty: after a grow the whole bitmap
   * is written (to its new place, when the meta-data moved). Never shrinks.
   */
  grow(bitCount: number, areaBytes: number): void {
    Bitmap.checkShape(bitCount, areaBytes);
    assert(bitCount >= this.bits && areaBytes >= this.bytes.length, `bitmap grows (${this.bits} → ${bitCount} bits, ${this.bytes.length} → ${areaBytes} bytes)`);
    const arrayBuffer = new ArrayBuffer(areaBytes);
    const bytes = Buffer.from(arrayBuffer);
    // Surplus bits past the old bitCount are kept 0, so they become clear new bits.
    this.bytes.copy(bytes);
    const pageSetBits = new Uint32Array(areaBytes / BM_PAGE_BYTES);
    pageSetBits.set(this.pageSetBits);
    this.bytes = bytes;
    this.words = new Uint32Array(arrayBuffer);
    this.pages = areaBytes / BM_PAGE_BYTES;
    this.pageSetBits = pageSetBits;
    this.pageDirty = new Uint8Array(this.pages);
    this.bits = bitCount;
    this.markAllDirty();
  }

  test(bit: number): boolean {
    this.checkBit(bit, 'test');
    return ((this.words[bit >>> 5]! >>> (bit & 31)) & 1) === 1;
  }

  setRange(firstBit: number, endBit: number): number {
    return this.applyRange(firstBit, endBit, true);
  }

  clearRange(firstBit: number, endBit: number): number {
    return this.applyRange(firstBit, endBit, false);
  }

  setAll(): void {
    this.applyRange(0, this.bitCount, true);
  }

  clearAll(): void {
    this.applyRange(0, this.bitCount, false);
  }

  countSet(): number {
    return this.setBits;
  }

  /**
   * Marks the blocks touched by a byte range out of sync: every 4 KiB block
   * overlapping [offsetBytes, offsetBytes+lengthBytes). Returns bits newly set.
   */
  setBytes(offsetBytes: number, lengthBytes: number): number {
    if (lengthBytes === 0) return 0;
    const first = Math.floor(offsetBytes / BM_BLOCK_BYTES);
    const end = Math.ceil((offsetBytes + lengthBytes) / BM_BLOCK_BYTES);
    return this.setRange(first, end);
  }

  /**
   * Marks in sync only the blocks a byte range covers completely (DRBD rounds
   * inward when clearing, so a partial block stays out of sync). Returns bits
   * newly cleared.
   */
  clearBytes(offsetBytes: number, lengthBytes: number): number {
    const first = Math.ceil(offsetBytes / BM_BLOCK_BYTES);
    const end = Math.floor((offsetBytes + lengthBytes) / BM_BLOCK_BYTES);
    if (end <= first) return 0;
    return this.clearRange(first, end);
  }

  nextSet(fromBit: number): number {
    assert(Number.isSafeInteger(fromBit) && fromBit >= 0, `nextSet from ${fromBit} is a non-negative integer`);
    if (fromBit >= this.bitCount) return -1;
    const lastPage = (this.bitCount - 1) >>> BITS_PER_PAGE_SHIFT;
    let bit = fromBit;
    for (let page = bit >>> BITS_PER_PAGE_SHIFT; page <= lastPage; page++) {
      const pageFirstBit = page * BM_BITS_PER_PAGE;
      if (bit < pageFirstBit) bit = pageFirstBit;
      if (this.pageSetBits[page] === 0) continue;
      const endWord = (page + 1) * BM_WORDS_PER_PAGE;
      let w = bit >>> 5;
      let word = (this.words[w]! & wordMask(bit & 31, 32)) >>> 0;
      while (word === 0) {
        w++;
        if (w >= endWord) break;
        word = this.words[w]!;
      }
      if (word !== 0) {
        const found = w * 32 + lowestBit32(word);
        assert(found < this.bitCount, `set bit ${found} lies inside the device (${this.bitCount} bits)`);
        return found;
      }
    }
    return -1;
  }

  nextClear(fromBit: number): number {
    assert(Number.isSafeInteger(fromBit) && fromBit >= 0, `nextClear from ${fromBit} is a non-negative integer`);
    if (fromBit >= this.bitCount) return this.bitCount;
    const lastPage = (this.bitCount - 1) >>> BITS_PER_PAGE_SHIFT;
    let bit = fromBit;
    for (let page = bit >>> BITS_PER_PAGE_SHIFT; page <= lastPage; page++) {
      const pageFirstBit = page * BM_BITS_PER_PAGE;
      if (bit < pageFirstBit) bit = pageFirstBit;
      if (this.pageSetBits[page] === this.bitsInPage(page)) continue;
      const endWord = (page + 1) * BM_WORDS_PER_PAGE;
      let w = bit >>> 5;
      let inverted = (~this.words[w]! & wordMask(bit & 31, 32)) >>> 0;
      while (inverted === 0) {
        w++;
        if (w >= endWord) break;
        inverted = ~this.words[w]! >>> 0;
      }
      if (inverted !== 0) return Math.min(w * 32 + lowestBit32(inverted), this.bitCount);
    }
    return this.bitCount;
  }

  exportBytes(firstByte: number, out: Buffer): number {
    assert(Number.isSafeInteger(firstByte) && firstByte >= 0, `exportBytes from byte ${firstByte} is a non-negative integer`);
    out.fill(0);
    const firstBit = firstByte * 8;
    if (firstBit >= this.bitCount) return 0;
    const endBit = Math.min(this.bitCount, firstBit + out.length * 8);
    const endByte = Math.ceil(endBit / 8);
    this.buffer.copy(out, 0, firstByte, endByte);
    // Bits past bitCount are never set (setRange/clearRange check their range); say so.
    assert((endBit & 7) === 0 || (out[endByte - firstByte - 1]! >>> (endBit & 7)) === 0, 'no bit set past bitCount');
    return this.countRange(firstBit, endBit);
  }

  orBytes(firstByte: number, bits: Buffer): number {
    assert(Number.isSafeInteger(firstByte) && firstByte >= 0, `orBytes from byte ${firstByte} is a non-negative integer`);
    const firstBit = firstByte * 8;
    const endBit = Math.min(this.bitCount, firstBit + bits.length * 8);
    if (endBit <= firstBit) return 0;
    const endByte = Math.ceil(endBit / 8);
    let changed = 0;
    // A whole word where the bytes cover one, else a single byte (an unaligned start, the tail).
    for (let b = firstByte; b < endByte; ) {
      const i = b - firstByte;
      if ((b & 3) === 0 && b + 4 <= endByte) {
        const incoming = (bits[i]! | (bits[i + 1]! << 8) | (bits[i + 2]! << 16) | (bits[i + 3]! << 24)) >>> 0;
        if (incoming !== 0) changed += this.orWord(b >>> 2, incoming, endBit);
        b += 4;
      } else {
        changed += this.orWord(b >>> 2, (bits[i]! << ((b & 3) * 8)) >>> 0, endBit);
        b++;
      }
    }
    this.setBits += changed;
    assert(this.setBits <= this.bitCount, `set bit count ${this.setBits} within [0, ${this.bitCount}]`);
    return changed;
  }

  /** ORs `incoming` into word w (bits at or past endBit dropped); keeps the page counts; returns bits newly set. */
  private orWord(w: number, incoming: number, endBit: number): number {
    const wordFirstBit = w * 32;
    if (wordFirstBit + 32 > endBit) incoming = (incoming & wordMask(0, endBit - wordFirstBit)) >>> 0;
    const old = this.words[w]!;
    const next = (old | incoming) >>> 0;
    if (next === old) return 0;
    this.words[w] = next;
    const n = popcount32((next ^ old) >>> 0);
    this.notePageChanged(wordFirstBit >>> BITS_PER_PAGE_SHIFT, n);
    return n;
  }

  /** `delta` bits of `page` changed (set: +, cleared: -): its count, and it is to be written. */
  private notePageChanged(page: number, delta: number): void {
    this.pageSetBits[page] = this.pageSetBits[page]! + delta;
    if (this.pageDirty[page] === 0) {
      this.pageDirty[page] = 1;
      this.dirtyPages++;
    }
  }

  /** Set bits in [firstBit, endBit), counted per page (no per-bit loop). */
  countRange(firstBit: number, endBit: number): number {
    this.checkRange(firstBit, endBit, 'countRange');
    let count = 0;
    let bit = firstBit;
    while (bit < endBit) {
      const page = bit >>> BITS_PER_PAGE_SHIFT;
      const pageEnd = Math.min(endBit, (page + 1) * BM_BITS_PER_PAGE);
      if (bit === page * BM_BITS_PER_PAGE && pageEnd === Math.min((page + 1) * BM_BITS_PER_PAGE, this.bitCount)) {
        count += this.pageSetBits[page]!;
      } else {
        count += this.countWords(bit, pageEnd);
      }
      bit = pageEnd;
    }
    return count;
  }

  // ---- dirty page tracking and I/O -------------------------------------------------

  /** Pages changed in memory since they were last written or read. */
  get dirtyPageCount(): number {
    return this.dirtyPages;
  }

  isPageDirty(page: number): boolean {
    return this.pageDirty[page] === 1;
  }

  markAllDirty(): void {
    this.pageDirty.fill(1);
    this.dirtyPages = this.pageCount;
  }

  /** The bitmap page holding the bits of activity-log extent `extentNr`. */
  static pageOfExtent(extentNr: number): number {
    return Math.floor((extentNr * BM_BITS_PER_AL_EXTENT) / BM_BITS_PER_PAGE);
  }

  /**
   * Writes every dirty page to `disk` at `bmOffsetBytes` (the absolute start
   * of the bitmap area), coalescing runs; flushes afterwards unless told not
   * to. Dirty marks are taken before each write, so bits changed while a
   * write is in flight leave the page dirty again. Returns pages written.
   */
  async writeDirtyPages(disk: BlockDevice, bmOffsetBytes: number, options: { flush?: boolean } = {}): Promise<number> {
    this.checkArea(disk, bmOffsetBytes);
    let written = 0;
    let page = 0;
    const runPagesMax = Math.max(1, Math.min(BM_WRITE_RUN_BYTES_MAX, disk.capabilities.maxRequestBytes) / BM_PAGE_BYTES);
    while (page < this.pageCount) {
      if (this.pageDirty[page] === 0) {
        page++;
        continue;
      }
      let end = page;
      while (end < this.pageCount && this.pageDirty[end] === 1 && end - page < runPagesMax) {
        this.pageDirty[end] = 0;
        this.dirtyPages--;
        end++;
      }
      await disk.write(this.buffer.subarray(page * BM_PAGE_BYTES, end * BM_PAGE_BYTES), bmOffsetBytes + page * BM_PAGE_BYTES);
      written += end - page;
      this.pagesWritten += end - page;
      page = end;
    }
    if (written > 0 && options.flush !== false) await disk.flush();
    return written;
  }

  /**
   * Writes one page if dirty and makes it durable before resolving (a FUA
   * write, or write + flush where the disk has no FUA): activity-log eviction
   * writes the page of the extent it drops, which must be on stable storage
   * before the AL transaction that forgets the extent.
   */
  async writePage(disk: BlockDevice, bmOffsetBytes: number, page: number, options: { durable?: boolean } = {}): Promise<boolean> {
    this.checkArea(disk, bmOffsetBytes);
    assert(page >= 0 && page < this.pageCount, `bitmap page ${page} < ${this.pageCount}`);
    if (this.pageDirty[page] === 0) return false;
    this.pageDirty[page] = 0;
    this.dirtyPages--;
    // durable: false is md-flushes no — written, not made stable (battery-backed cache).
    const durable = options.durable !== false;
    const fua = durable && disk.capabilities.canFua;
    await disk.write(this.buffer.subarray(page * BM_PAGE_BYTES, (page + 1) * BM_PAGE_BYTES), bmOffsetBytes + page * BM_PAGE_BYTES, fua ? FUA : undefined);
    this.pagesWritten++;
    if (durable && !fua) await disk.flush();
    return true;
  }

  /** Synchronous variant of writeDirtyPages for shutdown paths. */
  writeDirtyPagesSync(disk: SyncDisk, bmOffsetBytes: number): number {
    let written = 0;
    for (let page = 0; page < this.pageCount; page++) {
      if (this.pageDirty[page] === 0) continue;
      let end = page;
      while (end < this.pageCount && this.pageDirty[end] === 1) {
        this.pageDirty[end] = 0;
        this.dirtyPages--;
        end++;
      }
      disk.writeSync(this.buffer.subarray(page * BM_PAGE_BYTES, end * BM_PAGE_BYTES), bmOffsetBytes + page * BM_PAGE_BYTES);
      written += end - page;
      this.pagesWritten += end - page;
      page = end - 1;
    }
    if (written > 0) disk.flushSync();
    return written;
  }

  /** Loads the whole bitmap area from `disk`; surplus bits past bitCount are cleared in memory. */
  async readFrom(disk: BlockDevice, bmOffsetBytes: number): Promise<void> {
    this.checkArea(disk, bmOffsetBytes);
    const chunkBytes = Math.max(BM_PAGE_BYTES, Math.min(disk.capabilities.maxRequestBytes, 8 * 1024 * 1024));
    for (let at = 0; at < this.buffer.length; at += chunkBytes) {
      const end = Math.min(this.buffer.length, at + chunkBytes);
      await disk.read(this.buffer.subarray(at, end), bmOffsetBytes + at);
    }
    this.afterLoad();
  }

  /** Synchronous variant of readFrom for start-up paths. */
  readFromSync(disk: SyncDisk, bmOffsetBytes: number): void {
    this.checkArea(disk, bmOffsetBytes);
    disk.readSync(this.buffer, bmOffsetBytes);
    this.afterLoad();
  }

  /** Replaces the contents with `bytes` (a bitmap image as on disk), e.g. from a peer. */
  load(bytes: Buffer): void {
    assert(bytes.length === this.buffer.length, `bitmap image of ${bytes.length} bytes matches area ${this.buffer.length}`);
    bytes.copy(this.buffer);
    this.afterLoad();
    this.markAllDirty();
  }

  /** Surplus bits (past bitCount) that were set in the last load; DRBD keeps them 0. */
  surplusBitsCleared = 0;

  // ---- internals -------------------------------------------------------------------

  private afterLoad(): void {
    this.surplusBitsCleared = 0;
    const areaBits = this.buffer.length * 8;
    if (this.bitCount < areaBits) {
      const before = this.countWords(this.bitCount, areaBits);
      if (before > 0) {
        this.surplusBitsCleared = before;
        this.clearWords(this.bitCount, areaBits);
      }
    }
    let total = 0;
    for (let page = 0; page < this.pageCount; page++) {
      const start = page * BM_BITS_PER_PAGE;
      const n = this.countWords(start, start + BM_BITS_PER_PAGE);
      this.pageSetBits[page] = n;
      total += n;
    }
    this.setBits = total;
    this.pageDirty.fill(0);
    this.dirtyPages = 0;
  }

  private bitsInPage(page: number): number {
    return Math.min(BM_BITS_PER_PAGE, this.bitCount - page * BM_BITS_PER_PAGE);
  }

  private applyRange(firstBit: number, endBit: number, set: boolean): number {
    this.checkRange(firstBit, endBit, set ? 'setRange' : 'clearRange');
    let changed = 0;
    let bit = firstBit;
    while (bit < endBit) {
      const page = bit >>> BITS_PER_PAGE_SHIFT;
      const pageEnd = Math.min(endBit, (page + 1) * BM_BITS_PER_PAGE);
      const before = this.pageSetBits[page]!;
      let n: number;
      if (set) {
        n = before === 0 ? this.fillWords(bit, pageEnd) : this.setWords(bit, pageEnd);
      } else {
        n = before === 0 ? 0 : this.clearWords(bit, pageEnd);
      }
      if (n > 0) {
        this.notePageChanged(page, set ? n : -n);
        changed += n;
      }
      bit = pageEnd;
    }
    this.setBits += set ? changed : -changed;
    assert(this.setBits >= 0 && this.setBits <= this.bitCount, `set bit count ${this.setBits} within [0, ${this.bitCount}]`);
    return changed;
  }

  /** Sets [a, b) known to be all clear; returns b - a. */
  private fillWords(a: number, b: number): number {
    this.setWords(a, b);
    return b - a;
  }

  private setWords(a: number, b: number): number {
    const words = this.words;
    const w0 = a >>> 5;
    const w1 = (b - 1) >>> 5;
    let changed = 0;
    if (w0 === w1) {
      const old = words[w0]!;
      const next = (old | wordMask(a & 31, ((b - 1) & 31) + 1)) >>> 0;
      words[w0] = next;
      return popcount32((next ^ old) >>> 0);
    }
    let old = words[w0]!;
    let next = (old | wordMask(a & 31, 32)) >>> 0;
    words[w0] = next;
    changed += popcount32((next ^ old) >>> 0);
    for (let w = w0 + 1; w < w1; w++) {
      old = words[w]!;
      if (old !== 0xffffffff) {
        changed += 32 - popcount32(old);
        words[w] = 0xffffffff;
      }
    }
    old = words[w1]!;
    next = (old | wordMask(0, ((b - 1) & 31) + 1)) >>> 0;
    words[w1] = next;
    changed += popcount32((next ^ old) >>> 0);
    return changed;
  }

  private clearWords(a: number, b: number): number {
    const words = this.words;
    const w0 = a >>> 5;
    const w1 = (b - 1) >>> 5;
    let changed = 0;
    if (w0 === w1) {
      const old = words[w0]!;
      const mask = wordMask(a & 31, ((b - 1) & 31) + 1);
      words[w0] = (old & ~mask) >>> 0;
      return popcount32((old & mask) >>> 0);
    }
    let old = words[w0]!;
    let mask = wordMask(a & 31, 32);
    words[w0] = (old & ~mask) >>> 0;
    changed += popcount32((old & mask) >>> 0);
    for (let w = w0 + 1; w < w1; w++) {
      old = words[w]!;
      if (old !== 0) {
        changed += popcount32(old);
        words[w] = 0;
      }
    }
    old = words[w1]!;
    mask = wordMask(0, ((b - 1) & 31) + 1);
    words[w1] = (old & ~mask) >>> 0;
    changed += popcount32((old & mask) >>> 0);
    return changed;
  }

  private countWords(a: number, b: number): number {
    if (b <= a) return 0;
    const words = this.words;
    const w0 = a >>> 5;
    const w1 = (b - 1) >>> 5;
    if (w0 === w1) return popcount32((words[w0]! & wordMask(a & 31, ((b - 1) & 31) + 1)) >>> 0);
    let count = popcount32((words[w0]! & wordMask(a & 31, 32)) >>> 0);
    for (let w = w0 + 1; w < w1; w++) {
      const x = words[w]!;
      if (x !== 0) count += popcount32(x);
    }
    count += popcount32((words[w1]! & wordMask(0, ((b - 1) & 31) + 1)) >>> 0);
    return count;
  }

  private checkBit(bit: number, what: string): void {
    assert(Number.isSafeInteger(bit) && bit >= 0 && bit < this.bitCount, `${what}: bit ${bit} within [0, ${this.bitCount})`);
  }

  private checkRange(firstBit: number, endBit: number, what: string): void {
    assert(
      Number.isSafeInteger(firstBit) && Number.isSafeInteger(endBit) && firstBit >= 0 && firstBit <= endBit && endBit <= this.bitCount,
      `${what}: range [${firstBit}, ${endBit}) within [0, ${this.bitCount}]`,
    );
  }

  private checkArea(disk: { sizeBytes: number }, bmOffsetBytes: number): void {
    assert(
      Number.isSafeInteger(bmOffsetBytes) && bmOffsetBytes >= 0 && bmOffsetBytes + this.buffer.length <= disk.sizeBytes,
      `bitmap area [${bmOffsetBytes}, +${this.buffer.length}) lies inside the disk of ${disk.sizeBytes} bytes`,
    );
  }
}
