/**
 * daemon/meta-store — attach: open the backing disk (and the meta device when
 * the meta-data is external), read and validate its v08 meta-data, recover from the activity log, mark the superblock unclean
 * while attached (as the 8.4 kernel does), derive the disk state from the
 * flags; keep the MDF flags in step with the resource state; close clean on
 * down (bitmap pages, clean magic + MDF_AL_CLEAN) so drbdmeta reads it.
 * It also holds the device size (daemon/device-size): la_size_sect at
 * attach, the agreed size after each connect, recorded back in la_size_sect;
 * the data area and the bitmap the data path sees end there. `resize`
 * re-reads the backing disk (refreshCapacity: internal meta-data moves to the
 * grown disk's end) and takes a new --size (setUserSize).
 * The adapter between daemon/ and meta/; no other daemon file reads meta/.
 */
import crypto from 'node:crypto';
import type { Logger } from '../util/log.js';
import { FileDisk } from '../disk/file-disk.js';
import { DiskState, Role } from '../resource/states.js';
import { newCurrentUuid } from '../resource/uuid.js';
import { diskStateFromMdFlags, mdFlagsForState } from '../resource/md-flags.js';
import type { Fencing } from '../resource/state.js';
import { hex64, placementOf } from '../meta/superblock.js';
import { MetaData } from '../meta/metadata.js';
import type { ActivityLog } from '../meta/activity-log.js';
import { BM_BLOCK_BYTES, MdFlag, type DirtyBitmap, type GenerationUuids } from '../meta/types.js';
import { UdrbdError, ExitCode } from '../util/errors.js';
import { assert } from '../util/assert.js';
import { BM_BYTES_MAX } from '../meta/bitmap.js';
import type { AttachedStore } from './runtime.js';
import type { ResourceSpec } from './spec.js';
import type { StateSnapshot } from './status.js';
import { DataArea } from './data-area.js';
import { AgreedBitmap } from './agreed-bitmap.js';
import { SECTOR_BYTES, sizeAtAttach, sizeLogLine } from './device-size.js';

export class MetaStore implements AttachedStore {
  readonly data: DataArea;
  readonly diskAtAttach: DiskState;
  readonly pdskAtAttach: DiskState;
  /** DRBD's in-core CRASHED_PRIMARY: set at attach if the node was Primary, cleared once both disks are UpToDate. */
  private crashedPrimary: boolean;
  private readonly agreedBitmap: AgreedBitmap;
  private userSize: number;

  /** @param maxSizeBytes the data area, or a smaller configured `disk { size }` */
  constructor(
    private readonly md: MetaData,
    private readonly log: Logger,
    fencing: Fencing,
    maxSizeBytes: number = md.dataSizeBytes,
  ) {
    this.data = new DataArea(md.dataDisk, maxSizeBytes);
    this.userSize = maxSizeBytes < md.dataSizeBytes ? maxSizeBytes : 0;
    const derived = diskStateFromMdFlags(md.flags, fencing);
    this.diskAtAttach = derived.disk;
    this.pdskAtAttach = derived.pdsk;
    this.crashedPrimary = derived.crashedPrimary;
    const sizeBytes = sizeAtAttach(md.laSizeSectors, maxSizeBytes);
    this.data.resize(sizeBytes);
    this.agreedBitmap = new AgreedBitmap(md.bitmap, sizeBytes);
    if (derived.fullSync) {
      this.agreedBitmap.setAll();
      log.info('Assuming that all blocks are out of sync (aka FullSync)');
    }
    if (md.laSizeSectors * SECTOR_BYTES !== sizeBytes) {
      md.setLaSizeSectors(sizeBytes / SECTOR_BYTES);
      md.writeSuperblock();
    }
    log.info({ sizeBytes }, sizeLogLine(sizeBytes));
  }

  /** The bitmap of the agreed device size (the data path's view). */
  get bitmap(): DirtyBitmap {
    return this.agreedBitmap;
  }

  /** Bitmap pages written since attach (/proc/drbd `bm:`). */
  get bitmapWrites(): number {
    return this.md.bitmap.pagesWritten;
  }

  /** The agreed device size. */
  get sizeBytes(): number {
    return this.data.sizeBytes;
  }

  /** What this node can offer: the data area, or the configured `disk { size }`. */
  get maxSizeBytes(): number {
    return this.data.maxSizeBytes;
  }

