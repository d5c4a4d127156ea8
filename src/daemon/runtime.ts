/**
 * daemon/runtime — ResourceRuntime: one resource on this node. It holds the
 * resource state (role, cstate, disk states), owns the backing disk and its
 * meta-data while attached, answers the control verbs it defines itself
 * (status, attach, detach, down, io.read) and lets daemon/wiring and
 * daemon/link add the rest. It keeps the state as DRBD 8.4 does: one
 * ConnectionState (cstate up to Connected, the suspension flags) and one
 * VolumeState per volume (only volume 0 runs today). Every state change,
 * whatever caused it, goes through `setVolumeState` (one volume: role,
 * disk, resync / verify) or `setConnState` (the connection, on every volume:
 * DRBD's conn_request_state), which pass resource/transition (sanitize,
 * DRBD's hard rules, invariants, after-state rules; an operator's request
 * was checked by resource/admin through the same functions first), then log
 * the one `conn( A -> B )` line, publish one events2 change, persist the
 * meta-data flags and run the after-state effects (a new current UUID).
 */
import type { Logger } from '../util/log.js';
import { assert } from '../util/assert.js';
import { ExitCode, UdrbdError } from '../util/errors.js';
import { ConnState, DiskState, Role } from '../resource/states.js';
import {
  type ConnectionState,
  type ResourceState,
  type StateCtx,
  type VolumeState,
  ErrCode,
  SsCode,
  connectionOf,
  defaultStateCtx,
  failure,
  formatRefusalMessage,
  joinState,
  unconfiguredConnection,
  unconfiguredVolume,
  volumeOf,
} from '../resource/state.js';
import { requestDetach } from '../resource/admin.js';
import {
  type Committed,
  type ConnectionCommitted,
  type ConnectionRefusal,
  type StateEffect,
  type StateFacts,
  connectionLogLines,
  connectionTransition,
  internalTransition,
} from '../resource/transition.js';
import { type ControlEvent, type ControlReply, type ControlRequest, DIAGNOSTIC_IO_BYTES_MAX, errorReply, okReply } from '../control/protocol.js';
import {
  type StateSnapshot,
  type StatusSnapshot,
  type FrontendStatusView,
  cstateText,
  dstateText,
  perVolumeLines,
  roleText,
  statusText,
  statusJson,
} from './status.js';
import { type ResourceSpec, type VolumeSpec, volumeSpec } from './spec.js';
import { runHandler } from './handlers.js';
import { DurabilityReport } from './durability.js';
import { changeEvents, existsEvents, helperEvent } from './events2.js';
import type { BlockDevice } from '../disk/block-device.js';
import type { ActivityLogApi, DirtyBitmap, GenerationUuids } from '../meta/types.js';

/** What the runtime needs from an attached backing disk + meta-data (see meta-store.ts). */
export interface AttachedStore {
  /** Usable data area, ending at the agreed device size. */
  readonly data: BlockDevice;
  /** The backing disk's whole data area (below the meta-data). */
  readonly dataSizeBytes: number;
  /** What this node offers to the peer: the data area or a smaller configured `disk { size }`. */
  readonly maxSizeBytes: number;
  /** The agreed device size (la_size_sect at attach, min of both nodes after a connect). */
  readonly sizeBytes: number;
  /** Applies a new agreed size at once (grown blocks out of sync unless setNewBits is false); the promise is the bitmap write (daemon/device-size). */
  setAgreedSize(sizeBytes: number, setNewBits?: boolean): Promise<void>;
  /** `resize`: re-read the backing disk, move meta-data to its new end; resolves with the data area's growth in bytes (MetaStore). */
  refreshCapacity?(): Promise<number>;
  /** m_size: the backing disk's data area, not capped by --size. */
  readonly dataAreaBytes?: number;
  /** u_size: the --size in force (0 = the whole data area). */
  readonly userSizeBytes?: number;
  setUserSize?(userSizeBytes: number): void;
  /** A new u_size and agreed size together, in the order that keeps the size inside the usable area (shrink first, or u_size first). */
  applySize?(userSizeBytes: number, sizeBytes: number, setNewBits?: boolean): Promise<void>;
  /** Disk state at attach, from the meta-data MDF_* flags (drbd_main.c: drbd_md_read). */
  readonly diskAtAttach: DiskState;
  /** Peer disk state at attach: Outdated when MDF_PEER_OUT_DATED is set, else DUnknown. */
  readonly pdskAtAttach?: DiskState;
  readonly bitmap: DirtyBitmap;
  /** Bitmap pages written since attach (`bm:`; metrics); absent where the store does not count. */
  readonly bitmapWrites?: number;
  readonly activityLog: ActivityLogApi & { transactionCount: number };
  /** Generation UUIDs as held in the superblock (a copy; change them with setUuids). */
  readonly uuids: GenerationUuids;
  setUuids(uuids: GenerationUuids): void;
  /** Bit 0 of the current UUID follows the role. */
  setPrimaryBit(primary: boolean): void;
  /** Current MDF flags word. */
  readonly mdFlags: number;
  uuidsText(): { current: string; bitmap: string; historyStart: string; historyEnd: string };
  outOfSyncKiB(): number;
  /** Called after every state change: derive MDF flags and write the superblock if they changed. */
  syncFlags(state: StateSnapshot): Promise<void>;
  /** A new current UUID (promotion while disconnected, --force, new-current-uuid). */
  newCurrentUuid(primary: boolean): Promise<void>;
  /** Flush everything and close; clean = metadata marked clean (down), false = crash-like (detach on error). */
  close(clean: boolean): Promise<void>;
}

