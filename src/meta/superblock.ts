/**
 * meta/superblock — the v08 meta-data layouts and the 4 KiB superblock:
 * "flexible internal" (at the end of the backing device: bitmap, AL,
 * superblock), external indexed (`meta-disk DEV [N]`: fixed 128 MiB slot N of
 * the meta device: superblock, 32 KiB AL, bitmap) and flexible external
 * (`flexible-meta-disk DEV`: the whole meta device, same order from byte 0).
 * Layout math (md/al/bm offsets, usable data size), the big-endian codec, and
 * the checks drbdmeta and the 8.4 kernel make before trusting it. Pure
 * functions on Buffers and numbers; knows nothing of files, the bitmap
 * contents or the activity log ring.
 */
import { UdrbdError, ExitCode } from '../util/errors.js';
import { assert } from '../util/assert.js';
import type { GenerationUuids } from './types.js';
import { BM_BLOCK_BYTES, MdFlag } from './types.js';

/** Clean v08 meta-data (drbdmeta create-md / apply-al). */
export const MD_MAGIC_08 = 0x8374026b;
/** Written by the 8.4 kernel on every superblock write while attached. */
export const MD_MAGIC_84_UNCLEAN = 0x8374026c;
export const MD_MAGIC_07 = 0x8374026a;
export const MD_MAGIC_09 = 0x8374026d;

export const SECTOR_BYTES = 512;
export const SUPERBLOCK_BYTES = 4096;
/** Bytes of the superblock that carry fields; the rest is zero. */
export const SUPERBLOCK_USED_BYTES = 0x60;
/** drbdmeta refuses devices smaller than the 68 KiB it scans for file systems. */
export const DEVICE_BYTES_MIN = 68 * 1024;
/** drbdmeta's placeholder al_nr_extents after create-md ("arbitrary"). */
export const AL_NR_EXTENTS_CREATE_MD = 257;
export const AL_STRIPES_DEFAULT = 1;
export const AL_STRIPE_SIZE_4K_DEFAULT = 8;
/** Kernel limit: al_stripes × al_stripe_size_4k ≤ 4 Mi blocks (16 GiB). */
export const AL_BLOCKS_MAX = 4 * 1024 * 1024;
/**
 * udrbd reads the whole activity-log ring into memory at attach (apply-al)
 * and refuses a ring larger than this, where DRBD allows AL_BLOCKS_MAX
 * (16 GiB): 64 MiB is 2048 times the default 32 KiB ring and far more than
 * al-extents 65534 can use. Without it a consistent superblock naming a
 * 16 GiB ring made attach fail with a RangeError (or try to allocate GiBs).
 */
export const AL_AREA_BYTES_MAX = 64 * 1024 * 1024;
/** Largest bitmap drbdmeta's flexible layout allows (2^35 bytes on 64-bit). */
export const BM_BYTES_MAX_FLEX = 2 ** 35;

/** Bytes of one slot of indexed external meta-data (DRBD MD_RESERVED_SECT, 128 MiB). */
export const MD_INDEXED_SLOT_BYTES = 128 * 1024 * 1024;
/** Largest index drbdadm accepts in `meta-disk DEV [N]` (kernel: meta_dev_idx is an int; 128 MiB slots). */
export const MD_INDEX_MAX = 1 << 20;

/**
 * Where the meta-data lives (drbdmeta's index argument): `internal` (end of
 * the backing device), `indexed` slot N of a meta device (`meta-disk DEV [N]`,
 * drbdmeta `N`), or `flexExternal`, the whole meta device (`flexible-meta-disk
 * DEV` or `meta-disk DEV`, drbdmeta `flex-external`).
 */
export type MetaPlacement = { kind: 'internal' } | { kind: 'indexed'; index: number } | { kind: 'flexExternal' };

/** Largest data area udrbd tracks with external meta-data (2^52 bytes: offsets stay exact in a JS number). */
export const EXTERNAL_DATA_BYTES_MAX = 2 ** 52;

export const INTERNAL: MetaPlacement = Object.freeze({ kind: 'internal' });