  /** m_size: what the backing disk's data area holds (not capped by --size / `disk { size }`). */
  get dataAreaBytes(): number {
    return this.md.dataSizeBytes;
  }

  /**
   * `resize`: re-reads the backing disk's size and, when it grew, moves
   * internal meta-data to its new end (or lets external meta-data track more)
   * before anything uses the new space — drbd_determine_dev_size's
   * drbd_md_set_sector_offsets + bitmap write-out. The agreed size does not
   * change here. Returns the data area's growth in bytes (0: nothing to do).
   * A backing disk that shrank is refused: its meta-data (internal) or data
   * past the new end is gone, and nothing is changed.
   */
  async refreshCapacity(): Promise<number> {
    const disk = this.md.dataDisk;
    const knownBytes = disk.sizeBytes;
    const nowBytes = disk.refreshSizeSync();
    if (nowBytes < knownBytes) {
      throw new UdrbdError(
        `${disk.path} shrank from ${knownBytes} to ${nowBytes} bytes while attached; udrbd does not shrink online (the ${this.md.isExternal ? 'data' : 'meta-data'} past the new end is gone). Restore its size (truncate -s ${knownBytes} / lvextend) before anything else touches it`,
        ExitCode.configInvalid,
      );
    }
    const plan = this.md.growthPlan();
    if (!plan.grows) return 0;
    if (plan.bmBytes > BM_BYTES_MAX) {
      throw new UdrbdError(`${disk.path}: a bitmap of ${plan.bmBytes} bytes for ${plan.dataSizeBytes} bytes of data is larger than udrbd holds (${BM_BYTES_MAX} bytes: ${(BM_BYTES_MAX * 8 * BM_BLOCK_BYTES) / 2 ** 40} TiB of data); use --size to stay below it`, ExitCode.configInvalid);
    }
    const before = { dataBytes: this.md.dataSizeBytes, mdOffsetBytes: this.md.layout.mdOffsetBytes };
    if (plan.mdMoved) {
      this.log.info({ fromBytes: before.mdOffsetBytes, toBytes: plan.layout.mdOffsetBytes, diskBytes: nowBytes }, `meta-data moves to the end of the grown disk: md_offset ${before.mdOffsetBytes} -> ${plan.layout.mdOffsetBytes}`);
    }
    await this.md.grow(plan);
    const trackedBytes = this.md.layout.dataSizeBytes;
    if (this.md.isExternal && Math.floor(disk.sizeBytes / BM_BLOCK_BYTES) * BM_BLOCK_BYTES > trackedBytes) {
      this.log.warn(`${disk.path} holds ${disk.sizeBytes / SECTOR_BYTES} sectors; the meta-data tracks at most ${trackedBytes / SECTOR_BYTES} sectors, so the device stays within that (a flexible meta device sized for the disk tracks more)`);
    }
    this.data.setMaxSize(this.capped(this.userSizeBytes));
    this.log.info({ dataBytes: this.md.dataSizeBytes, beforeBytes: before.dataBytes }, plan.mdMoved ? 'Writing the whole bitmap, md moved' : 'Writing the whole bitmap, size changed');
    return this.md.dataSizeBytes - before.dataBytes;
  }

  /** u_size: the --size of the last `resize` (or `disk { size }`); 0 = the whole data area. */
  get userSizeBytes(): number {
    return this.userSize;
  }

  /** A new --size (drbd_adm_resize stores it in the disk config): the usable size this node offers. */
  setUserSize(userSizeBytes: number): void {
    assert(userSizeBytes === 0 || (userSizeBytes % SECTOR_BYTES === 0 && userSizeBytes <= this.md.dataSizeBytes), `--size ${userSizeBytes} fits the data area`);
    this.userSize = userSizeBytes;
    this.data.setMaxSize(this.capped(userSizeBytes));
  }

  private capped(userSizeBytes: number): number {
    return userSizeBytes > 0 ? Math.min(userSizeBytes, this.md.dataSizeBytes) : this.md.dataSizeBytes;
  }

