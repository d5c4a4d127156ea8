/**
 * daemon/wiring — connects a ResourceRuntime to the state rules
 * (resource/), the data path (replication/) and the peer link (peer/):
 * builds the ReplicatedVolume on attach, defines the role, network and
 * diagnostic verbs on the runtime, and executes what the rules decide.
 * The backing disk reaches the data path through disk-timeout's deadline
 * (disk/deadline-disk) and, for tests, the fault layer (daemon/fault-hook);
 * its errors go to on-io-error (daemon/io-error). A detach while connected
 * or Primary keeps the data path running diskless; the next attach gives it
 * the disk back and the link negotiates again (a resync by the bitmap). A
 * node that connects without ever having a disk gets a data path with none,
 * sized by the peer (daemon/link connectDiskless); its first attach must
 * hold that size (ERR_DISK_TOO_SMALL) and then negotiates the same way.
 */
import { ExitCode, UdrbdError } from '../util/errors.js';
import { ConnState, DiskState, Role } from '../resource/states.js';
import { type ResourceState, type StateCtx, ErrCode, SsCode, defaultStateCtx, failure, formatRefusalMessage, refusal } from '../resource/state.js';
import { attachSizeUnderDevice } from '../resource/diskless.js';
import type { ActivityLogApi, DirtyBitmap } from '../meta/types.js';
import type { DisklessShape } from '../replication/index.js';
import { ReplicationEngine } from '../replication/index.js';
import { liveReplicationOptions } from './adjust.js';
import type { ResourceView } from '../config/index.js';
import { PeerLink } from './link.js';
import { watchStateHandlers } from './state-handlers.js';
import { PeerFencing } from './fencing.js';
import { ListenFailedError } from './listen-failure.js';
import crypto from 'node:crypto';
import { adminNewCurrentUuid } from '../resource/uuid.js';
import { UUID_JUST_CREATED } from '../meta/types.js';
import { type AdminResult, requestNewCurrentUuid, requestPrimary, requestSecondary, requestInvalidate, requestInvalidateRemote, requestOutdate, requestPauseSync, requestVerify } from '../resource/admin.js';
import { DIAGNOSTIC_IO_BYTES_MAX } from '../control/protocol.js';
import type { BlockDevice } from '../disk/block-device.js';
import { type ResourceRuntime, StateChangeRefused, type VerbResult } from './runtime.js';
import { defineMetricsVerb } from './metrics-source.js';
import { defineResizeVerb } from './resize.js';
import { DeadlineDisk } from '../disk/deadline-disk.js';
import { IoErrorPolicy } from './io-error.js';
import { type FaultLayer, installFaultLayer } from './fault-hook.js';
import type { AttachedStore } from './runtime.js';
import { runAside } from '../util/aside.js';
import { ResyncAfterWatch } from './resync-after.js';

/** What a data path without a disk declares (the volume caps requests at 1 MiB; flushes and FUA go to the peer). */
const DISKLESS_CAPABILITIES = { canFlush: true, canFua: true, canTrim: false, maxRequestBytes: 1024 * 1024 } as const;

/** disk-timeout is in tenths of a second. */
const DISK_TIMEOUT_UNIT_MS = 100;

type AdminPlan = Extract<AdminResult, { kind: 'ok' }>;

export interface WiringOptions {
  discardMyData: boolean;
}

/** The data path of an attached resource. */
export type DataPath = ReplicationEngine;

export class Wiring {
  dataPath: DataPath | undefined;
  readonly link: PeerLink;
  readonly ioErrors: IoErrorPolicy;
  private readonly faults: FaultLayer | undefined;
  /** The attached disk under its disk-timeout deadline (also while its last requests drain after a detach). */
  private deadline: DeadlineDisk | undefined;
  /** fence-peer runs and the I/O freeze of `fencing resource-and-stonith` (daemon/fencing). */
  readonly fencing: PeerFencing;
  /** disk { resync-after }: this resource's aftr_isp from its dependency's state (daemon/resync-after). */
  readonly resyncAfter: ResyncAfterWatch;

