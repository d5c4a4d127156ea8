/**
 * meta/activity-log — the DRBD 8.4 activity log: the on-disk ring of 4 KiB
 * transaction blocks (codec with crc32c, ring placement over stripes), the
 * replay drbdmeta apply-al performs, and the runtime `ActivityLog` the write
 * path uses: an LRU hot set of `al-extents` 4 MiB extents where a write may
 * touch a cold extent only after a transaction naming it is on stable
 * storage, and an evicted extent's bitmap page is written before the
 * transaction that drops it. Knows the bitmap only as pages to flush; knows
 * nothing of superblock flags, peers or roles.
 */
import type { BlockDevice } from '../disk/block-device.js';
import { assert } from '../util/assert.js';
import { crc32c } from './crc32c.js';
import { Bitmap } from './bitmap.js';
import { AL_EXTENT_BYTES, type ActivityLogApi } from './types.js';

export const AL_MAGIC = 0x69cb65a2;
export const AL_TR_UPDATE = 0;
export const AL_TR_INITIALIZED = 0xffff;
export const AL_BLOCK_BYTES = 4096;
export const AL_UPDATES_PER_TRANSACTION = 64;
export const AL_CONTEXT_PER_TRANSACTION = 919;
/** DRBD_AL_EXTENTS_MAX: slot numbers are below this. */
export const AL_EXTENTS_MAX = 65534;
/** DRBD_AL_EXTENTS_MIN. */
export const AL_EXTENTS_MIN = 67;
/** 8.4 config default for al-extents. */
export const AL_EXTENTS_DEFAULT = 1237;
/** "Free" slot / extent marker (LC_FREE). */
export const LC_FREE = 0xffffffff;
const SLOT_UNUSED = 0xffff;

const OFF_MAGIC = 0x000;
const OFF_TR_NUMBER = 0x004;
const OFF_CRC = 0x008;
const OFF_TYPE = 0x00c;
const OFF_N_UPDATES = 0x00e;
const OFF_CONTEXT_SIZE = 0x010;
const OFF_CONTEXT_START = 0x012;
const OFF_UPDATE_SLOTS = 0x024;
const OFF_UPDATE_EXTENTS = 0x0a4;
const OFF_CONTEXT = 0x1a4;

export interface AlTransaction {
  trNumber: number;
  type: number;
  /** (slot, extent) pairs, at most 64. */
  updates: { slot: number; extent: number }[];
  contextSize: number;
  contextStartSlot: number;
  /** Up to 919 extent numbers for slots contextStartSlot…; missing entries are LC_FREE. */
  context: ArrayLike<number>;
}

/** Encodes one transaction block into `out` (4096 bytes) including its crc32c. */
export function encodeAlTransaction(tr: AlTransaction, out: Buffer = Buffer.alloc(AL_BLOCK_BYTES)): Buffer {
  assert(out.length === AL_BLOCK_BYTES, 'AL block buffer is 4096 bytes');
  assert(tr.updates.length <= AL_UPDATES_PER_TRANSACTION, `at most ${AL_UPDATES_PER_TRANSACTION} updates per transaction`);
  assert(tr.context.length <= AL_CONTEXT_PER_TRANSACTION, `at most ${AL_CONTEXT_PER_TRANSACTION} context entries`);
  out.fill(0);
  out.writeUInt32BE(AL_MAGIC, OFF_MAGIC);
  out.writeUInt32BE(tr.trNumber >>> 0, OFF_TR_NUMBER);
  out.writeUInt16BE(tr.type, OFF_TYPE);
  if (tr.type === AL_TR_UPDATE) {
    out.writeUInt16BE(tr.updates.length, OFF_N_UPDATES);
    out.writeUInt16BE(tr.contextSize, OFF_CONTEXT_SIZE);
    out.writeUInt16BE(tr.contextStartSlot, OFF_CONTEXT_START);
    for (let i = 0; i < AL_UPDATES_PER_TRANSACTION; i++) {
      const u = tr.updates[i];
      out.writeUInt16BE(u ? u.slot : SLOT_UNUSED, OFF_UPDATE_SLOTS + 2 * i);
      out.writeUInt32BE(u ? u.extent >>> 0 : LC_FREE, OFF_UPDATE_EXTENTS + 4 * i);
    }
    for (let i = 0; i < AL_CONTEXT_PER_TRANSACTION; i++) {
      out.writeUInt32BE(i < tr.context.length ? tr.context[i]! >>> 0 : LC_FREE, OFF_CONTEXT + 4 * i);
    }
  }
  out.writeUInt32BE(crc32c(out), OFF_CRC);
  return out;
}