export type OpenStore = (spec: ResourceSpec, log: Logger) => Promise<AttachedStore>;

/** Hook the frontend (issue 5) fills in: expose the volume on promotion, tear down on demotion. */
export interface FrontendHook {
  exposeVolume(device: BlockDevice): Promise<void>;
  isHeldOpen(): boolean;
  teardown(): Promise<void>;
  /** What status shows as `frontend` while exposed. */
  describe?(): FrontendStatusView | undefined;
  /** The exposed device grew or shrank (online `resize`, a connect): make the kernel device and the NBD export follow. */
  deviceResized?(sizeBytes: number): Promise<void>;
}

export interface RuntimeOptions {
  spec: ResourceSpec;
  log: Logger;
  /** Opens one volume's backing disk and meta-data; it gets the spec as that volume sees it (daemon/spec volumeSpec). */
  openStore: OpenStore;
  /** The first volume's block device (the one a one-volume resource has). */
  frontend?: FrontendHook;
  /** Every other volume's block device by volume number (daemon/frontend, one per minor). */
  frontends?: ReadonlyMap<number, FrontendHook>;
}

export class StateChangeRefused extends Error {
  constructor(
    readonly code: number,
    readonly text: string,
    readonly exitCode: number,
  ) {
    super(text);
  }
}

/** What the runtime keeps per volume besides its state (DRBD's drbd_conf: ldev, the exposed device). */
interface VolumeSlot {
  /** The resource's spec as this volume's layers see it (daemon/spec volumeSpec). */
  spec: ResourceSpec;
  store: AttachedStore | undefined;
  frontend: FrontendHook | undefined;
  exposed: boolean;
  /** A new current UUID waits for IO to resume (DRBD's NEW_CUR_UUID, per device). */
  newCurrentUuidPending: boolean;
}

export class ResourceRuntime {
  /** The resource's connection (drbd_tconn): written by commitConnection / commitVolume only. */
  private connection: ConnectionState = { ...unconfiguredConnection };
  /** Its volumes by number, as configured (drbd_conf): written by commitConnection / commitVolume only. */
  private readonly volumes = new Map<number, VolumeState>();
  /** Disk, device and spec of each volume, by the same numbers. */
  private readonly slots = new Map<number, VolumeSlot>();
  /**
   * The lowest volume number: the one volume the data path, the link and
   * their hooks serve until they run one instance per volume
   * (docs/multi-volume.md steps 8-9); for a one-volume resource, its volume.
   */
  readonly firstVolume: number;
  private readonly subscribers = new Set<(event: ControlEvent) => void>();
  private readonly verbs = new Map<string, (args: Record<string, unknown>) => Promise<VerbResult>>();
  /** The `down` attempt in progress; a second `down` or SIGTERM meanwhile waits for its outcome. */
  private downAttempt: Promise<void> | undefined;
  /** Set only once a `down` completed: the process is about to exit. */
  private isDown = false;
  /** Resolves when `down` finished; the entry point exits then. */
  readonly stopped: Promise<void>;
  private resolveStopped!: () => void;

  constructor(private readonly options: RuntimeOptions) {
    this.stopped = new Promise((resolve) => (this.resolveStopped = resolve));
    const volumes = options.spec.volumes;
    assert(volumes.length >= 1, `resource ${options.spec.name} has a volume`);
    assert(volumes.every((v, i) => i === 0 || v.volume > volumes[i - 1]!.volume), 'volumes in ascending number order');
    this.firstVolume = volumes[0]!.volume;
    assert(options.spec.volume === this.firstVolume, 'the spec\'s own volume fields are its first volume\'s');
    for (const v of volumes) {
      this.volumes.set(v.volume, { ...unconfiguredVolume });
      const frontend = v.volume === this.firstVolume ? options.frontend : options.frontends?.get(v.volume);
      this.slots.set(v.volume, { spec: volumeSpec(options.spec, v.volume), store: undefined, frontend, exposed: false, newCurrentUuidPending: false });
    }
    this.registerVerbs();
  }

