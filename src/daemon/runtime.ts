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
import type { ResourceSpec } from './spec.js';
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
  openStore: OpenStore;
  frontend?: FrontendHook;
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

/**
 * The key of the one volume a resource process runs in its volume map
 * (config/volumes refuses a second). Its number as the operator wrote it,
 * on the wire and in events2, is spec.volume; the key becomes that number
 * when the runtime carries several volumes (docs/multi-volume.md, step 6).
 */
export const RUNTIME_VOLUME = 0;

export class ResourceRuntime {
  /** The resource's connection (drbd_tconn): written by commitConnection / commitVolume only. */
  private connection: ConnectionState = { ...unconfiguredConnection };
  /** Its volumes by number (drbd_conf): written by commitConnection / commitVolume only. */
  private readonly volumes = new Map<number, VolumeState>([[RUNTIME_VOLUME, { ...unconfiguredVolume }]]);
  private store: AttachedStore | undefined;
  private readonly subscribers = new Set<(event: ControlEvent) => void>();
  private readonly verbs = new Map<string, (args: Record<string, unknown>) => Promise<VerbResult>>();
  /** The `down` attempt in progress; a second `down` or SIGTERM meanwhile waits for its outcome. */
  private downAttempt: Promise<void> | undefined;
  /** Set only once a `down` completed: the process is about to exit. */
  private isDown = false;
  /** Resolves when `down` finished; the entry point exits then. */
  readonly stopped: Promise<void>;
  private resolveStopped!: () => void;
  exposed = false;

  constructor(private readonly options: RuntimeOptions) {
    this.stopped = new Promise((resolve) => (this.resolveStopped = resolve));
    this.registerVerbs();
  }

  get spec(): ResourceSpec {
    return this.options.spec;
  }

  /** `adjust`: from now on every layer reads the newly read configuration (daemon/adjust applies the rest). */
  replaceSpec(spec: ResourceSpec): void {
    assert(spec.name === this.options.spec.name && spec.node === this.options.spec.node, 'adjust keeps the resource and node');
    this.options.spec = spec;
  }

  get log(): Logger {
    return this.options.log;
  }

  /** Volume 0 on the connection, as the rules and status see it (drbd_read_state). */
  private get state(): StateSnapshot {
    return this.volumeView(RUNTIME_VOLUME);
  }

  private volumeView(vnr: number): ResourceState {
    const volume = this.volumes.get(vnr);
    assert(volume !== undefined, `volume ${vnr} does not exist`);
    return joinState(volume, this.connection);
  }

  get snapshot(): StateSnapshot {
    return { ...this.state };
  }

  onEvent(handler: (event: ControlEvent) => void): void {
    this.subscribers.add(handler);
  }

  /** events2 "exists" lines for a new subscriber, ending with `exists -`. */
  existingEvents(): ControlEvent[] {
    return existsEvents(this.status());
  }

