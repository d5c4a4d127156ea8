/**
 * meta/types — the shapes other layers use from the metadata layer. The
 * implementations (superblock codec, bitmap, activity log) live beside this
 * file; resource/ and replication/ code against these types only.
 */

/** Bytes of data one bitmap bit covers (DRBD BM_BLOCK_SIZE). */
export const BM_BLOCK_BYTES = 4096;
/** Bytes of data one activity-log extent covers (DRBD AL_EXTENT_SIZE). */
export const AL_EXTENT_BYTES = 4 * 1024 * 1024;

/** The four generation UUIDs of DRBD 8.4 (u64, kept as bigint). */
export interface GenerationUuids {
  current: bigint;
  bitmap: bigint;
  historyStart: bigint;
  historyEnd: bigint;
}

/** UUID_JUST_CREATED: written by create-md, "never been UpToDate". */
export const UUID_JUST_CREATED = 4n;

/** MDF_* bits of the superblock `flags` word (MDF_*, drbd_int.h). */
export const MdFlag = {
  consistent: 0x001,
  primaryInd: 0x002,
  connectedInd: 0x004,
  fullSync: 0x008,
  wasUpToDate: 0x010,
  peerOutDated: 0x020,
  crashedPrimary: 0x040,
  alClean: 0x080,
  alDisabled: 0x100,
} as const;

/**
 * The out-of-sync bitmap: one bit per 4 KiB block of the data area.
 * Bit numbers are block indexes; ranges are [firstBit, endBit).
 */
export interface DirtyBitmap {
  /** Number of 4 KiB blocks tracked (data size / 4096, rounded up). */
  readonly bitCount: number;
  test(bit: number): boolean;
  /** Sets the bits; returns how many were newly set. */
  setRange(firstBit: number, endBit: number): number;
  /** Clears the bits; returns how many were newly cleared. */
  clearRange(firstBit: number, endBit: number): number;
  setAll(): void;
  countSet(): number;
  /** First set bit at or after `fromBit`, or -1. */
  nextSet(fromBit: number): number;
  /** First clear bit at or after `fromBit`, or bitCount. */
  nextClear(fromBit: number): number;
  /**
   * Copies bits [firstByte*8, +out.length*8) into `out` in the on-disk (and
   * on-wire) LE bit order, bits past bitCount as 0; returns how many are set.
   */
  exportBytes(firstByte: number, out: Buffer): number;
  /** ORs `bits` (same order) in from bit firstByte*8, bits past bitCount ignored; returns bits newly set. */
  orBytes(firstByte: number, bits: Buffer): number;
}

/**
 * The activity log as the write path sees it: before a write may touch a
 * 4 MiB extent that is not hot, the extent must be committed to the on-disk
 * log. `beginWrite` resolves once that is true for every extent of the range;
 * `endWrite` releases the range (extents stay hot until evicted).
 */
export interface ActivityLogApi {
  beginWrite(offsetBytes: number, lengthBytes: number): Promise<void> | void;
  endWrite(offsetBytes: number, lengthBytes: number): void;
}