/** The block create-md writes into every ring slot (type INITIALIZED, tr 0, rest zero). */
export function initializedAlBlock(): Buffer {
  const out = Buffer.alloc(AL_BLOCK_BYTES);
  out.writeUInt32BE(AL_MAGIC, OFF_MAGIC);
  out.writeUInt16BE(AL_TR_INITIALIZED, OFF_TYPE);
  out.writeUInt32BE(crc32c(out), OFF_CRC);
  return out;
}

export interface DecodedAlBlock {
  /** Magic and crc both correct. */
  valid: boolean;
  magicOk: boolean;
  crcOk: boolean;
  tr: AlTransaction;
}

/** Decodes one block; `valid` is false on a wrong magic or crc. Does not modify `block`. */
export function decodeAlTransaction(block: Buffer): DecodedAlBlock {
  assert(block.length === AL_BLOCK_BYTES, 'AL block is 4096 bytes');
  const magicOk = block.readUInt32BE(OFF_MAGIC) === AL_MAGIC;
  const stored = block.readUInt32BE(OFF_CRC);
  // crc over the block with the crc field taken as zero: split around it.
  let crc = crc32c(block, 0, 0, OFF_CRC);
  crc = crc32c(ZERO4, crc);
  crc = crc32c(block, crc, OFF_CRC + 4, AL_BLOCK_BYTES);
  const crcOk = crc === stored;
  const nUpdates = block.readUInt16BE(OFF_N_UPDATES);
  const updates: { slot: number; extent: number }[] = [];
  for (let i = 0; i < AL_UPDATES_PER_TRANSACTION; i++) {
    const slot = block.readUInt16BE(OFF_UPDATE_SLOTS + 2 * i);
    // drbdmeta's rule: entries past n_updates count unless their slot is unused.
    if (i >= nUpdates && slot === SLOT_UNUSED) continue;
    updates.push({ slot, extent: block.readUInt32BE(OFF_UPDATE_EXTENTS + 4 * i) });
  }
  const context = new Uint32Array(AL_CONTEXT_PER_TRANSACTION);
  for (let i = 0; i < AL_CONTEXT_PER_TRANSACTION; i++) context[i] = block.readUInt32BE(OFF_CONTEXT + 4 * i);
  return {
    valid: magicOk && crcOk,
    magicOk,
    crcOk,
    tr: {
      trNumber: block.readUInt32BE(OFF_TR_NUMBER),
      type: block.readUInt16BE(OFF_TYPE),
      updates,
      contextSize: block.readUInt16BE(OFF_CONTEXT_SIZE),
      contextStartSlot: block.readUInt16BE(OFF_CONTEXT_START),
      context,
    },
  };
}
const ZERO4 = new Uint8Array(4);

/** Ring block index (0…N-1) of transaction number `trNumber` (striped placement). */
export function alBlockIndex(trNumber: number, alStripes: number, alStripeSize4k: number): number {
  const n = alStripes * alStripeSize4k;
  const k = (trNumber >>> 0) % n;
  return (k % alStripes) * alStripeSize4k + Math.floor(k / alStripes);
}

export type AlReplayStatus =
  /** Transactions with updates were found; `extents` lists the hot set at the newest one. */
  | 'updates'
  /** Every block is a valid INITIALIZED block (or only the first failed): nothing to apply. */
  | 'clean'
  /** Not a single valid block ("No usable activity log found. Do you need to create-md?"). */
  | 'nodata'
  /** Some valid INITIALIZED blocks, others corrupt, no update transaction. */
  | 'invalid';

