/**
 * replication/engine — one node's data path: owns the ReplicatedVolume, the
 * SecondaryReceiver, resync and verify parts, the shared range lock and the
 * counters, and routes every data-path packet from the PeerChannel to the
 * part that answers it. The resource layer drives it with method calls
 * (attach a link, start mirroring, exchange bitmaps, start resync/verify);
 * packets it does not own (handshake, state) go to `onControlPacket`.
 * Barrier and BarrierAck are the connection's: they go to its epochs
 * (replication/epochs), which every volume's engine on the link shares.
 * The local disk can go and come back while the engine and its link live
 * on (replication/local-disk): diskless, the volume reads and writes
 * through the peer (replication/peer-read); a node whose peer is diskless
 * marks every write it applies out of sync, for the peer's re-attach.
 */
import type { BlockDevice } from '../disk/block-device.js';
import type { ActivityLogApi, DirtyBitmap } from '../meta/types.js';
import type { LinkLossReason, PeerChannel } from '../peer/channel.js';
import { type AckPacket, type Packet, PacketType } from '../peer/packets.js';
import { assert } from '../util/assert.js';
import type { Logger } from '../util/log.js';
import { BitmapExchange } from './bitmap-exchange.js';
import { BlockIdTag, blockIdTag } from './block-id.js';
import { type CounterSnapshot, ReplicationCounters } from './counters.js';
import { type ReplicationOptions, withDefaults } from './options.js';
import { RangeLock } from './range-lock.js';
import { SecondaryReceiver } from './receiver.js';
import { blockDigest } from '../util/digest.js';
import { type ResyncProgress, ResyncResponder, ResyncTarget } from './resync.js';
import { VerifyResponder, type VerifyResult, VerifySource } from './verify.js';
import { type LocalIoErrorHandler, ReplicatedVolume, setOutOfSync } from './volume.js';
import { type DisklessShape, LocalDisk, type LocalParts } from './local-disk.js';
import { PeerReads } from './peer-read.js';
import { type LinkEpochs, newLinkEpochs } from './epochs.js';

export interface ReplicationEngineDeps {
  /** The local backing device's data area (not the meta-data). */
  readonly disk: BlockDevice;
  readonly bitmap: DirtyBitmap;
  readonly activityLog: ActivityLogApi;
  readonly options?: Partial<ReplicationOptions>;
  readonly log: Logger;
  /**
   * The volume this data path is (DRBD's vnr; the config's `volume N`): every
   * per-volume packet it sends carries it in the frame header.
   */
  readonly vnr: number;
  /** AL transactions written so far, for the `al:` counter. */
  readonly alTransactions?: () => number;
  readonly onLocalIoError?: LocalIoErrorHandler;
  /** Clock for progress and rate limiting (tests pass a fake one). */
  readonly now?: () => number;
}

/** A node that connects without a disk (never attached): the device's shape instead of disk, bitmap and AL. */
export type DisklessEngineDeps = Omit<ReplicationEngineDeps, 'disk' | 'bitmap' | 'activityLog'> & { readonly diskless: DisklessShape };

export interface AttachedPeer {
  readonly channel: PeerChannel;
  /**
   * The connection's epochs, shared by every volume on it (daemon/link makes
   * one per established link); without it this data path has the link to
   * itself and makes its own.
   */
  readonly epochs?: LinkEpochs;
  /** Packets the data path does not own (handshake, state, sync UUID, ping...). */
  readonly onControlPacket?: (packet: Packet) => void;
  /** The link is gone; the data path has already marked unacknowledged writes out of sync. */
  readonly onLinkLost?: (reason: LinkLossReason) => void;
}

interface Link {
  readonly channel: PeerChannel;
  readonly epochs: LinkEpochs;
  readonly receiver: SecondaryReceiver;
  readonly responder: ResyncResponder;
  readonly verifyResponder: VerifyResponder;
  readonly bitmapExchange: BitmapExchange;
  readonly attached: AttachedPeer;
  readonly peerReads: PeerReads;
  resyncTarget: ResyncTarget | null;
  verifySource: VerifySource | null;
}

