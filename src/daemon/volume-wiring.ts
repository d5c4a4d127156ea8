/**
 * daemon/volume-wiring — one volume's data path on this node (DRBD 8.4's
 * drbd_conf): builds its ReplicatedVolume on attach, keeps it told of both
 * disks, and runs the volume verbs (primary, secondary, new-current-uuid,
 * outdate, invalidate, invalidate-remote, verify, pause/resume-sync, the
 * diagnostic io.*) as resource/admin decides them. The backing disk reaches
 * the data path through disk-timeout's deadline (disk/deadline-disk) and, on
 * the first volume, the test fault layer (daemon/fault-hook); its errors go
 * to this volume's on-io-error (daemon/io-error). A detach while connected or
 * Primary keeps the data path running diskless; the next attach gives it the
 * disk back and the link negotiates again (a resync by the bitmap). A volume
 * that connects without ever having a disk gets a data path with none, sized
 * by the peer (daemon/volume-link connectDiskless); its first attach must hold
 * that size (ERR_DISK_TOO_SMALL). What is per resource (the connection,
 * fencing, resync-after, the rules' context) is daemon/wiring's.
 */
import { ExitCode } from '../util/errors.js';
import { ConnState, DiskState, Role } from '../resource/states.js';
import { type ResourceState, ErrCode, SsCode, failure, refusal } from '../resource/state.js';
import { attachSizeUnderDevice } from '../resource/diskless.js';
import type { ActivityLogApi, DirtyBitmap } from '../meta/types.js';
import type { DisklessShape } from '../replication/index.js';
import { ReplicationEngine } from '../replication/index.js';
import { liveReplicationOptions } from './adjust.js';
import type { ResourceView } from '../config/index.js';
import crypto from 'node:crypto';
import { adminNewCurrentUuid } from '../resource/uuid.js';
import { UUID_JUST_CREATED } from '../meta/types.js';
import { requestNewCurrentUuid, requestPrimary, requestSecondary, requestInvalidate, requestInvalidateRemote, requestOutdate, requestPauseSync, requestVerify } from '../resource/admin.js';
import type { BlockDevice } from '../disk/block-device.js';
import { type AttachedStore, type ResourceRuntime, StateChangeRefused } from './runtime.js';
import { DeadlineDisk } from '../disk/deadline-disk.js';
import { IoErrorPolicy } from './io-error.js';
import type { FaultLayer } from './fault-hook.js';
import { runAside } from '../util/aside.js';
import type { VolumeLink } from './volume-link.js';
import type { StatusSnapshot } from './status.js';
import type { Wiring } from './wiring.js';

/** What a data path without a disk declares (the volume caps requests at 1 MiB; flushes and FUA go to the peer). */
const DISKLESS_CAPABILITIES = { canFlush: true, canFua: true, canTrim: false, maxRequestBytes: 1024 * 1024 } as const;

/** disk-timeout is in tenths of a second. */
const DISK_TIMEOUT_UNIT_MS = 100;

/** The data path of an attached volume. */
export type DataPath = ReplicationEngine;

export class VolumeWiring {
  dataPath: DataPath | undefined;
  /** This volume's side of the peer link. */
  readonly link: VolumeLink;
  readonly ioErrors: IoErrorPolicy;
  /** The attached disk under its disk-timeout deadline (also while its last requests drain after a detach). */
  private deadline: DeadlineDisk | undefined;

  constructor(
    private readonly wiring: Wiring,
    readonly vnr: number,
    private readonly faults: FaultLayer | undefined,
  ) {
    const runtime = wiring.runtime;
    this.link = wiring.link.addVolume(vnr, () => this.dataPath);
    this.ioErrors = new IoErrorPolicy(runtime, () => this.view.disk.onIoError, vnr);
  }

  /** Registers this volume's attach, state and detach hooks (daemon/wiring calls it once, in its hook order). */
  install(): void {
    const runtime = this.runtime;
    const vnr = this.vnr;
    runtime.attachHooks.push((store, v) => {
      if (v === vnr) this.onAttach(store);
    });
    // A node without a disk that connects: a data path with no disk, sized by the peer (daemon/volume-link).
    this.link.disklessDataPath = (sizeBytes) => {
      const dp = this.dataPath;
      if (dp) {
        if (!dp.local.isAttached) dp.setDisklessSizeBytes(sizeBytes);
        return dp;
      }
      const created = this.newDataPath({ diskless: { sizeBytes, capabilities: DISKLESS_CAPABILITIES } });
      this.dataPath = created;
      return created;
    };
    runtime.stateHooks.push((before, after, v) => {
      if (v === vnr) this.afterStateChange(before, after);
    });
    runtime.detachHooks.push(async (v) => {
      if (v === vnr) await this.onDetach();
    });
  }

