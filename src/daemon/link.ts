/**
 * daemon/link — the connection side of a resource process, an executor of
 * the rules in resource/: runs the PeerConnector (peer/) while the resource
 * is not StandAlone, and on every established link carries out DRBD's
 * connect sequence with the data path of replication/. The decisions are
 * pure functions it calls — syncHandshake (no sync, bitmap or full sync in
 * either direction, split brain, unrelated data) and the UUID rotations in
 * resource/uuid, the connection-state targets in resource/link-rules
 * (handshake outcome, bitmap exchange, sync UUID, resync start and finish,
 * P_STATE news, lost-link states, skip-initial-sync), the operator requests
 * in resource/admin — and every state change it asks for passes
 * ResourceRuntime.setConnState / setVolumeState (resource/transition), where the after-state
 * rules run (a Primary that loses its UpToDate peer starts a new data
 * generation). This file owns the sockets, the bitmap exchange, the resync
 * and verify runs, the handler calls and the ordering between them.
 * On every connect both nodes agree on the device size first
 * (daemon/device-size: the smaller usable size wins, an in-use device is
 * never shrunk — "The peer's disk size is too small!" drops the link); after
 * it a P_SIZES (a `resize`, daemon/resize) re-reads the disk, grows both
 * sides and resyncs the new area from the Primary (resync_after_online_grow).
 * on-congestion: the data path reports congestion (replication/volume); the
 * rule (resource/link-rules onCongestion) says Ahead or StandAlone; once the
 * Ahead volume drained, AHEAD_TO_SYNC_SOURCE_DELAY_MS later it becomes
 * SyncSource without a bitmap exchange (the peer holds the same bits from
 * P_OUT_OF_SYNC), and the Behind peer becomes SyncTarget on the sync UUID.
 */
import crypto from 'node:crypto';
import { ExitCode } from '../util/errors.js';
import { ConnState, DiskState, Role } from '../resource/states.js';
import { type Refusal, SsCode, refusal } from '../resource/state.js';
import { type AdminResult, requestConnect, requestDisconnect } from '../resource/admin.js';
import { assert } from '../util/assert.js';
import {
  AHEAD_TO_SYNC_SOURCE_DELAY_MS,
  afterHandshake,
  aheadToSyncSource,
  behindToSyncTarget,
  bitmapExchangedAsTarget,
  onCongestion,
  isSyncState,
  linkLostStates,
  type PeerView,
  peerRequestTarget,
  peerStateNews,
  resyncBeganLine,
  resyncStarts,
  skipInitialSync,
  standAloneStates,
  targetResyncFinished,
  handshakeStateRefusal,
} from '../resource/link-rules.js';
import {
  type HandshakeDecision,
  PROTOCOL_VERSION_MAX,
  UuidFlag,
  syncHandshake,
  syncSourceFinish,
  syncSourceStart,
  syncTargetFinish,
  syncTargetStart,
  uuidsEqual,
} from '../resource/uuid.js';
import { PeerConnector, integrityDigest, type HandshakeResult, type LocalParams, type PeerParams } from '../peer/index.js';
import type { LinkLossReason } from '../peer/channel.js';
import { runAside } from '../util/aside.js';
import { type Packet, PacketType, type ProtocolPacket, type SizesPacket, type SyncParamPacket } from '../peer/packets.js';
import type { ReplicationEngine, ResyncTarget } from '../replication/index.js';
import type { ResourceView } from '../config/index.js';
import { MdFlag } from '../meta/types.js';
import { type ResourceRuntime, StateChangeRefused } from './runtime.js';
import type { StateSnapshot, SyncProgress } from './status.js';
import { DdsFlag, agreeDeviceSize, sizeAfterPeerSizes, sizeLogLine } from './device-size.js';
import { disklessDeviceSize, disklessPrimaryMayConnect, hasDiskOnWire, noSyncHandshake, syncHandshakeRuns } from '../resource/diskless.js';
import { SplitBrainCount } from './metrics-source.js';
import { listenFailureError } from './listen-failure.js';

/** The first listen of a connect is normally answered at once; past this the connect goes on retrying. */
const FIRST_LISTEN_WAIT_MS = 5_000;

/** Resolves with the first listen's error, or undefined once it listens (or the wait ends). */
function firstListenOutcome(connector: PeerConnector): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const done = (err: NodeJS.ErrnoException | undefined): void => {
      clearTimeout(timer);
      connector.off('listening', onListening);
      connector.off('listen-failed', onFailed);
      resolve(err);
    };
    const onListening = (): void => done(undefined);
    const onFailed = (err: NodeJS.ErrnoException): void => done(err);
    const timer = setTimeout(() => done(undefined), FIRST_LISTEN_WAIT_MS);
    connector.on('listening', onListening);
    connector.on('listen-failed', onFailed);
  });
}

function random64(): bigint {
  return crypto.randomBytes(8).readBigUInt64BE(0);
}

/** The largest request this node takes (P_SIZES max_bio_size). */
const MAX_REQUEST_BYTES = 1024 * 1024;
/** How long `resize` waits for the peer's answering P_SIZES (and its own growth after it). */
const RESIZE_REPLY_TIMEOUT_MS = 30_000;

/** How long a state change request waits for the peer's reply. */
const STATE_REQUEST_TIMEOUT_MS = 10_000;
/** Resync progress is logged this often while syncing. */
const PROGRESS_LOG_INTERVAL_MS = 2_000;

interface ActiveLink {
  result: HandshakeResult;
  peer: PeerParams;
  /** Resolves the wait for P_SYNC_UUID (SyncTarget). */
  syncUuidWaiter: ((uuid: bigint) => void) | undefined;
  /** A P_SYNC_UUID that arrived before the wait began. */
  pendingSyncUuid: bigint | undefined;
  resyncTarget: ResyncTarget | undefined;
  nextRequestId: number;
  requests: Map<number, (result: number) => void>;
  sourceTotalBits: number;
  sourceStartedMs: number;
  closed: boolean;
  /** P_SIZES handling, one packet at a time (it may move meta-data and grow the device). */
  sizesChain: Promise<void>;
  /** A local `resize` grew the device and waits for the peer's P_SIZES to start the resync (RESIZE_PENDING). */
  resizePending: boolean;
  /** Called once a peer P_SIZES has been handled (a `resize` waiting for its answer). */
  sizesHandled: Array<() => void>;
}

export class PeerLink {
  private connector: PeerConnector | undefined;
  private active: ActiveLink | undefined;
  /** One-shot `--discard-my-data` for the next handshake. */
  discardMyData = false;
  /** Split brains the handshakes found (metrics). */
  readonly splitBrains = new SplitBrainCount();
  /** DRBD's device->p_size: the peer's usable size from its last P_SIZES, kept while disconnected; 0 = none since start. */
  lastPeerDiskBytes = 0;

  constructor(
    private readonly runtime: ResourceRuntime,
    private readonly engine: () => ReplicationEngine | undefined,
  ) {
    runtime.stateHooks.push((before, after, vnr) => {
      if (vnr === this.vnr) this.onLocalStateChange(before, after);
    });
  }

  private get view(): ResourceView {
    return this.runtime.spec.view as ResourceView;
  }

  /**
   * The volume this process runs (the spec's, 0 until several run: config/
   * volumes runnableVolumeRefusal): every per-volume packet this link sends
   * carries it in its frame header.
   */
  private get vnr(): number {
    return this.runtime.spec.volume;
  }

  /** The volumes configured locally, for the frame decoder (DRBD's tconn->volumes): the one this process runs. */
  private configuredVolumes(): ReadonlySet<number> {
    return new Set([this.vnr]);
  }

  get isRunning(): boolean {
    return this.connector !== undefined;
  }

  // ---- admin ------------------------------------------------------------------------------------

