/**
 * daemon/volume-link — one volume's side of the peer link (DRBD 8.4's
 * drbd_conf as the receiver and worker see it): on every established
 * connection, this volume's connect sequence — the device size both nodes
 * agree on (daemon/device-size), the sync handshake (resource/uuid
 * syncHandshake: no sync, bitmap or full sync either way, split brain,
 * unrelated data) and what it decides — then its resync, online verify,
 * online resize, Ahead/Behind, peer state news and state change requests.
 * Its packets carry its volume number. The decisions are pure functions in
 * resource/ (link-rules, uuid, diskless, admin); every state change passes
 * ResourceRuntime.setVolumeState for this volume, or setConnState through
 * the connection (daemon/link) it belongs to, which owns the sockets,
 * connect/disconnect and what is per connection (protocol, discard-my-data,
 * split-brain counts). Knows its own volume only.
 */
import crypto from 'node:crypto';
import { ExitCode } from '../util/errors.js';
import { ConnState, DiskState, Role } from '../resource/states.js';
import { SsCode, refusal } from '../resource/state.js';
import {
  AHEAD_TO_SYNC_SOURCE_DELAY_MS,
  afterHandshake,
  aheadToSyncSource,
  behindToSyncTarget,
  bitmapExchangedAsTarget,
  onCongestion,
  isSyncState,
  type PeerView,
  peerRequestTarget,
  peerStateNews,
  resyncBeganLine,
  resyncStarts,
  skipInitialSync,
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
import { type HandshakeResult, type LocalVolumeParams, type PeerParams, peerParams } from '../peer/index.js';
import type { LinkLossReason, PeerChannel } from '../peer/channel.js';
import { runAside } from '../util/aside.js';
import { type Packet, PacketType, type ProtocolPacket, type SizesPacket, type SyncParamPacket } from '../peer/packets.js';
import type { LinkEpochs, ReplicationEngine, ResyncTarget } from '../replication/index.js';
import type { ResourceView } from '../config/index.js';
import { MdFlag } from '../meta/types.js';
import { type AttachedStore, type ResourceRuntime, StateChangeRefused } from './runtime.js';
import type { StateSnapshot, SyncProgress } from './status.js';
import { DdsFlag, agreeDeviceSize, sizeAfterPeerSizes, sizeLogLine } from './device-size.js';
import { disklessDeviceSize, disklessPrimaryMayConnect, hasDiskOnWire, noSyncHandshake, syncHandshakeRuns } from '../resource/diskless.js';
import type { SplitBrainCount } from './metrics-source.js';
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
/** This volume's part of an established connection: its channel (peer/link-mux) and the connection's epochs. */
export interface VolumePath {
  readonly channel: PeerChannel;
  readonly epochs: LinkEpochs;
}

/** What a volume needs from its connection (daemon/link PeerLink). */
export interface VolumeLinkConnection {
  /** One-shot `--discard-my-data` for the next handshake (per connection, as the net option). */
  discardMyData: boolean;
  readonly splitBrains: SplitBrainCount;
  /** The connector runs (the resource is not StandAlone). */
  readonly isRunning: boolean;
  /** Drops the connection: every volume goes with it (DRBD's conn_request_stop). */
  toStandAlone(why: string): Promise<void>;
  /** This established connection was lost: the connection's states, once for all volumes. */
  linkLost(result: HandshakeResult, reason: LinkLossReason): Promise<void>;
  onPeerProtocolUpdate: ((packet: ProtocolPacket) => void) | undefined;
  onPeerSyncParam: ((packet: SyncParamPacket) => void) | undefined;
  beforeResync: (() => Promise<void>) | undefined;
}

export class VolumeLink {
  private active: ActiveLink | undefined;
  /** DRBD's device->p_size: the peer's usable size from its last P_SIZES, kept while disconnected; 0 = none since start. */
  lastPeerDiskBytes = 0;

  constructor(
    private readonly runtime: ResourceRuntime,
    private readonly conn: VolumeLinkConnection,
    /** The volume number (the config's `volume N`): every packet this volume sends carries it in its frame header. */
    readonly vnr: number,
    private readonly engine: () => ReplicationEngine | undefined,
  ) {
    runtime.stateHooks.push((before, after, vnr) => {
      if (vnr === this.vnr) this.onLocalStateChange(before, after);
    });
  }

  /** The resource through this volume's configuration (its disk options; net options are the resource's). */
  private get view(): ResourceView {
    return this.runtime.specOf(this.vnr).view as ResourceView;
  }

  /** This volume on the connection (drbd_read_state). */
  private get state(): StateSnapshot {
    return this.runtime.volumeSnapshot(this.vnr);
  }

  /** This volume's attached disk and meta-data, or undefined while diskless. */
  private get store(): AttachedStore | undefined {
    return this.runtime.storeOf(this.vnr);
  }

  /**
   * The connection closes (disconnect, a refused handshake): this volume
   * lets go of its part of it; its data path detaches from the peer when it
   * had a link, or always with `detachAlways` (the connection is dropped
   * part way through a connect).
   */
  dropLink(detachAlways = false): void {
    const link = this.active;
    if (link) {
      link.closed = true;
      this.active = undefined;
    }
    if (link || detachAlways) this.engine()?.detachPeer('Disconnecting');
  }

  /** The connection `result` was lost: this volume's waits end (the connection changes the states). */
  linkGone(result: HandshakeResult): void {
    const link = this.active;
    if (!link || link.result !== result) return;
    link.closed = true;
    this.active = undefined;
    link.syncUuidWaiter = undefined;
    for (const waiter of link.requests.values()) waiter(SsCode.needConnection);
    link.requests.clear();
    // A `resize` waiting for the peer's sizes returns now, with the size this node has.
    this.sizesHandled(link);
  }

  /** This volume's part of what the node tells its peer at connect (SyncParam, Uuids, Sizes, State). */
  localVolumeParams(): LocalVolumeParams {
    const s = this.state;
    return {
      volume: this.vnr,
      syncParam: this.syncParamBody(),
      uuids: this.uuidsBody(),
      sizes: this.sizesBody(0),
      state: { role: s.role, disk: s.disk, conn: ConnState.WFReportParams, userIsp: pausesPeer(s) },
    };
  }

  /** After disk-options / net-options on a live connection: this volume's resync parameters to the peer (DRBD's P_SYNC_PARAM). */
  sendSyncParam(): void {
    const link = this.active;
    if (!link || link.closed) return;
    link.result.session.send({ type: PacketType.SyncParam, volume: this.vnr, ...this.syncParamBody() });
  }

  /** A resync is running on this volume (either direction). */
  get resyncRunning(): boolean {
    return isSyncState(this.state.conn);
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

  /**
   * drbd_send_sizes: this node's P_SIZES body. Without a disk d_size and
   * u_size are 0 and c_size is the device's (the peer's size it took, or 0);
   * `askForAnswer` sends c_size 0 (trigger_reply: the peer answers).
   */
  private sizesBody(ddsFlags: number, askForAnswer = false): Omit<SizesPacket, 'type' | 'volume'> {
    const store = this.store;
    const deviceBytes = store ? store.sizeBytes : (this.engine()?.volume.sizeBytes ?? 0);
    return {
      diskSizeBytes: store ? store.maxSizeBytes : 0,
      userSizeBytes: store ? (store.userSizeBytes ?? 0) : 0,
      currentSizeBytes: askForAnswer ? 0 : deviceBytes,
      maxRequestBytes: MAX_REQUEST_BYTES,
      ddsFlags,
    };
  }

  /** P_UUIDS' body, or undefined without a disk (drbd_send_uuids: get_ldev_if_state(D_NEGOTIATING) fails). */
  private uuidsBody(): LocalVolumeParams['uuids'] {
    const store = this.store;
    const s = this.state;
    if (!store || !hasDiskOnWire(s.disk)) return undefined;
    let uuidFlags = 0;
    if (this.conn.discardMyData) uuidFlags |= UuidFlag.discardMyData;
    if (store.mdFlags & MdFlag.crashedPrimary) uuidFlags |= UuidFlag.crashedPrimary;
    const disk = s.disk === DiskState.Negotiating ? store.diskAtAttach : s.disk;
    if (disk <= DiskState.Inconsistent) uuidFlags |= UuidFlag.inconsistent;
    return { uuids: store.uuids, bitsSet: store.bitmap.countSet(), uuidFlags };
  }

  /** Set by the wiring: the data path of a node without a disk, created or resized to the device size it takes from the peer. */
  disklessDataPath: ((sizeBytes: number) => ReplicationEngine) | undefined;

  /** A new ActiveLink on an established connection, with the data path taking its packets. */
  private takeLink(result: HandshakeResult, path: VolumePath, engine: ReplicationEngine): ActiveLink {
    const link: ActiveLink = {
      result,
      peer: peerParams(result, this.vnr),
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
    this.lastPeerDiskBytes = link.peer.sizes.diskSizeBytes;
    this.active = link;
    engine.attachPeer({
      channel: path.channel,
      epochs: path.epochs,
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
  private async connectDiskless(result: HandshakeResult, path: VolumePath): Promise<void> {
    const rt = this.runtime;
    const peer = peerParams(result, this.vnr);
    const size = disklessDeviceSize(peer.sizes);
    const mayConnect = size.kind === 'size' ? disklessPrimaryMayConnect(this.state.role, this.exposedDataUuid, peer.uuidsKnown ? peer.uuids.current : undefined) : null;
    const makeEngine = this.disklessDataPath;
    if (size.kind !== 'size' || (mayConnect !== null && !mayConnect.ok) || !makeEngine) {
      rt.log.error(size.kind !== 'size' ? size.errorLine : (mayConnect?.ok === false ? mayConnect.errorLine : 'no data path for a diskless connect'));
      result.session.close('Disconnecting');
      await rt.setConnState({ conn: ConnState.WFReportParams }, 'connected');
      await this.conn.toStandAlone(size.kind !== 'size' ? 'no backing storage on either node' : 'other data than this diskless Primary exposes');
      return;
    }
    const engine = makeEngine(size.sizeBytes);
    rt.log.info({ sizeBytes: size.sizeBytes, peerDiskBytes: peer.sizes.diskSizeBytes, peerCurrentBytes: peer.sizes.currentSizeBytes }, `diskless: the device takes the peer's size, ${sizeLogLine(size.sizeBytes)}`);
    const link = this.takeLink(result, path, engine);
    if (peer.uuidsKnown) this.exposedDataUuid = peer.uuids.current;
    await rt.setConnState({ conn: ConnState.WFReportParams }, 'connected');
    if (link.closed) return;
    const refused = handshakeStateRefusal(this.state, 'no-sync', peerView(peer), rt.stateCtx());
    if (refused !== null) {
      rt.log.error(refused);
      await this.conn.toStandAlone('state change failed');
      return;
    }
    if (!engine.volume.isMirroring) engine.startMirroring();
    await rt.setVolumeState(this.vnr, afterHandshake('no-sync', peerView(peer)), 'connected without a disk');
    await rt.deviceSizeChanged(this.vnr);
  }

  /**
   * DRBD's ed_uuid while diskless: the current UUID of the data this node's
   * device shows — the peer's, learnt from its P_UUIDS while connected
   * (receive_uuids: drbd_set_ed_uuid), or, after a detach, the lost disk's.
   */
  exposedDataUuid: bigint | undefined;

  /** This volume's connect sequence on an established connection (after the parameter exchange). */
  async onConnected(result: HandshakeResult, path: VolumePath): Promise<void> {
    const rt = this.runtime;
    const store = this.store;
    if (!store) return this.connectDiskless(result, path);
    const engine = this.engine();
    if (!engine) {
      result.session.close('Disconnecting');
      return;
    }
    const link = this.takeLink(result, path, engine);
    // Agree on the size and decide before anything awaits: the peer does the same at the same
    // moment, and a close it sends after deciding must not pre-empt our own decision.
    const s = this.state;
    const peer = peerParams(result, this.vnr);
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
      await this.conn.toStandAlone('peer disk too small');
      return;
    }
    for (const line of sizing.infoLines) rt.log.info({ userSizeBytes: sizing.userSizeBytes }, line);
    // receive_sizes → drbd_determine_dev_size: the device takes the agreed size now — it grows when both
    // disks hold more, a Primary's too (the grown blocks are out of sync: the handshake's resync covers them).
    const resized = sizing.sizeBytes !== store.sizeBytes;
    const sizeWritten = store.applySize ? store.applySize(sizing.userSizeBytes, sizing.sizeBytes) : store.setAgreedSize(sizing.sizeBytes);
    const decision = this.handshake(link);
    await sizeWritten;
    if (resized) await rt.deviceSizeChanged(this.vnr);
    await rt.setConnState({ conn: ConnState.WFReportParams }, 'connected');
    await this.act(link, engine, decision);
  }

  private async decide(link: ActiveLink, engine: ReplicationEngine): Promise<void> {
    await this.act(link, engine, this.handshake(link));
  }

  /** drbd_sync_handshake on the current local and peer parameters (synchronous). */
  private handshake(link: ActiveLink): HandshakeDecision {
    const rt = this.runtime;
    const store = rt.requireStore(this.vnr);
    const peer = link.peer;
    const s = this.state;
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
        discardMyData: this.conn.discardMyData,
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
      canDemote: () => !rt.frontendHeldOpen(this.vnr),
      protocolVersion: PROTOCOL_VERSION_MAX,
    });
    for (const line of decision.logLines) rt.log.info(line);
    this.conn.splitBrains.note(decision);
    return decision;
  }

  private async act(link: ActiveLink, engine: ReplicationEngine, decision: HandshakeDecision): Promise<void> {
    const rt = this.runtime;
    const store = rt.requireStore(this.vnr);
    const peer = link.peer;
    this.conn.discardMyData = false;
    if (decision.selfUuids && !uuidsEqual(decision.selfUuids, store.uuids)) store.setUuids(decision.selfUuids);
    // Handlers run aside as DRBD's khelper calls do; runHandler logs and resolves on every failure.
    for (const handler of decision.handlers) runAside(rt.runHandler(handler, this.vnr), rt.log, `handler ${handler}`);
    if (decision.demoted && this.state.role === Role.Primary) await rt.demote(this.vnr);
    if (link.closed) return;
    switch (decision.kind) {
      case 'unrelated':
      case 'drop':
      case 'split-brain-unresolved':
        await this.conn.toStandAlone(decision.kind);
        return;
      case 'no-sync':
      case 'sync-source':
      case 'sync-target':
        break;
    }
    const refused = handshakeStateRefusal(this.state, decision.kind, peerView(peer), rt.stateCtx());
    if (refused !== null) {
      rt.log.error(refused);
      await this.conn.toStandAlone('state change failed');
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
    const store = this.store;
    return store && this.state.disk === DiskState.Negotiating ? { disk: store.diskAtAttach } : {};
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
    const store = this.store;
    if (!store) return;
    const rule = skipInitialSync(this.state, store.uuids, peerCurrent);
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
    if (!link || link.closed || !uuids || this.state.conn < ConnState.Connected) return;
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
      return link !== undefined && !link.closed && this.engine() !== undefined && this.state.conn === ConnState.Connected;
    };
    if (!ready()) return;
    if (why === 'attach' && this.store) await this.exchangeSizes(0, false);
    const link = this.active;
    const engine = this.engine();
    const uuids = this.uuidsBody();
    if (!ready() || !link || !engine || !uuids) return;
    link.result.session.send({ type: PacketType.Uuids, volume: this.vnr, ...uuids });
    await this.decide(link, engine).catch((err: Error) => this.runtime.log.error({ err }, `resync decision failed: ${err.message}`));
  }

  private async runSyncSource(link: ActiveLink, engine: ReplicationEngine, full: boolean, exchange = true): Promise<void> {
    const rt = this.runtime;
    const store = rt.requireStore(this.vnr);
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
    const store = rt.requireStore(this.vnr);
    const start = syncSourceStart(store.uuids, random64());
    store.setUuids(start.uuids);
    for (const line of start.logLines) rt.log.info(line);
    link.result.session.send({ type: PacketType.SyncUuid, volume: this.vnr, uuid: start.syncUuid });
    link.sourceTotalBits = store.bitmap.countSet();
    link.sourceStartedMs = Date.now();
    const progressTimer = setInterval(() => {
      if (link.closed || !isSyncState(this.state.conn)) clearInterval(progressTimer);
      else this.logProgress();
    }, PROGRESS_LOG_INTERVAL_MS);
    rt.log.info(resyncBeganLine('source', link.sourceTotalBits));
    await this.conn.beforeResync?.();
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
    const next = onCongestion(this.state, policy);
    if (!link || link.closed || next === null) return false;
    if (next === 'disconnect') {
      rt.log.warn('on-congestion disconnect: dropping the connection');
      runAside(this.conn.toStandAlone('on-congestion disconnect'), rt.log, 'on-congestion disconnect');
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
      const next = aheadToSyncSource(this.state);
      if (next === null) return;
      runAside(this.beginResyncAsSource(link, next, 'ahead -> SyncSource'), this.runtime.log, 'resync after Ahead');
    }, AHEAD_TO_SYNC_SOURCE_DELAY_MS);
    timer.unref();
  }

  /** receive_sync_uuid while Behind: the Ahead peer began the resync; pull the marked blocks. */
  private async resyncFromBehind(link: ActiveLink, engine: ReplicationEngine, uuid: bigint): Promise<void> {
    const rt = this.runtime;
    const next = behindToSyncTarget(this.state);
    if (next === null) return;
    const store = rt.requireStore(this.vnr);
    store.setUuids(syncTargetStart(store.uuids, uuid, this.state.role));
    await rt.setVolumeState(this.vnr, next, 'Behind -> SyncTarget');
    await this.pullResync(link, engine);
  }

  private async runSyncTarget(link: ActiveLink, engine: ReplicationEngine, full: boolean, exchange = true): Promise<void> {
    const rt = this.runtime;
    const store = rt.requireStore(this.vnr);
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
    store.setUuids(syncTargetStart(store.uuids, uuid, this.state.role));
    await this.conn.beforeResync?.();
    if (link.closed) return;
    await rt.setVolumeState(this.vnr, resyncStarts('target'), 'resync');
    await this.pullResync(link, engine);
  }

  /** SyncTarget: fetch every out-of-sync block, then finish as drbd_resync_finished does. */
  private async pullResync(link: ActiveLink, engine: ReplicationEngine): Promise<void> {
    const rt = this.runtime;
    const store = rt.requireStore(this.vnr);
    // Not waited for (udrbd does not abort a resync on this handler's result); runHandler logs failures.
    runAside(this.runHandlerQuiet('before-resync-target'), rt.log, 'handler before-resync-target');
    const bitsSet = store.bitmap.countSet();
    rt.log.info({ kib: bitsSet * 4, bits: bitsSet }, resyncBeganLine('target', bitsSet));
    const target = engine.startResyncAsTarget(this.useChecksumBasedResync(store.mdFlags, link.peer.uuidFlags));
    link.resyncTarget = target;
    if (this.state.userIsp || this.state.peerIsp || this.state.aftrIsp) target.pause();
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
    store.setUuids(syncTargetFinish(store.uuids, link.peer.uuids, this.state.role));
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
    await this.runtime.runHandler(name, this.vnr);
  }

  // ---- packets and link loss ------------------------------------------------------------------

  private onControlPacket(link: ActiveLink, packet: Packet): void {
    if (this.active !== link) return;
    switch (packet.type) {
      case PacketType.SyncUuid: {
        const engine = this.engine();
        if (this.state.conn === ConnState.Behind && engine) {
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
        this.conn.onPeerProtocolUpdate?.(packet);
        return;
      case PacketType.SyncParam:
        this.conn.onPeerSyncParam?.(packet);
        return;
      case PacketType.Uuids: {
        link.peer = { ...link.peer, uuids: packet.uuids, uuidsKnown: true, bitsSet: packet.bitsSet, uuidFlags: packet.uuidFlags };
        // receive_uuids: connected without a disk, the peer's current UUID is the data this device shows.
        if (!this.store) this.exposedDataUuid = packet.uuids.current;
        if (packet.uuidFlags & UuidFlag.skipInitialSync) {
          // The packet dispatch is synchronous; the UUID change runs aside, failures logged.
          runAside(this.acceptSkipInitialSync(packet.uuids.current), this.runtime.log, 'skip initial sync');
          return;
        }
        const engine = this.engine();
        // A diskless node only notes the peer's UUIDs; it negotiates when it attaches.
        if (engine && this.store && this.state.disk > DiskState.Failed && this.state.conn === ConnState.Connected) {
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
    return link !== undefined && !link.closed && this.state.conn === ConnState.Connected;
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
    const store = this.store;
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
    const store = this.store;
    if (this.active !== link || link.closed) return;
    // c_size 0 asks for an answer (trigger_reply); the peer's last real c_size is kept.
    const currentSizeBytes = packet.currentSizeBytes > 0 ? packet.currentSizeBytes : link.peer.sizes.currentSizeBytes;
    link.peer = { ...link.peer, sizes: { diskSizeBytes: packet.diskSizeBytes, userSizeBytes: packet.userSizeBytes, currentSizeBytes, maxRequestBytes: packet.maxRequestBytes, ddsFlags: packet.ddsFlags } };
    this.lastPeerDiskBytes = packet.diskSizeBytes;
    if (!store) return this.onPeerSizesDiskless(link, packet);
    // Only a Connected pair grows (a peer's resize is refused during a resync, 130): otherwise just note its size.
    if (!store || this.state.conn !== ConnState.Connected) {
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
    if (resized) await rt.deviceSizeChanged(this.vnr);
    if (packet.currentSizeBytes !== store.sizeBytes || grownBytes > 0) {
      link.result.session.send({ type: PacketType.Sizes, volume: this.vnr, ...this.sizesBody(packet.ddsFlags) });
    }
    const pending = link.resizePending;
    link.resizePending = false;
    this.sizesHandled(link);
    if ((pending || grew) && this.state.conn === ConnState.Connected && !link.closed) await this.resyncAfterOnlineGrow(link, noResync);
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
      await rt.deviceSizeChanged(this.vnr);
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
    const store = this.runtime.requireStore(this.vnr);
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
    const s = this.state;
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
    const s = this.state;
    if (s.conn < ConnState.WFReportParams) return;
    link.peer = { ...link.peer, role, disk, conn, userIsp };
    const news = peerStateNews(s, { role, disk, conn, userIsp });
    if (news.sourceResyncDone) {
      const store = rt.requireStore(this.vnr);
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
    const outOfSyncBits = this.store?.bitmap.countSet() ?? 0;
    // Handlers run aside as DRBD's khelper calls do; runHandler logs and resolves on every failure.
    if (outOfSyncBits > 0) runAside(this.runtime.runHandler('out-of-sync', this.vnr), this.runtime.log, 'handler out-of-sync');
  }

  /** The target's resync pauses and resumes with the user_isp / peer_isp / aftr_isp flags (sanitize_state switches Sync* ⇄ PausedSync*). */
  applyPause(link: ActiveLink | undefined = this.active): void {
    const s = this.state;
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
    const s = this.state;
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
        if (this.active === link && this.state.conn === ConnState.VerifyS) {
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
    // The connection's states change once, for every volume (each lets go of its part: linkGone).
    await this.conn.linkLost(link.result, reason);
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
    const s = this.state;
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
    const store = this.store;
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
}

function peerView(peer: PeerParams): PeerView {
  return { role: peer.role as Role, disk: peer.disk as DiskState, conn: peer.conn as ConnState, userIsp: peer.userIsp };
}

/**
 * The pause flag the peer learns from this node's state (receive_state:
 * peer_isp = the sender's aftr_isp | user_isp): a resync this node holds back
 * for its resync-after dependency pauses on the peer too.
 */
export function pausesPeer(s: Pick<StateSnapshot, 'userIsp' | 'aftrIsp'>): boolean {
  return s.userIsp || s.aftrIsp;
}