  private get runtime(): ResourceRuntime {
    return this.wiring.runtime;
  }

  /** The resource through this volume's configuration, read each time: `adjust` may have replaced the spec. */
  private get view(): ResourceView {
    return this.runtime.specOf(this.vnr).view as ResourceView;
  }

  private get state(): ResourceState {
    return this.runtime.volumeSnapshot(this.vnr);
  }

  private onAttach(store: AttachedStore): void {
    const deadline = new DeadlineDisk(this.faults?.wrap(store.data) ?? store.data, this.view.disk.diskTimeoutDs * DISK_TIMEOUT_UNIT_MS);
    this.deadline = deadline;
    if (this.dataPath) {
      // Re-attach of a diskless volume (or the first attach of one that connected without a disk):
      // the running data path gets the disk.
      this.dataPath.attachLocal({ disk: deadline, bitmap: store.bitmap, activityLog: store.activityLog });
      return;
    }
    this.dataPath = this.newDataPath({ disk: deadline, bitmap: store.bitmap, activityLog: store.activityLog });
  }

  private async onDetach(): Promise<void> {
    const rt = this.runtime;
    const dp = this.dataPath;
    if (dp && (dp.isAttached || this.state.role === Role.Primary)) {
      // DRBD's diskless mode: a Primary keeps its device (served through the peer, or EIO), the link stays.
      this.link.exposedDataUuid = rt.storeOf(this.vnr)?.uuids.current;
      dp.detachLocal();
      return;
    }
    if (dp) {
      // The disk goes away either way; a failed flush is logged and answered to the operator (daemon/durability).
      await dp.volume.flush().catch((err: unknown) => rt.durability.record(rt.log, rt.specOf(this.vnr), 'flush', err));
      await dp.volume.close();
    }
    this.dataPath = undefined;
  }

  /** The device size while there is no disk (the peer's, or the lost disk's), else undefined. */
  disklessDeviceBytes(): number | undefined {
    return this.dataPath && !this.dataPath.local.isAttached ? this.dataPath.volume.sizeBytes : undefined;
  }

  /** Resolves once no request is in flight on the detached disk. */
  async diskDrained(): Promise<void> {
    await this.deadline?.drained();
    this.deadline = undefined;
  }

  /** Live fields of this volume's status (sync progress, counters, resync rates). */
  statusExtras(): Partial<StatusSnapshot> {
    return {
      sync: this.link.syncProgress(),
      protocol: this.wiring.link.protocol,
      resyncRateKiBps: this.view.disk.resyncRateKiBps,
      resyncRateLimitKiBps: this.dataPath?.options.resyncRateKiBps,
      counters: this.dataPath ? { ...this.dataPath.counterSnapshot() } : {},
    };
  }

  /** A data path on `local` (an attached disk's parts, or a diskless volume's shape) with this volume's options and hooks. */
  private newDataPath(local: { disk: BlockDevice; bitmap: DirtyBitmap; activityLog: ActivityLogApi } | { diskless: DisklessShape }): ReplicationEngine {
    const rt = this.runtime;
    const dataPath = new ReplicationEngine({
      ...local,
      options: liveReplicationOptions(this.view),
      log: rt.log,
      // The one number every per-volume packet this data path sends carries.
      vnr: this.vnr,
      // The attached store's, not the first one's: the disk may have been detached and attached again.
      alTransactions: () => rt.storeOf(this.vnr)?.activityLog.transactionCount ?? 0,
      onLocalIoError: (op, offsetBytes, error) => this.ioErrors.onLocalIoError(op, offsetBytes, error),
    });
    // on-congestion: the write path reports, the link commits Ahead / StandAlone and starts the resync.
    dataPath.volume.setCongestionHandler({
      congested: (policy) => this.link.congested(policy),
      aheadDrained: () => this.link.aheadDrained(),
    });
    dataPath.volume.setCongestionArmed(this.state.conn === ConnState.Connected);
    return dataPath;
  }

  /**
   * drbd_adm_attach: a diskless Primary without an UpToDate peer may only
   * take back a disk that holds the data it exposes — not one that missed
   * writes it made through the peer, or another generation.
   */
  async checkAttach(store: AttachedStore): Promise<void> {
    this.checkDataCurrent(store);
    const dp = this.dataPath;
    if (!dp || dp.local.isAttached) return;
    // drbd_adm_attach: the new disk must hold the whole device (it may have the peer's size): ERR_DISK_TOO_SMALL.
    const deviceBytes = dp.volume.sizeBytes;
    const agreed = attachSizeUnderDevice(store.maxSizeBytes, deviceBytes);
    if (agreed === null) {
      this.runtime.log.error({ diskBytes: store.maxSizeBytes, deviceBytes }, `the disk holds ${store.maxSizeBytes / 512} sectors, less than the device's ${deviceBytes / 512}`);
      throw new StateChangeRefused(ErrCode.diskTooSmall, failure(ErrCode.diskTooSmall).text, ExitCode.configInvalid);
    }
    // The disk agrees on the device's size; the handshake that follows decides what to sync.
    if (agreed !== store.sizeBytes) await store.setAgreedSize(agreed);
  }