  /** The volume numbers of this resource, ascending. */
  get volumeNumbers(): number[] {
    return [...this.slots.keys()];
  }

  private slot(vnr: number): VolumeSlot {
    const slot = this.slots.get(vnr);
    assert(slot !== undefined, `resource ${this.spec.name} has no volume ${vnr}`);
    return slot;
  }

  /** The first volume's device is exposed (the Primary's block device is up). */
  get exposed(): boolean {
    return this.slot(this.firstVolume).exposed;
  }

  /** Volume vnr's device is exposed (its Primary's block device is up). */
  isExposed(vnr: number): boolean {
    return this.slot(vnr).exposed;
  }

  get spec(): ResourceSpec {
    return this.options.spec;
  }

  /** `adjust`: from now on every layer reads the newly read configuration (daemon/adjust applies the rest). */
  replaceSpec(spec: ResourceSpec): void {
    assert(spec.name === this.options.spec.name && spec.node === this.options.spec.node, 'adjust keeps the resource and node');
    // A caller that changed the spec's own (first volume's) fields changed that volume.
    const first: VolumeSpec = { volume: spec.volume, minor: spec.minor, devicePath: spec.devicePath, diskPath: spec.diskPath, metaDisk: spec.metaDisk, metaArgs: spec.metaArgs, alExtents: spec.alExtents, writeOrdering: spec.writeOrdering, configuredSizeBytes: spec.configuredSizeBytes, setupArgs: spec.setupArgs, view: spec.view };
    const volumes = spec.volumes.map((v) => (v.volume === spec.volume ? first : v));
    assert(volumes.map((v) => v.volume).join() === this.volumeNumbers.join(), 'adjust keeps the volumes (adding or removing one is refused before)');
    const next: ResourceSpec = { ...spec, volumes };
    this.options.spec = next;
    for (const [vnr, slot] of this.slots) slot.spec = volumeSpec(next, vnr);
  }

  get log(): Logger {
    return this.options.log;
  }

  /** The first volume on the connection, as the rules and status see it (drbd_read_state). */
  private get state(): StateSnapshot {
    return this.volumeView(this.firstVolume);
  }

  private volumeView(vnr: number): ResourceState {
    const volume = this.volumes.get(vnr);
    assert(volume !== undefined, `volume ${vnr} does not exist`);
    return joinState(volume, this.connection);
  }

  get snapshot(): StateSnapshot {
    return { ...this.state };
  }

  /** Volume `vnr` on the connection (drbd_read_state of that device). */
  volumeSnapshot(vnr: number): StateSnapshot {
    return { ...this.volumeView(vnr) };
  }

  onEvent(handler: (event: ControlEvent) => void): void {
    this.subscribers.add(handler);
  }

  /** events2 "exists" lines for a new subscriber, ending with `exists -`. */
  existingEvents(): ControlEvent[] {
    return existsEvents(this.status());
  }

  /**
   * The first volume's status; with several volumes `volumes` holds every
   * volume's (the first one's included), in number order (daemon/status volumesOf).
   */
  status(): StatusSnapshot {
    const first = this.volumeStatus(this.firstVolume);
    if (this.slots.size === 1) return first;
    return { ...first, volumes: this.volumeNumbers.map((vnr) => (vnr === this.firstVolume ? first : this.volumeStatus(vnr))) };
  }

  private volumeStatus(vnr: number): StatusSnapshot {
    const slot = this.slot(vnr);
    return {
      ...this.volumeView(vnr),
      resource: this.spec.name,
      node: this.spec.node,
      peerNode: this.spec.peer?.name,
      minor: slot.spec.minor,
      volume: vnr,
      device: slot.spec.devicePath,
      protocol: undefined,
      uuids: slot.store?.uuidsText(),
      outOfSyncKiB: slot.store?.outOfSyncKiB() ?? 0,
      sync: undefined,
      counters: {},
      deviceSizeKiB: Math.floor(this.deviceSizeBytes(vnr) / 1024),
      exposed: slot.exposed,
      frontend: slot.frontend?.describe?.() ?? null,
      pid: process.pid,
      ...(this.statusExtras?.(vnr) ?? {}),
    };
  }