/** The options `adjust` may change on a running data path (the rest are fixed at attach). */
export type LiveReplicationOptions = Pick<ReplicationOptions, 'protocol' | 'maxBuffers' | 'maxEpochSize' | 'resyncRateKiBps' | 'resyncController' | 'verifyAlg' | 'csumsAlg' | 'requestTimeoutMs' | 'diskFlushes' | 'onCongestion' | 'congestionFillBytes' | 'congestionExtents'>;

export class ReplicationEngine {
  /** Shared by every part of the data path, which reads it per request; only applyOptions changes it. */
  readonly options: ReplicationOptions;
  readonly counters: ReplicationCounters;
  readonly volume: ReplicatedVolume;
  private readonly rangeLock = new RangeLock();
  private link: Link | null = null;
  /** The backing disk, bitmap and AL as every part sees them; detachable (diskless mode). */
  readonly local: LocalDisk;

  constructor(private readonly deps: ReplicationEngineDeps | DisklessEngineDeps) {
    this.options = { ...withDefaults(deps.options) };
    this.local = new LocalDisk('diskless' in deps ? deps.diskless : { disk: deps.disk, bitmap: deps.bitmap, activityLog: deps.activityLog });
    this.counters = new ReplicationCounters(this.local.bitmap, deps.alTransactions);
    this.volume = new ReplicatedVolume({
      disk: this.local.disk,
      bitmap: this.local.bitmap,
      activityLog: this.local.activityLog,
      options: this.options,
      counters: this.counters,
      log: deps.log,
      rangeLock: this.rangeLock,
      vnr: deps.vnr,
      ...(deps.onLocalIoError ? { onLocalIoError: deps.onLocalIoError } : {}),
    });
    // Never attached: reads and writes go through the peer from the start.
    if (!this.local.isAttached) this.volume.setDiskless(true);
  }

  /**
   * `adjust`: new net/disk options on the running data path. Validated as a
   * whole first (an invalid set changes nothing); then every part sees them
   * from its next request on — writes already sent keep the protocol they
   * were sent with, a running resync takes the new rate at once.
   */
  applyOptions(changes: Partial<LiveReplicationOptions>): void {
    const next = withDefaults({ ...this.options, ...changes });
    const timeoutChanged = next.requestTimeoutMs !== this.options.requestTimeoutMs;
    Object.assign(this.options as { -readonly [K in keyof ReplicationOptions]: ReplicationOptions[K] }, next);
    this.volume.setMaxBuffers(next.maxBuffers);
    if (timeoutChanged) this.volume.requestTimeoutChanged();
    // The pacing mode first: the fixed rate then knows whether it is the one in use.
    this.link?.resyncTarget?.setController(next.resyncController);
    this.link?.resyncTarget?.setRateKiBps(next.resyncRateKiBps);
    this.link?.verifySource?.setController(next.resyncController);
    this.link?.verifySource?.setRateKiBps(next.resyncRateKiBps);
  }

  // ---- link lifecycle -------------------------------------------------------------------------