  private checkDataCurrent(store: AttachedStore): void {
    const dp = this.dataPath;
    const s = this.state;
    if (!dp?.volume.isDiskless || s.pdsk === DiskState.UpToDate || !(s.role === Role.Primary || s.peer === Role.Primary)) return;
    const exposed = this.link.exposedDataUuid;
    const sameGeneration = exposed !== undefined && (exposed & ~1n) === (store.uuids.current & ~1n);
    if (sameGeneration && dp.volume.writesWhileDiskless === 0) return;
    const shown = exposed === undefined ? '0000000000000000' : exposed.toString(16).toUpperCase().padStart(16, '0');
    this.runtime.log.error(`Can only attach to data with current UUID=${shown}`);
    throw new StateChangeRefused(150, 'Can only attach to the data we lost last (see kernel log).', ExitCode.configInvalid);
  }

  /** `adjust` (disk-options): the attached disk's requests from now on get the new disk-timeout. */
  applyDiskTimeout(): void {
    this.deadline?.setTimeoutMs(this.view.disk.diskTimeoutDs * DISK_TIMEOUT_UNIT_MS);
  }

  /** Keeps the data path told of both disks; re-negotiates after a re-attach. */
  private afterStateChange(before: ResourceState, after: ResourceState): void {
    const connected = after.conn >= ConnState.Connected;
    // maybe_pull_ahead runs while Connected (udrbd: not during a resync); leaving Ahead mirrors writes again.
    this.dataPath?.volume.setCongestionArmed(after.conn === ConnState.Connected);
    if (after.conn !== ConnState.Ahead) this.dataPath?.volume.leaveAhead();
    this.dataPath?.setPeerPrimary(connected && after.peer === Role.Primary);
    this.dataPath?.setDiskStates({
      localUpToDate: after.disk === DiskState.UpToDate,
      peerDiskless: connected && after.pdsk <= DiskState.Failed,
      peerUpToDate: connected && after.pdsk === DiskState.UpToDate,
    });
    // State hooks are synchronous: both run after the change, their failures logged.
    if (before.disk === DiskState.Attaching && after.disk > DiskState.Attaching && connected) {
      runAside(this.link.renegotiate('attach'), this.runtime.log, 'negotiation after attach');
    }
    // The peer losing its disk ("lost contact to peer's copy of the data") is resource/transition's
    // lostPeerDataRule: the runtime starts the new generation and the peer hears the UUIDs (uuidsChanged).
  }

  /**
   * `primary [--force]`: resource/admin's requestPrimary decides (the
   * --force retry with the disk UpToDate, fence-peer, two primaries), this
   * runs its effects: a new current UUID or the primary bit, then the state.
   */
  async primary(force: boolean): Promise<void> {
    const rt = this.runtime;
    const vnr = this.vnr;
    if (this.state.role === Role.Primary) return;
    // Without a disk only the peer's UpToDate data makes a Primary (is_valid_state: SS_NO_UP_TO_DATE_DISK).
    const store = rt.storeOf(vnr);
    // drbd_set_role: fence-peer first where DRBD runs it; its answer is already applied to the state.
    const fenced = await this.wiring.fencing.beforePromote(force);
    const old = this.state;
    if (old.role === Role.Primary) return;
    const plan = this.wiring.admin(requestPrimary(old, { force, fenced }, { ...this.wiring.ctx(vnr), bitmapUuid: store?.uuids.bitmap }));
    const forced = plan.effects.includes('send-uuids') || plan.logLines.some((l) => l.startsWith('Forced to'));
    // drbd_set_role: the UUID steps need a disk (get_ldev); a diskless Primary's data generation is the peer's.
    if (plan.effects.includes('new-current-uuid')) await store?.newCurrentUuid(true);
    else if (plan.effects.includes('uuid-primary-bit')) store?.setPrimaryBit(true);
    if (plan.effects.includes('clear-discard-my-data')) this.wiring.link.discardMyData = false;
    for (const next of plan.states) await rt.setVolumeState(vnr, next, forced ? 'primary --force' : 'primary');
    if (plan.effects.includes('send-uuids')) await this.link.renegotiate('new-uuids');
    if (this.dataPath) await this.exposeOrDemote(this.wiring.fencing.guard(this.dataPath.volume));
  }