/** The placement of a configured meta-disk: `internal`, or a device with slot N or `flexible`. */
export function placementOf(metaDisk: 'internal' | { readonly index: number | 'flexible' }): MetaPlacement {
  if (metaDisk === 'internal') return INTERNAL;
  return metaDisk.index === 'flexible' ? { kind: 'flexExternal' } : { kind: 'indexed', index: metaDisk.index };
}

/** drbdmeta's index argument for a placement: `internal`, `flex-external` or the slot number. */
export function drbdmetaIndexArg(placement: MetaPlacement): string {
  switch (placement.kind) {
    case 'internal':
      return 'internal';
    case 'flexExternal':
      return 'flex-external';
    case 'indexed':
      return String(placement.index);
  }
}

export interface Superblock {
  /** Last agreed DRBD device size, sectors (0 after create-md). */
  laSizeSectors: number;
  uuids: GenerationUuids;
  deviceUuid: bigint;
  flags: number;
  magic: number;
  mdSizeSectors: number;
  /** Signed sectors from the superblock start (negative for internal). */
  alOffsetSectors: number;
  alNrExtents: number;
  bmOffsetSectors: number;
  bmBytesPerBit: number;
  laPeerMaxBioSize: number;
  alStripes: number;
  alStripeSize4k: number;
}

/** Where everything lives on a (meta) device of a given size. */
export interface MetaLayout {
  placement: MetaPlacement;
  /** Size of the device the meta-data is on (the backing disk when internal). */
  deviceSizeBytes: number;
  /** Absolute byte offset of the superblock. */
  mdOffsetBytes: number;
  /** Absolute byte offset of the activity log. */
  alOffsetBytes: number;
  /** Absolute byte offset of the bitmap. */
  bmOffsetBytes: number;
  alStripes: number;
  alStripeSize4k: number;
  /** Activity-log size: stripes × stripe size × 4 KiB. */
  alBytes: number;
  /**
   * On-disk bitmap area size: internal, 4 KiB per 128 MiB of backing device,
   * rounded up; external, whole 4 KiB pages between the AL and the end of the
   * slot (indexed) or of the meta device (flexible).
   */
  bmAreaBytes: number;
  mdSizeSectors: number;
  alOffsetSectors: number;
  bmOffsetSectors: number;
  /**
   * Usable data bytes: internal, everything below the bitmap; external, the
   * most the bitmap area can track (the data disk may be smaller: MetaData
   * clips to it).
   */
  dataSizeBytes: number;
}

function alignUp(value: number, to: number): number {
  return Math.ceil(value / to) * to;
}

/**
 * drbdmeta's bm_bytes(): bytes of bitmap for `sectors` of storage — one bit
 * per 4 KiB, rounded up to 64-bit words, then to 4 KiB.
 */
export function bitmapBytesForSectors(sectors: number): number {
  const bits = alignUp(Math.ceil(sectors / (BM_BLOCK_BYTES / SECTOR_BYTES)), 64);
  return alignUp(bits / 8, 4096);
}

export interface LayoutOptions {
  alStripes?: number;
  alStripeSize4k?: number;
  devicePath?: string;
  /** Default: internal. */
  placement?: MetaPlacement;
}