  /** `connect`: StandAlone → Unconnected → WFConnection and start dialing/listening. */
  async connect(discardMyData: boolean): Promise<void> {
    const rt = this.runtime;
    if (this.connector) {
      // Already connecting: udrbd takes a later --discard-my-data for the next handshake.
      if (discardMyData && rt.snapshot.role === Role.Primary) refuse(refusalOf(requestConnect(rt.snapshot, { discardMyData }, rt.stateCtx())));
      if (discardMyData) this.discardMyData = true;
      return;
    }
    const spec = rt.spec;
    if (!spec.peer || !spec.localAddress) {
      throw new StateChangeRefused(SsCode.noNetConfig, refusal(SsCode.noNetConfig).text, ExitCode.stateChangeFailed);
    }
    // resource/admin: --discard-my-data on a Primary (123), a net config already there (125).
    const fencing = rt.attachedStore ? this.view.disk.fencing : 'dont-care';
    const plan = requestConnect(rt.snapshot, { discardMyData, net: { ...this.view.net, fencing } }, rt.stateCtx());
    if (plan.kind !== 'ok') refuse(refusalOf(plan));
    const [unconnected, waiting] = plan.states;
    assert(unconnected !== undefined && waiting !== undefined, 'connect is StandAlone → Unconnected → WFConnection');
    const net = this.view.net;
    // drbd_adm_connect → alloc_crypto: an unknown data-integrity-alg refuses the connect (ERR_INTEGRITY_ALG).
    integrityDigest(net.dataIntegrityAlg ?? '');
    this.discardMyData = discardMyData;
    const connector = new PeerConnector({
      localAddress: { host: spec.localAddress.host, port: spec.localAddress.port },
      peerAddress: { host: spec.peer.address.host, port: spec.peer.address.port },
      nodeName: spec.node,
      peerNodeName: spec.peer.name,
      ...(net.cramHmacAlg && net.sharedSecret ? { auth: { alg: net.cramHmacAlg, secret: net.sharedSecret } } : {}),
      connectIntervalMs: net.connectIntervalMs,
      pingIntervalMs: net.pingIntervalMs,
      pingTimeoutMs: net.pingTimeoutMs,
      timeoutMs: net.timeoutMs,
      koCount: net.koCount,
      socketBuffers: { sndbufSizeBytes: net.sndbufSizeBytes, rcvbufSizeBytes: net.rcvbufSizeBytes },
      volumes: this.configuredVolumes(),
      logger: rt.log,
    });
    this.connector = connector;
    connector.on('connected', (result: HandshakeResult) => {
      this.onConnected(result).catch((err: Error) => {
        rt.log.error({ err }, `connect sequence failed: ${err.message}`);
        result.session.close('ProtocolError');
      });
    });
    connector.on('incompatible', (message: string) => {
      rt.log.error(message);
      // An event callback cannot wait; toStandAlone's failure is logged.
      runAside(this.toStandAlone('incompatible settings'), rt.log, 'disconnect after incompatible settings');
    });
    const firstListen = firstListenOutcome(connector);
    await rt.setConnState({ conn: unconnected.conn }, 'connect');
    connector.start(() => this.localParams());
    await rt.setConnState({ conn: waiting.conn }, 'connect');
    // A local address that cannot be bound is the operator's error, not the network's: report it, StandAlone.
    const listenError = await firstListen;
    if (listenError && this.connector === connector) {
      await this.disconnect();
      throw listenFailureError(listenError, { resource: spec.name, host: spec.localAddress.host, port: spec.localAddress.port, configPath: spec.configPath });
    }
  }

  /** `adjust` (net-options): the connector and the live session take the spec's current net options. */
  applyNetOptions(): void {
    const net = this.view.net;
    this.connector?.updateOptions({
      connectIntervalMs: net.connectIntervalMs,
      pingIntervalMs: net.pingIntervalMs,
      pingTimeoutMs: net.pingTimeoutMs,
      timeoutMs: net.timeoutMs,
      koCount: net.koCount,
      ...(net.cramHmacAlg && net.sharedSecret ? { auth: { alg: net.cramHmacAlg, secret: net.sharedSecret } } : {}),
    });
  }

  /**
   * After net-options on a live connection: tell the peer the protocol and
   * split-brain policies (DRBD's P_PROTOCOL_UPDATE, protocol version ≥ 100).
   */
  sendProtocolUpdate(): void {
    const link = this.active;
    if (!link || link.closed) return;
    const net = this.view.net;
    link.result.session.send({
      type: PacketType.ProtocolUpdate,
      protocol: net.protocol,
      afterSb0pri: net.afterSb0pri,
      afterSb1pri: net.afterSb1pri,
      afterSb2pri: net.afterSb2pri,
      allowTwoPrimaries: net.allowTwoPrimaries,
      discardMyData: false,
      nodeName: this.runtime.spec.node,
      // 8.4 drbd_adm_net_opts: the new integrity_tfm sends from this packet on; the peer switches on receipt.
      integrityAlg: net.dataIntegrityAlg ?? '',
    });
  }

  /** Set by daemon/adjust: the peer changed its protocol on the live connection; this node adopts it. */
  onPeerProtocolUpdate: ((packet: ProtocolPacket) => void) | undefined;

  /** After disk-options / net-options on a live connection: the resync parameters to the peer (DRBD's P_SYNC_PARAM). */
  sendSyncParam(): void {
    const link = this.active;
    if (!link || link.closed) return;
    link.result.session.send({ type: PacketType.SyncParam, volume: this.vnr, ...this.syncParamBody() });
  }

  /** The resync parameters this node runs with, as P_SYNC_PARAM carries them (at connect and after adjust). */
  private syncParamBody(): Omit<SyncParamPacket, 'type' | 'volume'> {
    const { disk, net } = this.view;
    return {
      resyncRateKiBps: disk.resyncRateKiBps,
      cPlanAheadDs: disk.cPlanAheadDs,
      cDelayTargetDs: disk.cDelayTargetDs,
      cFillTargetSectors: disk.cFillTargetSectors,
      cMaxRateKiBps: disk.cMaxRateKiBps,
      verifyAlg: net.verifyAlg ?? '',
      csumsAlg: net.csumsAlg ?? '',
    };
  }

  /** Set by daemon/adjust: the peer sent new resync parameters; this node adopts them. */
  onPeerSyncParam: ((packet: SyncParamPacket) => void) | undefined;
  /** Runs just before a resync starts (daemon/resync-after: the dependency's state, fresh). */
  beforeResync: (() => Promise<void>) | undefined;

  /** A resync is running on this link (either direction). */
  get resyncRunning(): boolean {
    return isSyncState(this.runtime.snapshot.conn);
  }

  /** `disconnect` / `down`: close the link and go StandAlone. */
  async disconnect(): Promise<void> {
    const rt = this.runtime;
    if (!this.connector) return;
    // resource/admin's rules for `disconnect` (a Primary with fencing retries with the peer Outdated).
    const plan = rt.snapshot.conn === ConnState.Disconnecting ? undefined : requestDisconnect(rt.snapshot, rt.stateCtx());
    if (plan && plan.kind !== 'ok') refuse(refusalOf(plan));
    const connector = this.connector;
    this.connector = undefined;
    const [disconnecting] = plan?.states ?? [];
    if (disconnecting) await rt.setConnState({ conn: disconnecting.conn, pdsk: disconnecting.pdsk }, 'disconnect');
    const link = this.active;
    if (link) {
      link.closed = true;
      this.active = undefined;
      this.engine()?.detachPeer('Disconnecting');
    }
    await connector.stop();
    for (const conn of standAloneStates(rt.snapshot)) await rt.setConnState({ conn }, 'disconnect');
  }