  /**
   * A new agreed size (drbd_determine_dev_size): the data area and the bitmap
   * end there, grown blocks are out of sync (unless `setNewBits` is false:
   * resize --assume-clean), la_size_sect records it. The change is made
   * before this returns; the promise is the bitmap write.
   */
  setAgreedSize(sizeBytes: number, setNewBits = true): Promise<void> {
    if (sizeBytes === this.data.sizeBytes) return Promise.resolve();
    const before = this.data.sizeBytes;
    this.data.resize(sizeBytes);
    this.agreedBitmap.resize(sizeBytes, setNewBits);
    this.md.setLaSizeSectors(sizeBytes / SECTOR_BYTES);
    this.md.writeSuperblock();
    this.log.info({ sizeBytes, beforeBytes: before }, sizeLogLine(sizeBytes));
    return this.md.flushBitmap().then(() => undefined);
  }

  /**
   * A new u_size and agreed size (receive_sizes, `resize --size`): a shrink
   * ends the device first, then lowers the usable area to the u_size; a
   * grow raises the usable area first. Bits past a new end are dropped
   * (drbd_bm_resize), la_size_sect records the size.
   */
  async applySize(userSizeBytes: number, sizeBytes: number, setNewBits = true): Promise<void> {
    if (sizeBytes < this.data.sizeBytes) {
      const written = this.setAgreedSize(sizeBytes, setNewBits);
      this.setUserSize(userSizeBytes);
      await written;
      return;
    }
    this.setUserSize(userSizeBytes);
    await this.setAgreedSize(sizeBytes, setNewBits);
  }

  get activityLog(): ActivityLog {
    const al = this.md.activityLog;
    if (!al) throw new Error('meta-data not attached');
    return al;
  }

  get uuids(): GenerationUuids {
    return this.md.uuids;
  }

  get mdFlags(): number {
    return this.md.flags;
  }

  get dataSizeBytes(): number {
    return this.md.dataSizeBytes;
  }

  uuidsText(): { current: string; bitmap: string; historyStart: string; historyEnd: string } {
    const u = this.md.uuids;
    return { current: hex64(u.current), bitmap: hex64(u.bitmap), historyStart: hex64(u.historyStart), historyEnd: hex64(u.historyEnd) };
  }

  outOfSyncKiB(): number {
    return this.md.bitmap.countSet() * (BM_BLOCK_BYTES / 1024);
  }

  setUuids(uuids: GenerationUuids): void {
    this.md.setUuids(uuids);
    this.md.writeSuperblock();
  }

  /** Bit 0 of the current UUID follows the role (set while Primary). */
  setPrimaryBit(primary: boolean): void {
    const u = this.md.uuids;
    const current = primary ? u.current | 1n : u.current & ~1n;
    if (current === u.current) return;
    this.setUuids({ ...u, current });
  }

  async syncFlags(state: StateSnapshot): Promise<void> {
    if (state.disk <= DiskState.Negotiating) return;
    if (state.disk === DiskState.UpToDate && state.pdsk === DiskState.UpToDate) this.crashedPrimary = false;
    const previous = this.md.flags & ~MdFlag.alClean;
    const flags = mdFlagsForState(state, previous, this.crashedPrimary);
    if (flags === previous) return;
    this.md.setFlags(flags);
    this.md.writeSuperblock();
  }

  /** drbd_uuid_new_current (resource/uuid: newCurrentUuid), written to the superblock at once. */
  async newCurrentUuid(primary: boolean): Promise<void> {
    const random = crypto.randomBytes(8).readBigUInt64BE(0);
    const next = newCurrentUuid(this.md.uuids, primary ? Role.Primary : Role.Secondary, random);
    this.setUuids(next.uuids);
    for (const line of next.logLines) {
      if (line.startsWith('bm UUID')) this.log.warn(line);
      else this.log.info(line);
    }
  }

  async close(clean: boolean): Promise<void> {
    await this.md.flushBitmap();
    this.md.close({ clean });
    this.md.dataDisk.closeSync();
    if (this.md.isExternal) this.md.mdDisk.closeSync();
  }
}

/**
 * $UDRBD_WRITEBACK_HINT_KIB: KiB written through the page cache per early
 * write-back hint (disk/file-disk); 0 turns hints off. Unset: the default.
 */
export function writebackHintBytesFromEnv(env: NodeJS.ProcessEnv): number | undefined {
  const text = env.UDRBD_WRITEBACK_HINT_KIB;
  if (text === undefined || text === '') return undefined;
  const kib = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(kib) || kib > 1024 * 1024) {
    throw new UdrbdError(`UDRBD_WRITEBACK_HINT_KIB='${text}' is not a whole number of KiB from 0 (off) to 1048576; unset it for the default`, ExitCode.configInvalid);
  }
  return kib * 1024;
}