/** The v08 layout for a (meta) device of `deviceSizeBytes`. */
export function computeLayout(deviceSizeBytes: number, options: LayoutOptions = {}): MetaLayout {
  const alStripes = options.alStripes ?? AL_STRIPES_DEFAULT;
  const alStripeSize4k = options.alStripeSize4k ?? AL_STRIPE_SIZE_4K_DEFAULT;
  const name = options.devicePath ?? 'device';
  const placement = options.placement ?? INTERNAL;
  if (!Number.isSafeInteger(deviceSizeBytes) || deviceSizeBytes < DEVICE_BYTES_MIN) {
    throw new UdrbdError(`${name} is only ${deviceSizeBytes} bytes. That's not enough.`, ExitCode.configInvalid);
  }
  if (alStripes < 1 || alStripeSize4k < 1 || alStripes * alStripeSize4k < 8 || alStripes * alStripeSize4k > AL_BLOCKS_MAX) {
    throw new UdrbdError(
      `${name}: invalid activity log striping ${alStripes} × ${alStripeSize4k} 4k blocks (need 8 ≤ product ≤ ${AL_BLOCKS_MAX})`,
      ExitCode.configInvalid,
    );
  }
  const alProblem = alAreaProblem(alStripes, alStripeSize4k);
  if (alProblem !== null) throw new UdrbdError(`${name}: ${alProblem}`, ExitCode.configInvalid);
  if (placement.kind !== 'internal') return computeExternalLayout(deviceSizeBytes, placement, alStripes, alStripeSize4k, name);
  const mdOffsetBytes = Math.floor((deviceSizeBytes - SUPERBLOCK_BYTES) / 4096) * 4096;
  const alBytes = alStripes * alStripeSize4k * 4096;
  const bmAreaBytes = bitmapBytesForSectors(Math.floor(deviceSizeBytes / SECTOR_BYTES));
  if (bmAreaBytes > BM_BYTES_MAX_FLEX) {
    throw new UdrbdError(`${name}: Bitmap for that device got too large.`, ExitCode.configInvalid);
  }
  const mdSizeSectors = (SUPERBLOCK_BYTES + alBytes + bmAreaBytes) / SECTOR_BYTES;
  const alOffsetSectors = -alBytes / SECTOR_BYTES;
  const bmOffsetSectors = -(mdSizeSectors - SUPERBLOCK_BYTES / SECTOR_BYTES);
  const alOffsetBytes = mdOffsetBytes + alOffsetSectors * SECTOR_BYTES;
  const bmOffsetBytes = mdOffsetBytes + bmOffsetSectors * SECTOR_BYTES;
  if (bmOffsetBytes <= 0) {
    throw new UdrbdError(`${name} (${deviceSizeBytes} bytes) is too small for its own meta data`, ExitCode.configInvalid);
  }
  const layout: MetaLayout = {
    placement,
    deviceSizeBytes,
    mdOffsetBytes,
    alOffsetBytes,
    bmOffsetBytes,
    alStripes,
    alStripeSize4k,
    alBytes,
    bmAreaBytes,
    mdSizeSectors,
    alOffsetSectors,
    bmOffsetSectors,
    dataSizeBytes: bmOffsetBytes,
  };
  assert(layout.bmOffsetBytes + bmAreaBytes === layout.alOffsetBytes, 'bitmap ends where the activity log starts');
  assert(layout.alOffsetBytes + alBytes === layout.mdOffsetBytes, 'activity log ends where the superblock starts');
  return layout;
}

/**
 * External layouts (DRBD's drbd_md_set_sector_offsets / drbdmeta): superblock
 * at the start of the slot (index × 128 MiB) or of the device (flexible), the
 * AL right after it (al_offset +8 sectors), the bitmap after the AL; md_size_sect
 * is the slot (262144) or the whole device. Indexed meta-data has the fixed
 * 32 KiB AL (the kernel refuses other striping there) and needs the whole slot
 * on the device, as the kernel checks at attach ("Meta device too small").
 */
