/**
 * meta/metadata — one backing disk's v08 meta-data as the resource process
 * uses it, internal (on the backing disk) or external (on a meta device: an
 * indexed 128 MiB slot or a flexible area; superblock, AL and bitmap go there,
 * the whole data disk is data): open + validate the superblock, load the bitmap, recover
 * from the activity log on attach (what `drbdmeta apply-al` does, which
 * drbdadm runs before every attach), mark the superblock unclean while
 * attached like the 8.4 kernel, and close clean (bitmap pages, re-initialised
 * AL ring, magic 0x8374026B + MDF_AL_CLEAN) so the real drbdmeta reads the
 * disk after `down`. Start-up and shutdown I/O is synchronous (FileDisk sync
 * calls); the write path uses `activityLog` and `bitmap` asynchronously.
 * Knows nothing of roles, peers or the network: flag policy is the caller's.
 */
import type { FileDisk } from '../disk/file-disk.js';
import { UdrbdError, ExitCode } from '../util/errors.js';
import { assert } from '../util/assert.js';
import { Bitmap } from './bitmap.js';
import {
  ActivityLog,
  AL_EXTENTS_DEFAULT,
  initializedAlArea,
  replayActivityLog,
  type AlReplay,
} from './activity-log.js';
import {
  INTERNAL,
  MD_MAGIC_08,
  MD_MAGIC_84_UNCLEAN,
  SECTOR_BYTES,
  SUPERBLOCK_BYTES,
  bitmapBytesForSectors,
  decodeSuperblock,
  encodeSuperblock,
  superblockProblem,
  computeLayout,
  isUnclean,
  type MetaLayout,
  type MetaPlacement,
  type Superblock,
} from './superblock.js';
import { BM_BLOCK_BYTES, MdFlag, type GenerationUuids } from './types.js';
import { BM_BITS_PER_AL_EXTENT } from './bitmap.js';

/** Bitmap bytes one AL extent covers (4 MiB / 4 KiB / 8). */
const BM_BYTES_PER_AL_EXTENT = BM_BITS_PER_AL_EXTENT / 8;

/** Absolute offset of the superblock for a device of this size. */
export function mdOffsetFor(deviceSizeBytes: number): number {
  return Math.floor((deviceSizeBytes - SUPERBLOCK_BYTES) / 4096) * 4096;
}

export type ReadMetaResult =
  | { ok: true; sb: Superblock; layout: MetaLayout }
  | { ok: false; reason: string };