  private async toStandAlone(why: string): Promise<void> {
    const rt = this.runtime;
    const connector = this.connector;
    this.connector = undefined;
    const link = this.active;
    this.active = undefined;
    if (link) link.closed = true;
    const [first, ...rest] = standAloneStates(rt.snapshot);
    if (first === ConnState.Disconnecting) await rt.setConnState({ conn: first }, why);
    this.engine()?.detachPeer('Disconnecting');
    await connector?.stop();
    rt.log.info('Connection closed');
    for (const conn of first === ConnState.Disconnecting ? rest : [first, ...rest]) {
      if (conn !== undefined) await rt.setConnState({ conn }, why);
    }
  }

  // ---- the connect sequence -------------------------------------------------------------------

  /**
   * drbd_send_sizes: this node's P_SIZES body. Without a disk d_size and
   * u_size are 0 and c_size is the device's (the peer's size it took, or 0);
   * `askForAnswer` sends c_size 0 (trigger_reply: the peer answers).
   */
  private sizesBody(ddsFlags: number, askForAnswer = false): Omit<SizesPacket, 'type' | 'volume'> {
    const store = this.runtime.attachedStore;
    const deviceBytes = store ? store.sizeBytes : (this.engine()?.volume.sizeBytes ?? 0);
    return {
      diskSizeBytes: store ? store.maxSizeBytes : 0,
      userSizeBytes: store ? (store.userSizeBytes ?? 0) : 0,
      currentSizeBytes: askForAnswer ? 0 : deviceBytes,
      maxRequestBytes: MAX_REQUEST_BYTES,
      ddsFlags,
    };
  }

  private localParams(): LocalParams {
    const rt = this.runtime;
    const s = rt.snapshot;
    const net = this.view.net;
    return {
      volume: this.vnr,
      protocol: {
        protocol: net.protocol,
        afterSb0pri: net.afterSb0pri,
        afterSb1pri: net.afterSb1pri,
        afterSb2pri: net.afterSb2pri,
        allowTwoPrimaries: net.allowTwoPrimaries,
        discardMyData: this.discardMyData,
        nodeName: rt.spec.node,
        integrityAlg: net.dataIntegrityAlg ?? '',
      },
      syncParam: this.syncParamBody(),
      uuids: this.uuidsBody(),
      sizes: this.sizesBody(0),
      state: { role: s.role, disk: s.disk, conn: ConnState.WFReportParams, userIsp: pausesPeer(s) },
    };
  }

  /** P_UUIDS' body, or undefined without a disk (drbd_send_uuids: get_ldev_if_state(D_NEGOTIATING) fails). */
  private uuidsBody(): LocalParams['uuids'] {
    const store = this.runtime.attachedStore;
    const s = this.runtime.snapshot;
    if (!store || !hasDiskOnWire(s.disk)) return undefined;
    let uuidFlags = 0;
    if (this.discardMyData) uuidFlags |= UuidFlag.discardMyData;
    if (store.mdFlags & MdFlag.crashedPrimary) uuidFlags |= UuidFlag.crashedPrimary;
    const disk = s.disk === DiskState.Negotiating ? store.diskAtAttach : s.disk;
    if (disk <= DiskState.Inconsistent) uuidFlags |= UuidFlag.inconsistent;
    return { uuids: store.uuids, bitsSet: store.bitmap.countSet(), uuidFlags };
  }

  /** Set by the wiring: the data path of a node without a disk, created or resized to the device size it takes from the peer. */
  disklessDataPath: ((sizeBytes: number) => ReplicationEngine) | undefined;

  /** A new ActiveLink on an established connection, with the data path taking its packets. */
  private takeLink(result: HandshakeResult, engine: ReplicationEngine): ActiveLink {
    const link: ActiveLink = {
      result,
      peer: result.peer,
      syncUuidWaiter: undefined,
      pendingSyncUuid: undefined,
      resyncTarget: undefined,
      nextRequestId: 1,
      requests: new Map(),
      sourceTotalBits: 0,
      sourceStartedMs: 0,
      closed: false,
      sizesChain: Promise.resolve(),
      resizePending: false,
      sizesHandled: [],
    };
    this.lastPeerDiskBytes = result.peer.sizes.diskSizeBytes;
    this.active = link;
    engine.attachPeer({
      channel: result.session,
      onControlPacket: (packet) => this.onControlPacket(link, packet),
      onLinkLost: (reason) => {
        // The engine reports the loss synchronously; the state changes after it run aside, failures logged.
        runAside(this.onLinkLost(link, reason), this.runtime.log, 'link loss handling');
      },
    });
    return link;
  }

  /**
   * The connect of a node without a disk (never attached, or detached
   * before this connect): no sync handshake (receive_state runs it only
   * when both have disks); the device takes the peer's size
   * (receive_sizes: "I am diskless, need to accept the peer's size"), and
   * reads and writes go through the peer. A peer without a disk either is
   * refused ("some backing storage is needed"), and so is a diskless
   * Primary's reconnect to other data than it exposes (receive_uuids).
   */
  private async connectDiskless(result: HandshakeResult): Promise<void> {
    const rt = this.runtime;
    const peer = result.peer;
    const size = disklessDeviceSize(peer.sizes);
    const mayConnect = size.kind === 'size' ? disklessPrimaryMayConnect(rt.snapshot.role, this.exposedDataUuid, peer.uuidsKnown ? peer.uuids.current : undefined) : null;
    const makeEngine = this.disklessDataPath;
    if (size.kind !== 'size' || (mayConnect !== null && !mayConnect.ok) || !makeEngine) {
      rt.log.error(size.kind !== 'size' ? size.errorLine : (mayConnect?.ok === false ? mayConnect.errorLine : 'no data path for a diskless connect'));
      result.session.close('Disconnecting');
      await rt.setConnState({ conn: ConnState.WFReportParams }, 'connected');
      await this.toStandAlone(size.kind !== 'size' ? 'no backing storage on either node' : 'other data than this diskless Primary exposes');
      return;
    }
    const engine = makeEngine(size.sizeBytes);
    rt.log.info({ sizeBytes: size.sizeBytes, peerDiskBytes: peer.sizes.diskSizeBytes, peerCurrentBytes: peer.sizes.currentSizeBytes }, `diskless: the device takes the peer's size, ${sizeLogLine(size.sizeBytes)}`);
    const link = this.takeLink(result, engine);
    if (peer.uuidsKnown) this.exposedDataUuid = peer.uuids.current;
    await rt.setConnState({ conn: ConnState.WFReportParams }, 'connected');
    if (link.closed) return;
    const refused = handshakeStateRefusal(rt.snapshot, 'no-sync', peerView(peer), rt.stateCtx());
    if (refused !== null) {
      rt.log.error(refused);
      await this.toStandAlone('state change failed');
      return;
    }
    if (!engine.volume.isMirroring) engine.startMirroring();
    await rt.setVolumeState(this.vnr, afterHandshake('no-sync', peerView(peer)), 'connected without a disk');
    await rt.deviceSizeChanged();
  }

  /**
   * DRBD's ed_uuid while diskless: the current UUID of the data this node's
   * device shows — the peer's, learnt from its P_UUIDS while connected
   * (receive_uuids: drbd_set_ed_uuid), or, after a detach, the lost disk's.
   */
  exposedDataUuid: bigint | undefined;