function computeExternalLayout(
  deviceSizeBytes: number,
  placement: Exclude<MetaPlacement, { kind: 'internal' }>,
  alStripes: number,
  alStripeSize4k: number,
  name: string,
): MetaLayout {
  const alBytes = alStripes * alStripeSize4k * 4096;
  let mdOffsetBytes: number;
  let mdSizeSectors: number;
  if (placement.kind === 'indexed') {
    const { index } = placement;
    if (!Number.isSafeInteger(index) || index < 0 || index > MD_INDEX_MAX) {
      throw new UdrbdError(`${name}: meta-disk index ${index} is not a whole number from 0 to ${MD_INDEX_MAX}`, ExitCode.configInvalid);
    }
    if (alStripes !== AL_STRIPES_DEFAULT || alStripeSize4k !== AL_STRIPE_SIZE_4K_DEFAULT) {
      throw new UdrbdError(
        `${name}: indexed meta-data (meta-disk ${name} [${index}]) has a fixed 32 KiB activity log; use flexible-meta-disk for --al-stripes/--al-stripe-size-kB`,
        ExitCode.configInvalid,
      );
    }
    mdOffsetBytes = index * MD_INDEXED_SLOT_BYTES;
    mdSizeSectors = MD_INDEXED_SLOT_BYTES / SECTOR_BYTES;
    if (deviceSizeBytes < mdOffsetBytes + MD_INDEXED_SLOT_BYTES) {
      throw new UdrbdError(
        `${name} (${deviceSizeBytes} bytes) is too small for meta-data index ${index}: slot ${index} needs ${(index + 1) * 128} MiB on the meta device (Meta device too small)`,
        ExitCode.configInvalid,
      );
    }
  } else {
    mdOffsetBytes = 0;
    mdSizeSectors = Math.floor(deviceSizeBytes / SECTOR_BYTES);
  }
  const alOffsetSectors = SUPERBLOCK_BYTES / SECTOR_BYTES;
  const bmOffsetSectors = alOffsetSectors + alBytes / SECTOR_BYTES;
  const bmAreaBytes = Math.floor((mdSizeSectors * SECTOR_BYTES - SUPERBLOCK_BYTES - alBytes) / 4096) * 4096;
  if (bmAreaBytes < 4096) {
    throw new UdrbdError(
      `${name} (${deviceSizeBytes} bytes) is too small for flexible external meta-data: it needs the 4 KiB superblock, the ${alBytes >> 10} KiB activity log and a bitmap (Meta device too small)`,
      ExitCode.configInvalid,
    );
  }
  const layout: MetaLayout = {
    placement,
    deviceSizeBytes,
    mdOffsetBytes,
    alOffsetBytes: mdOffsetBytes + SUPERBLOCK_BYTES,
    bmOffsetBytes: mdOffsetBytes + SUPERBLOCK_BYTES + alBytes,
    alStripes,
    alStripeSize4k,
    alBytes,
    bmAreaBytes,
    mdSizeSectors,
    alOffsetSectors,
    bmOffsetSectors,
    // One bitmap byte tracks 8 blocks of 4 KiB; capped where byte offsets stay exact numbers.
    dataSizeBytes: Math.min(bmAreaBytes * 8 * BM_BLOCK_BYTES, EXTERNAL_DATA_BYTES_MAX),
  };
  assert(layout.bmOffsetBytes + bmAreaBytes <= mdOffsetBytes + mdSizeSectors * SECTOR_BYTES, 'bitmap ends inside the meta-data area');
  assert(mdOffsetBytes + mdSizeSectors * SECTOR_BYTES <= deviceSizeBytes, 'meta-data area lies inside the meta device');
  return layout;
}

/** A fresh superblock as drbdmeta create-md writes it for `layout`. */
export function freshSuperblock(layout: MetaLayout): Superblock {
  return {
    laSizeSectors: 0,
    uuids: { current: 4n, bitmap: 0n, historyStart: 0n, historyEnd: 0n },
    deviceUuid: 0n,
    flags: MdFlag.alClean,
    magic: MD_MAGIC_08,
    mdSizeSectors: layout.mdSizeSectors,
    alOffsetSectors: layout.alOffsetSectors,
    alNrExtents: AL_NR_EXTENTS_CREATE_MD,
    bmOffsetSectors: layout.bmOffsetSectors,
    bmBytesPerBit: BM_BLOCK_BYTES,
    laPeerMaxBioSize: 0,
    alStripes: layout.alStripes,
    alStripeSize4k: layout.alStripeSize4k,
  };
}

const U64_MAX = (1n << 64n) - 1n;