  status(): StatusSnapshot {
    return {
      ...this.state,
      resource: this.spec.name,
      node: this.spec.node,
      peerNode: this.spec.peer?.name,
      minor: this.spec.minor,
      volume: this.spec.volume,
      device: this.spec.devicePath,
      protocol: undefined,
      uuids: this.store?.uuidsText(),
      outOfSyncKiB: this.store?.outOfSyncKiB() ?? 0,
      sync: undefined,
      counters: {},
      deviceSizeKiB: Math.floor(this.deviceSizeBytes() / 1024),
      exposed: this.exposed,
      frontend: this.options.frontend?.describe?.() ?? null,
      pid: process.pid,
      ...(this.statusExtras?.() ?? {}),
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

  /** A new current UUID waits for IO to resume (DRBD's NEW_CUR_UUID). */
  private newCurrentUuidPending = false;

  private stateFacts(): StateFacts {
    return { bitmapUuid: this.store?.uuids.bitmap, newCurrentUuidPending: this.newCurrentUuidPending };
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
    const t = internalTransition(before, { ...before, ...next }, this.stateCtx(), this.stateFacts());
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
    const r = connectionTransition(this.resourceStates(), change, this.stateCtx(), 'internal', () => this.stateFacts());
    assert(r.ok, 'an internal connection change is never refused');
    await this.commitConnection(r, why);
  }

  /** An operator's connection change checked on every volume (DRBD's conn_request_state without CS_HARD); null = allowed. */
  connStateRefusal(change: Partial<StateSnapshot>): ConnectionRefusal | null {
    const r = connectionTransition(this.resourceStates(), change, this.stateCtx(), 'request', () => this.stateFacts());
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
    this.log.info({ why }, t.line);
    await this.afterCommit(t);
  }

  /** Commits a checked connection change: the connection and every volume, the log lines, then each volume's after-effects. */
  private async commitConnection(r: ConnectionCommitted, why: string | undefined): Promise<void> {
    if (!r.changed) return;
    this.connection = r.to;
    for (const [vnr, t] of r.volumes) this.volumes.set(vnr, volumeOf(t.to));
    for (const t of r.volumes.values()) for (const line of t.warnings) this.log.warn(line);
    for (const line of connectionLogLines(r)) this.log.info({ why }, line);
    const own = r.volumes.get(RUNTIME_VOLUME);
    if (own?.changed) await this.afterCommit(own);
  }

  /** After volume 0 changed: hooks, one event, md flags, after-state effects. */
  private async afterCommit(t: Committed): Promise<void> {
    const { from: before, to: after } = t;
    for (const hook of this.stateHooks) hook(before, after);
    const full: StatusSnapshot = this.status();
    for (const event of changeEvents(before, full)) this.publish(event);
    if (this.store) await this.store.syncFlags(after);
    for (const effect of t.effects) await this.runEffect(effect, before);
  }

  /** Set by the wiring: the peer hears our UUIDs after an after-state rule made a new current UUID. */
  uuidsChanged: (() => void) | undefined;

  private async runEffect(effect: StateEffect, before: StateSnapshot): Promise<void> {
    switch (effect.kind) {
      case 'new-current-uuid':
        this.newCurrentUuidPending = false;
        await this.store?.newCurrentUuid(this.state.role === Role.Primary);
        // drbd_uuid_new_current + drbd_send_uuids for the lost peer disk; a resumed IO's deferred one waits for the handshake.
        if (!(before.susp || before.suspNod || before.suspFen)) this.uuidsChanged?.();
        return;
      case 'defer-new-current-uuid':
        this.newCurrentUuidPending = true;
        this.log.info('new current UUID deferred until IO resumes');
        return;
    }
  }

  publish(event: ControlEvent): void {
    for (const handler of this.subscribers) handler(event);
  }

  async runHandler(name: string): Promise<number | undefined> {
    const command = this.spec.handlers[name];
    if (!command) return undefined;
    this.publish(helperEvent('call', this.status(), name));
    const code = await runHandler(name, command, {
      resource: this.spec.name,
      minor: this.spec.minor,
      volume: this.spec.volume,
      lowerDisk: this.spec.diskPath,
      configPath: this.spec.configPath,
      peerHost: this.spec.peer?.name,
      peerAddress: this.spec.peer?.address.host,
      peerFamily: this.spec.peer?.address.family ?? 'ipv4',
    }, this.log);
    this.publish(helperEvent('response', this.status(), name, code));
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

  async attach(): Promise<void> {
    this.requireMinor();
    if (this.store) return;
    await this.setVolumeState(RUNTIME_VOLUME, { disk: DiskState.Attaching }, 'attach');
    let opened: AttachedStore | undefined;
    try {
      opened = await this.options.openStore(this.spec, this.log);
      // e.g. a diskless Primary refusing a disk that does not hold its current data (ERR_DATA_NOT_CURRENT)
      await this.attachCheck?.(opened);
    } catch (err) {
      await opened?.close(true);
      await this.setVolumeState(RUNTIME_VOLUME, { disk: DiskState.Diskless }, 'attach failed');
      throw err;
    }
    this.store = opened;
    for (const hook of this.attachHooks) hook(this.store);
    // drbd_adm_attach: while connected the disk is Negotiating until the handshake decides;
    // disconnected, the peer's disk is Outdated when the meta-data says so (MDF_PEER_OUT_DATED).
    const connected = this.state.conn >= ConnState.Connected;
    await this.setVolumeState(
      RUNTIME_VOLUME,
      connected ? { disk: DiskState.Negotiating } : { disk: this.store.diskAtAttach, pdsk: this.store.pdskAtAttach ?? DiskState.DUnknown },
      'attach',
    );
  }

  /** Set by the wiring: may refuse a freshly opened store before anything uses it (throws). */
  attachCheck: ((store: AttachedStore) => Promise<void>) | undefined;

  /** Set by the wiring: the device size while there is no disk (the peer's, or the lost disk's), else undefined. */
  disklessDeviceBytes: (() => number | undefined) | undefined;

  /** The device's size: the attached disk's agreed size, or without a disk the data path's (0 = none). */
  deviceSizeBytes(): number {
    return this.store?.sizeBytes ?? this.disklessDeviceBytes?.() ?? 0;
  }

  /** Called after every state change (the link sends State packets from here). */
  readonly stateHooks: Array<(before: StateSnapshot, after: StateSnapshot) => void> = [];
  /** Adds live fields (sync progress, counters, protocol) to status. */
  statusExtras: (() => Partial<StatusSnapshot>) | undefined;

  /** Wiring hooks run right after the meta-data is loaded / right before it is closed. */
  readonly attachHooks: Array<(store: AttachedStore) => void> = [];
  readonly detachHooks: Array<() => Promise<void>> = [];
  /** Flush / meta-data write failures of the detach or down in progress, for its reply. */
  readonly durability = new DurabilityReport();

  /** Set by the wiring: resolves once no request is in flight on the detached disk (a hung one keeps it waiting). */
  diskDrained: (() => Promise<void>) | undefined;

  /** `detach`: the disk goes Failed -> Diskless; connected, the node goes on diskless (through the peer). */
  async detach(): Promise<void> {
    if (!this.store) return;
    const plan = requestDetach(this.state, this.stateCtx());
    if (plan.kind !== 'ok') {
      assert(plan.kind === 'refused', 'detach never needs fence-peer');
      for (const line of plan.logLines) this.log.warn(line);
      throw new StateChangeRefused(plan.refusal.code, plan.refusal.text, plan.refusal.exitCode);
    }
    await this.goDiskless('detach', true);
  }

  /**
   * DRBD's way out of a disk: Failed (the peer hears it), the data path
   * lets go of it (detach hooks), `onFailed` runs (on-io-error's handler),
   * Diskless, then the store closes once the disk's requests ended; `clean`
   * false (an I/O error) leaves the meta-data marked unclean, so the
   * activity log is applied at the next attach. Both steps pass setVolumeState.
   */
  async goDiskless(why: string, clean: boolean, onFailed?: () => Promise<void>): Promise<void> {
    const store = this.store;
    if (!store) return;
    if (this.state.disk !== DiskState.Failed) await this.setVolumeState(RUNTIME_VOLUME, { disk: DiskState.Failed }, why);
    // Failed: no new request reaches the disk (DRBD's get_ldev fails below Inconsistent).
    for (const hook of this.detachHooks) await hook();
    await onFailed?.();
    this.store = undefined;
    await this.setVolumeState(RUNTIME_VOLUME, { disk: DiskState.Diskless }, why);
    await this.diskDrained?.();
    await store.close(clean).catch((err: unknown) => this.durability.record(this.log, this.spec, 'meta-data write', err));
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
    if (this.state.role === Role.Primary && this.options.frontend?.isHeldOpen()) {
      throw new StateChangeRefused(SsCode.deviceInUse, 'Device is held open by someone', ExitCode.stateChangeFailed);
    }
    if (this.state.role === Role.Primary) await this.demote();
    if (this.state.conn !== ConnState.StandAlone) {
      await this.setConnState({ conn: ConnState.Disconnecting }, 'down');
      await this.disconnectHook?.();
      await this.setConnState({ conn: ConnState.StandAlone }, 'down');
    }
    // As detach: Failed first, so a flush failing on the way out is reported once, not taken for an on-io-error case.
    if (this.store) await this.goDiskless('down', true);
    this.isDown = true;
    this.log.info('resource down');
    // Let the `down` reply go out before the entry point closes the control socket.
    setImmediate(() => this.resolveStopped());
  }

  frontendHeldOpen(): boolean {
    return this.options.frontend?.isHeldOpen() ?? false;
  }

  /** Set by the wiring: close the peer link (down / disconnect). */
  disconnectHook: (() => Promise<void>) | undefined;

  /** After promotion: expose the volume as a block device (no-op without a frontend or when exposed). */
  async expose(device: BlockDevice): Promise<void> {
    if (this.exposed || !this.options.frontend) return;
    await this.options.frontend.exposeVolume(device);
    this.exposed = true;
  }

  /**
   * After the agreed size changed: an exposed device follows (DRBD's
   * drbd_set_my_capacity + revalidate: /dev/drbdN grows or shrinks by
   * itself). A failure is logged, not thrown: the replicated device did
   * change (requests past its end are refused either way); the operator can
   * resize the kernel device by hand (losetup -c).
   */
  async deviceSizeChanged(): Promise<void> {
    const frontend = this.options.frontend;
    const sizeBytes = this.deviceSizeBytes();
    if (!this.exposed || !frontend?.deviceResized || sizeBytes === 0) return;
    try {
      await frontend.deviceResized(sizeBytes);
    } catch (err) {
      this.log.error({ err, sizeBytes }, `the exposed device did not follow the new size of ${sizeBytes} bytes: ${(err as Error).message}`);
    }
  }

  async demote(): Promise<void> {
    if (this.exposed && this.options.frontend) {
      await this.options.frontend.teardown();
      this.exposed = false;
    }
    this.store?.setPrimaryBit(false);
    await this.setVolumeState(RUNTIME_VOLUME, { role: Role.Secondary }, 'secondary');
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
        const line = formatRefusalMessage(this.spec.minor, { ok: false, code: err.code, text: err.text, exitCode: err.exitCode, failure: err.code > 100 });
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
      stdout: perVolumeLines(this.status(), text, typeof args.volume === 'number' ? args.volume : undefined),
    });
    this.defineVerb('role', unconfigured(roleText));
    this.defineVerb('cstate', unconfigured(cstateText));
    this.defineVerb('dstate', unconfigured(dstateText));
    this.defineVerb('status', async (args) => ({
      exitCode: 0,
      stdout: args.json ? `${JSON.stringify({ ...statusJson(this.status()), ...this.sizeJson() }, null, 2)}\n` : statusText(this.status(), Boolean(args.verbose)),
    }));
    this.defineVerb('attach', async () => {
      await this.attach();
      return { exitCode: 0 };
    });
    // drbdsetup new-minor: the resource's one volume exists from now on (Diskless, StandAlone).
    this.defineVerb('new-minor', async () => {
      if (this.minorAllocated) throw new StateChangeRefused(ErrCode.minorExists, failure(ErrCode.minorExists).text, ExitCode.configInvalid);
      this.minorAllocated = true;
      this.log.info('new-minor: the volume exists, Diskless and StandAlone');
      return { exitCode: 0 };
    });
    this.defineVerb('detach', async () => {
      await this.detach();
      return this.durability.takeReply();
    });
    this.defineVerb('down', async () => {
      await this.down();
      return this.durability.takeReply();
    });
    this.defineVerb('io.read', async (args) => {
      const store = this.requireStore();
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
    const store = this.store;
    const deviceBytes = this.deviceSizeBytes();
    return {
      sizeBytes: deviceBytes > 0 ? deviceBytes : null,
      sizeKiB: deviceBytes > 0 ? Math.floor(deviceBytes / 1024) : null,
      diskSizeBytes: store ? store.maxSizeBytes : null,
    };
  }

  requireStore(): AttachedStore {
    if (!this.store) throw new StateChangeRefused(SsCode.isDiskless, 'Device is diskless, the requested operation requires a disk', ExitCode.stateChangeFailed);
    return this.store;
  }

  get attachedStore(): AttachedStore | undefined {
    return this.store;
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