  private async onConnected(result: HandshakeResult): Promise<void> {
    const rt = this.runtime;
    const store = rt.attachedStore;
    if (!store) return this.connectDiskless(result);
    const engine = this.engine();
    if (!engine) {
      result.session.close('Disconnecting');
      return;
    }
    const link = this.takeLink(result, engine);
    // Agree on the size and decide before anything awaits: the peer does the same at the same
    // moment, and a close it sends after deciding must not pre-empt our own decision.
    const s = rt.snapshot;
    const peer = result.peer;
    const sizing = agreeDeviceSize(
      {
        maxSizeBytes: store.maxSizeBytes,
        dataAreaBytes: store.dataAreaBytes ?? store.maxSizeBytes,
        userSizeBytes: store.userSizeBytes ?? 0,
        currentSizeBytes: store.sizeBytes,
        role: s.role,
        disk: s.disk,
      },
      { diskSizeBytes: peer.sizes.diskSizeBytes, userSizeBytes: peer.sizes.userSizeBytes, currentSizeBytes: peer.sizes.currentSizeBytes, role: peer.role as Role },
    );
    for (const line of sizing.warnLines) rt.log.warn({ peerBytes: peer.sizes.diskSizeBytes, localBytes: store.maxSizeBytes }, line);
    if (sizing.kind === 'peer-too-small') {
      // receive_sizes: conn_request_stop(C_DISCONNECTING, CS_HARD) — this node goes StandAlone.
      rt.log.error({ agreedBytes: sizing.sizeBytes, currentBytes: store.sizeBytes }, sizing.errorLine);
      this.active = undefined;
      link.closed = true;
      await rt.setConnState({ conn: ConnState.WFReportParams }, 'connected');
      await this.toStandAlone('peer disk too small');
      return;
    }
    for (const line of sizing.infoLines) rt.log.info({ userSizeBytes: sizing.userSizeBytes }, line);
    // receive_sizes → drbd_determine_dev_size: the device takes the agreed size now — it grows when both
    // disks hold more, a Primary's too (the grown blocks are out of sync: the handshake's resync covers them).
    const resized = sizing.sizeBytes !== store.sizeBytes;
    const sizeWritten = store.applySize ? store.applySize(sizing.userSizeBytes, sizing.sizeBytes) : store.setAgreedSize(sizing.sizeBytes);
    const decision = this.handshake(link);
    await sizeWritten;
    if (resized) await rt.deviceSizeChanged();
    await rt.setConnState({ conn: ConnState.WFReportParams }, 'connected');
    await this.act(link, engine, decision);
  }

  private async decide(link: ActiveLink, engine: ReplicationEngine): Promise<void> {
    await this.act(link, engine, this.handshake(link));
  }

  /** drbd_sync_handshake on the current local and peer parameters (synchronous). */
  private handshake(link: ActiveLink): HandshakeDecision {
    const rt = this.runtime;
    const store = rt.requireStore();
    const peer = link.peer;
    const s = rt.snapshot;
    const net = this.view.net;
    // receive_state: a peer without a disk (no P_UUIDS, Diskless) gets no handshake: Connected as it is.
    if (!syncHandshakeRuns(s.disk, peer.disk as DiskState, peer.uuidsKnown)) return noSyncHandshake(store.uuids, peer.uuids);
    const decision: HandshakeDecision = syncHandshake({
      self: {
        uuids: store.uuids,
        bitsSet: store.bitmap.countSet(),
        role: s.role,
        disk: s.disk,
        nodeName: rt.spec.node,
        crashedPrimary: (store.mdFlags & MdFlag.crashedPrimary) !== 0,
        discardMyData: this.discardMyData,
        attachDisk: store.diskAtAttach,
      },
      peer: {
        uuids: peer.uuids,
        bitsSet: peer.bitsSet,
        role: peer.role as Role,
        disk: peer.disk as DiskState,
        nodeName: peer.nodeName,
        uuidFlags: peer.uuidFlags,
      },
      afterSb0pri: net.afterSb0pri,
      afterSb1pri: net.afterSb1pri,
      afterSb2pri: net.afterSb2pri,
      rrConflict: net.rrConflict,
      alwaysAsbp: net.alwaysAsbp,
      resolveConflicts: link.result.resolveConflicts,
      canDemote: () => !rt.frontendHeldOpen(),
      protocolVersion: PROTOCOL_VERSION_MAX,
    });
    for (const line of decision.logLines) rt.log.info(line);
    this.splitBrains.note(decision);
    return decision;
  }

  private async act(link: ActiveLink, engine: ReplicationEngine, decision: HandshakeDecision): Promise<void> {
    const rt = this.runtime;
    const store = rt.requireStore();
    const peer = link.peer;
    this.discardMyData = false;
    if (decision.selfUuids && !uuidsEqual(decision.selfUuids, store.uuids)) store.setUuids(decision.selfUuids);
    // Handlers run aside as DRBD's khelper calls do; runHandler logs and resolves on every failure.
    for (const handler of decision.handlers) runAside(rt.runHandler(handler), rt.log, `handler ${handler}`);
    if (decision.demoted && rt.snapshot.role === Role.Primary) await rt.demote();
    if (link.closed) return;
    switch (decision.kind) {
      case 'unrelated':
      case 'drop':
      case 'split-brain-unresolved':
        await this.toStandAlone(decision.kind);
        return;
      case 'no-sync':
      case 'sync-source':
      case 'sync-target':
        break;
    }
    const refused = handshakeStateRefusal(rt.snapshot, decision.kind, peerView(peer), rt.stateCtx());
    if (refused !== null) {
      rt.log.error(refused);
      await this.toStandAlone('state change failed');
      return;
    }
    switch (decision.kind) {
      case 'no-sync':
        engine.localDataReady();
        if (!engine.volume.isMirroring) engine.startMirroring();
        await rt.setVolumeState(this.vnr, { ...afterHandshake('no-sync', peerView(peer)), ...this.negotiatedDisk() }, 'handshake: no resync');
        return;
      case 'sync-source':
        engine.localDataReady();
        return this.runSyncSource(link, engine, decision.full);
      case 'sync-target':
        return this.runSyncTarget(link, engine, decision.full);
    }
  }

  /** After a re-attach while connected (disk Negotiating): the disk state the attach found, once the handshake kept it. */
  private negotiatedDisk(): Partial<StateSnapshot> {
    const store = this.runtime.attachedStore;
    return store && this.runtime.snapshot.disk === DiskState.Negotiating ? { disk: store.diskAtAttach } : {};
  }

  /** `new-current-uuid --clear-bitmap` on a fresh connected pair: tell the peer to adopt our UUID (flag 8). */
  async skipInitialSync(): Promise<void> {
    const link = this.active;
    if (!link || link.closed) return;
    const uuids = this.uuidsBody();
    if (!uuids) return;
    link.result.session.send({ type: PacketType.Uuids, volume: this.vnr, ...uuids, uuidFlags: uuids.uuidFlags | UuidFlag.skipInitialSync });
  }

  private async acceptSkipInitialSync(peerCurrent: bigint): Promise<void> {
    const rt = this.runtime;
    const store = rt.attachedStore;
    if (!store) return;
    const rule = skipInitialSync(rt.snapshot, store.uuids, peerCurrent);
    if (!rule.accept) {
      rt.log.warn(rule.line);
      return;
    }
    rt.log.info(rule.line);
    store.setUuids(rule.uuids);
    store.bitmap.clearRange(0, store.bitmap.bitCount);
    await rt.setVolumeState(this.vnr, rule.patch, 'skip initial sync');
  }

  /** Our UUIDs to the peer (after a new current UUID while Connected); nothing without a disk or a live link. */
  sendUuids(): void {
    const link = this.active;
    // A link being torn down (Disconnecting, lost) hears nothing more: a new current UUID made because
    // the disconnect lost the peer's disk must not reach the peer as news to renegotiate on.
    const uuids = this.uuidsBody();
    if (!link || link.closed || !uuids || this.runtime.snapshot.conn < ConnState.Connected) return;
    link.result.session.send({ type: PacketType.Uuids, volume: this.vnr, ...uuids });
  }