/** Reads and checks the superblock at `placement` on `disk` (the meta device); never throws for bad content. */
export function readMetaSync(disk: FileDisk, placement: MetaPlacement = INTERNAL): ReadMetaResult {
  let layoutProbe: MetaLayout;
  try {
    layoutProbe = computeLayout(disk.sizeBytes, { devicePath: disk.path, placement });
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  const buf = Buffer.alloc(SUPERBLOCK_BYTES);
  disk.readSync(buf, layoutProbe.mdOffsetBytes);
  const sb = decodeSuperblock(buf);
  const problem = superblockProblem(sb, disk.sizeBytes, placement);
  if (problem !== null) return { ok: false, reason: problem };
  const layout = computeLayout(disk.sizeBytes, { alStripes: sb.alStripes, alStripeSize4k: sb.alStripeSize4k, devicePath: disk.path, placement });
  return { ok: true, sb, layout };
}

export interface ApplyAlResult {
  replay: AlReplay;
  /** Extents whose bitmap bits were set (drbdmeta applies only when MDF_PRIMARY_IND is set). */
  appliedExtents: number[];
  /** Bits newly set in the on-disk bitmap. */
  bitsAdded: number;
  /** Lines drbdmeta prints on stderr for the same run. */
  messages: string[];
  /** Non-zero: drbdmeta's exit code when the log is unusable and had to be applied. */
  exitCode: number;
}

/**
 * apply-al on disk, with drbdmeta's rules: replay the ring; if MDF_PRIMARY_IND
 * is set, set all 1024 bits of each logged extent inside bm_bytes(la-size) in
 * the on-disk bitmap; re-initialise the ring; set MDF_AL_CLEAN and the clean
 * magic. Writes only inside the meta-data area. Mutates `sb`.
 */
export function applyAlSync(disk: FileDisk, layout: MetaLayout, sb: Superblock): ApplyAlResult {
  const area = Buffer.alloc(layout.alBytes);
  disk.readSync(area, layout.alOffsetBytes);
  const replay = replayActivityLog(area, layout.alStripes, layout.alStripeSize4k);
  const messages = [...replay.messages];
  const needToApply = (sb.flags & MdFlag.primaryInd) !== 0;
  let reinitialize = false;
  let updateSb = false;
  const applied: number[] = [];
  let bitsAdded = 0;
  if (replay.status === 'nodata' || replay.status === 'invalid') {
    if (needToApply) {
      return { replay, appliedExtents: [], bitsAdded: 0, messages, exitCode: replay.status === 'nodata' ? 1 : 2 };
    }
    messages.push('Error ignored, no need to apply the AL');
    reinitialize = true;
  }
  if (replay.status === 'updates') {
    reinitialize = true;
    if (needToApply) {
      const bmBytes = bitmapBytesForSectors(Math.min(sb.laSizeSectors, layout.dataSizeBytes / SECTOR_BYTES));
      const chunk = Buffer.alloc(BM_BYTES_PER_AL_EXTENT);
      for (const extent of replay.extents) {
        const pos = extent * BM_BYTES_PER_AL_EXTENT;
        if (pos >= bmBytes) {
          messages.push(`extent ${extent} beyond end of bitmap!`);
          continue;
        }
        disk.readSync(chunk, layout.bmOffsetBytes + pos);
        let set = 0;
        for (let i = 0; i < chunk.length; i++) set += popcount8(chunk[i]!);
        bitsAdded += chunk.length * 8 - set;
        chunk.fill(0xff);
        disk.writeSync(chunk, layout.bmOffsetBytes + pos);
        applied.push(extent);
      }
      messages.push(applied.length > 0 ? `Marked additional ${ppsize(bitsAdded * 4)} as out-of-sync based on AL.` : 'Nothing to do.');
      updateSb = true;
    }
  }
  if (reinitialize) disk.writeSync(initializedAlArea(layout.alStripes, layout.alStripeSize4k), layout.alOffsetBytes);
  if ((sb.flags & MdFlag.alClean) === 0 || sb.magic !== MD_MAGIC_08) updateSb = true;
  if (updateSb) {
    sb.flags |= MdFlag.alClean;
    sb.magic = MD_MAGIC_08;
    disk.writeSync(encodeSuperblock(sb), layout.mdOffsetBytes);
  }
  disk.flushSync();
  return { replay, appliedExtents: applied, bitsAdded, messages, exitCode: 0 };
}

function popcount8(x: number): number {
  x = x - ((x >> 1) & 0x55);
  x = (x & 0x33) + ((x >> 2) & 0x33);
  return (x + (x >> 4)) & 0x0f;
}

/** drbd's ppsize(): a KiB count in K/M/G/T/P/E units, rounded, e.g. "64 MB". */
export function ppsize(kib: number): string {
  const units = ['K', 'M', 'G', 'T', 'P', 'E'];
  let size = kib;
  let base = 0;
  while (size >= 10000 && base < units.length - 1) {
    size = Math.floor(size / 1024) + (Math.floor(size / 512) % 2);
    base++;
  }
  return `${size} ${units[base]}B`;
}

export interface MetaDataOptions {
  /** Where the meta-data is on the disk MetaData.open is given (default internal). */
  placement?: MetaPlacement;
  /**
   * External meta-data: the data disk (the disk given to open() is then the
   * meta device). Every byte of it is data, up to what the bitmap tracks.
   */
  dataDisk?: FileDisk;
  /** Configured al-extents (default 1237); written to the superblock while attached. */
  alExtents?: number;
  /** `al-updates no`: no AL transactions; MDF_AL_DISABLED is set while attached (a crashed Primary then needs a full sync). */
  alUpdates?: boolean;
  /** `md-flushes no`: meta-data writes while attached are not made stable (no FUA, no flush). */
  mdFlushes?: boolean;
}

/** How far below the end a superblock left behind by a grown disk is looked for (only when none is at the end). */
export const MOVED_MD_SCAN_BYTES = 1024 * 1024 * 1024;
const SCAN_CHUNK_BYTES = 1024 * 1024;

/**
 * Internal meta-data not at the end of the disk: the disk grew and its
 * superblock stayed at the old end (a grow while the resource was down, or a
 * crash before `resize` moved it). Scans the last MOVED_MD_SCAN_BYTES for a
 * 4 KiB-aligned v08 superblock that is valid for the disk size it implies;
 * returns that size, or null. Reads only; for the error message.
 */
function findSuperblockBelowEnd(disk: FileDisk): { mdOffsetBytes: number; deviceSizeBytes: number } | null {
  const endMdOffset = mdOffsetFor(disk.sizeBytes);
  const lowest = Math.max(0, endMdOffset - MOVED_MD_SCAN_BYTES);
  const chunk = Buffer.alloc(SCAN_CHUNK_BYTES);
  for (let chunkEnd = endMdOffset; chunkEnd > lowest; chunkEnd -= SCAN_CHUNK_BYTES) {
    const chunkStart = Math.max(lowest, chunkEnd - SCAN_CHUNK_BYTES);
    const view = chunk.subarray(0, chunkEnd - chunkStart);
    disk.readSync(view, chunkStart);
    for (let at = view.length - SUPERBLOCK_BYTES; at >= 0; at -= SUPERBLOCK_BYTES) {
      const magic = view.readUInt32BE(at + 0x3c);
      if (magic !== MD_MAGIC_08 && magic !== MD_MAGIC_84_UNCLEAN) continue;
      const sb = decodeSuperblock(view.subarray(at, at + SUPERBLOCK_BYTES));
      const mdOffsetBytes = chunkStart + at;
      // The old size S had md_offset = ((S - 4096) & ~4095): S is in [md_offset + 4 KiB, md_offset + 8 KiB).
      const deviceSizeBytes = mdOffsetBytes + SUPERBLOCK_BYTES;
      if (superblockProblem(sb, deviceSizeBytes) === null) return { mdOffsetBytes, deviceSizeBytes };
    }
  }
  return null;
}

/** What grow() will do (MetaData.growthPlan). */
export interface GrowthPlan {
  layout: MetaLayout;
  dataSizeBytes: number;
  /** On-disk bitmap bytes the data area needs. */
  bmBytes: number;
  /** Internal meta-data: superblock, AL and bitmap move to the new end. */
  mdMoved: boolean;
  /** Anything to do at all. */
  grows: boolean;
}

/** The data area and bitmap bytes a layout gives a data disk (internal: below the bitmap; external: the disk, up to what the bitmap tracks). */
function dataAreaOf(layout: MetaLayout, dataDisk: FileDisk): { dataSizeBytes: number; bmBytes: number } {
  if (layout.placement.kind === 'internal') return { dataSizeBytes: layout.dataSizeBytes, bmBytes: layout.bmAreaBytes };
  // DRBD: the whole data disk (whole 4 KiB blocks), clipped to what the bitmap area can track.
  const dataSizeBytes = Math.min(Math.floor(dataDisk.sizeBytes / BM_BLOCK_BYTES) * BM_BLOCK_BYTES, layout.dataSizeBytes);
  if (dataSizeBytes <= 0) {
    throw new UdrbdError(`${dataDisk.path} (${dataDisk.sizeBytes} bytes) holds no whole 4 KiB block of data`, ExitCode.configInvalid);
  }
  return { dataSizeBytes, bmBytes: Math.min(layout.bmAreaBytes, bitmapBytesForSectors(dataSizeBytes / SECTOR_BYTES)) };
}

export interface AttachResult {
  applyAl: ApplyAlResult;
}

export class MetaData {
  readonly bitmap: Bitmap;
  /** Present after attach(). */
  activityLog: ActivityLog | null = null;
  private attached = false;
  private readonly sbBuffer = Buffer.alloc(SUPERBLOCK_BYTES);
  private currentLayout: MetaLayout;
  private currentDataSizeBytes: number;
  /** The bitmap write-out in flight (flushBitmap), awaited before the bitmap moves. */
  private bitmapIo: Promise<unknown> = Promise.resolve();
  /** A grow() in progress: bitmap write-outs wait for it (they would use the old place). */
  private growing: Promise<void> | null = null;

  private constructor(
    /** Where superblock, AL and bitmap live: the backing disk (internal) or the meta device. */
    readonly mdDisk: FileDisk,
    /** The data: the same disk as mdDisk when internal. */
    readonly dataDisk: FileDisk,
    layout: MetaLayout,
    private readonly sb: Superblock,
    private readonly options: MetaDataOptions,
  ) {
    this.currentLayout = layout;
    const area = dataAreaOf(layout, dataDisk);
    this.currentDataSizeBytes = area.dataSizeBytes;
    this.bitmap = new Bitmap(Math.ceil(area.dataSizeBytes / BM_BLOCK_BYTES), area.bmBytes);
    this.bitmap.readFromSync(mdDisk, layout.bmOffsetBytes);
  }

  /** Where superblock, AL and bitmap are now (moves with grow()). */
  get layout(): MetaLayout {
    return this.currentLayout;
  }

  /** The usable data bytes (internal: below the bitmap; external: the data disk, up to what the bitmap tracks). */
  get dataSizeBytes(): number {
    return this.currentDataSizeBytes;
  }

  /**
   * What the backing disk's present size allows (after FileDisk.refreshSizeSync):
   * internal meta-data moves to the new end (drbd_md_set_sector_offsets), so
   * the layout and the data area change; external keeps its layout and the
   * data area grows up to what the bitmap area tracks.
   */
  growthPlan(): GrowthPlan {
    const layout = this.currentLayout.placement.kind === 'internal'
      ? computeLayout(this.mdDisk.sizeBytes, { alStripes: this.currentLayout.alStripes, alStripeSize4k: this.currentLayout.alStripeSize4k, devicePath: this.mdDisk.path })
      : this.currentLayout;
    const area = dataAreaOf(layout, this.dataDisk);
    const mdMoved = layout.mdOffsetBytes !== this.currentLayout.mdOffsetBytes || layout.mdSizeSectors !== this.currentLayout.mdSizeSectors;
    return { layout, dataSizeBytes: area.dataSizeBytes, bmBytes: area.bmBytes, mdMoved, grows: mdMoved || area.dataSizeBytes > this.currentDataSizeBytes };
  }

  /**
   * Carries out a growth plan while attached (drbd_determine_dev_size when
   * the backing device grew). With the activity log held between
   * transactions and no bitmap write-out in flight: the new ring (naming the
   * hot extents), then the whole bitmap, then the superblock pointing at
   * them — each flushed before the next. Until that last 4 KiB write the
   * superblock at the device's end is not valid meta-data, and after it
   * everything it names is on disk: a crash leaves the old meta-data (not at
   * the new end: shrink the file back, or use the new one) or the complete
   * new one, never a superblock naming a half-written bitmap. DRBD instead
   * writes the new superblock first with MDF_FULL_SYNC | MDF_AL_DISABLED and
   * clears them at the end, so its crash window costs a full resync; here it
   * costs nothing once the superblock is written. la_size_sect is not
   * changed here (the agreed size follows separately).
   */
  async grow(plan: GrowthPlan): Promise<void> {
    assert(this.attached && this.activityLog !== null, 'grow() while attached');
    assert(plan.dataSizeBytes >= this.currentDataSizeBytes, 'the data area only grows');
    const al = this.activityLog;
    const run = al.exclusive(async () => {
      await this.bitmapIo.catch(() => undefined);
      if (plan.mdMoved) await al.relocate(plan.layout.alOffsetBytes, plan.layout.bmOffsetBytes);
      this.bitmap.grow(Math.ceil(plan.dataSizeBytes / BM_BLOCK_BYTES), plan.bmBytes);
      await this.bitmap.writeDirtyPages(this.mdDisk, plan.layout.bmOffsetBytes, { flush: true });
      this.currentLayout = plan.layout;
      this.currentDataSizeBytes = plan.dataSizeBytes;
      this.sb.mdSizeSectors = plan.layout.mdSizeSectors;
      this.sb.alOffsetSectors = plan.layout.alOffsetSectors;
      this.sb.bmOffsetSectors = plan.layout.bmOffsetSectors;
      this.writeSuperblock();
    });
    this.growing = run.then(() => undefined, () => undefined);
    try {
      await run;
    } finally {
      this.growing = null;
    }
  }

  /**
   * Validates and loads superblock and bitmap from `disk` (the meta device when
   * options.dataDisk is given). Throws "No valid meta data found" naming the
   * device (exit 1) when the superblock is torn, has a wrong magic, or does
   * not fit the device size. Does not write.
   */
  static open(disk: FileDisk, options: MetaDataOptions = {}): MetaData {
    const placement = options.placement ?? INTERNAL;
    assert((placement.kind === 'internal') === (options.dataDisk === undefined), 'external meta-data comes with a data disk, internal without');
    const read = readMetaSync(disk, placement);
    if (!read.ok) {
      const moved = placement.kind === 'internal' ? findSuperblockBelowEnd(disk) : null;
      if (moved !== null) {
        throw new UdrbdError(
          `${disk.path}: ${read.reason}\nNo valid meta data found at the end of the disk, but v08 meta-data is at byte offset ${moved.mdOffsetBytes}: ` +
            `it was written when the disk was ${moved.deviceSizeBytes} bytes, and the disk is ${disk.sizeBytes} bytes now (grown while its resource was down, or before 'udrbdadm resize' moved the meta-data). ` +
            `Do not run create-md: shrink the disk back (truncate -s ${moved.deviceSizeBytes} ${disk.path}), bring the resource up, then grow it again and run 'udrbdadm resize'.`,
          ExitCode.usage,
        );
      }
      throw new UdrbdError(
        `${disk.path}: ${read.reason}\nNo valid meta data found. Use 'udrbdadm create-md' to initialize it.`,
        ExitCode.usage,
      );
    }
    return new MetaData(disk, options.dataDisk ?? disk, read.layout, read.sb, options);
  }

  /** External meta-data: on a device of its own, so flushing it does not flush the data. */
  get isExternal(): boolean {
    return this.mdDisk !== this.dataDisk;
  }

  /** A copy of the superblock fields. */
  get superblock(): Readonly<Superblock> {
    return { ...this.sb, uuids: { ...this.sb.uuids } };
  }

  get uuids(): GenerationUuids {
    return { ...this.sb.uuids };
  }

  setUuids(uuids: GenerationUuids): void {
    this.sb.uuids = { ...uuids };
  }

  get flags(): number {
    return this.sb.flags;
  }

  /** Sets MDF_* bits (MDF_AL_CLEAN is managed here and ignored). */
  setFlags(flags: number): void {
    this.sb.flags = (flags & ~MdFlag.alClean) | (this.sb.flags & MdFlag.alClean);
  }

  hasFlag(flag: number): boolean {
    return (this.sb.flags & flag) !== 0;
  }

  get laSizeSectors(): number {
    return this.sb.laSizeSectors;
  }

  setLaSizeSectors(sectors: number): void {
    assert(Number.isSafeInteger(sectors) && sectors >= 0 && sectors * SECTOR_BYTES <= this.dataSizeBytes, `la-size ${sectors} sectors fits the data area`);
    this.sb.laSizeSectors = sectors;
  }

  get deviceUuid(): bigint {
    return this.sb.deviceUuid;
  }

  setDeviceUuid(value: bigint): void {
    this.sb.deviceUuid = value;
  }

  get laPeerMaxBioSize(): number {
    return this.sb.laPeerMaxBioSize;
  }

  setLaPeerMaxBioSize(bytes: number): void {
    this.sb.laPeerMaxBioSize = bytes;
  }

  /** Unclean magic or MDF_AL_CLEAN missing: the AL must be applied before use. */
  get isUnclean(): boolean {
    return isUnclean(this.sb);
  }

  /**
   * Recovery + attach: apply the activity log into the bitmap exactly as
   * drbdmeta apply-al does (bits only when MDF_PRIMARY_IND was set), reload
   * the bitmap, then write the superblock unclean (magic 0x8374026C, no
   * MDF_AL_CLEAN, la-size = data size when unset, al-extents) as the 8.4
   * kernel does while attached, and start the runtime activity log.
   */
  attach(): AttachResult {
    assert(!this.attached, 'attach() called once');
    const applyAl = applyAlSync(this.mdDisk, this.layout, this.sb);
    if (applyAl.exitCode !== 0) {
      throw new UdrbdError(
        `${this.mdDisk.path}: ${applyAl.messages.join('\n')}\nCannot recover from the activity log; refusing to attach.`,
        applyAl.exitCode,
      );
    }
    this.bitmap.readFromSync(this.mdDisk, this.layout.bmOffsetBytes);
    const alExtents = this.options.alExtents ?? AL_EXTENTS_DEFAULT;
    // AL transactions and evicted bitmap pages go to the meta device with FUA, before the data write they cover.
    this.activityLog = new ActivityLog(this.mdDisk, this.bitmap, {
      alOffsetBytes: this.layout.alOffsetBytes,
      alStripes: this.layout.alStripes,
      alStripeSize4k: this.layout.alStripeSize4k,
      bmOffsetBytes: this.layout.bmOffsetBytes,
      alExtents,
      firstTrNumber: 0,
      alUpdates: this.options.alUpdates ?? true,
      mdFlushes: this.options.mdFlushes ?? true,
      ...(this.isExternal ? { flushDataBeforeBitmap: () => this.dataDisk.flush() } : {}),
    });
    this.sb.alNrExtents = this.activityLog.alExtents;
    // drbd_adm_attach: MDF_AL_DISABLED records al-updates no on disk.
    if (this.options.alUpdates === false) this.sb.flags |= MdFlag.alDisabled;
    else this.sb.flags &= ~MdFlag.alDisabled;
    if (this.sb.laSizeSectors === 0) this.sb.laSizeSectors = this.dataSizeBytes / SECTOR_BYTES;
    this.attached = true;
    this.writeSuperblock();
    return { applyAl };
  }

  /** Writes the superblock: unclean magic while attached, clean otherwise (synchronous, flushed). */
  writeSuperblock(): void {
    if (this.attached) {
      this.sb.magic = MD_MAGIC_84_UNCLEAN;
      this.sb.flags &= ~MdFlag.alClean;
    }
    encodeSuperblock(this.sb, this.sbBuffer);
    this.mdDisk.writeSync(this.sbBuffer, this.layout.mdOffsetBytes);
    // md-flushes no: while attached, superblock writes are not flushed (detach and attach still are).
    if (!this.attached || this.options.mdFlushes !== false) this.mdDisk.flushSync();
  }

  /**
   * Writes dirty bitmap pages (asynchronous, flushed). With external
   * meta-data the data disk is flushed first: a page may carry bits cleared
   * for data just written (resync), and on a separate device nothing else
   * orders that data before the page; internal meta-data shares one flush.
   */
  async flushBitmap(): Promise<number> {
    if (this.growing) await this.growing;
    const run = this.writeBitmapPages();
    // grow() waits for every write-out in flight, not only the last one started.
    this.bitmapIo = Promise.allSettled([this.bitmapIo, run]);
    return run;
  }

  private async writeBitmapPages(): Promise<number> {
    if (this.isExternal && this.bitmap.dirtyPageCount > 0) await this.dataDisk.flush();
    return this.bitmap.writeDirtyPages(this.mdDisk, this.layout.bmOffsetBytes, { flush: this.options.mdFlushes !== false });
  }

  /**
   * Detach. Always writes dirty bitmap pages. `clean: true` (orderly down)
   * also re-initialises the AL ring and writes magic 0x8374026B with
   * MDF_AL_CLEAN, so drbdmeta dump-md works without apply-al; `clean: false`
   * leaves the superblock unclean for apply-al to recover. Does not close the disk.
   */
  close(options: { clean: boolean }): void {
    if (this.isExternal) this.dataDisk.flushSync();
    this.bitmap.writeDirtyPagesSync(this.mdDisk, this.layout.bmOffsetBytes);
    if (options.clean) {
      this.mdDisk.writeSync(initializedAlArea(this.layout.alStripes, this.layout.alStripeSize4k), this.layout.alOffsetBytes);
      this.attached = false;
      this.sb.magic = MD_MAGIC_08;
      this.sb.flags |= MdFlag.alClean;
      this.writeSuperblock();
    } else if (this.attached) {
      this.writeSuperblock();
    }
    this.attached = false;
    this.activityLog = null;
  }
}
