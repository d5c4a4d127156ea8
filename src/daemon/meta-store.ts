/**
 * daemon/meta-store — attach: open the backing disk, read and validate its
 * v08 meta-data, recover from the activity log, mark the superblock unclean
 * while attached (as the 8.4 kernel does), derive the disk state from the
 * flags; keep the MDF flags in step with the resource state; close clean on
 * down (bitmap pages, clean magic + MDF_AL_CLEAN) so drbdmeta reads it.
 * The adapter between daemon/ and meta/; no other daemon file reads meta/.
 */
import crypto from 'node:crypto';
import type { Logger } from '../util/log.js';
import { UdrbdError, ExitCode } from '../util/errors.js';
import { FileDisk } from '../disk/file-disk.js';
import { ConnState, DiskState, Role } from '../resource/states.js';
import { Bitmap } from '../meta/bitmap.js';
import {
  MD_MAGIC_08,
  MD_MAGIC_84_UNCLEAN,
  SUPERBLOCK_BYTES,
  decodeSuperblock,
  encodeSuperblock,
  hex64,
  isUnclean,
  validateSuperblock,
  type MetaLayout,
  type Superblock,
} from '../meta/superblock.js';
import { BM_BLOCK_BYTES, MdFlag, type GenerationUuids } from '../meta/types.js';
import type { AttachedStore } from './runtime.js';
import type { ResourceSpec } from './spec.js';
import type { StateSnapshot } from './status.js';
import { DataArea } from './data-area.js';
import { ActivityLog, initializedAlArea, replayActivityLog } from '../meta/activity-log.js';
import { BM_BITS_PER_AL_EXTENT } from '../meta/bitmap.js';

/** Which MDF bits follow from a resource state (drbd84.md §1.5); undefined = leave unchanged. */
export function mdFlagsFor(state: StateSnapshot, previous: number): number {
  if (state.disk <= DiskState.Negotiating) return previous;
  let flags = previous & (MdFlag.fullSync | MdFlag.crashedPrimary | MdFlag.alDisabled);
  if (state.disk > DiskState.Inconsistent) flags |= MdFlag.consistent;
  if (state.role === Role.Primary) flags |= MdFlag.primaryInd;
  if (state.conn > ConnState.WFReportParams) flags |= MdFlag.connectedInd;
  if (state.disk > DiskState.Outdated) flags |= MdFlag.wasUpToDate;
  if (state.pdsk >= DiskState.Inconsistent && state.pdsk <= DiskState.Outdated) flags |= MdFlag.peerOutDated;
  if (state.disk === DiskState.UpToDate && state.pdsk === DiskState.UpToDate) flags &= ~MdFlag.crashedPrimary;
  return flags;
}

/** Disk state at attach from the flags (§1.5), fencing dont-care promoting Consistent. */
export function diskStateFromFlags(flags: number, fencingDontCare: boolean): DiskState {
  if ((flags & MdFlag.consistent) === 0) return DiskState.Inconsistent;
  if ((flags & MdFlag.wasUpToDate) === 0) return DiskState.Outdated;
  if ((flags & MdFlag.peerOutDated) !== 0 || fencingDontCare) return DiskState.UpToDate;
  return DiskState.Consistent;
}

export class MetaStore implements AttachedStore {
  readonly data: DataArea;
  readonly bitmap: Bitmap;
  readonly diskAtAttach: DiskState;
  activityLog!: ActivityLog;
  private readonly sbBuffer = Buffer.alloc(SUPERBLOCK_BYTES);

  constructor(
    private readonly disk: FileDisk,
    readonly layout: MetaLayout,
    readonly sb: Superblock,
    private readonly log: Logger,
  ) {
    this.data = new DataArea(disk, layout.dataSizeBytes);
    this.bitmap = new Bitmap(Math.ceil(layout.dataSizeBytes / BM_BLOCK_BYTES), layout.bmAreaBytes);
    this.bitmap.readFromSync(disk, layout.bmOffsetBytes);
    if (sb.flags & MdFlag.primaryInd) sb.flags |= MdFlag.crashedPrimary;
    if (sb.flags & MdFlag.fullSync) {
      this.bitmap.setAll();
      log.info('Assuming that all blocks are out of sync (aka FullSync)');
    }
    this.diskAtAttach = diskStateFromFlags(sb.flags, true);
  }

  get uuids(): GenerationUuids {
    return this.sb.uuids;
  }

  get mdFlags(): number {
    return this.sb.flags;
  }

  get dataSizeBytes(): number {
    return this.layout.dataSizeBytes;
  }