/** Encodes a superblock into a 4096-byte block (fields big-endian, rest zero). */
export function encodeSuperblock(sb: Superblock, out: Buffer = Buffer.alloc(SUPERBLOCK_BYTES)): Buffer {
  assert(out.length === SUPERBLOCK_BYTES, 'superblock buffer is 4096 bytes');
  assert(Number.isSafeInteger(sb.laSizeSectors) && sb.laSizeSectors >= 0, 'la_size_sect is a non-negative integer');
  for (const u of [sb.uuids.current, sb.uuids.bitmap, sb.uuids.historyStart, sb.uuids.historyEnd, sb.deviceUuid]) {
    assert(u >= 0n && u <= U64_MAX, `UUID ${u} fits in 64 bits`);
  }
  out.fill(0);
  out.writeBigUInt64BE(BigInt(sb.laSizeSectors), 0x00);
  out.writeBigUInt64BE(sb.uuids.current, 0x08);
  out.writeBigUInt64BE(sb.uuids.bitmap, 0x10);
  out.writeBigUInt64BE(sb.uuids.historyStart, 0x18);
  out.writeBigUInt64BE(sb.uuids.historyEnd, 0x20);
  out.writeBigUInt64BE(sb.deviceUuid, 0x28);
  out.writeUInt32BE(sb.flags >>> 0, 0x38);
  out.writeUInt32BE(sb.magic >>> 0, 0x3c);
  out.writeUInt32BE(sb.mdSizeSectors >>> 0, 0x40);
  out.writeInt32BE(sb.alOffsetSectors, 0x44);
  out.writeUInt32BE(sb.alNrExtents >>> 0, 0x48);
  out.writeInt32BE(sb.bmOffsetSectors, 0x4c);
  out.writeUInt32BE(sb.bmBytesPerBit >>> 0, 0x50);
  out.writeUInt32BE(sb.laPeerMaxBioSize >>> 0, 0x54);
  out.writeUInt32BE(sb.alStripes >>> 0, 0x58);
  out.writeUInt32BE(sb.alStripeSize4k >>> 0, 0x5c);
  return out;
}

/**
 * Largest la_size_sect kept as read: its byte size is still a safe integer.
 * A larger u64 (only garbage can hold one: that is more than 4 EiB) reads as
 * this, which is "too big" for every device, so attach caps it to the disk
 * and dump-md prints drbdmeta's "was too big ..., truncated" as for any
 * la-size beyond the device — instead of carrying a number that cannot be
 * written back.
 */
export const LA_SIZE_SECTORS_MAX = Math.floor(Number.MAX_SAFE_INTEGER / SECTOR_BYTES);

function laSizeSectorsOf(raw: bigint): number {
  return raw > BigInt(LA_SIZE_SECTORS_MAX) ? LA_SIZE_SECTORS_MAX : Number(raw);
}

/** Decodes the fields without judging them (see validateSuperblock). */
export function decodeSuperblock(buf: Buffer): Superblock {
  assert(buf.length >= SUPERBLOCK_USED_BYTES, 'superblock buffer holds the used fields');
  let alStripes = buf.readUInt32BE(0x58);
  let alStripeSize4k = buf.readUInt32BE(0x5c);
  // Pre-8.4.3 meta-data has 0/0 here, meaning the fixed 1 × 32 KiB activity log.
  if (alStripes === 0 && alStripeSize4k === 0) {
    alStripes = AL_STRIPES_DEFAULT;
    alStripeSize4k = AL_STRIPE_SIZE_4K_DEFAULT;
  }
  return {
    laSizeSectors: laSizeSectorsOf(buf.readBigUInt64BE(0x00)),
    uuids: {
      current: buf.readBigUInt64BE(0x08),
      bitmap: buf.readBigUInt64BE(0x10),
      historyStart: buf.readBigUInt64BE(0x18),
      historyEnd: buf.readBigUInt64BE(0x20),
    },
    deviceUuid: buf.readBigUInt64BE(0x28),
    flags: buf.readUInt32BE(0x38),
    magic: buf.readUInt32BE(0x3c),
    mdSizeSectors: buf.readUInt32BE(0x40),
    alOffsetSectors: buf.readInt32BE(0x44),
    alNrExtents: buf.readUInt32BE(0x48),
    bmOffsetSectors: buf.readInt32BE(0x4c),
    bmBytesPerBit: buf.readUInt32BE(0x50),
    laPeerMaxBioSize: buf.readUInt32BE(0x54),
    alStripes,
    alStripeSize4k,
  };
}

function alAreaProblem(alStripes: number, alStripeSize4k: number): string | null {
  const alBytes = alStripes * alStripeSize4k * 4096;
  if (alBytes <= AL_AREA_BYTES_MAX) return null;
  return `activity log of ${alStripes} × ${alStripeSize4k} 4k blocks (${alBytes / 1024} KiB) is larger than udrbd reads (${AL_AREA_BYTES_MAX / 1024} KiB)`;
}