  // ---- state changes -------------------------------------------------------

  /** The rules' view of the configuration and the device; daemon/wiring sets it from the resource's config. */
  stateCtx: () => StateCtx = () => {
    const runtime = this;
    // deviceOpen is a getter: only a request's is_valid_state reads it (see Wiring.ctx).
    return {
      ...defaultStateCtx, fencing: this.spec.fencing, hasNetConfig: this.state.conn !== ConnState.StandAlone,
      get deviceOpen(): boolean {
        return runtime.frontendHeldOpen();
      },
    };
  };

  private stateFacts(vnr: number): StateFacts {
    const slot = this.slot(vnr);
    return { bitmapUuid: slot.store?.uuids.bitmap, newCurrentUuidPending: slot.newCurrentUuidPending };
  }

  /**
   * An internal change of one volume (role, disk, peer news, the handshake's
   * outcome, resync or verify steps, pause flags, the steps of attach/detach):
   * DRBD's hard rules only (drbd_state.c: __drbd_set_state); a violation
   * throws an InvariantError naming both states. A volume's change reaches
   * its connection only as DRBD's does: the handshake's first state takes it
   * from WFReportParams to Connected, and sanitize may freeze IO; any other
   * connection state is setConnState's.
   */
  async setVolumeState(vnr: number, next: Partial<StateSnapshot>, why?: string): Promise<void> {
    const before = this.volumeView(vnr);
    const t = internalTransition(before, { ...before, ...next }, this.stateCtx(), this.stateFacts(vnr));
    const from = this.connection.conn;
    const to = connectionOf(t.to).conn;
    assert(from === to || (from === ConnState.WFReportParams && to === ConnState.Connected),
      `volume ${vnr}: a volume change took the connection ${from} -> ${to}; connection changes go through setConnState`);
    await this.commitVolume(vnr, t, why);
  }

  /**
   * An internal change of the connection (connect, disconnect, link lost,
   * WFReportParams, suspend / resume of IO, a fence-peer answer), applied to
   * every volume at once through resource/transition's connectionTransition
   * (DRBD's conn_request_state with CS_HARD): all volumes or none.
   */
  async setConnState(change: Partial<StateSnapshot>, why?: string): Promise<void> {
    const r = connectionTransition(this.resourceStates(), change, this.stateCtx(), 'internal', (vnr) => this.stateFacts(vnr));
    assert(r.ok, 'an internal connection change is never refused');
    await this.commitConnection(r, why);
  }

  /** An operator's connection change checked on every volume (DRBD's conn_request_state without CS_HARD); null = allowed. */
  connStateRefusal(change: Partial<StateSnapshot>): ConnectionRefusal | null {
    const r = connectionTransition(this.resourceStates(), change, this.stateCtx(), 'request', (vnr) => this.stateFacts(vnr));
    return r.ok ? null : r;
  }

  private resourceStates(): { connection: ConnectionState; volumes: ReadonlyMap<number, VolumeState> } {
    return { connection: this.connection, volumes: this.volumes };
  }

  /** Commits a checked change of one volume: the one log line, then as commitConnection. */
  private async commitVolume(vnr: number, t: Committed, why: string | undefined): Promise<void> {
    if (!t.changed) return;
    this.connection = connectionOf(t.to);
    this.volumes.set(vnr, volumeOf(t.to));
    for (const line of t.warnings) this.log.warn(line);
    this.log.info(this.slots.size === 1 ? { why } : { why, volume: vnr }, t.line);
    await this.afterCommit([[vnr, t]]);
  }

  /** Commits a checked connection change: the connection and every volume, the log lines, then each volume's after-effects. */
  private async commitConnection(r: ConnectionCommitted, why: string | undefined): Promise<void> {
    if (!r.changed) return;
    this.connection = r.to;
    for (const [vnr, t] of r.volumes) this.volumes.set(vnr, volumeOf(t.to));
    for (const t of r.volumes.values()) for (const line of t.warnings) this.log.warn(line);
    for (const line of connectionLogLines(r)) this.log.info({ why }, line);
    await this.afterCommit([...r.volumes].filter(([, t]) => t.changed));
  }

  /**
   * After the volumes in `changed` changed (one, or every volume a connection
   * change moved): each one's state hooks, then one events2 batch for the
   * whole change, then each one's md flags and after-state effects.
   */
  private async afterCommit(changed: ReadonlyArray<readonly [number, Committed]>): Promise<void> {
    for (const [vnr, t] of changed) for (const hook of this.stateHooks) hook(t.from, t.to, vnr);
    const full: StatusSnapshot = this.status();
    const before = this.slots.size === 1 && changed.length === 1 ? changed[0]![1].from : new Map(changed.map(([vnr, t]) => [vnr, t.from]));
    for (const event of changeEvents(before, full)) this.publish(event);
    for (const [vnr, t] of changed) {
      const store = this.slot(vnr).store;
      if (store) await store.syncFlags(t.to);
      for (const effect of t.effects) await this.runEffect(vnr, effect, t.from);
    }
  }