  uuidsText(): { current: string; bitmap: string; historyStart: string; historyEnd: string } {
    const u = this.sb.uuids;
    return { current: hex64(u.current), bitmap: hex64(u.bitmap), historyStart: hex64(u.historyStart), historyEnd: hex64(u.historyEnd) };
  }

  outOfSyncKiB(): number {
    return this.bitmap.countSet() * (BM_BLOCK_BYTES / 1024);
  }

  /** Writes the superblock (unclean magic while attached, as the 8.4 kernel). */
  writeSuperblock(clean = false): void {
    this.sb.magic = clean ? MD_MAGIC_08 : MD_MAGIC_84_UNCLEAN;
    if (clean) this.sb.flags |= MdFlag.alClean;
    else this.sb.flags &= ~MdFlag.alClean;
    this.sb.laSizeSectors = this.layout.dataSizeBytes / 512;
    encodeSuperblock(this.sb, this.sbBuffer);
    this.disk.writeSync(this.sbBuffer, this.layout.mdOffsetBytes);
    this.disk.flushSync();
  }

  async syncFlags(state: StateSnapshot): Promise<void> {
    const flags = mdFlagsFor(state, this.sb.flags & ~MdFlag.alClean);
    if (flags === (this.sb.flags & ~MdFlag.alClean)) return;
    this.sb.flags = flags;
    this.writeSuperblock();
  }

  async newCurrentUuid(primary: boolean): Promise<void> {
    const u = this.sb.uuids;
    if (u.bitmap !== 0n) this.log.warn('bm UUID was already set');
    u.bitmap = u.current;
    const random = crypto.randomBytes(8).readBigUInt64BE(0);
    u.current = (random & ~1n) | (primary ? 1n : 0n);
    this.writeSuperblock();
    this.log.info(`new current UUID ${hex64(u.current)}:${hex64(u.bitmap)}:${hex64(u.historyStart)}:${hex64(u.historyEnd)}`);
  }

  async close(clean: boolean): Promise<void> {
    this.bitmap.writeDirtyPagesSync(this.disk, this.layout.bmOffsetBytes);
    this.writeSuperblock(clean);
    this.disk.closeSync();
  }
}

export async function openMetaStore(spec: ResourceSpec, log: Logger): Promise<MetaStore> {
  const disk = FileDisk.open(spec.diskPath);
  try {
    const buf = Buffer.alloc(SUPERBLOCK_BYTES);
    const mdOffset = Math.floor((disk.sizeBytes - SUPERBLOCK_BYTES) / 4096) * 4096;
    disk.readSync(buf, mdOffset);
    const sb = decodeSuperblock(buf);
    const layout = validateSuperblock(sb, disk.sizeBytes, spec.diskPath);
    const store = new MetaStore(disk, layout, sb, log);
    // apply-al (drbdadm runs it before every attach): hot extents of the AL → bitmap, ring re-initialised.
    const area = Buffer.alloc(layout.alBytes);
    disk.readSync(area, layout.alOffsetBytes);
    const replay = replayActivityLog(area, layout.alStripes, layout.alStripeSize4k);
    if (replay.status === 'nodata') {
      throw new UdrbdError(`${spec.diskPath}: No usable activity log found. Do you need to create-md?`, ExitCode.fatal);
    }
    let marked = 0;
    for (const extent of replay.extents) {
      const first = extent * BM_BITS_PER_AL_EXTENT;
      if (first >= store.bitmap.bitCount) continue;
      marked += store.bitmap.setRange(first, Math.min(store.bitmap.bitCount, first + BM_BITS_PER_AL_EXTENT));
    }
    if (replay.extents.length > 0) {
      log.info({ extents: replay.extents.length, bitsNewlySet: marked, unclean: isUnclean(sb) }, `Marked ${replay.extents.length} activity log extents out of sync (apply-al)`);
    }
    store.bitmap.writeDirtyPagesSync(disk, layout.bmOffsetBytes);
    disk.writeSync(initializedAlArea(layout.alStripes, layout.alStripeSize4k), layout.alOffsetBytes);
    disk.flushSync();
    store.activityLog = new ActivityLog(disk, store.bitmap, {
      alOffsetBytes: layout.alOffsetBytes,
      alStripes: layout.alStripes,
      alStripeSize4k: layout.alStripeSize4k,
      bmOffsetBytes: layout.bmOffsetBytes,
      firstTrNumber: 0,
    });
    store.writeSuperblock();
    return store;
  } catch (err) {
    disk.closeSync();
    throw err;
  }
}