export interface AlReplay {
  status: AlReplayStatus;
  /** Distinct extent numbers to mark out of sync, ascending. */
  extents: number[];
  validBlocks: number;
  corruptBlocks: number;
  newestTrNumber: number;
  /** Messages drbdmeta would print to stderr for the same log. */
  messages: string[];
}

/**
 * Replays an activity-log area (`alStripes × alStripeSize4k` blocks) as
 * drbdmeta apply-al does: walk valid UPDATE transactions from oldest to
 * newest (signed tr_number order), applying context then updates into a
 * slot→extent table; blocks with a bad magic or crc are skipped.
 */
export function replayActivityLog(area: Buffer, alStripes: number, alStripeSize4k: number): AlReplay {
  const n = alStripes * alStripeSize4k;
  assert(area.length === n * AL_BLOCK_BYTES, `AL area of ${area.length} bytes holds ${n} blocks`);
  const blocks: DecodedAlBlock[] = [];
  let validBlocks = 0;
  let updateBlocks = 0;
  let oldest = { i: 0, tr: 0 };
  let newest = { i: 0, tr: 0 };
  const messages: string[] = [];
  for (let b = 0; b < n; b++) {
    const at = alBlockIndex(b, alStripes, alStripeSize4k) * AL_BLOCK_BYTES;
    const block = decodeAlTransaction(area.subarray(at, at + AL_BLOCK_BYTES));
    blocks.push(block);
    if (!block.valid) continue;
    validBlocks++;
    if (block.tr.type === AL_TR_INITIALIZED) continue;
    updateBlocks++;
    const tr = block.tr.trNumber;
    if (updateBlocks === 1) {
      oldest = { i: b, tr };
      newest = { i: b, tr };
      continue;
    }
    // Signed 32-bit distance, so the order survives tr_number wrap-around.
    if (((tr - oldest.tr) | 0) < 0) oldest = { i: b, tr };
    if (((tr - newest.tr) | 0) > 0) newest = { i: b, tr };
  }
  const corruptBlocks = n - validBlocks;
  const result = (status: AlReplayStatus, extents: number[] = []): AlReplay => ({
    status,
    extents,
    validBlocks,
    corruptBlocks,
    newestTrNumber: newest.tr,
    messages,
  });
  if (validBlocks === 0) {
    messages.push('No usable activity log found. Do you need to create-md?');
    return result('nodata');
  }
  if (corruptBlocks > 0) messages.push(`${corruptBlocks} corrupt AL transactions found`);
  if (updateBlocks === 0) {
    if (validBlocks === n) return result('clean');
    if (!blocks[0]!.valid && validBlocks === n - 1) return result('clean');
    messages.push('No valid AL update transaction found.');
    return result('invalid');
  }
  const slotToExtent = new Map<number, number>();
  const last = newest.i < oldest.i ? newest.i + n : newest.i;
  for (let b = oldest.i; b <= last; b++) {
    const block = blocks[b % n]!;
    if (!block.valid || block.tr.type === AL_TR_INITIALIZED) continue;
    const tr = block.tr;
    for (let i = 0; i < AL_CONTEXT_PER_TRANSACTION; i++) {
      const slot = tr.contextStartSlot + i;
      const extent = tr.context[i]!;
      if (extent === LC_FREE && slot >= tr.contextSize) continue;
      if (slot >= AL_EXTENTS_MAX) {
        messages.push(`slot number out of range: tr:${b % n} slot:${slot}`);
        continue;
      }
      slotToExtent.set(slot, extent);
    }
    for (const u of tr.updates) {
      if (u.slot >= AL_EXTENTS_MAX) {
        messages.push(`update slot number out of range: tr:${b % n} slot:${u.slot}`);
        continue;
      }
      slotToExtent.set(u.slot, u.extent);
    }
  }
  const extents = [...new Set([...slotToExtent.values()].filter((e) => e !== LC_FREE))].sort((a, b) => a - b);
  return result('updates', extents);
}