  /** Take over an established, handshaken channel: from now on this engine receives its packets. */
  attachPeer(attached: AttachedPeer): void {
    assert(this.link === null, 'attachPeer while a peer is attached');
    const { channel } = attached;
    const epochs = attached.epochs ?? newLinkEpochs(channel);
    const common = { disk: this.local.disk, counters: this.counters, log: this.deps.log, rangeLock: this.rangeLock, peer: channel, vnr: this.deps.vnr };
    const link: Link = {
      channel,
      epochs,
      attached,
      receiver: new SecondaryReceiver({ ...common, options: this.options, epochs: epochs.receiver, ...(this.deps.onLocalIoError ? { onLocalIoError: this.deps.onLocalIoError } : {}) }),
      responder: new ResyncResponder({
        ...common, bitmap: this.local.bitmap, options: this.options, peerPrimary: () => this.peerPrimary,
        ...(this.deps.now ? { now: this.deps.now } : {}),
      }),
      verifyResponder: new VerifyResponder({
        ...common, bitmap: this.local.bitmap, options: this.options, peerPrimary: () => this.peerPrimary,
        ...(this.deps.now ? { now: this.deps.now } : {}),
      }),
      bitmapExchange: new BitmapExchange(this.local.bitmap, this.deps.vnr),
      peerReads: new PeerReads(channel, this.counters, this.deps.vnr),
      resyncTarget: null,
      verifySource: null,
    };
    this.link = link;
    epochs.receiver.join(link.receiver);
    link.receiver.setMarkOutOfSync(this.peerDiskless ? this.local.bitmap : null);
    if (!this.local.isAttached) link.receiver.setAcceptWrites(false, 'diskless');
    this.volume.setPeerReader(link.peerReads);
    channel.onPacket((packet) => this.dispatch(link, packet));
    channel.onClose((reason) => this.linkLost(link, reason));
  }

  /** Orderly or not, the link is gone: stop mirroring, fail resync/verify in flight. */
  private linkLost(link: Link, reason: LinkLossReason): void {
    if (this.link !== link) return;
    this.link = null;
    link.epochs.receiver.leave(link.receiver);
    this.volume.stopMirroring();
    this.volume.setOnDemandSync(null);
    this.volume.setPeerReader(null);
    link.peerReads.close(reason);
    link.resyncTarget?.abort(`link lost (${reason})`);
    link.verifySource?.abort(`link lost (${reason})`);
    link.bitmapExchange.abort();
    this.counters.pe = 0;
    this.counters.ua = 0;
    this.deps.log.info({ reason }, 'data path detached from peer');
    link.attached.onLinkLost?.(reason);
  }

  /** Close the link (e.g. `disconnect`); the same clean-up as a lost link runs. */
  detachPeer(reason: LinkLossReason = 'Disconnecting'): void {
    const link = this.link;
    if (link === null) return;
    if (link.channel.isOpen) link.channel.close(reason);
    this.linkLost(link, reason);
  }

  get isAttached(): boolean {
    return this.link !== null;
  }

  // ---- decisions from the resource layer ------------------------------------------------------

  /** Application writes are mirrored to the peer from now on (Connected / Sync*). */
  startMirroring(): void {
    const link = this.requireLink();
    this.volume.startMirroring(link.channel, link.epochs.sender);
  }

  /** Whether the peer's Data packets are applied; refused ones get NegAck. */
  setAcceptPeerWrites(accept: boolean, reason = ''): void {
    this.requireLink().receiver.setAcceptWrites(accept, reason);
  }

  /** WFBitMapS/T: send our bitmap and OR the peer's into it. */
  exchangeBitmaps(): Promise<{ bitsSet: number; newlySetFromPeer: number }> {
    const link = this.requireLink();
    return link.bitmapExchange.exchange(link.channel);
  }

  /** Become SyncTarget: pull every out-of-sync block; application reads of such blocks sync them first. */
  startResyncAsTarget(useCsums = false): ResyncTarget {
    const link = this.requireLink();
    assert(link.resyncTarget === null, 'one resync at a time');
    const csums = useCsums && this.options.csumsAlg !== '' ? blockDigest(this.options.csumsAlg, 'csums-alg') : undefined;
    const target = new ResyncTarget({
      ...(csums ? { csums } : {}),
      disk: this.local.disk,
      bitmap: this.local.bitmap,
      options: this.options,
      counters: this.counters,
      log: this.deps.log,
      rangeLock: this.rangeLock,
      peer: link.channel,
      vnr: this.deps.vnr,
      ...(this.deps.now ? { now: this.deps.now } : {}),
    });
    link.resyncTarget = target;
    this.volume.setOnDemandSync(target);
    // Re-attached diskless node: the blocks it missed are now fetched before they are read.
    this.volume.setReadsFromPeer(false);
    const done = target.start();
    const cleanUp = (): void => {
      if (link.resyncTarget === target) link.resyncTarget = null;
      this.volume.setOnDemandSync(null);
    };
    // On either outcome; the caller awaits `done` itself and sees its rejection there.
    done.then(cleanUp, cleanUp);
    return target;
  }