  /** Set by the wiring: the peer hears volume vnr's UUIDs after an after-state rule made it a new current UUID. */
  uuidsChanged: ((vnr: number) => void) | undefined;

  private async runEffect(vnr: number, effect: StateEffect, before: StateSnapshot): Promise<void> {
    const slot = this.slot(vnr);
    switch (effect.kind) {
      case 'new-current-uuid':
        slot.newCurrentUuidPending = false;
        await slot.store?.newCurrentUuid(this.volumeView(vnr).role === Role.Primary);
        // drbd_uuid_new_current + drbd_send_uuids for the lost peer disk; a resumed IO's deferred one waits for the handshake.
        if (!(before.susp || before.suspNod || before.suspFen)) this.uuidsChanged?.(vnr);
        return;
      case 'defer-new-current-uuid':
        slot.newCurrentUuidPending = true;
        this.log.info('new current UUID deferred until IO resumes');
        return;
    }
  }

  publish(event: ControlEvent): void {
    for (const handler of this.subscribers) handler(event);
  }

  /** Runs a handler for volume `vnr` (DRBD_MINOR, DRBD_VOLUME, DRBD_LL_DISK are that volume's). */
  async runHandler(name: string, vnr: number = this.firstVolume): Promise<number | undefined> {
    const command = this.spec.handlers[name];
    if (!command) return undefined;
    const volume = this.slot(vnr).spec;
    this.publish(helperEvent('call', this.volumeStatus(vnr), name));
    const code = await runHandler(name, command, {
      resource: this.spec.name,
      minor: volume.minor,
      volume: vnr,
      lowerDisk: volume.diskPath,
      configPath: this.spec.configPath,
      peerHost: this.spec.peer?.name,
      peerAddress: this.spec.peer?.address.host,
      peerFamily: this.spec.peer?.address.family ?? 'ipv4',
    }, this.log);
    this.publish(helperEvent('response', this.volumeStatus(vnr), name, code));
    return code;
  }

  // ---- lifecycle ------------------------------------------------------------

  /**
   * False from `new-resource` until `new-minor` (daemon mode 'new'): the
   * resource exists without its volume, as after drbdsetup new-resource.
   */
  minorAllocated = true;

  /** ERR_MINOR_INVALID for a volume verb before `new-minor`. */
  requireMinor(): void {
    if (!this.minorAllocated) throw new StateChangeRefused(ErrCode.minorInvalid, failure(ErrCode.minorInvalid).text, ExitCode.configInvalid);
  }

  /** `attach` of volume `vnr` (drbd_adm_attach: one minor); a no-op when it has its disk. */
  async attach(vnr: number = this.firstVolume): Promise<void> {
    this.requireMinor();
    const slot = this.slot(vnr);
    if (slot.store) return;
    await this.setVolumeState(vnr, { disk: DiskState.Attaching }, 'attach');
    let opened: AttachedStore | undefined;
    try {
      opened = await this.options.openStore(slot.spec, this.log);
      // e.g. a diskless Primary refusing a disk that does not hold its current data (ERR_DATA_NOT_CURRENT)
      await this.attachCheck?.(opened, vnr);
    } catch (err) {
      await opened?.close(true);
      await this.setVolumeState(vnr, { disk: DiskState.Diskless }, 'attach failed');
      throw err;
    }
    slot.store = opened;
    for (const hook of this.attachHooks) hook(opened, vnr);
    // drbd_adm_attach: while connected the disk is Negotiating until the handshake decides;
    // disconnected, the peer's disk is Outdated when the meta-data says so (MDF_PEER_OUT_DATED).
    const connected = this.state.conn >= ConnState.Connected;
    await this.setVolumeState(
      vnr,
      connected ? { disk: DiskState.Negotiating } : { disk: opened.diskAtAttach, pdsk: opened.pdskAtAttach ?? DiskState.DUnknown },
      'attach',
    );
  }

  /** Set by the wiring: may refuse a freshly opened store of volume `vnr` before anything uses it (throws). */
  attachCheck: ((store: AttachedStore, vnr: number) => Promise<void>) | undefined;