/** The whole AL area filled with INITIALIZED blocks, as create-md and apply-al leave it. */
export function initializedAlArea(alStripes: number, alStripeSize4k: number): Buffer {
  const n = alStripes * alStripeSize4k;
  const block = initializedAlBlock();
  const area = Buffer.alloc(n * AL_BLOCK_BYTES);
  for (let i = 0; i < n; i++) block.copy(area, i * AL_BLOCK_BYTES);
  return area;
}

/** Largest useful al-extents for a ring of `blocks` transactions: the full context must fit in blocks-1 transactions. */
export function alExtentsMaxForRing(blocks: number): number {
  return Math.min(AL_EXTENTS_MAX, Math.max(1, blocks - 1) * AL_CONTEXT_PER_TRANSACTION);
}

export interface ActivityLogOptions {
  /** Absolute byte offset of the AL area on `disk`. */
  alOffsetBytes: number;
  alStripes: number;
  alStripeSize4k: number;
  /** Absolute byte offset of the bitmap area on `disk` (for eviction write-back). */
  bmOffsetBytes: number;
  /** Hot-set size ("al-extents"); clamped to what the ring can describe. */
  alExtents?: number;
  /** First transaction number to write (0 after apply-al re-initialised the ring). */
  firstTrNumber?: number;
  /** `al-updates no`: never write transactions (hot-set tracking only). */
  alUpdates?: boolean;
  /**
   * External meta-data: makes the data written so far stable before an
   * evicted extent's bitmap page is written (the page may carry bits cleared
   * for that data; on its own device nothing else orders the two).
   */
  flushDataBeforeBitmap?: () => Promise<void>;
  /**
   * `md-flushes` (default true): transactions and evicted bitmap pages are
   * written FUA. false (`md-flushes no`): plain writes, in the same order —
   * safe only with a battery-backed cache on the meta-data device.
   */
  mdFlushes?: boolean;
}

/**
 * The runtime activity log. `beginWrite` returns synchronously (undefined)
 * when every extent of the range is hot — the hot path allocates nothing —
 * and otherwise a promise that resolves after the transaction naming the
 * cold extents is written with FUA. Transactions are serialised; each carries
 * at most 64 updates and 919 context slots, rotating through the hot set.
 */
export class ActivityLog implements ActivityLogApi {
  readonly alExtents: number;
  private readonly ringBlocks: number;
  /** slot → extent (LC_FREE when empty). */
  private readonly slotExtent: Uint32Array;
  /** In-flight writes per slot; a slot with refs is never evicted. */
  private readonly slotRefs: Uint32Array;
  /** LRU list over slots: prev/next indexes, -1 terminated; head = most recent. */
  private readonly lruPrev: Int32Array;
  private readonly lruNext: Int32Array;
  private lruHead = -1;
  private lruTail = -1;
  private readonly extentSlot = new Map<number, number>();
  private freeSlots: number[];
  private trNumber: number;
  private contextCursor = 0;
  private readonly block = Buffer.alloc(AL_BLOCK_BYTES);
  /** Serialises transactions. */
  private chain: Promise<void> = Promise.resolve();
  /** Resolvers waiting for a slot to become evictable (bounded by in-flight writes upstream). */
  private readonly slotWaiters: (() => void)[] = [];
  /** Transactions written since construction (the `al:` counter). */
  transactionCount = 0;
  private readonly alUpdates: boolean;
  /** Where the ring and the bitmap are; they change only by relocate(). */
  private alOffsetBytes: number;
  private bmOffsetBytes: number;