  constructor(
    readonly runtime: ResourceRuntime,
    options: WiringOptions,
  ) {
    this.link = new PeerLink(runtime, () => this.dataPath);
    runtime.stateCtx = () => this.ctx();
    runtime.uuidsChanged = () => this.link.sendUuids();
    this.ioErrors = new IoErrorPolicy(runtime, () => (runtime.spec.view as ResourceView).disk.onIoError);
    this.faults = installFaultLayer(runtime, process.env);
    this.fencing = new PeerFencing({ runtime, fencing: () => (runtime.spec.view as ResourceView).disk.fencing, ctx: () => this.ctx() });
    watchStateHandlers(runtime);
    this.resyncAfter = new ResyncAfterWatch(runtime, () => this.link.applyPause());
    this.resyncAfter.start();
    this.link.beforeResync = () => this.resyncAfter.beforeResync();
    void runtime.stopped.then(() => this.resyncAfter.stop());
    // The data path serves the first volume; one per volume comes with docs/multi-volume.md step 8.
    const served = (vnr: number): boolean => vnr === runtime.firstVolume;
    runtime.attachHooks.push((store, vnr) => {
      if (!served(vnr)) return;
      const view = runtime.spec.view as ResourceView; // read at each attach: `adjust` may have replaced the spec
      const deadline = new DeadlineDisk(this.faults?.wrap(store.data) ?? store.data, view.disk.diskTimeoutDs * DISK_TIMEOUT_UNIT_MS);
      this.deadline = deadline;
      if (this.dataPath) {
        // Re-attach of a diskless node (or the first attach of one that connected without a disk):
        // the running data path gets the disk.
        this.dataPath.attachLocal({ disk: deadline, bitmap: store.bitmap, activityLog: store.activityLog });
        return;
      }
      this.dataPath = this.newDataPath({ disk: deadline, bitmap: store.bitmap, activityLog: store.activityLog });
    });
    // A node without a disk that connects: a data path with no disk, sized by the peer (daemon/link).
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
    runtime.disklessDeviceBytes = (vnr) => (served(vnr) && this.dataPath && !this.dataPath.local.isAttached ? this.dataPath.volume.sizeBytes : undefined);
    runtime.diskDrained = async (vnr) => {
      if (!served(vnr)) return;
      await this.deadline?.drained();
      this.deadline = undefined;
    };
    runtime.stateHooks.push((before, after, vnr) => {
      if (served(vnr)) this.afterStateChange(before, after);
    });
    runtime.attachCheck = async (store, vnr) => {
      if (served(vnr)) await this.checkAttach(store);
    };
    runtime.detachHooks.push(async (vnr) => {
      if (!served(vnr)) return;
      const dp = this.dataPath;
      if (dp && (dp.isAttached || runtime.snapshot.role === Role.Primary)) {
        // DRBD's diskless mode: a Primary keeps its device (served through the peer, or EIO), the link stays.
        this.link.exposedDataUuid = runtime.attachedStore?.uuids.current;
        dp.detachLocal();
        return;
      }
      if (dp) {
        // The disk goes away either way; a failed flush is logged and answered to the operator (daemon/durability).
        await dp.volume.flush().catch((err: unknown) => runtime.durability.record(runtime.log, runtime.spec, 'flush', err));
        await dp.volume.close();
      }
      this.dataPath = undefined;
    });
    // A failed first listen fails `up` (daemon/listen-failure), and so does a net config the kernel's
    // connect refuses (drbdsetup's "Failure: (155) ...", exit 10); anything else is logged as before.
    runtime.connectHook = () =>
      this.link.connect(options.discardMyData).catch((err: Error) => {
        if (err instanceof ListenFailedError) throw err;
        if (err instanceof StateChangeRefused && err.code > 100) {
          const line = formatRefusalMessage(runtime.spec.minor, { ok: false, code: err.code, text: err.text, exitCode: err.exitCode, failure: true });
          throw new UdrbdError(line, err.exitCode);
        }
        runtime.log.error({ err }, `connect failed: ${err.message}`);
      });
    runtime.disconnectHook = () => this.link.disconnect();
    runtime.statusExtras = (vnr) => (!served(vnr) ? { protocol: this.link.protocol } : {
      sync: this.link.syncProgress(),
      protocol: this.link.protocol,
      resyncRateKiBps: (runtime.spec.view as ResourceView).disk.resyncRateKiBps,
      resyncRateLimitKiBps: this.dataPath?.options.resyncRateKiBps,
      counters: this.dataPath ? { ...this.dataPath.counterSnapshot() } : {},
    });
    this.defineVerbs();
    defineMetricsVerb(this);
    defineResizeVerb(runtime, this.link);
  }