/** Why a superblock is not valid v08 meta-data at `placement` on this device, or null if it is. */
export function superblockProblem(sb: Superblock, deviceSizeBytes: number, placement: MetaPlacement = INTERNAL): string | null {
  if (sb.magic !== MD_MAGIC_08 && sb.magic !== MD_MAGIC_84_UNCLEAN) {
    return `v08 Magic number not found (found 0x${hex32(sb.magic)})`;
  }
  if (sb.alStripes < 1 || sb.alStripeSize4k < 1 || sb.alStripes * sb.alStripeSize4k > AL_BLOCKS_MAX || sb.alStripes * sb.alStripeSize4k < 8) {
    return `activity log striping ${sb.alStripes} × ${sb.alStripeSize4k} 4k blocks does not make sense`;
  }
  const alProblem = alAreaProblem(sb.alStripes, sb.alStripeSize4k);
  if (alProblem !== null) return alProblem;
  const alSizeSectors = sb.alStripes * sb.alStripeSize4k * 8;
  if (placement.kind !== 'internal') {
    let expected: MetaLayout;
    try {
      expected = computeLayout(deviceSizeBytes, { alStripes: sb.alStripes, alStripeSize4k: sb.alStripeSize4k, placement });
    } catch (err) {
      return (err as Error).message;
    }
    if (sb.alOffsetSectors !== expected.alOffsetSectors) return `al_offset: expected ${expected.alOffsetSectors}, found ${sb.alOffsetSectors}`;
    if (sb.bmOffsetSectors !== expected.bmOffsetSectors) return `strange bm_offset ${sb.bmOffsetSectors} (expected: ${expected.bmOffsetSectors})`;
    if (sb.mdSizeSectors !== expected.mdSizeSectors) return `strange md_size_sect ${sb.mdSizeSectors} (expected: ${expected.mdSizeSectors})`;
    if (sb.bmBytesPerBit !== BM_BLOCK_BYTES) return `unexpected bm_bytes_per_bit: ${sb.bmBytesPerBit} (expected ${BM_BLOCK_BYTES})`;
    return null;
  }
  if (sb.alOffsetSectors !== -alSizeSectors) {
    return `al_offset: expected ${-alSizeSectors}, found ${sb.alOffsetSectors}`;
  }
  const expected = computeLayout(deviceSizeBytes, { alStripes: sb.alStripes, alStripeSize4k: sb.alStripeSize4k });
  if (sb.bmOffsetSectors !== expected.bmOffsetSectors) {
    return `strange bm_offset ${sb.bmOffsetSectors} (expected: ${expected.bmOffsetSectors})`;
  }
  if (sb.mdSizeSectors !== expected.mdSizeSectors) {
    return `strange md_size_sect ${sb.mdSizeSectors} (expected: ${expected.mdSizeSectors})`;
  }
  if (sb.bmBytesPerBit !== BM_BLOCK_BYTES) {
    return `unexpected bm_bytes_per_bit: ${sb.bmBytesPerBit} (expected ${BM_BLOCK_BYTES})`;
  }
  return null;
}

/**
 * Checks a decoded superblock against the device it was read from and returns
 * the layout it describes; throws "No valid meta data found" (exit 1, like
 * drbdmeta) naming the device and the reason otherwise.
 */
export function validateSuperblock(sb: Superblock, deviceSizeBytes: number, devicePath: string, placement: MetaPlacement = INTERNAL): MetaLayout {
  const problem = superblockProblem(sb, deviceSizeBytes, placement);
  if (problem !== null) {
    throw new UdrbdError(`${devicePath}: ${problem}\nNo valid meta data found`, ExitCode.usage);
  }
  return computeLayout(deviceSizeBytes, { alStripes: sb.alStripes, alStripeSize4k: sb.alStripeSize4k, devicePath, placement });
}

/** True when the meta-data needs apply-al before use (unclean magic, or AL not marked clean). */
export function isUnclean(sb: Superblock): boolean {
  return sb.magic === MD_MAGIC_84_UNCLEAN || (sb.flags & MdFlag.alClean) === 0;
}

export function hex32(value: number): string {
  return (value >>> 0).toString(16).toUpperCase().padStart(8, '0');
}

export function hex64(value: bigint): string {
  return value.toString(16).toUpperCase().padStart(16, '0');
}