/**
 * Opens the meta device of external meta-data. A flexible one is this
 * volume's alone (exclusive, as DRBD claims it); slots of an indexed one may
 * belong to other resources, as in DRBD, so it is opened shared.
 */
function openMetaDevice(metaDisk: Exclude<ResourceSpec['metaDisk'], 'internal'>): FileDisk {
  return FileDisk.open(metaDisk.path, { exclusive: metaDisk.index === 'flexible', writebackHintBytes: 0, role: 'meta-data device' });
}

/** The battery-backed-cache caveat of the flush options (drbd.conf(5)); logged as a warning at attach. */
const VOLATILE_CACHE_RISK = 'safe only if the disk has a battery-backed (non-volatile) write cache: with a volatile cache a power failure loses writes already acknowledged';

/**
 * DRBD's attach-time line `Method to ensure write ordering: ...` and a
 * warning for each option that trades safety for speed. udrbd has no
 * barriers (disk-barrier yes falls back to flushes, as DRBD does on a device
 * that refuses them) and always drains an epoch's writes before its ack.
 */
export function logWriteOrdering(wo: ResourceSpec['writeOrdering'], log: Logger): void {
  log.info(`Method to ensure write ordering: ${wo.diskFlushes ? 'flush' : 'drain'}`);
  if (wo.diskBarrier) log.info('disk-barrier yes: udrbd has no barriers on its backing disk; using flushes instead');
  if (!wo.diskFlushes) log.warn(`disk-flushes no: the backing disk is not flushed at epoch ends or after a resync; ${VOLATILE_CACHE_RISK}`);
  if (!wo.mdFlushes) log.warn(`md-flushes no: activity-log, bitmap and superblock writes are not flushed to the meta-data device; ${VOLATILE_CACHE_RISK}`);
  if (!wo.alUpdates) log.warn('al-updates no: no activity-log transactions are written; if this node crashes as Primary the next connect resyncs the whole device');
}

export async function openMetaStore(spec: ResourceSpec, log: Logger): Promise<MetaStore> {
  const disk = FileDisk.open(spec.diskPath, { exclusive: true, writebackHintBytes: writebackHintBytesFromEnv(process.env) });
  let mdDisk: FileDisk | undefined;
  try {
    const placement = placementOf(spec.metaDisk);
    if (spec.metaDisk !== 'internal') {
      mdDisk = openMetaDevice(spec.metaDisk);
      if (mdDisk.path === disk.path) {
        throw new UdrbdError(`${spec.name}: meta-disk ${spec.metaDisk.path} is the data disk itself; use 'meta-disk internal' for that`, ExitCode.configInvalid);
      }
      log.info({ metaDisk: spec.metaDisk.path, index: spec.metaDisk.index }, `external meta-data on ${spec.metaDisk.path} (${spec.metaDisk.index === 'flexible' ? 'flexible' : `index ${spec.metaDisk.index}`})`);
    }
    const { alUpdates, mdFlushes } = spec.writeOrdering;
    const md = mdDisk === undefined
      ? MetaData.open(disk, { alExtents: spec.alExtents, alUpdates, mdFlushes })
      : MetaData.open(mdDisk, { alExtents: spec.alExtents, alUpdates, mdFlushes, placement, dataDisk: disk });
    logWriteOrdering(spec.writeOrdering, log);
    const configured = spec.configuredSizeBytes;
    if (configured > md.dataSizeBytes) {
      // drbd_adm_attach: ERR_DISK_TOO_SMALL
      throw new UdrbdError(
        `${spec.minor}: max capacity ${md.dataSizeBytes / SECTOR_BYTES} smaller than disk size ${configured / SECTOR_BYTES} (disk { size } of ${spec.name} is larger than ${spec.diskPath} can hold)`,
        ExitCode.configInvalid,
      );
    }
    if (md.isUnclean) log.info('meta-data is unclean: applying the activity log (apply-al)');
    const { applyAl } = md.attach();
    for (const message of applyAl.messages) log.info(message);
    return new MetaStore(md, log, spec.fencing, configured > 0 ? configured : md.dataSizeBytes);
  } catch (err) {
    disk.closeSync();
    mdDisk?.closeSync();
    throw err;
  }
}