  /** A data path on `local` (an attached disk's parts, or a diskless node's shape) with this resource's options and hooks. */
  private newDataPath(local: { disk: BlockDevice; bitmap: DirtyBitmap; activityLog: ActivityLogApi } | { diskless: DisklessShape }): ReplicationEngine {
    const rt = this.runtime;
    const view = rt.spec.view as ResourceView;
    const dataPath = new ReplicationEngine({
      ...local,
      options: liveReplicationOptions(view),
      log: rt.log,
      // The volume this process runs: the one number every per-volume packet the data path sends carries.
      vnr: rt.spec.volume,
      // The attached store's, not the first one's: the disk may have been detached and attached again.
      alTransactions: () => rt.attachedStore?.activityLog.transactionCount ?? 0,
      onLocalIoError: (op, offsetBytes, error) => this.ioErrors.onLocalIoError(op, offsetBytes, error),
    });
    // on-congestion: the write path reports, the link commits Ahead / StandAlone and starts the resync.
    dataPath.volume.setCongestionHandler({
      congested: (policy) => this.link.congested(policy),
      aheadDrained: () => this.link.aheadDrained(),
    });
    dataPath.volume.setCongestionArmed(rt.snapshot.conn === ConnState.Connected);
    return dataPath;
  }

  /**
   * drbd_adm_attach: a diskless Primary without an UpToDate peer may only
   * take back a disk that holds the data it exposes — not one that missed
   * writes it made through the peer, or another generation.
   */
  private async checkAttach(store: AttachedStore): Promise<void> {
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
    const s = this.runtime.snapshot;
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
    this.deadline?.setTimeoutMs((this.runtime.spec.view as ResourceView).disk.diskTimeoutDs * DISK_TIMEOUT_UNIT_MS);
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

  ctx(): StateCtx {
    const view = this.runtime.spec.view as ResourceView;
    const runtime = this.runtime;
    return {
      ...defaultStateCtx,
      fencing: view.disk.fencing,
      allowTwoPrimaries: view.net.allowTwoPrimaries,
      // Read only by is_valid_state's "Secondary while open" rule, which requests alone check: a
      // getter, so an internal change does not scan /proc/*/fd (~5 ms a transition on a Primary).
      get deviceOpen(): boolean {
        return runtime.frontendHeldOpen();
      },
      hasNetConfig: this.runtime.snapshot.conn !== ConnState.StandAlone,
      verifyAlg: view.net.verifyAlg ?? null,
    };
  }

  /**
   * `primary [--force]`: resource/admin's requestPrimary decides (the
   * --force retry with the disk UpToDate, fence-peer, two primaries), this
   * runs its effects: a new current UUID or the primary bit, then the state.
   */
  async primary(force: boolean): Promise<void> {
    const rt = this.runtime;
    if (rt.snapshot.role === Role.Primary) return;
    // Without a disk only the peer's UpToDate data makes a Primary (is_valid_state: SS_NO_UP_TO_DATE_DISK).
    const store = rt.attachedStore;
    // drbd_set_role: fence-peer first where DRBD runs it; its answer is already applied to the state.
    const fenced = await this.fencing.beforePromote(force);
    const old = rt.snapshot;
    if (old.role === Role.Primary) return;
    const plan = this.admin(requestPrimary(old, { force, fenced }, { ...this.ctx(), bitmapUuid: store?.uuids.bitmap }));
    const forced = plan.effects.includes('send-uuids') || plan.logLines.some((l) => l.startsWith('Forced to'));
    // drbd_set_role: the UUID steps need a disk (get_ldev); a diskless Primary's data generation is the peer's.
    if (plan.effects.includes('new-current-uuid')) await store?.newCurrentUuid(true);
    else if (plan.effects.includes('uuid-primary-bit')) store?.setPrimaryBit(true);
    if (plan.effects.includes('clear-discard-my-data')) this.link.discardMyData = false;
    for (const next of plan.states) await rt.setVolumeState(rt.firstVolume, next, forced ? 'primary --force' : 'primary');
    if (plan.effects.includes('send-uuids')) await this.link.renegotiate('new-uuids');
    if (this.dataPath) await this.exposeOrDemote(this.fencing.guard(this.dataPath.volume));
  }

  /** The Primary's volume becomes a block device; if that fails the promotion is undone. */
  private async exposeOrDemote(volume: BlockDevice): Promise<void> {
    const rt = this.runtime;
    try {
      await rt.expose(volume);
    } catch (err) {
      rt.log.error({ err }, `cannot expose the device, back to Secondary: ${(err as Error).message}`);
      await rt.demote();
      throw err;
    }
  }

  async secondary(): Promise<void> {
    const rt = this.runtime;
    const old = rt.snapshot;
    if (old.role !== Role.Primary) return;
    if (rt.exposed && rt.frontendHeldOpen()) {
      throw new StateChangeRefused(SsCode.deviceInUse, refusal(SsCode.deviceInUse).text, ExitCode.stateChangeFailed);
    }
    this.admin(requestSecondary(old, { deviceOpen: rt.frontendHeldOpen() }, this.ctx()));
    const dp = this.dataPath;
    // A diskless Primary without its peer has nowhere to flush to (its I/O fails with EIO already).
    if (dp && !(dp.volume.isDiskless && !dp.volume.isMirroring)) await dp.volume.flush();
    // demote() tears the device down first (it may still refuse: held open) and then clears the primary bit.
    await rt.demote();
  }

  private defineVerbs(): void {
    const rt = this.runtime;
    const ok = (): VerbResult => ({ exitCode: 0 });
    rt.defineVerb('primary', async (args) => {
      await this.primary(Boolean(args.force));
      return ok();
    });
    rt.defineVerb('secondary', async () => {
      await this.secondary();
      return ok();
    });
    rt.defineVerb('connect', async (args) => {
      // drbd_adm_connect needs no disk: a diskless node connects and works through the peer's.
      if (!rt.minorAllocated) {
        throw new UdrbdError(`${rt.spec.name}: udrbd connects a resource together with its volume, which does not exist yet: run 'udrbdadm new-minor ${rt.spec.name}' first`, ExitCode.configInvalid);
      }
      await this.link.connect(Boolean(args.discardMyData));
      return ok();
    });
    rt.defineVerb('disconnect', async () => {
      await this.link.disconnect();
      return ok();
    });
    rt.defineVerb('new-current-uuid', async (args) => {
      const store = rt.requireStore();
      const clearBitmap = Boolean(args.clearBitmap);
      const before = rt.snapshot;
      const result = requestNewCurrentUuid(before, { clearBitmap, currentIsJustCreated: (store.uuids.current & ~1n) === UUID_JUST_CREATED });
      const next = this.admin(result).states.at(-1);
      const fresh = adminNewCurrentUuid(store.uuids, before.role, crypto.randomBytes(8).readBigUInt64BE(0), clearBitmap);
      store.setUuids(fresh.uuids);
      for (const line of fresh.logLines) rt.log.info(line);
      if (clearBitmap) store.bitmap.clearRange(0, store.bitmap.bitCount);
      if (next) {
        // skip initial sync: the peer adopts our new current UUID and both sides are UpToDate
        await this.link.skipInitialSync();
        await rt.setVolumeState(rt.firstVolume, next, 'new-current-uuid --clear-bitmap');
      }
      return ok();
    });
    rt.defineVerb('outdate', async () => {
      // resource/admin's rule: -6 while connected, -2 for a Primary, -16 below Outdated.
      const next = this.admin(requestOutdate(rt.snapshot, this.ctx())).states.at(-1);
      if (next) await rt.setVolumeState(rt.firstVolume, next, 'outdate');
      return ok();
    });
    rt.defineVerb('invalidate', async () => {
      const s = this.admin(requestInvalidate(rt.snapshot, this.ctx())).states.at(-1);
      if (rt.snapshot.conn === ConnState.StandAlone) {
        // StandAlone Secondary: all blocks out of sync, disk Inconsistent
        rt.requireStore().bitmap.setAll();
        if (s) await rt.setVolumeState(rt.firstVolume, s, 'invalidate');
        return ok();
      }
      await this.link.invalidate();
      return ok();
    });
    rt.defineVerb('invalidate-remote', async () => {
      this.admin(requestInvalidateRemote(rt.snapshot, this.ctx()));
      await this.link.invalidateRemote();
      return ok();
    });
    rt.defineVerb('verify', async () => {
      this.admin(requestVerify(rt.snapshot, this.ctx()));
      await this.link.verify();
      return ok();
    });
    for (const [verb, pause] of [['pause-sync', true], ['resume-sync', false]] as const) {
      rt.defineVerb(verb, async () => {
        const s = this.admin(requestPauseSync(rt.snapshot, pause, this.ctx())).states.at(-1);
        await rt.setVolumeState(rt.firstVolume, { userIsp: s ? s.userIsp : pause }, verb);
        this.link.applyPause();
        return ok();
      });
    }
    rt.defineVerb('io.write', async (args) => {
      const dp = this.requirePrimaryDataPath();
      const data = Buffer.from(String(args.base64 ?? ''), 'base64');
      if (data.length === 0 || data.length > DIAGNOSTIC_IO_BYTES_MAX) return { exitCode: ExitCode.usage, stderr: 'io.write: bad length\n' };
      await this.fencing.guard(dp.volume).write(data, Number(args.offsetBytes), { fua: Boolean(args.fua) });
      return ok();
    });
    rt.defineVerb('io.flush', async () => {
      await this.fencing.guard(this.requirePrimaryDataPath().volume).flush();
      return ok();
    });
  }

  /** Applies resource/admin's verdict: throws DRBD's refusal, or returns the accepted plan (states, effects). */
  admin(result: AdminResult): AdminPlan {
    if (result.kind === 'refused') {
      for (const line of result.logLines) this.runtime.log.warn(line);
      throw new StateChangeRefused(result.refusal.code, result.refusal.text, result.refusal.exitCode);
    }
    // daemon/fencing runs fence-peer before the request (beforePromote), so a plan never asks for it; if one did, refuse.
    if (result.kind === 'fence-peer') throw new StateChangeRefused(SsCode.primaryNop, refusal(SsCode.primaryNop).text, ExitCode.stateChangeFailed);
    for (const line of result.logLines) {
      if (line.startsWith('Forced')) this.runtime.log.warn(line);
      else this.runtime.log.info(line);
    }
    return result;
  }

  requirePrimaryDataPath(): DataPath {
    const rt = this.runtime;
    if (!this.dataPath) throw new StateChangeRefused(SsCode.isDiskless, refusal(SsCode.isDiskless).text, ExitCode.stateChangeFailed);
    if (rt.snapshot.role !== Role.Primary) {
      // DRBD: opening the device of a Secondary fails with EMEDIUMTYPE ("Wrong medium type").
      throw new StateChangeRefused(SsCode.noUpToDateDisk, 'Wrong medium type: the device is only writable on the Primary', ExitCode.stateChangeFailed);
    }
    return this.dataPath;
  }
}

export function wireReplication(runtime: ResourceRuntime, options: WiringOptions): Wiring {
  return new Wiring(runtime, options);
}