  /** Set by the wiring: volume vnr's device size while it has no disk (the peer's, or the lost disk's), else undefined. */
  disklessDeviceBytes: ((vnr: number) => number | undefined) | undefined;

  /** Volume `vnr`'s device size: its attached disk's agreed size, or without a disk the data path's (0 = none). */
  deviceSizeBytes(vnr: number = this.firstVolume): number {
    return this.slot(vnr).store?.sizeBytes ?? this.disklessDeviceBytes?.(vnr) ?? 0;
  }

  /** Called after every state change of a volume, with its number (the link sends State packets from here). */
  readonly stateHooks: Array<(before: StateSnapshot, after: StateSnapshot, vnr: number) => void> = [];
  /** Adds live fields (sync progress, counters, protocol) to volume vnr's status. */
  statusExtras: ((vnr: number) => Partial<StatusSnapshot>) | undefined;

  /** Wiring hooks run right after a volume's meta-data is loaded / right before it is closed. */
  readonly attachHooks: Array<(store: AttachedStore, vnr: number) => void> = [];
  readonly detachHooks: Array<(vnr: number) => Promise<void>> = [];
  /** Flush / meta-data write failures of the detach or down in progress, for its reply. */
  readonly durability = new DurabilityReport();

  /** Set by the wiring: resolves once no request is in flight on volume vnr's detached disk (a hung one keeps it waiting). */
  diskDrained: ((vnr: number) => Promise<void>) | undefined;

  /** `detach` of volume `vnr`: its disk goes Failed -> Diskless; connected, it goes on diskless (through the peer). */
  async detach(vnr: number = this.firstVolume): Promise<void> {
    if (!this.slot(vnr).store) return;
    const plan = requestDetach(this.volumeView(vnr), this.stateCtx());
    if (plan.kind !== 'ok') {
      assert(plan.kind === 'refused', 'detach never needs fence-peer');
      for (const line of plan.logLines) this.log.warn(line);
      throw new StateChangeRefused(plan.refusal.code, plan.refusal.text, plan.refusal.exitCode);
    }
    await this.goDiskless('detach', true, undefined, vnr);
  }

  /**
   * DRBD's way out of a disk: Failed (the peer hears it), the data path
   * lets go of it (detach hooks), `onFailed` runs (on-io-error's handler),
   * Diskless, then the store closes once the disk's requests ended; `clean`
   * false (an I/O error) leaves the meta-data marked unclean, so the
   * activity log is applied at the next attach. Both steps pass setVolumeState.
   */
  async goDiskless(why: string, clean: boolean, onFailed?: () => Promise<void>, vnr: number = this.firstVolume): Promise<void> {
    const slot = this.slot(vnr);
    const store = slot.store;
    if (!store) return;
    if (this.volumeView(vnr).disk !== DiskState.Failed) await this.setVolumeState(vnr, { disk: DiskState.Failed }, why);
    // Failed: no new request reaches the disk (DRBD's get_ldev fails below Inconsistent).
    for (const hook of this.detachHooks) await hook(vnr);
    await onFailed?.();
    slot.store = undefined;
    await this.setVolumeState(vnr, { disk: DiskState.Diskless }, why);
    await this.diskDrained?.(vnr);
    await store.close(clean).catch((err: unknown) => this.durability.record(this.log, slot.spec, 'meta-data write', err));
  }

  /**
   * Graceful stop: refuse if Primary and held open, demote, disconnect,
   * flush, close md clean. A refused step (e.g. -12 from the frontend's
   * teardown: a mount the up-front check cannot see, in another mount
   * namespace) leaves the process as it was, and the next `down` or SIGTERM
   * tries again — it used to leave a "stopping" flag set that turned every
   * later `down` into a silent no-op.
   */
  async down(): Promise<void> {
    if (this.isDown) return;
    if (this.downAttempt) return this.downAttempt;
    const attempt = this.tryDown();
    this.downAttempt = attempt;
    try {
      await attempt;
    } finally {
      this.downAttempt = undefined;
    }
  }

  private async tryDown(): Promise<void> {
    // drbdsetup down: every volume Secondary (none held open), the connection down, every disk detached.
    for (const vnr of this.volumeNumbers) {
      if (this.volumeView(vnr).role === Role.Primary && this.slot(vnr).frontend?.isHeldOpen()) {
        throw new StateChangeRefused(SsCode.deviceInUse, 'Device is held open by someone', ExitCode.stateChangeFailed);
      }
    }
    for (const vnr of this.volumeNumbers) if (this.volumeView(vnr).role === Role.Primary) await this.demote(vnr);
    if (this.state.conn !== ConnState.StandAlone) {
      await this.setConnState({ conn: ConnState.Disconnecting }, 'down');
      await this.disconnectHook?.();
      await this.setConnState({ conn: ConnState.StandAlone }, 'down');
    }
    // As detach: Failed first, so a flush failing on the way out is reported once, not taken for an on-io-error case.
    for (const vnr of this.volumeNumbers) if (this.slot(vnr).store) await this.goDiskless('down', true, undefined, vnr);
    this.isDown = true;
    this.log.info('resource down');
    // Let the `down` reply go out before the entry point closes the control socket.
    setImmediate(() => this.resolveStopped());
  }

