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
import { FileDisk } from '../disk/file-disk.js';
import { DiskState } from '../resource/states.js';
import { diskStateFromMdFlags, mdFlagsForState } from '../resource/machine.js';
import type { Fencing } from '../resource/state.js';
import type { Bitmap } from '../meta/bitmap.js';
import { hex64 } from '../meta/superblock.js';
import { MetaData } from '../meta/metadata.js';
import type { ActivityLog } from '../meta/activity-log.js';
import { BM_BLOCK_BYTES, MdFlag, type GenerationUuids } from '../meta/types.js';
import type { AttachedStore } from './runtime.js';
import type { ResourceSpec } from './spec.js';
import type { StateSnapshot } from './status.js';
import { DataArea } from './data-area.js';

export class MetaStore implements AttachedStore {
  readonly data: DataArea;
  readonly diskAtAttach: DiskState;
  /** DRBD's in-core CRASHED_PRIMARY: set at attach if the node was Primary, cleared once both disks are UpToDate. */
  private crashedPrimary: boolean;

  constructor(
    private readonly md: MetaData,
    private readonly log: Logger,
    fencing: Fencing,
  ) {
    this.data = new DataArea(md.disk, md.dataSizeBytes);
    const derived = diskStateFromMdFlags(md.flags, fencing);
    this.diskAtAttach = derived.disk;
    this.crashedPrimary = derived.crashedPrimary;
    if (derived.fullSync) {
      md.bitmap.setAll();
      log.info('Assuming that all blocks are out of sync (aka FullSync)');
    }
  }

  get bitmap(): Bitmap {
    return this.md.bitmap;
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

  async newCurrentUuid(primary: boolean): Promise<void> {
    const u = this.md.uuids;
    if (u.bitmap !== 0n) this.log.warn('bm UUID was already set');
    const random = crypto.randomBytes(8).readBigUInt64BE(0);
    const next = { ...u, bitmap: u.current, current: (random & ~1n) | (primary ? 1n : 0n) };
    this.setUuids(next);
    this.log.info(`new current UUID ${hex64(next.current)}:${hex64(next.bitmap)}:${hex64(next.historyStart)}:${hex64(next.historyEnd)}`);
  }

  async close(clean: boolean): Promise<void> {
    await this.md.flushBitmap();
    this.md.close({ clean });
    this.md.disk.closeSync();
  }
}

export async function openMetaStore(spec: ResourceSpec, log: Logger): Promise<MetaStore> {
  const disk = FileDisk.open(spec.diskPath, { exclusive: true });
  try {
    const md = MetaData.open(disk, { alExtents: spec.alExtents });
    if (md.isUnclean) log.info('meta-data is unclean: applying the activity log (apply-al)');
    const { applyAl } = md.attach();
    for (const message of applyAl.messages) log.info(message);
    return new MetaStore(md, log, spec.fencing);
  } catch (err) {
    disk.closeSync();
    throw err;
  }
}