  /** Start online verify as VerifyS over [startBytes, endBytes). */
  startVerify(startBytes?: number, endBytes?: number): { source: VerifySource; done: Promise<VerifyResult> } {
    const link = this.requireLink();
    assert(link.verifySource === null, 'one verify at a time');
    const source = new VerifySource({
      disk: this.local.disk,
      bitmap: this.local.bitmap,
      options: this.options,
      counters: this.counters,
      log: this.deps.log,
      rangeLock: this.rangeLock,
      peer: link.channel,
      vnr: this.deps.vnr,
      ...(this.deps.now ? { now: this.deps.now } : {}),
    });
    link.verifySource = source;
    const done = source.start(startBytes, endBytes);
    const cleanUp = (): void => {
      if (link.verifySource === source) link.verifySource = null;
    };
    // On either outcome; the caller awaits `done` itself and sees its rejection there.
    done.then(cleanUp, cleanUp);
    return { source, done };
  }

  /** Progress of the running resync (SyncTarget side) or online verify (VerifyS side), or null. */
  resyncProgress(): ResyncProgress | null {
    return this.link?.resyncTarget?.progress() ?? this.link?.verifySource?.progress() ?? null;
  }

  /** Bytes of resync requests in flight (SyncTarget side), 0 otherwise. */
  resyncInFlightBytes(): number {
    return this.link?.resyncTarget?.inFlightBytes() ?? 0;
  }

  counterSnapshot(): CounterSnapshot {
    return this.counters.snapshot();
  }

  /** Waits until every Barrier received has been answered (orderly disconnect, tests). */
  receiverIdle(): Promise<void> {
    return this.link?.epochs.receiver.idle() ?? Promise.resolve();
  }

  // ---- diskless operation ---------------------------------------------------------------------

  private peerDiskless = false;
  /** The peer is Primary (the SyncSource's c-min-rate then leaves the throttling to the SyncTarget). */
  private peerPrimary = false;

  /**
   * The local disk goes away (detach, on-io-error): from now on the volume
   * reads and writes through the peer, the peer's Data is refused. The old
   * disk's requests in flight end on their own; the caller closes it after.
   */
  detachLocal(): void {
    this.local.detach();
    this.volume.setDiskless(true);
    this.link?.resyncTarget?.abort('local disk detached');
    this.link?.receiver.setAcceptWrites(false, 'diskless');
  }

  /**
   * Runs `change` (a shrink of the device to `startBytes`) while holding
   * [startBytes, endBytes) in the range lock every write path shares: it
   * starts once the writes in flight there are done, and writes arriving
   * meanwhile wait, then find the range past the device's end (refused).
   */
  async withRangeExcluded(startBytes: number, endBytes: number, change: () => Promise<void>): Promise<void> {
    assert(startBytes < endBytes, `excluded range [${startBytes}, ${endBytes}) is not empty`);
    const granted = this.rangeLock.acquire(startBytes, endBytes);
    const hold = granted instanceof Promise ? await granted : granted;
    try {
      await change();
    } finally {
      this.rangeLock.release(hold);
    }
  }

  /** Diskless: the device takes the peer's size (receive_sizes → drbd_set_my_capacity). */
  setDisklessSizeBytes(sizeBytes: number): void {
    this.local.setDisklessSizeBytes(sizeBytes);
  }

  /** A disk is attached again; reads stay with the peer until the handshake says the local data is current. */
  attachLocal(parts: LocalParts): void {
    this.local.attach(parts);
    this.volume.setDiskless(false);
    // Without a peer the attached disk is all there is; with one, the handshake decides.
    if (this.link === null) this.volume.setReadsFromPeer(false);
    this.link?.receiver.setAcceptWrites(true);
  }