  /** Volume vnr's device is open (mounted, opened, an outside NBD client). */
  frontendHeldOpen(vnr: number = this.firstVolume): boolean {
    return this.slot(vnr).frontend?.isHeldOpen() ?? false;
  }

  /** Set by the wiring: close the peer link (down / disconnect). */
  disconnectHook: (() => Promise<void>) | undefined;

  /** After promotion: expose volume vnr as a block device (no-op without a frontend or when exposed). */
  async expose(device: BlockDevice, vnr: number = this.firstVolume): Promise<void> {
    const slot = this.slot(vnr);
    if (slot.exposed || !slot.frontend) return;
    await slot.frontend.exposeVolume(device);
    slot.exposed = true;
  }

  /**
   * After the agreed size changed: an exposed device follows (DRBD's
   * drbd_set_my_capacity + revalidate: /dev/drbdN grows or shrinks by
   * itself). A failure is logged, not thrown: the replicated device did
   * change (requests past its end are refused either way); the operator can
   * resize the kernel device by hand (losetup -c).
   */
  async deviceSizeChanged(vnr: number = this.firstVolume): Promise<void> {
    const slot = this.slot(vnr);
    const frontend = slot.frontend;
    const sizeBytes = this.deviceSizeBytes(vnr);
    if (!slot.exposed || !frontend?.deviceResized || sizeBytes === 0) return;
    try {
      await frontend.deviceResized(sizeBytes);
    } catch (err) {
      this.log.error({ err, sizeBytes }, `the exposed device did not follow the new size of ${sizeBytes} bytes: ${(err as Error).message}`);
    }
  }

  /** Volume vnr becomes Secondary: its device torn down first (it may refuse: held open), then the primary bit cleared. */
  async demote(vnr: number = this.firstVolume): Promise<void> {
    const slot = this.slot(vnr);
    if (slot.exposed && slot.frontend) {
      await slot.frontend.teardown();
      slot.exposed = false;
    }
    slot.store?.setPrimaryBit(false);
    await this.setVolumeState(vnr, { role: Role.Secondary }, 'secondary');
  }

  // ---- control requests ---------------------------------------------------

  async handle(request: ControlRequest): Promise<ControlReply> {
    const verb = this.verbs.get(request.verb);
    if (!verb) return errorReply(request.id, ExitCode.usage, `udrbd: unknown control request '${request.verb}'\n`);
    try {
      const result = await verb(request.args ?? {});
      return result.exitCode === 0
        ? okReply(request.id, result.stdout ?? '', result.stderr ?? '')
        : errorReply(request.id, result.exitCode, result.stderr ?? '', result.stdout ?? '');
    } catch (err) {
      if (err instanceof UdrbdError) return errorReply(request.id, err.exitCode, `${err.message}\n`);
      if (err instanceof StateChangeRefused) {
        // SS_* codes are state-change refusals; ERR_* codes (> 100) are drbdsetup "Failure" lines.
        const vnr = typeof request.args?.volume === 'number' && this.slots.has(request.args.volume) ? request.args.volume : this.firstVolume;
        const line = formatRefusalMessage(this.slot(vnr).spec.minor, { ok: false, code: err.code, text: err.text, exitCode: err.exitCode, failure: err.code > 100 });
        return errorReply(request.id, err.exitCode, `${line}\n`);
      }
      throw err;
    }
  }

  /** Registers a control verb; later layers' wiring adds theirs the same way. */
  defineVerb(name: string, fn: (args: Record<string, unknown>) => Promise<VerbResult>): void {
    assert(!this.verbs.has(name), `control verb '${name}' defined twice`);
    this.verbs.set(name, fn);
  }