  /**
   * After `primary --force` or a re-attach while Connected: send the new
   * UUIDs and decide again (DRBD's CONSIDER_RESYNC). A re-attach sends the
   * disk's sizes first, as after_state_ch does (Attaching -> Negotiating:
   * sizes, UUIDs, state), and waits for the peer's answer: DRBD's receiver
   * handles P_SIZES before the handshake, so both nodes have grown to what
   * both disks hold (receive_sizes) before the bitmaps are compared.
   */
  async renegotiate(why: 'attach' | 'new-uuids'): Promise<void> {
    const ready = (): boolean => {
      const link = this.active;
      return link !== undefined && !link.closed && this.engine() !== undefined && this.runtime.snapshot.conn === ConnState.Connected;
    };
    if (!ready()) return;
    if (why === 'attach' && this.runtime.attachedStore) await this.exchangeSizes(0, false);
    const link = this.active;
    const engine = this.engine();
    const uuids = this.uuidsBody();
    if (!ready() || !link || !engine || !uuids) return;
    link.result.session.send({ type: PacketType.Uuids, volume: this.vnr, ...uuids });
    await this.decide(link, engine).catch((err: Error) => this.runtime.log.error({ err }, `resync decision failed: ${err.message}`));
  }

  private async runSyncSource(link: ActiveLink, engine: ReplicationEngine, full: boolean, exchange = true): Promise<void> {
    const rt = this.runtime;
    const store = rt.requireStore();
    if (full) store.bitmap.setAll();
    await rt.setVolumeState(this.vnr, { ...afterHandshake('sync-source', peerView(link.peer)), ...this.negotiatedDisk() }, 'sync source');
    if (!engine.volume.isMirroring) engine.startMirroring();
    // A full sync sets every bit on both sides, so no exchange is needed.
    if (exchange) await engine.exchangeBitmaps();
    if (link.closed) return;
    await this.beginResyncAsSource(link, resyncStarts('source'), 'resync');
  }

  /**
   * The source's start of a resync (drbd_start_resync + drbd_gen_and_send_sync_uuid):
   * a new sync UUID to the peer before the state that says SyncSource, so the
   * peer knows it when it sees the state.
   */
  private async beginResyncAsSource(link: ActiveLink, patch: Partial<StateSnapshot>, why: string): Promise<void> {
    const rt = this.runtime;
    const store = rt.requireStore();
    const start = syncSourceStart(store.uuids, random64());
    store.setUuids(start.uuids);
    for (const line of start.logLines) rt.log.info(line);
    link.result.session.send({ type: PacketType.SyncUuid, volume: this.vnr, uuid: start.syncUuid });
    link.sourceTotalBits = store.bitmap.countSet();
    link.sourceStartedMs = Date.now();
    const progressTimer = setInterval(() => {
      if (link.closed || !isSyncState(rt.snapshot.conn)) clearInterval(progressTimer);
      else this.logProgress();
    }, PROGRESS_LOG_INTERVAL_MS);
    rt.log.info(resyncBeganLine('source', link.sourceTotalBits));
    await this.beforeResync?.();
    if (link.closed) return;
    await rt.setVolumeState(this.vnr, patch, why);
  }

  // ---- on-congestion (Ahead/Behind) -----------------------------------------------------------

  /**
   * The data path stopped sending Data (drbd_req.c maybe_pull_ahead): commit
   * Ahead, or drop the connection for `on-congestion disconnect`. Called
   * synchronously from the write path; the state commits before it returns.
   */
  congested(policy: 'pull-ahead' | 'disconnect'): boolean {
    const rt = this.runtime;
    const link = this.active;
    const next = onCongestion(rt.snapshot, policy);
    if (!link || link.closed || next === null) return false;
    if (next === 'disconnect') {
      rt.log.warn('on-congestion disconnect: dropping the connection');
      runAside(this.toStandAlone('on-congestion disconnect'), rt.log, 'on-congestion disconnect');
      return true;
    }
    runAside(rt.setVolumeState(this.vnr, next, 'on-congestion pull-ahead'), rt.log, 'pull ahead');
    return true;
  }

  /** Ahead and every mirrored write acknowledged: the resync starts after DRBD's start_resync_timer delay. */
  aheadDrained(): void {
    const link = this.active;
    if (!link || link.closed) return;
    const timer = setTimeout(() => {
      if (this.active !== link || link.closed) return;
      const next = aheadToSyncSource(this.runtime.snapshot);
      if (next === null) return;
      runAside(this.beginResyncAsSource(link, next, 'ahead -> SyncSource'), this.runtime.log, 'resync after Ahead');
    }, AHEAD_TO_SYNC_SOURCE_DELAY_MS);
    timer.unref();
  }

  /** receive_sync_uuid while Behind: the Ahead peer began the resync; pull the marked blocks. */
  private async resyncFromBehind(link: ActiveLink, engine: ReplicationEngine, uuid: bigint): Promise<void> {
    const rt = this.runtime;
    const next = behindToSyncTarget(rt.snapshot);
    if (next === null) return;
    const store = rt.requireStore();
    store.setUuids(syncTargetStart(store.uuids, uuid, rt.snapshot.role));
    await rt.setVolumeState(this.vnr, next, 'Behind -> SyncTarget');
    await this.pullResync(link, engine);
  }

  private async runSyncTarget(link: ActiveLink, engine: ReplicationEngine, full: boolean, exchange = true): Promise<void> {
    const rt = this.runtime;
    const store = rt.requireStore();
    if (full) store.bitmap.setAll();
    const syncUuid = new Promise<bigint>((resolve) => {
      if (link.pendingSyncUuid !== undefined) {
        resolve(link.pendingSyncUuid);
        link.pendingSyncUuid = undefined;
      } else {
        link.syncUuidWaiter = resolve;
      }
    });
    await rt.setVolumeState(this.vnr, afterHandshake('sync-target', peerView(link.peer)), 'sync target');
    if (!engine.volume.isMirroring) engine.startMirroring();
    if (exchange) await engine.exchangeBitmaps();
    if (link.closed) return;
    await rt.setVolumeState(this.vnr, bitmapExchangedAsTarget, 'bitmap exchanged');
    const uuid = await syncUuid;
    if (link.closed) return;
    store.setUuids(syncTargetStart(store.uuids, uuid, rt.snapshot.role));
    await this.beforeResync?.();
    if (link.closed) return;
    await rt.setVolumeState(this.vnr, resyncStarts('target'), 'resync');
    await this.pullResync(link, engine);
  }

  /** SyncTarget: fetch every out-of-sync block, then finish as drbd_resync_finished does. */
  private async pullResync(link: ActiveLink, engine: ReplicationEngine): Promise<void> {
    const rt = this.runtime;
    const store = rt.requireStore();
    // Not waited for (udrbd does not abort a resync on this handler's result); runHandler logs failures.
    runAside(this.runHandlerQuiet('before-resync-target'), rt.log, 'handler before-resync-target');
    const bitsSet = store.bitmap.countSet();
    rt.log.info({ kib: bitsSet * 4, bits: bitsSet }, resyncBeganLine('target', bitsSet));
    const target = engine.startResyncAsTarget(this.useChecksumBasedResync(store.mdFlags, link.peer.uuidFlags));
    link.resyncTarget = target;
    if (rt.snapshot.userIsp || rt.snapshot.peerIsp || rt.snapshot.aftrIsp) target.pause();
    const progressTimer = setInterval(() => this.logProgress(), PROGRESS_LOG_INTERVAL_MS);
    let resync;
    try {
      resync = await target.done;
    } finally {
      clearInterval(progressTimer);
      link.resyncTarget = undefined;
    }
    if (link.closed || this.active !== link) return;
    rt.log.info({ ...resync }, 'resync result');
    if (!resync.ok) {
      rt.log.warn(`Resync finished with ${resync.failedBlocks} failed blocks; staying Inconsistent`);
      await rt.setVolumeState(this.vnr, targetResyncFinished(false), 'resync failed');
      return;
    }
    store.setUuids(syncTargetFinish(store.uuids, link.peer.uuids, rt.snapshot.role));
    await rt.setVolumeState(this.vnr, targetResyncFinished(true), 'resync finished');
    // Nothing follows the finished resync that depends on this handler; runHandler logs failures.
    runAside(this.runHandlerQuiet('after-resync-target'), rt.log, 'handler after-resync-target');
  }