  /** The handshake after a re-attach found the local data current (no resync, or this node is SyncSource). */
  localDataReady(): void {
    if (this.local.isAttached) this.volume.setReadsFromPeer(false);
  }

  /**
   * What the resource layer knows of both disks: a diskless peer (what this
   * node writes is out of sync there, and is not sent), an UpToDate peer (a
   * failed local read may be retried there) and whether the local disk is
   * UpToDate (if not, its out-of-sync blocks are read from the peer).
   */
  /** The peer's role as the state machine knows it. */
  setPeerPrimary(primary: boolean): void {
    this.peerPrimary = primary;
  }

  /** Resync requests the SyncSource side held back for application I/O (c-min-rate), 0 without a link. */
  get throttledResyncAnswers(): number {
    return this.link?.responder.throttledAnswers ?? 0;
  }

  setDiskStates(states: { localUpToDate: boolean; peerDiskless: boolean; peerUpToDate: boolean }): void {
    this.volume.setDiskStates(states);
    const diskless = states.peerDiskless;
    if (this.peerDiskless === diskless) return;
    this.peerDiskless = diskless;
    this.link?.receiver.setMarkOutOfSync(diskless ? this.local.bitmap : null);
  }

  // ---- packet routing -------------------------------------------------------------------------

  private dispatch(link: Link, packet: Packet): void {
    switch (packet.type) {
      case PacketType.Data:
        return link.receiver.handleData(packet);
      case PacketType.Barrier:
        return link.epochs.receiver.handleBarrier(packet);
      case PacketType.RecvAck:
      case PacketType.WriteAck:
      case PacketType.NegAck:
        return this.volume.handleAck(packet);
      case PacketType.BarrierAck:
        return link.epochs.sender.handleBarrierAck(packet);
      case PacketType.RsWriteAck:
      case PacketType.RsNegAck:
        return this.routeResyncAck(link, packet);
      case PacketType.RsDataRequest:
      case PacketType.CsumRsRequest:
        return link.responder.handleDataRequest(packet);
      case PacketType.RsIsInSync:
        if (link.resyncTarget !== null) link.resyncTarget.handleIsInSync(packet);
        return;
      case PacketType.RsDataReply:
        if (blockIdTag(packet.blockId) === BlockIdTag.read) return link.peerReads.handleReply(packet);
        if (link.resyncTarget === null) {
          this.deps.log.warn({ offsetBytes: packet.offsetBytes }, 'RsDataReply while not SyncTarget ignored');
          return;
        }
        return link.resyncTarget.handleReply(packet);
      case PacketType.Bitmap:
        return link.bitmapExchange.handleBitmap(packet);
      case PacketType.OutOfSync:
        setOutOfSync(this.local.bitmap, packet.offsetBytes, packet.lengthBytes);
        return;
      case PacketType.OvRequest:
        return link.verifyResponder.handleRequest(packet);
      case PacketType.OvReply:
        if (link.verifySource !== null) link.verifySource.handleReply(packet);
        return;
      case PacketType.OvResult:
        return link.verifyResponder.handleResult(packet);
      default:
        link.attached.onControlPacket?.(packet);
    }
  }

  private routeResyncAck(link: Link, packet: AckPacket): void {
    const tag = blockIdTag(packet.blockId);
    if (tag === BlockIdTag.app) return this.volume.handleAck(packet);
    if (tag === BlockIdTag.read && packet.type === PacketType.RsNegAck) return link.peerReads.handleNegAck(packet.blockId);
    // The SyncTarget sends RsNegAck for a block it failed to write; the SyncSource for one it failed to read.
    if (packet.type === PacketType.RsNegAck && link.resyncTarget !== null) return link.resyncTarget.handleNegAck(packet);
    return link.responder.handleWriteAck(packet);
  }

  private requireLink(): Link {
    assert(this.link !== null, 'a peer is attached');
    return this.link;
  }
}