  constructor(
    private readonly disk: BlockDevice,
    private readonly bitmap: Bitmap,
    private readonly options: ActivityLogOptions,
  ) {
    this.ringBlocks = options.alStripes * options.alStripeSize4k;
    assert(this.ringBlocks >= 2, 'activity log ring has at least 2 blocks');
    const wanted = options.alExtents ?? AL_EXTENTS_DEFAULT;
    this.alExtents = Math.max(1, Math.min(wanted, alExtentsMaxForRing(this.ringBlocks)));
    this.slotExtent = new Uint32Array(this.alExtents).fill(LC_FREE);
    this.slotRefs = new Uint32Array(this.alExtents);
    this.lruPrev = new Int32Array(this.alExtents).fill(-1);
    this.lruNext = new Int32Array(this.alExtents).fill(-1);
    this.freeSlots = [];
    for (let s = this.alExtents - 1; s >= 0; s--) this.freeSlots.push(s);
    this.trNumber = options.firstTrNumber ?? 0;
    this.alUpdates = options.alUpdates ?? true;
    this.alOffsetBytes = options.alOffsetBytes;
    this.bmOffsetBytes = options.bmOffsetBytes;
  }

  /**
   * Runs `work` between transactions: none is in flight or starts while it
   * runs (writes to hot extents go on; one needing a transaction waits).
   * The meta-data uses it to move the ring and the bitmap
   * (drbd_determine_dev_size: lc_try_lock_for_transaction).
   */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.chain.then(work);
    this.chain = run.then(() => undefined, () => undefined);
    return run;
  }

  /**
   * Inside exclusive(): the ring moves to `alOffsetBytes` (and evicted pages
   * go to the bitmap at `bmOffsetBytes` from now on). Writes a whole ring of
   * transactions there, together naming every hot extent (drbd_al_initialize),
   * so a replay of the new ring covers every write in flight. Written even
   * with al-updates no: the ring must be valid for apply-al.
   */
  async relocate(alOffsetBytes: number, bmOffsetBytes: number): Promise<void> {
    this.alOffsetBytes = alOffsetBytes;
    this.bmOffsetBytes = bmOffsetBytes;
    // A ring of N blocks holds N consecutive transactions; N ≥ 2 and alExtents ≤ (N−1)·919, so they carry the whole context.
    for (let i = 0; i < this.ringBlocks; i++) await this.writeTransaction([]);
  }

  /** Number of the next transaction to be written. */
  get nextTrNumber(): number {
    return this.trNumber;
  }

  /** Extents currently hot (committed), for tests and status. */
  hotExtents(): number[] {
    return [...this.extentSlot.keys()].sort((a, b) => a - b);
  }

  isHot(extent: number): boolean {
    return this.extentSlot.has(extent);
  }

  beginWrite(offsetBytes: number, lengthBytes: number): Promise<void> | void {
    const first = Math.floor(offsetBytes / AL_EXTENT_BYTES);
    const last = Math.floor((offsetBytes + Math.max(lengthBytes, 1) - 1) / AL_EXTENT_BYTES);
    assert(last - first + 1 <= Math.min(AL_UPDATES_PER_TRANSACTION, this.alExtents), `write spans ${last - first + 1} extents, more than one transaction can name`);
    let allHot = true;
    for (let e = first; e <= last; e++) {
      if (!this.extentSlot.has(e)) {
        allHot = false;
        break;
      }
    }
    if (allHot) {
      for (let e = first; e <= last; e++) this.take(this.extentSlot.get(e)!);
      return undefined;
    }
    const run = this.chain.then(() => this.commitRange(first, last));
    // Transactions stay serialised after a failed one; its caller gets the failure through `run`.
    this.chain = run.catch(() => undefined);
    return run;
  }

  endWrite(offsetBytes: number, lengthBytes: number): void {
    const first = Math.floor(offsetBytes / AL_EXTENT_BYTES);
    const last = Math.floor((offsetBytes + Math.max(lengthBytes, 1) - 1) / AL_EXTENT_BYTES);
    for (let e = first; e <= last; e++) {
      const slot = this.extentSlot.get(e);
      assert(slot !== undefined, `endWrite for extent ${e} that is not hot`);
      assert(this.slotRefs[slot]! > 0, `endWrite for extent ${e} without beginWrite`);
      this.slotRefs[slot]!--;
      if (this.slotRefs[slot] === 0 && this.slotWaiters.length > 0) this.slotWaiters.shift()!();
    }
  }

  /** Under the transaction chain: make extents first…last hot, then take a reference on each. */
  private async commitRange(first: number, last: number): Promise<void> {
    const updates: { slot: number; extent: number }[] = [];
    const evicted: number[] = [];
    for (let e = first; e <= last; e++) {
      if (this.extentSlot.has(e)) continue;
      let slot = this.freeSlots.pop();
      while (slot === undefined) {
        slot = this.evictableSlot(first, last);
        if (slot === undefined) await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
      }
      const old = this.slotExtent[slot]!;
      if (old !== LC_FREE) {
        this.extentSlot.delete(old);
        this.lruUnlink(slot);
        evicted.push(old);
      }
      updates.push({ slot, extent: e });
    }
    if (updates.length > 0) {
      // The bitmap bits of an extent leaving the log must be on disk before the log forgets it.
      const pages = new Set(evicted.map((e) => Bitmap.pageOfExtent(e)));
      if (pages.size > 0 && this.options.flushDataBeforeBitmap !== undefined) await this.options.flushDataBeforeBitmap();
      for (const page of pages) {
        if (page < this.bitmap.pageCount) await this.bitmap.writePage(this.disk, this.bmOffsetBytes, page, { durable: this.options.mdFlushes !== false });
      }
      if (this.alUpdates) await this.writeTransaction(updates);
      for (const u of updates) {
        this.slotExtent[u.slot] = u.extent;
        this.extentSlot.set(u.extent, u.slot);
        this.lruPushHead(u.slot);
      }
    }
    for (let e = first; e <= last; e++) this.take(this.extentSlot.get(e)!);
  }

  private async writeTransaction(updates: { slot: number; extent: number }[]): Promise<void> {
    const start = this.contextCursor;
    const count = Math.min(AL_CONTEXT_PER_TRANSACTION, this.alExtents - start);
    // Context reflects the slots before this transaction's updates (replay applies updates after it).
    const context = this.slotExtent.subarray(start, start + count);
    encodeAlTransaction(
      { trNumber: this.trNumber, type: AL_TR_UPDATE, updates, contextSize: this.alExtents, contextStartSlot: start, context },
      this.block,
    );
    const index = alBlockIndex(this.trNumber, this.options.alStripes, this.options.alStripeSize4k);
    const durable = this.options.mdFlushes !== false;
    await this.disk.write(this.block, this.alOffsetBytes + index * AL_BLOCK_BYTES, durable ? { fua: true } : undefined);
    if (durable && !this.disk.capabilities.canFua) await this.disk.flush();
    this.trNumber = (this.trNumber + 1) >>> 0;
    this.contextCursor = start + AL_CONTEXT_PER_TRANSACTION >= this.alExtents ? 0 : start + AL_CONTEXT_PER_TRANSACTION;
    this.transactionCount++;
  }

  private evictableSlot(first: number, last: number): number | undefined {
    for (let s = this.lruTail; s !== -1; s = this.lruPrev[s]!) {
      const extent = this.slotExtent[s]!;
      if (this.slotRefs[s] === 0 && (extent < first || extent > last)) return s;
    }
    return undefined;
  }

  private take(slot: number): void {
    this.slotRefs[slot]!++;
    if (this.lruHead !== slot) {
      this.lruUnlink(slot);
      this.lruPushHead(slot);
    }
  }

  private lruUnlink(slot: number): void {
    const prev = this.lruPrev[slot]!;
    const next = this.lruNext[slot]!;
    if (prev !== -1) this.lruNext[prev] = next;
    else if (this.lruHead === slot) this.lruHead = next;
    if (next !== -1) this.lruPrev[next] = prev;
    else if (this.lruTail === slot) this.lruTail = prev;
    this.lruPrev[slot] = -1;
    this.lruNext[slot] = -1;
  }

  private lruPushHead(slot: number): void {
    this.lruPrev[slot] = -1;
    this.lruNext[slot] = this.lruHead;
    if (this.lruHead !== -1) this.lruPrev[this.lruHead] = slot;
    this.lruHead = slot;
    if (this.lruTail === -1) this.lruTail = slot;
  }
}