  /** The Primary's volume becomes a block device; if that fails the promotion is undone. */
  private async exposeOrDemote(volume: BlockDevice): Promise<void> {
    const rt = this.runtime;
    try {
      await rt.expose(volume, this.vnr);
    } catch (err) {
      rt.log.error({ err }, `cannot expose the device, back to Secondary: ${(err as Error).message}`);
      await rt.demote(this.vnr);
      throw err;
    }
  }

  async secondary(): Promise<void> {
    const rt = this.runtime;
    const old = this.state;
    if (old.role !== Role.Primary) return;
    const open = rt.frontendHeldOpen(this.vnr);
    if (rt.isExposed(this.vnr) && open) {
      throw new StateChangeRefused(SsCode.deviceInUse, refusal(SsCode.deviceInUse).text, ExitCode.stateChangeFailed);
    }
    this.wiring.admin(requestSecondary(old, { deviceOpen: open }, this.wiring.ctx(this.vnr)));
    const dp = this.dataPath;
    // A diskless Primary without its peer has nowhere to flush to (its I/O fails with EIO already).
    if (dp && !(dp.volume.isDiskless && !dp.volume.isMirroring)) await dp.volume.flush();
    // demote() tears the device down first (it may still refuse: held open) and then clears the primary bit.
    await rt.demote(this.vnr);
  }

  async newCurrentUuid(clearBitmap: boolean): Promise<void> {
    const rt = this.runtime;
    const store = rt.requireStore(this.vnr);
    const before = this.state;
    const result = requestNewCurrentUuid(before, { clearBitmap, currentIsJustCreated: (store.uuids.current & ~1n) === UUID_JUST_CREATED });
    const next = this.wiring.admin(result).states.at(-1);
    const fresh = adminNewCurrentUuid(store.uuids, before.role, crypto.randomBytes(8).readBigUInt64BE(0), clearBitmap);
    store.setUuids(fresh.uuids);
    for (const line of fresh.logLines) rt.log.info(line);
    if (clearBitmap) store.bitmap.clearRange(0, store.bitmap.bitCount);
    if (next) {
      // skip initial sync: the peer adopts our new current UUID and both sides are UpToDate
      await this.link.skipInitialSync();
      await rt.setVolumeState(this.vnr, next, 'new-current-uuid --clear-bitmap');
    }
  }

  async outdate(): Promise<void> {
    // resource/admin's rule: -6 while connected, -2 for a Primary, -16 below Outdated.
    const next = this.wiring.admin(requestOutdate(this.state, this.wiring.ctx(this.vnr))).states.at(-1);
    if (next) await this.runtime.setVolumeState(this.vnr, next, 'outdate');
  }

  async invalidate(): Promise<void> {
    const rt = this.runtime;
    const s = this.wiring.admin(requestInvalidate(this.state, this.wiring.ctx(this.vnr))).states.at(-1);
    if (this.state.conn === ConnState.StandAlone) {
      // StandAlone Secondary: all blocks out of sync, disk Inconsistent
      rt.requireStore(this.vnr).bitmap.setAll();
      if (s) await rt.setVolumeState(this.vnr, s, 'invalidate');
      return;
    }
    await this.link.invalidate();
  }

  async invalidateRemote(): Promise<void> {
    this.wiring.admin(requestInvalidateRemote(this.state, this.wiring.ctx(this.vnr)));
    await this.link.invalidateRemote();
  }

  async verify(): Promise<void> {
    this.wiring.admin(requestVerify(this.state, this.wiring.ctx(this.vnr)));
    await this.link.verify();
  }

  async pauseSync(pause: boolean, verb: string): Promise<void> {
    const s = this.wiring.admin(requestPauseSync(this.state, pause, this.wiring.ctx(this.vnr))).states.at(-1);
    await this.runtime.setVolumeState(this.vnr, { userIsp: s ? s.userIsp : pause }, verb);
    this.link.applyPause();
  }

  requirePrimaryDataPath(): DataPath {
    if (!this.dataPath) throw new StateChangeRefused(SsCode.isDiskless, refusal(SsCode.isDiskless).text, ExitCode.stateChangeFailed);
    if (this.state.role !== Role.Primary) {
      // DRBD: opening the device of a Secondary fails with EMEDIUMTYPE ("Wrong medium type").
      throw new StateChangeRefused(SsCode.noUpToDateDisk, 'Wrong medium type: the device is only writable on the Primary', ExitCode.stateChangeFailed);
    }
    return this.dataPath;
  }
}