  private registerVerbs(): void {
    // One line per volume (drbdadm runs drbdsetup per minor); `volume` (RES/VNR) picks one.
    const unconfigured = (text: (s: StateSnapshot) => string) => async (args: Record<string, unknown>): Promise<VerbResult> => ({
      exitCode: 0,
      stdout: perVolumeLines(this.status(), text, args.volume === undefined ? undefined : this.addressedVolume(args)),
    });
    this.defineVerb('role', unconfigured(roleText));
    this.defineVerb('cstate', unconfigured(cstateText));
    this.defineVerb('dstate', unconfigured(dstateText));
    this.defineVerb('status', async (args) => ({
      exitCode: 0,
      stdout: args.json ? `${JSON.stringify({ ...statusJson(this.status()), ...this.sizeJson() }, null, 2)}\n` : statusText(this.status(), Boolean(args.verbose)),
    }));
    // A volume verb addresses args.volume (udrbdadm's RES/VNR), or every volume of the resource in order.
    this.defineVerb('attach', async (args) => {
      for (const vnr of this.addressedVolumes(args)) await this.attach(vnr);
      return { exitCode: 0 };
    });
    // drbdsetup new-minor: the resource's one volume exists from now on (Diskless, StandAlone).
    this.defineVerb('new-minor', async () => {
      if (this.minorAllocated) throw new StateChangeRefused(ErrCode.minorExists, failure(ErrCode.minorExists).text, ExitCode.configInvalid);
      this.minorAllocated = true;
      this.log.info('new-minor: the volume exists, Diskless and StandAlone');
      return { exitCode: 0 };
    });
    this.defineVerb('detach', async (args) => {
      for (const vnr of this.addressedVolumes(args)) await this.detach(vnr);
      return this.durability.takeReply();
    });
    this.defineVerb('down', async () => {
      await this.down();
      return this.durability.takeReply();
    });
    this.defineVerb('io.read', async (args) => {
      const store = this.requireStore(this.addressedVolume(args));
      const offsetBytes = Number(args.offsetBytes);
      const lengthBytes = Number(args.lengthBytes);
      if (!(lengthBytes > 0 && lengthBytes <= DIAGNOSTIC_IO_BYTES_MAX)) return { exitCode: ExitCode.usage, stderr: 'io.read: bad length\n' };
      const buffer = Buffer.alloc(lengthBytes);
      await store.data.read(buffer, offsetBytes);
      return { exitCode: 0, stdout: buffer.toString('base64') };
    });
  }

  /** status --json: the device size (as /proc/partitions would show the DRBD device) and what the disk offers. */
  private sizeJson(): Record<string, unknown> {
    const store = this.attachedStore;
    const deviceBytes = this.deviceSizeBytes();
    return {
      sizeBytes: deviceBytes > 0 ? deviceBytes : null,
      sizeKiB: deviceBytes > 0 ? Math.floor(deviceBytes / 1024) : null,
      diskSizeBytes: store ? store.maxSizeBytes : null,
    };
  }

  /** The volumes a control request addresses: `args.volume`, or every volume in number order. */
  addressedVolumes(args: Record<string, unknown>): number[] {
    if (args.volume === undefined) return this.volumeNumbers;
    return [this.addressedVolume(args)];
  }

  /** The one volume a request addresses: `args.volume`, or the first. Refuses a volume the resource lacks (drbdsetup: minor not found). */
  addressedVolume(args: Record<string, unknown>): number {
    if (args.volume === undefined) return this.firstVolume;
    const vnr = args.volume;
    if (typeof vnr !== 'number' || !this.slots.has(vnr)) {
      throw new UdrbdError(`${this.spec.name}: no volume ${String(vnr)} (volumes ${this.volumeNumbers.join(', ')})`, ExitCode.usage);
    }
    return vnr;
  }

  requireStore(vnr: number = this.firstVolume): AttachedStore {
    const store = this.slot(vnr).store;
    if (!store) throw new StateChangeRefused(SsCode.isDiskless, 'Device is diskless, the requested operation requires a disk', ExitCode.stateChangeFailed);
    return store;
  }

  /** The resource's spec as volume vnr's layers see it (daemon/spec volumeSpec; follows `adjust`). */
  specOf(vnr: number): ResourceSpec {
    return this.slot(vnr).spec;
  }

  /** The first volume's attached disk and meta-data (undefined while diskless). */
  get attachedStore(): AttachedStore | undefined {
    return this.slot(this.firstVolume).store;
  }

  /** Volume vnr's attached disk and meta-data (undefined while diskless). */
  storeOf(vnr: number): AttachedStore | undefined {
    return this.slot(vnr).store;
  }

  /** Set by the wiring: begin connecting to the peer (after attach in `up`); rejects when the first listen fails. */
  connectHook: (() => Promise<void>) | undefined;

  async startConnecting(): Promise<void> {
    await this.connectHook?.();
  }
}

export interface VerbResult {
  exitCode: number;
  stdout?: string;
  stderr?: string;
}