  /**
   * use_checksum_based_resync: csums-alg set, and with csums-after-crash-only
   * only when this resync follows a Primary crash (the crashed-primary flag of
   * this node's meta-data or of the peer's UUID flags).
   */
  private useChecksumBasedResync(mdFlags: number, peerUuidFlags: number): boolean {
    const net = this.view.net;
    if (!net.csumsAlg) return false;
    if (!net.csumsAfterCrashOnly) return true;
    return (mdFlags & MdFlag.crashedPrimary) !== 0 || (peerUuidFlags & UuidFlag.crashedPrimary) !== 0;
  }

  private async runHandlerQuiet(name: string): Promise<void> {
    await this.runtime.runHandler(name);
  }

  // ---- packets and link loss ------------------------------------------------------------------

  private onControlPacket(link: ActiveLink, packet: Packet): void {
    if (this.active !== link) return;
    switch (packet.type) {
      case PacketType.SyncUuid: {
        const engine = this.engine();
        if (this.runtime.snapshot.conn === ConnState.Behind && engine) {
          // The packet dispatch is synchronous; the resync runs aside, failures logged.
          runAside(this.resyncFromBehind(link, engine, packet.uuid), this.runtime.log, 'resync after Behind');
          return;
        }
        if (link.syncUuidWaiter) link.syncUuidWaiter(packet.uuid);
        else link.pendingSyncUuid = packet.uuid;
        link.syncUuidWaiter = undefined;
        return;
      }
      case PacketType.StateChangeRequest:
        // The packet dispatch is synchronous; the request (maybe a whole resync) runs aside, failures logged.
        runAside(this.onPeerRequest(link, packet.requestId, packet.conn as ConnState | undefined), this.runtime.log, 'peer state change request');
        return;
      case PacketType.StateChangeReply: {
        const waiter = link.requests.get(packet.requestId);
        link.requests.delete(packet.requestId);
        waiter?.(packet.result);
        return;
      }
      case PacketType.State:
        // The packet dispatch is synchronous; the state change runs aside, failures logged.
        runAside(this.onPeerState(link, packet.role as Role, packet.disk as DiskState, packet.conn as ConnState, packet.userIsp), this.runtime.log, 'peer state');
        return;
      case PacketType.Sizes: {
        // One P_SIZES at a time: each may move meta-data and grow the device; failures logged.
        const run = link.sizesChain.then(() => this.onPeerSizes(link, packet));
        link.sizesChain = run.catch(() => undefined);
        runAside(run, this.runtime.log, 'peer sizes');
        return;
      }
      case PacketType.ProtocolUpdate:
        this.onPeerProtocolUpdate?.(packet);
        return;
      case PacketType.SyncParam:
        this.onPeerSyncParam?.(packet);
        return;
      case PacketType.Uuids: {
        link.peer = { ...link.peer, uuids: packet.uuids, uuidsKnown: true, bitsSet: packet.bitsSet, uuidFlags: packet.uuidFlags };
        // receive_uuids: connected without a disk, the peer's current UUID is the data this device shows.
        if (!this.runtime.attachedStore) this.exposedDataUuid = packet.uuids.current;
        if (packet.uuidFlags & UuidFlag.skipInitialSync) {
          // The packet dispatch is synchronous; the UUID change runs aside, failures logged.
          runAside(this.acceptSkipInitialSync(packet.uuids.current), this.runtime.log, 'skip initial sync');
          return;
        }
        const engine = this.engine();
        // A diskless node only notes the peer's UUIDs; it negotiates when it attaches.
        if (engine && this.runtime.attachedStore && this.runtime.snapshot.disk > DiskState.Failed && this.runtime.snapshot.conn === ConnState.Connected) {
          this.decide(link, engine).catch((err: Error) => this.runtime.log.error({ err }, `resync decision failed: ${err.message}`));
        }
        return;
      }
      default:
        this.runtime.log.debug({ type: packet.type }, 'control packet ignored');
    }
  }

  // ---- online resize (drbd_adm_resize / receive_sizes / resync_after_online_grow) ----------------

  /** Connected (not syncing): `resize` exchanges sizes with the peer; otherwise it is the disconnected case. */
  get connectedForResize(): boolean {
    const link = this.active;
    return link !== undefined && !link.closed && this.runtime.snapshot.conn === ConnState.Connected;
  }

  /**
   * `resize` on a connected node, after its own size step, or a re-attach
   * while Connected (`grew` false): send P_SIZES asking for an answer (DRBD's drbd_send_sizes with trigger_reply: c_size
   * 0), and return once the peer's answer has been handled here (the
   * device may have grown with it) or after RESIZE_REPLY_TIMEOUT_MS.
   * `grew`: this node already grew (RESIZE_PENDING: the answer starts the
   * resync of the new area).
   */
  async exchangeSizes(ddsFlags: number, grew: boolean): Promise<boolean> {
    const link = this.active;
    const store = this.runtime.attachedStore;
    if (!link || link.closed || !store) return false;
    link.resizePending = grew;
    const answered = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), RESIZE_REPLY_TIMEOUT_MS);
      link.sizesHandled.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    link.result.session.send({ type: PacketType.Sizes, volume: this.vnr, ...this.sizesBody(ddsFlags, true) });
    return answered;
  }

  /**
   * receive_sizes after the connect: the peer's usable size or u_size changed
   * (its `resize`, or our own answered). This node re-reads its backing disk
   * (moving internal meta-data when it grew), takes the peer's u_size and the
   * size drbd_new_dev_size gives (larger, or smaller after `resize --size`),
   * answers when asked or when the sizes differ, and after a grow while
   * Connected resyncs the new area from the Primary.
   */
  private async onPeerSizes(link: ActiveLink, packet: SizesPacket): Promise<void> {
    const rt = this.runtime;
    const store = rt.attachedStore;
    if (this.active !== link || link.closed) return;
    // c_size 0 asks for an answer (trigger_reply); the peer's last real c_size is kept.
    const currentSizeBytes = packet.currentSizeBytes > 0 ? packet.currentSizeBytes : link.peer.sizes.currentSizeBytes;
    link.peer = { ...link.peer, sizes: { diskSizeBytes: packet.diskSizeBytes, userSizeBytes: packet.userSizeBytes, currentSizeBytes, maxRequestBytes: packet.maxRequestBytes, ddsFlags: packet.ddsFlags } };
    this.lastPeerDiskBytes = packet.diskSizeBytes;
    if (!store) return this.onPeerSizesDiskless(link, packet);
    // Only a Connected pair grows (a peer's resize is refused during a resync, 130): otherwise just note its size.
    if (!store || rt.snapshot.conn !== ConnState.Connected) {
      this.sizesHandled(link);
      return;
    }
    const noResync = (packet.ddsFlags & DdsFlag.noResync) !== 0;
    const grownBytes = store.refreshCapacity ? await store.refreshCapacity() : 0;
    const next = sizeAfterPeerSizes({
      dataAreaBytes: store.dataAreaBytes ?? store.maxSizeBytes,
      userSizeBytes: store.userSizeBytes ?? 0,
      peerDiskBytes: packet.diskSizeBytes,
      peerUserBytes: packet.userSizeBytes,
      currentSizeBytes: store.sizeBytes,
    });
    for (const line of next.infoLines) rt.log.info({ userSizeBytes: next.userSizeBytes }, line);
    for (const line of next.errorLines) rt.log.error({ peerUserBytes: packet.userSizeBytes, peerBytes: packet.diskSizeBytes }, line);
    const grew = next.sizeBytes > store.sizeBytes;
    const resized = next.sizeBytes !== store.sizeBytes;
    await this.applyDeviceSize(next.userSizeBytes, next.sizeBytes, !noResync);
    if (resized) await rt.deviceSizeChanged();
    if (packet.currentSizeBytes !== store.sizeBytes || grownBytes > 0) {
      link.result.session.send({ type: PacketType.Sizes, volume: this.vnr, ...this.sizesBody(packet.ddsFlags) });
    }
    const pending = link.resizePending;
    link.resizePending = false;
    this.sizesHandled(link);
    if ((pending || grew) && rt.snapshot.conn === ConnState.Connected && !link.closed) await this.resyncAfterOnlineGrow(link, noResync);
  }

  /**
   * receive_sizes without a disk, after the connect: the device follows the
   * peer's new current size. A request for an answer (c_size 0, the peer's
   * `resize`) is answered, not followed: the peer's d_size alone is not its
   * device's size; its answer to ours carries the new c_size.
   */
  private async onPeerSizesDiskless(link: ActiveLink, packet: SizesPacket): Promise<void> {
    const rt = this.runtime;
    const engine = this.engine();
    const size = disklessDeviceSize(packet);
    if (engine && !engine.local.isAttached && packet.currentSizeBytes > 0 && size.kind === 'size' && size.sizeBytes !== engine.volume.sizeBytes) {
      engine.setDisklessSizeBytes(size.sizeBytes);
      rt.log.info({ sizeBytes: size.sizeBytes }, `diskless: the device follows the peer's size, ${sizeLogLine(size.sizeBytes)}`);
      await rt.deviceSizeChanged();
    }
    // The peer's `resize` waits for an answer (c_size 0 asks for one): d_size 0, our device's size.
    if (packet.currentSizeBytes === 0 && engine && !link.closed) {
      link.result.session.send({ type: PacketType.Sizes, volume: this.vnr, ...this.sizesBody(packet.ddsFlags) });
    }
    this.sizesHandled(link);
  }

  /**
   * A new u_size and device size on the attached disk (drbd_determine_dev_size).
   * A shrink first waits for the I/O in flight past the new end and holds
   * new I/O there off (DRBD's drbd_suspend_io), so nothing is written past
   * it once it is in force; afterwards requests there are refused.
   */
  async applyDeviceSize(userSizeBytes: number, sizeBytes: number, setNewBits: boolean): Promise<void> {
    const store = this.runtime.requireStore();
    const apply = (): Promise<void> => (store.applySize ? store.applySize(userSizeBytes, sizeBytes, setNewBits) : store.setAgreedSize(sizeBytes, setNewBits));
    const engine = this.engine();
    if (sizeBytes < store.sizeBytes && engine) await engine.withRangeExcluded(sizeBytes, store.sizeBytes, apply);
    else await apply();
  }

  private sizesHandled(link: ActiveLink): void {
    for (const done of link.sizesHandled.splice(0)) done();
  }

  /** resync_after_online_grow: the Primary (or, both alike, the RESOLVE_CONFLICTS holder) becomes SyncSource of the new area. */
  private async resyncAfterOnlineGrow(link: ActiveLink, noResync: boolean): Promise<void> {
    const rt = this.runtime;
    const engine = this.engine();
    const s = rt.snapshot;
    if (!engine) return;
    // DRBD defers it to the next handshake (RESYNC_AFTER_NEG) when a disk is below Inconsistent; the bits stay set for it.
    if (s.pdsk < DiskState.Inconsistent || s.disk < DiskState.Inconsistent) return;
    if (noResync) {
      rt.log.info('Resync of new storage suppressed with --assume-clean');
      return;
    }
    rt.log.info('Resync of new storage after online grow');
    const iAmSource = s.role !== s.peer ? s.role === Role.Primary : link.result.resolveConflicts;
    if (iAmSource) {
      await rt.setVolumeState(this.vnr, { conn: ConnState.StartingSyncS }, 'online grow');
      await this.runSyncSource(link, engine, false, false);
    } else {
      await rt.setVolumeState(this.vnr, { conn: ConnState.StartingSyncT }, 'online grow');
      // The target's resync runs on; its failure is logged.
      runAside(this.runSyncTarget(link, engine, false, false), rt.log, 'resync after online grow');
    }
  }

  private async onPeerState(link: ActiveLink, role: Role, disk: DiskState, conn: ConnState, userIsp: boolean): Promise<void> {
    const rt = this.runtime;
    const s = rt.snapshot;
    if (s.conn < ConnState.WFReportParams) return;
    link.peer = { ...link.peer, role, disk, conn, userIsp };
    const news = peerStateNews(s, { role, disk, conn, userIsp });
    if (news.sourceResyncDone) {
      const store = rt.requireStore();
      store.setUuids(syncSourceFinish(store.uuids));
      const secs = Math.max((Date.now() - link.sourceStartedMs) / 1000, 0.001);
      rt.log.info(`Resync done (total ${Math.round(secs)} sec; paused 0 sec; ${Math.round((link.sourceTotalBits * 4) / secs)} K/sec)`);
    }
    await rt.setVolumeState(this.vnr, news.patch, 'peer state');
    if (news.verifyEnded) this.afterVerifyDone();
    this.applyPause(link);
  }

  /**
   * drbd_resync_finished after an online verify, on VerifyS and VerifyT alike:
   * the out-of-sync handler runs when the bitmap then holds out-of-sync blocks
   * (drbd_bm_total_weight, not only those this verify found).
   */
  private afterVerifyDone(): void {
    const outOfSyncBits = this.runtime.attachedStore?.bitmap.countSet() ?? 0;
    // Handlers run aside as DRBD's khelper calls do; runHandler logs and resolves on every failure.
    if (outOfSyncBits > 0) runAside(this.runtime.runHandler('out-of-sync'), this.runtime.log, 'handler out-of-sync');
  }

  /** The target's resync pauses and resumes with the user_isp / peer_isp / aftr_isp flags (sanitize_state switches Sync* ⇄ PausedSync*). */
  applyPause(link: ActiveLink | undefined = this.active): void {
    const s = this.runtime.snapshot;
    if (s.userIsp || s.peerIsp || s.aftrIsp) link?.resyncTarget?.pause();
    else link?.resyncTarget?.resume();
  }

  private logProgress(): void {
    const p = this.syncProgress();
    if (!p) return;
    this.runtime.log.info(
      { ...p },
      `resync: ${p.percentDone.toFixed(1)}% (${p.leftBits * 4}/${p.totalBits * 4})K speed: ${Math.round(p.speedKiBps)} (${Math.round(p.averageKiBps)}) K/sec`,
    );
  }

  // ---- resync and verify on request -----------------------------------------------------------

  /** Asks the peer for a state change (DRBD's cluster-wide state change); resolves with its result (1 = ok). */
  private requestPeer(link: ActiveLink, conn: ConnState): Promise<number> {
    const requestId = link.nextRequestId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        link.requests.delete(requestId);
        resolve(SsCode.cwFailedByPeer);
      }, STATE_REQUEST_TIMEOUT_MS);
      link.requests.set(requestId, (result) => {
        clearTimeout(timer);
        resolve(result);
      });
      link.result.session.send({ type: PacketType.StateChangeRequest, volume: this.vnr, requestId, conn });
    });
  }

  private async onPeerRequest(link: ActiveLink, requestId: number, conn: ConnState | undefined): Promise<void> {
    const rt = this.runtime;
    const engine = this.engine();
    const reply = (result: number): void => {
      link.result.session.send({ type: PacketType.StateChangeReply, volume: this.vnr, requestId, result });
    };
    const s = rt.snapshot;
    if (!engine || s.conn !== ConnState.Connected) return reply(s.conn > ConnState.Connected ? SsCode.resyncRunning : SsCode.needConnection);
    const target = peerRequestTarget(conn);
    switch (target) {
      case ConnState.StartingSyncS: {
        // the peer invalidated itself: full sync with us as source
        reply(SsCode.success);
        await rt.setVolumeState(this.vnr, { conn: target }, 'peer invalidate');
        await this.runSyncSource(link, engine, true, false);
        return;
      }
      case ConnState.StartingSyncT: {
        // the peer ran invalidate-remote: full sync with us as target
        const running = this.runSyncTarget(link, engine, true, false);
        reply(SsCode.success);
        await running;
        return;
      }
      case ConnState.VerifyT:
        reply(SsCode.success);
        await rt.setVolumeState(this.vnr, { conn: target }, 'peer verify');
        return;
      default:
        reply(SsCode.notSupported);
    }
  }

  private requireConnected(): { link: ActiveLink; engine: ReplicationEngine } {
    const link = this.active;
    const engine = this.engine();
    if (!link || link.closed || !engine) throw new StateChangeRefused(SsCode.needConnection, refusal(SsCode.needConnection).text, ExitCode.stateChangeFailed);
    return { link, engine };
  }

  private async peerAgrees(link: ActiveLink, conn: ConnState): Promise<void> {
    const result = await this.requestPeer(link, conn);
    if (result !== SsCode.success) {
      const code = result < 0 ? result : SsCode.cwFailedByPeer;
      throw new StateChangeRefused(code, refusal(code as SsCode).text, ExitCode.stateChangeFailed);
    }
  }

  /** `invalidate` while connected: full sync from the peer (StartingSyncT). */
  async invalidate(): Promise<void> {
    const { link, engine } = this.requireConnected();
    await this.peerAgrees(link, ConnState.StartingSyncS);
    await this.runtime.setVolumeState(this.vnr, { conn: ConnState.StartingSyncT }, 'invalidate');
    // `invalidate` returns once the resync started (as drbdadm does); the resync's failure is logged.
    runAside(this.runSyncTarget(link, engine, true, false), this.runtime.log, 'resync');
  }

  /** `invalidate-remote`: full sync to the peer (StartingSyncS). */
  async invalidateRemote(): Promise<void> {
    const { link, engine } = this.requireConnected();
    await this.peerAgrees(link, ConnState.StartingSyncT);
    await this.runtime.setVolumeState(this.vnr, { conn: ConnState.StartingSyncS }, 'invalidate-remote');
    await this.runSyncSource(link, engine, true, false);
  }

  /** `verify`: online verify as VerifyS; out-of-sync blocks are counted and marked. */
  async verify(): Promise<void> {
    const rt = this.runtime;
    const { link, engine } = this.requireConnected();
    await this.peerAgrees(link, ConnState.VerifyT);
    await rt.setVolumeState(this.vnr, { conn: ConnState.VerifyS }, 'verify');
    const { done } = engine.startVerify();
    // `verify` returns once the verify started (as drbdadm does); its end is handled aside, failures logged.
    const finished = done.then(
      async (result) => {
        // replication/verify logged DRBD's "Online verify done" and "... block out of sync!" lines.
        rt.log.info({ ...result }, 'verify result');
        this.lastVerify = result;
        if (this.active === link && rt.snapshot.conn === ConnState.VerifyS) {
          await rt.setVolumeState(this.vnr, { conn: ConnState.Connected }, 'verify finished');
          if (result.ok) this.afterVerifyDone();
        }
      },
      (err: Error) => rt.log.error({ err }, `online verify failed: ${err.message}`),
    );
    runAside(finished, rt.log, 'end of online verify');
  }

  /** Result of the last online verify, for status. */
  lastVerify: { verifiedBlocks: number; outOfSyncBlocks: number; ok: boolean } | undefined;

  private async onLinkLost(link: ActiveLink, reason: LinkLossReason): Promise<void> {
    if (link.closed || this.active !== link) return;
    link.closed = true;
    this.active = undefined;
    link.syncUuidWaiter = undefined;
    for (const waiter of link.requests.values()) waiter(SsCode.needConnection);
    link.requests.clear();
    // A `resize` waiting for the peer's sizes returns now, with the size this node has.
    this.sizesHandled(link);
    const rt = this.runtime;
    rt.log.warn(`peer link lost: ${reason}`);
    // The lost-peer-data rule (a Primary starts a new data generation) runs inside the transition.
    const [lost, ...reconnect] = linkLostStates(reason, true);
    await rt.setConnState({ conn: lost }, 'link lost');
    if (!this.connector) return;
    for (const conn of reconnect) await rt.setConnState({ conn }, 'reconnecting');
  }

  /** Tell the peer about local role/disk changes. */
  private onLocalStateChange(before: StateSnapshot, after: StateSnapshot): void {
    const link = this.active;
    if (!link || link.closed || after.conn < ConnState.WFReportParams) return;
    if (before.role === after.role && before.disk === after.disk && before.conn === after.conn && pausesPeer(before) === pausesPeer(after)) return;
    link.result.session.send({ type: PacketType.State, volume: this.vnr, role: after.role, disk: after.disk, conn: after.conn, userIsp: pausesPeer(after) });
  }

  /** Sync progress for status: the target's own numbers, the source's from its bitmap. */
  syncProgress(): SyncProgress | undefined {
    const rt = this.runtime;
    const s = rt.snapshot;
    const engine = this.engine();
    if (!(isSyncState(s.conn) || s.conn === ConnState.VerifyS) || !engine) return undefined;
    const p = engine.resyncProgress();
    if (p) {
      return {
        totalBits: p.totalBits,
        leftBits: p.leftBits,
        percentDone: p.totalBits === 0 ? 100 : ((p.totalBits - p.leftBits) * 100) / p.totalBits,
        speedKiBps: p.currentKiBps,
        averageKiBps: p.averageKiBps,
        etaSeconds: p.etaSeconds ?? undefined,
        bytesTransferred: (p.totalBits - p.leftBits) * 4096,
        wantKiBps: p.wantKiBps,
      };
    }
    const link = this.active;
    const store = rt.attachedStore;
    if (!link || !store) return undefined;
    const total = link.sourceTotalBits;
    const left = store.bitmap.countSet();
    const secs = Math.max((Date.now() - link.sourceStartedMs) / 1000, 0.001);
    const average = ((total - left) * 4) / secs;
    return {
      totalBits: total,
      leftBits: left,
      percentDone: total === 0 ? 100 : ((total - left) * 100) / total,
      speedKiBps: average,
      averageKiBps: average,
      etaSeconds: average > 0 ? (left * 4) / average : undefined,
      bytesTransferred: (total - left) * 4096,
    };
  }

  get protocol(): 'A' | 'B' | 'C' | undefined {
    return this.connector ? this.view.net.protocol : undefined;
  }
}

function peerView(peer: PeerParams): PeerView {
  return { role: peer.role as Role, disk: peer.disk as DiskState, conn: peer.conn as ConnState, userIsp: peer.userIsp };
}

/** Throws a resource/admin refusal as the control protocol reports it. */
function refuse(r: Refusal): never {
  throw new StateChangeRefused(r.code, r.text, r.exitCode);
}

function refusalOf(result: AdminResult): Refusal {
  assert(result.kind === 'refused', 'a refused admin result');
  return result.refusal;
}

/**
 * The pause flag the peer learns from this node's state (receive_state:
 * peer_isp = the sender's aftr_isp | user_isp): a resync this node holds back
 * for its resync-after dependency pauses on the peer too.
 */
function pausesPeer(s: Pick<StateSnapshot, 'userIsp' | 'aftrIsp'>): boolean {
  return s.userIsp || s.aftrIsp;
}
