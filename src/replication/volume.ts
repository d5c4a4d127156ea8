/**
 * replication/volume — ReplicatedVolume, the Primary's view of the volume as
 * a BlockDevice: each write goes through the activity log, then to the local
 * disk and (while mirroring) as a Data packet to the peer, and completes as
 * protocol A, B or C says (drbd_req.c). Its transfer log lives here; the
 * epochs and Barriers are the connection's (replication/epochs SenderEpochs,
 * shared by every volume on it); a lost peer turns unacknowledged ranges out
 * of sync. It
 * receives decisions (start/stop mirroring, become SyncTarget) as method
 * calls and knows nothing of roles, UUIDs or sockets. Each completed local
 * write/flush and peer ack is timed (performance.now(), one call at each end)
 * into the counters' fixed-bucket histograms.
 *
 * Diskless (DRBD's diskless Primary): with the local disk detached, reads
 * come from the peer (replication/peer-read) and writes and flushes go to
 * the peer only; without a connection they fail with EIO. A read the local
 * disk fails is retried on an UpToDate peer, as DRBD 8.4 retries it. With a
 * diskless peer, writes are not sent, only marked out of sync.
 *
 * Congestion (on-congestion pull-ahead / disconnect, drbd_req.c:
 * maybe_pull_ahead): while the resource layer arms it (Connected), each write
 * first compares the bytes sent and not yet barrier-acknowledged with
 * congestion-fill and the activity-log extents of those writes with
 * congestion-extents. Past either, the volume stops sending Data: with
 * pull-ahead each write completes on the local disk, its bits are set and the
 * newly set range goes to the peer as P_OUT_OF_SYNC (DRBD: "Ahead"); with
 * disconnect writes are only marked until the link is closed. The resource
 * layer hears it through `CongestionHandler` and commits the state; once every
 * mirrored write is acknowledged it hears `aheadDrained` (DRBD:
 * got_BarrierAck → start_resync_timer) and starts the resync.
 */
import { performance } from 'node:perf_hooks';
import { type BlockDevice, type BlockDeviceCapabilities, type ReadFlags, type WriteFlags, checkRange } from '../disk/block-device.js';
import type { ActivityLogApi, DirtyBitmap } from '../meta/types.js';
import { BM_BLOCK_BYTES } from '../meta/types.js';
import type { PeerChannel } from '../peer/channel.js';
import { type AckPacket, DataFlag, PacketType } from '../peer/packets.js';
import type { SenderEpochMember, SenderEpochs } from './epochs.js';
import { assert, InvariantError } from '../util/assert.js';
import type { Logger } from '../util/log.js';
import { BlockIdAllocator, BlockIdTag } from './block-id.js';
import type { ReplicationCounters } from './counters.js';
import { type OnCongestion, type ReplicationOptions, type ReplicationProtocol, SECTOR_BYTES } from './options.js';
import { RangeLock, type RangeHold, Slots } from './range-lock.js';
import { TransferLog, type TransferLogEntry } from './transfer-log.js';
import { eioError } from '../disk/block-device.js';
import type { PeerReads } from './peer-read.js';

/** What a SyncTarget's volume asks of the resync before reading an out-of-sync block. */
export interface OnDemandSync {
  /** Resolves once every block of the range is in sync locally; rejects if it cannot be. */
  syncRange(offsetBytes: number, lengthBytes: number): Promise<void>;
}

/** What the volume tells the resource layer about congestion (it commits Ahead / Disconnecting). */
export interface CongestionHandler {
  /**
   * A threshold was reached: the volume stops sending Data if this returns
   * true (the resource layer committed Ahead / Disconnecting), else it goes on.
   */
  congested(policy: Exclude<OnCongestion, 'block'>): boolean;
  /** While pulled ahead: every mirrored write is barrier-acknowledged (DRBD's ap_in_flight == 0). */
  aheadDrained(): void;
}

/** Why the volume is not sending Data while mirroring: not at all, pulled ahead, or dropping the link. */
type NotSending = 'no' | 'ahead' | 'dropping';

/** Called when the local disk failed a request (daemon/ applies on-io-error). */
export type LocalIoErrorHandler = (operation: 'read' | 'write' | 'flush', offsetBytes: number, error: Error) => void;

/** The Data flag asking the peer for the ack each protocol completes a write with. */
const ACK_FLAG: Readonly<Record<ReplicationProtocol, number>> = { A: DataFlag.ackNone, B: DataFlag.ackReceive, C: DataFlag.ackWrite };

/** One application write waiting for its network part. */
class PendingWrite {
  settled = false;
  /** When the Data packet was queued, performance.now() ms (request timer, peer write latency). */
  sentAtMs = 0;
  ok = false;
  /** The channel the Data packet went to (its socket may still reference the payload after a failure). */
  channel: PeerChannel | null = null;
  /** Transfer-log epoch the write was sent in. */
  epoch = -1;
  /** The protocol in force when the write was sent: which ack completes it (B: RecvAck or WriteAck, C: WriteAck). */
  protocol: ReplicationProtocol = 'C';
  /** The peer answered it (a NegAck): it has read the payload, so our socket no longer holds it. */
  answered = false;
  resolve: (ok: boolean) => void = noop;
  readonly done: Promise<boolean>;
  constructor(
    readonly blockId: number,
    readonly offsetBytes: number,
    readonly lengthBytes: number,
  ) {
    this.done = new Promise<boolean>((resolve) => {
      this.resolve = resolve;
    });
  }
  settle(ok: boolean): void {
    if (this.settled) return;
    this.settled = true;
    this.ok = ok;
    this.resolve(ok);
  }
}

function noop(): void {}

/** Bounds on how often the request timer looks at the oldest request. */
const REQUEST_TIMER_PERIOD_MIN_MS = 100;
const REQUEST_TIMER_PERIOD_MAX_MS = 10_000;

/** Sets the bits of every 4 KiB block the byte range touches. */
export function setOutOfSync(bitmap: DirtyBitmap, offsetBytes: number, lengthBytes: number): number {
  if (lengthBytes === 0) return 0;
  const first = Math.floor(offsetBytes / BM_BLOCK_BYTES);
  const end = Math.ceil((offsetBytes + lengthBytes) / BM_BLOCK_BYTES);
  return bitmap.setRange(first, Math.min(end, bitmap.bitCount));
}

/** Clears the bits of the 4 KiB blocks the byte range covers completely. */
export function setInSync(bitmap: DirtyBitmap, offsetBytes: number, lengthBytes: number): number {
  const first = Math.ceil(offsetBytes / BM_BLOCK_BYTES);
  const end = Math.floor((offsetBytes + lengthBytes) / BM_BLOCK_BYTES);
  if (end <= first) return 0;
  return bitmap.clearRange(first, end);
}

export interface ReplicatedVolumeDeps {
  /** The local backing device's data area. */
  readonly disk: BlockDevice;
  readonly bitmap: DirtyBitmap;
  readonly activityLog: ActivityLogApi;
  readonly options: ReplicationOptions;
  readonly counters: ReplicationCounters;
  readonly log: Logger;
  /** Shared with the receiver and resync so overlapping requests reach the disk in one order. */
  readonly rangeLock: RangeLock;
  /** The volume this is (DRBD's vnr): its Data and OutOfSync packets carry it (Barrier is connection-wide). */
  readonly vnr: number;
  readonly onLocalIoError?: LocalIoErrorHandler;
}

export class ReplicatedVolume implements BlockDevice, SenderEpochMember {
  readonly capabilities: BlockDeviceCapabilities;
  private readonly disk: BlockDevice;
  private readonly bitmap: DirtyBitmap;
  private readonly al: ActivityLogApi;
  private readonly options: ReplicationOptions;
  private readonly counters: ReplicationCounters;
  private readonly log: Logger;
  private readonly lock: RangeLock;
  private readonly vnr: number;
  private readonly onLocalIoError: LocalIoErrorHandler;
  private readonly slots: Slots;
  private readonly ids = new BlockIdAllocator(BlockIdTag.app);

  private peer: PeerChannel | null = null;
  /**
   * A mirrored write keeps its activity-log extents referenced until the peer
   * barrier-acknowledged it or the link is lost and its range is out of sync
   * (drbd_req.c: drbd_al_complete_io from drbd_req_destroy, which waits for
   * RQ_NET_DONE): an extent leaves the log, and a Primary's crash stops
   * resyncing it, only once the peer is known to hold the data. Without
   * this, protocol A released it at the local completion.
   */
  private readonly releaseTlEntry = (entry: TransferLogEntry): void => {
    if (entry.alGeneration === this.alGeneration) this.al.endWrite(entry.offsetBytes, entry.lengthBytes);
  };
  /** Bumped when the disk detaches or attaches: references in an old activity log are gone with it. */
  private alGeneration = 0;
  private tl = new TransferLog(this.releaseTlEntry);
  /** The connection's epochs while mirroring (shared with the other volumes on it), else null. */
  private epochs: SenderEpochs | null = null;
  private readonly pending = new Map<number, PendingWrite>();
  private congested = false;
  /** Writers waiting for room in the transfer log. */
  private readonly tlWaiters: Array<() => void> = [];
  /** Flushes waiting for an epoch's BarrierAck (sinceMs, performance.now(): request timer, peer flush latency). */
  private readonly flushWaiters: Array<{ epoch: number; sinceMs: number; resolve: () => void }> = [];
  /** Checks the oldest unanswered request while mirroring (DRBD's request timer); null when off. */
  private requestTimer: NodeJS.Timeout | null = null;
  private ackedThroughEpoch = 0;
  private onDemandSync: OnDemandSync | null = null;
  private closed = false;
  /** No local disk: writes and flushes go to the peer only. */
  private diskless = false;
  /** Reads go to the peer (diskless, or re-attached and not yet known current). */
  private readsFromPeer = false;
  private peerReader: PeerReads | null = null;
  /** The peer has no disk: writes are not sent, only marked out of sync. */
  private peerDiskless = false;
  /** The peer's disk is UpToDate: a failed local read may be retried there. */
  private peerUpToDate = false;
  /** The local disk is UpToDate; if not (on-io-error pass_on), its out-of-sync blocks are read from an UpToDate peer. */
  private localUpToDate = true;
  /** The resource layer allows pulling ahead now (Connected); see the header. */
  private congestionArmed = false;
  private notSending: NotSending = 'no';
  /** aheadDrained was reported for this Ahead period. */
  private aheadDrainReported = false;
  private congestionHandler: CongestionHandler | null = null;

  constructor(deps: ReplicatedVolumeDeps) {
    this.disk = deps.disk;
    this.bitmap = deps.bitmap;
    this.al = deps.activityLog;
    this.options = deps.options;
    this.counters = deps.counters;
    this.log = deps.log;
    this.lock = deps.rangeLock;
    this.vnr = deps.vnr;
    this.onLocalIoError = deps.onLocalIoError ?? noop;
    this.slots = new Slots(deps.options.maxBuffers);
    this.capabilities = {
      canFlush: true,
      canFua: true,
      canTrim: false,
      maxRequestBytes: Math.min(deps.disk.capabilities.maxRequestBytes, 1024 * 1024),
    };
    assert(this.bitmap.bitCount * BM_BLOCK_BYTES >= this.sizeBytes, 'bitmap covers the whole data area');
  }

  /** max-buffers changed online: the bound on application requests in flight follows. */
  setMaxBuffers(maxBuffers: number): void {
    this.slots.setCapacity(maxBuffers);
    for (const wake of this.tlWaiters.splice(0)) wake();
  }

  /** The disk's current size: the device size both nodes agreed on; requests past it are refused. */
  get sizeBytes(): number {
    return this.disk.sizeBytes;
  }

  // ---- decisions from the resource layer ------------------------------------------------------

  /** Start mirroring application writes to `peer` (Connected, SyncSource, SyncTarget...), in the connection's `epochs`. */
  startMirroring(peer: PeerChannel, epochs: SenderEpochs): void {
    assert(this.peer === null, 'startMirroring while already mirroring');
    assert(this.tl.size === 0, 'transfer log empty when mirroring starts');
    this.peer = peer;
    this.congested = false;
    this.notSending = 'no';
    this.aheadDrainReported = false;
    this.tl = new TransferLog(this.releaseTlEntry);
    this.epochs = epochs;
    epochs.join(this);
    this.ackedThroughEpoch = epochs.ackedThroughEpoch;
    this.counters.ep = 0;
    this.armRequestTimer();
  }

  /** (Re)starts DRBD's request timer for the current ko-count × timeout (none when 0 or not mirroring). */
  private armRequestTimer(): void {
    if (this.requestTimer !== null) clearInterval(this.requestTimer);
    this.requestTimer = null;
    const timeoutMs = this.options.requestTimeoutMs;
    if (this.peer === null || timeoutMs <= 0) return;
    const periodMs = Math.min(REQUEST_TIMER_PERIOD_MAX_MS, Math.max(REQUEST_TIMER_PERIOD_MIN_MS, Math.floor(timeoutMs / 4)));
    this.requestTimer = setInterval(() => this.checkRequestTimeout(), periodMs);
    this.requestTimer.unref();
  }

  /** ko-count or timeout changed online (`adjust`): the request timer follows. */
  requestTimeoutChanged(): void {
    this.armRequestTimer();
  }

  /**
   * DRBD's request timer: the peer reads our packets (pings answered, send
   * queue moving) but leaves a write or a Barrier unanswered for
   * ko-count × timeout — a stuck peer disk. Expel it: the link closes with
   * Timeout and the writes complete locally, marked out of sync.
   */
  private checkRequestTimeout(): void {
    const peer = this.peer;
    if (peer === null) return;
    let oldestMs = Number.POSITIVE_INFINITY;
    for (const write of this.pending.values()) {
      oldestMs = write.sentAtMs; // Map iterates in insertion order: the first is the oldest
      break;
    }
    const waiter = this.flushWaiters[0];
    if (waiter !== undefined && waiter.sinceMs < oldestMs) oldestMs = waiter.sinceMs;
    const waitedMs = performance.now() - oldestMs;
    if (waitedMs < this.options.requestTimeoutMs) return;
    this.log.error({ waitedMs, requestTimeoutMs: this.options.requestTimeoutMs }, 'Remote failed to finish a request within ko-count * timeout');
    peer.close('Timeout');
  }

  /**
   * Stop mirroring (link lost or disconnect): every request the peer has not
   * barrier-acknowledged goes out of sync, waiting writes and flushes finish
   * on the local disk alone.
   */
  stopMirroring(): void {
    if (this.requestTimer !== null) clearInterval(this.requestTimer);
    this.requestTimer = null;
    if (this.peer === null) return;
    this.peer = null;
    this.epochs?.leave(this);
    this.epochs = null;
    this.notSending = 'no';
    let bitsSet = 0;
    for (const entry of this.tl.clear()) {
      bitsSet += setOutOfSync(this.bitmap, entry.offsetBytes, entry.lengthBytes);
      this.releaseTlEntry(entry);
    }
    for (const write of this.pending.values()) {
      bitsSet += setOutOfSync(this.bitmap, write.offsetBytes, write.lengthBytes);
      write.settle(false);
    }
    this.counters.pe -= this.pending.size;
    this.pending.clear();
    this.counters.ep = 0;
    for (const waiter of this.flushWaiters.splice(0)) waiter.resolve();
    for (const wake of this.tlWaiters.splice(0)) wake();
    this.log.info({ bitsSet }, 'mirroring stopped; unacknowledged requests marked out of sync');
  }

  get isMirroring(): boolean {
    return this.peer !== null;
  }

  /** The local disk went away (true) or is back (false); see the header. */
  setDiskless(diskless: boolean): void {
    if (diskless && !this.diskless) this.writesWhileDiskless = 0;
    if (diskless !== this.diskless) this.alGeneration++;
    this.diskless = diskless;
    if (diskless) this.readsFromPeer = true;
  }

  setReadsFromPeer(fromPeer: boolean): void {
    this.readsFromPeer = fromPeer || this.diskless;
  }

  get isDiskless(): boolean {
    return this.diskless;
  }

  /** Writes completed through the peer alone since the disk went away: the old disk misses them. */
  writesWhileDiskless = 0;

  /** The link's reader of the peer's disk, or null without a link. */
  setPeerReader(reader: PeerReads | null): void {
    this.peerReader = reader;
  }

  /** What the resource layer knows of both disks. */
  setDiskStates(states: { localUpToDate: boolean; peerDiskless: boolean; peerUpToDate: boolean }): void {
    this.localUpToDate = states.localUpToDate;
    this.peerDiskless = states.peerDiskless;
    this.peerUpToDate = states.peerUpToDate;
  }

  /** Who hears about congestion (the resource layer); null = nobody, and nothing is armed. */
  setCongestionHandler(handler: CongestionHandler | null): void {
    this.congestionHandler = handler;
  }

  /** Pulling ahead is allowed now (DRBD checks on each write while Connected); see the header. */
  setCongestionArmed(armed: boolean): void {
    this.congestionArmed = armed;
  }

  /** The resource layer left Ahead (→ SyncSource): mirror writes again. A disconnect in progress stays. */
  leaveAhead(): void {
    if (this.notSending !== 'ahead') return;
    this.notSending = 'no';
    this.aheadDrainReported = false;
  }

  /** Pulled ahead of the peer: writes are marked out of sync, not sent. */
  get isAhead(): boolean {
    return this.notSending === 'ahead';
  }

  /** While this node is SyncTarget: out-of-sync blocks are synced before they are read. */
  setOnDemandSync(sync: OnDemandSync | null): void {
    this.onDemandSync = sync;
  }

  // ---- packets from the peer (routed by the engine) -------------------------------------------

  handleAck(packet: AckPacket): void {
    const write = this.pending.get(packet.blockId);
    if (write === undefined) {
      // Protocol A (and B after RecvAck) learns of a failed peer write only by NegAck.
      if (packet.type === PacketType.NegAck || packet.type === PacketType.RsNegAck) {
        this.log.warn({ offsetBytes: packet.offsetBytes, lengthBytes: packet.lengthBytes }, 'peer failed a write (NegAck); range out of sync');
        setOutOfSync(this.bitmap, packet.offsetBytes, packet.lengthBytes);
      } else if (this.peer !== null) {
        this.log.warn({ blockId: packet.blockId, type: packet.type }, 'ack for unknown request ignored');
      }
      return;
    }
    assert(write.offsetBytes === packet.offsetBytes, `ack ${packet.blockId} names the request's offset`);
    switch (packet.type) {
      case PacketType.RecvAck:
        if (write.protocol !== 'B') return;
        break;
      case PacketType.WriteAck:
      case PacketType.RsWriteAck:
        // A WriteAck implies the peer received the write: it completes a protocol B write too.
        if (write.protocol === 'A') return;
        break;
      case PacketType.NegAck:
      case PacketType.RsNegAck:
        this.log.warn({ offsetBytes: packet.offsetBytes, lengthBytes: packet.lengthBytes }, 'peer failed a write (NegAck); range out of sync');
        setOutOfSync(this.bitmap, write.offsetBytes, write.lengthBytes);
        this.pending.delete(packet.blockId);
        this.counters.pe--;
        write.answered = true;
        write.settle(false);
        return;
      case PacketType.RsIsInSync:
        // The engine routes it to the resync (a csums-alg answer), never to an application write.
        throw new InvariantError(`RsIsInSync ${packet.blockId} reached the write path`);
    }
    this.pending.delete(packet.blockId);
    this.counters.pe--;
    this.counters.peerWriteLatency.record(performance.now() - write.sentAtMs);
    write.settle(true);
  }

  /** The connection closed `epoch` (a Barrier went out, maybe for another volume's flush). */
  epochClosed(epoch: number): void {
    this.tl.epochClosed(epoch);
    this.counters.ep = this.tl.epochsInFlight;
  }

  /** The peer acknowledged `epoch` on every volume: this volume's writes of it are on its stable storage. */
  epochAcked(epoch: number): void {
    if (this.peer === null) return;
    this.tl.barrierAcked(epoch);
    this.ackedThroughEpoch = epoch;
    if (this.notSending === 'ahead') this.reportAheadDrained();
    this.counters.ep = this.tl.epochsInFlight;
    const nowMs = this.flushWaiters.length > 0 ? performance.now() : 0;
    for (let i = 0; i < this.flushWaiters.length; ) {
      const waiter = this.flushWaiters[i]!;
      if (waiter.epoch <= epoch) {
        this.flushWaiters.splice(i, 1);
        this.counters.peerFlushLatency.record(nowMs - waiter.sinceMs);
        waiter.resolve();
      } else i++;
    }
    for (const wake of this.tlWaiters.splice(0)) wake();
  }

  // ---- BlockDevice ------------------------------------------------------------------------------

  async read(buffer: Buffer, offsetBytes: number, flags?: ReadFlags): Promise<void> {
    checkRange(this, offsetBytes, buffer.length);
    this.counters.readsInFlight++;
    try {
      if (this.readsFromPeer) {
        const reader = this.peerReader;
        if (reader === null) throw eioError(`read at ${offsetBytes}: diskless and not connected to a peer with data`);
        await reader.read(buffer, offsetBytes);
        return;
      }
      const sync = this.onDemandSync;
      if (sync !== null && this.rangeOutOfSync(offsetBytes, buffer.length)) {
        await sync.syncRange(offsetBytes, buffer.length);
      } else if (sync === null && !this.localUpToDate && this.peerUpToDate && this.peerReader !== null && this.rangeOutOfSync(offsetBytes, buffer.length)) {
        // drbd_may_do_local_read: a block out of sync on a disk that is not UpToDate is read from the peer.
        await this.peerReader.read(buffer, offsetBytes);
        return;
      }
      this.counters.lo++;
      try {
        await this.disk.read(buffer, offsetBytes, flags);
      } catch (err) {
        this.counters.lo--;
        // Past the device's end (it shrank meanwhile) is a refused request, not a failing disk.
        if (err instanceof RangeError) throw err;
        this.onLocalIoError('read', offsetBytes, err as Error);
        // drbd_req.c: a failed READ is retried on the peer if it has good data.
        const reader = this.peerReader;
        if (reader === null || !this.peerUpToDate) throw err;
        await reader.read(buffer, offsetBytes);
        return;
      }
      this.counters.lo--;
      this.counters.diskReadBytes += buffer.length;
    } finally {
      this.counters.readsInFlight--;
    }
  }

  async write(buffer: Buffer, offsetBytes: number, flags?: WriteFlags): Promise<void> {
    checkRange(this, offsetBytes, buffer.length);
    assert(!this.closed, 'write after close');
    assert(offsetBytes % SECTOR_BYTES === 0 && buffer.length % SECTOR_BYTES === 0, 'write is sector aligned');
    if (buffer.length === 0) return;
    const slot = this.slots.acquire();
    if (slot !== true) await slot;
    this.counters.ap++;
    try {
      const alReady = this.al.beginWrite(offsetBytes, buffer.length);
      if (alReady) await alReady;
      try {
        await this.writeInActivityLog(buffer, offsetBytes, flags?.fua === true);
      } finally {
        this.al.endWrite(offsetBytes, buffer.length);
      }
    } finally {
      this.counters.ap--;
      this.slots.release();
    }
  }

  private async writeInActivityLog(buffer: Buffer, offsetBytes: number, fua: boolean): Promise<void> {
    const endBytes = offsetBytes + buffer.length;
    const granted = this.lock.acquire(offsetBytes, endBytes);
    const hold: RangeHold = granted instanceof Promise ? await granted : granted;
    let network: PendingWrite | null = null;
    let localError: Error | null = null;
    try {
      // The device may have shrunk while this write waited for its range (engine withRangeExcluded): refused, nothing sent.
      checkRange(this, offsetBytes, buffer.length);
      if (this.peer !== null) network = await this.sendWrite(buffer, offsetBytes, fua);
      if (network === null) setOutOfSync(this.bitmap, offsetBytes, buffer.length);
      if (this.diskless) {
        localError = eioError(`write at ${offsetBytes}: the node is diskless`);
      } else {
        const startedMs = performance.now();
        this.counters.lo++;
        try {
          await this.disk.write(buffer, offsetBytes, { fua });
          this.counters.diskWriteLatency.record(performance.now() - startedMs);
          this.counters.diskWrittenBytes += buffer.length;
        } catch (err) {
          localError = err as Error;
          // Our copy of the range is stale now, whoever has the data.
          setOutOfSync(this.bitmap, offsetBytes, buffer.length);
          this.onLocalIoError('write', offsetBytes, localError);
        } finally {
          this.counters.lo--;
        }
      }
    } finally {
      this.lock.release(hold);
    }
    const networkOk = network === null ? false : network.settled ? network.ok : await network.done;
    if (network !== null && !networkOk && !network.answered && network.channel !== null && network.channel.released !== undefined) {
      // The link went away with our Data packet possibly still queued (a graceful
      // disconnect flushes its socket): the caller may reuse `buffer` once we
      // complete, so wait until the socket no longer references it. A NegAck
      // came after the peer read the payload: nothing to wait for (waiting for
      // a link that stays up hung the write forever).
      await network.channel.released();
    }
    // DRBD 8.4 (drbd_req_complete): before a write completes upwards, close the epoch it was
    // sent in if that is still the open one, so any write issued after this completion
    // lands in a later epoch, behind a Barrier. Under a stream, one Barrier (one peer flush)
    // per queue depth of writes. A lone synchronous write's epoch was closed when it was
    // sent (sendWrite): the peer's flush is under way before the caller's fsync arrives.
    if (network !== null && network.channel === this.peer && this.epochs !== null && network.epoch === this.epochs.epoch) this.closeEpoch();
    // The peer has the data: the write succeeded (drbd_req.c: local or remote OK).
    if (localError !== null && !networkOk) throw localError;
    if (this.diskless) this.writesWhileDiskless++;
  }

  /** Queues the Data packet; returns the network part (already settled for protocol A), or null if the peer went away. */
  private async sendWrite(buffer: Buffer, offsetBytes: number, fua: boolean): Promise<PendingWrite | null> {
    if (this.peerDiskless) return null;
    if (this.notSending === 'no' && this.congestionArmed) this.maybePullAhead();
    if (this.notSending !== 'no') {
      // drbd_req.c: a write in Ahead is not mirrored; the peer hears of the range only if its bits were clean.
      const newlySet = setOutOfSync(this.bitmap, offsetBytes, buffer.length);
      if (newlySet > 0 && this.notSending === 'ahead') this.sendOutOfSync(offsetBytes, buffer.length);
      return null;
    }
    while (this.peer !== null && (this.congested || this.tl.size >= this.options.maxBuffers)) {
      if (this.congested) {
        await this.peer.drained();
        this.congested = false;
      } else {
        this.closeEpoch();
        await new Promise<void>((resolve) => this.tlWaiters.push(resolve));
      }
    }
    // A second reference on extents this write already holds, kept by its transfer-log entry:
    // synchronous unless the disk was re-attached since the write began (a fresh activity log).
    let alGeneration = -1;
    if (!this.diskless) {
      alGeneration = this.alGeneration;
      const held = this.al.beginWrite(offsetBytes, buffer.length);
      if (held) await held;
    }
    const peer = this.peer;
    const epochs = this.epochs;
    if (peer === null || epochs === null) {
      if (alGeneration === this.alGeneration) this.al.endWrite(offsetBytes, buffer.length);
      return null;
    }
    const blockId = this.ids.next();
    const write = new PendingWrite(blockId, offsetBytes, buffer.length);
    write.channel = peer;
    write.sentAtMs = performance.now();
    const entry = this.tl.add(offsetBytes, buffer.length, epochs.noteWrite(), alGeneration);
    write.epoch = entry.epoch;
    const protocol = this.options.protocol;
    write.protocol = protocol;
    const protocolA = protocol === 'A';
    // Protocol A completes before the bytes leave: the caller may reuse its buffer, so send a copy.
    const payload = protocolA ? Buffer.from(buffer) : buffer;
    const accepted = peer.send({
      type: PacketType.Data,
      volume: this.vnr,
      offsetBytes,
      blockId,
      epoch: entry.epoch,
      flags: (fua ? DataFlag.fua : 0) | ACK_FLAG[protocol],
      payload,
    });
    if (!accepted) this.congested = true;
    this.counters.sentBytes += buffer.length;
    this.counters.ep = this.tl.epochsInFlight;
    if (protocolA) {
      write.settle(true);
    } else {
      this.pending.set(blockId, write);
      this.counters.pe++;
    }
    // A write with no other write awaiting its ack is a lone synchronous write (QD1, an fsync
    // usually follows): its Barrier leaves with the Data in one socket write, so the peer's
    // flush starts right behind its local write, and the ack's arrival here no longer costs
    // a Barrier send ahead of the completion. Under a stream writes overlap, this is false, and
    // the epoch closes at the first completion (writeInActivityLog) or after maxEpochSize writes.
    // (Protocol A tracks no pending acks: its writes complete at once and close the epoch there.)
    if (epochs.writesInOpenEpoch >= this.options.maxEpochSize || (this.pending.size === 1 && epochs.writesInOpenEpoch === 1)) this.closeEpoch();
    return write;
  }

  /**
   * drbd_req.c maybe_pull_ahead: past congestion-fill (bytes in flight) or
   * congestion-extents (AL extents of unacknowledged writes), stop sending
   * Data. Only with good local data (DRBD: get_ldev_if_state(D_UP_TO_DATE))
   * and protocol A (the only protocol DRBD allows a non-block policy with).
   */
  private maybePullAhead(): void {
    const policy = this.options.onCongestion;
    const handler = this.congestionHandler;
    if (policy === 'block' || handler === null || this.options.protocol !== 'A') return;
    if (this.diskless || !this.localUpToDate) return;
    let congested = false;
    const fillBytes = this.options.congestionFillBytes;
    const inFlightBytes = this.tl.bytesInFlight;
    if (fillBytes > 0 && inFlightBytes >= fillBytes) {
      this.log.info({ inFlightBytes, congestionFillBytes: fillBytes }, 'Congestion-fill threshold reached');
      congested = true;
    }
    const extents = this.tl.activeExtents;
    if (extents >= this.options.congestionExtents) {
      this.log.info({ activeExtents: extents, congestionExtents: this.options.congestionExtents }, 'Congestion-extents threshold reached');
      congested = true;
    }
    if (!congested) return;
    // start_new_tl_epoch: the mirrored writes so far end in an epoch of their own, whose BarrierAck says they arrived.
    this.closeEpoch();
    this.congestionArmed = false;
    this.notSending = policy === 'pull-ahead' ? 'ahead' : 'dropping';
    this.aheadDrainReported = false;
    if (!handler.congested(policy)) {
      this.notSending = 'no';
      return;
    }
    if (this.notSending === 'ahead') this.reportAheadDrained();
  }

  /**
   * P_OUT_OF_SYNC for a newly marked range. The peer must hear of every one
   * (its bitmap drives the resync after Ahead), so none is ever dropped; but
   * the send queue is bounded: once it is above its high-water mark the link
   * is closed instead, and the handshake after the reconnect resyncs from this
   * node's bitmap (the lost peer starts a new data generation).
   */
  private sendOutOfSync(offsetBytes: number, lengthBytes: number): void {
    const peer = this.peer;
    if (peer === null) return;
    if (peer.send({ type: PacketType.OutOfSync, volume: this.vnr, offsetBytes, lengthBytes })) return;
    this.log.error({ offsetBytes, lengthBytes }, 'P_OUT_OF_SYNC backlog above the send high-water mark while Ahead; dropping the connection (the resync after the reconnect covers every marked block)');
    peer.close('NetworkFailure');
  }

  /** Ahead, and the peer acknowledged every mirrored write: tell the resource layer once. */
  private reportAheadDrained(): void {
    if (this.aheadDrainReported || this.tl.size > 0) return;
    this.aheadDrainReported = true;
    this.congestionHandler?.aheadDrained();
  }

  /** Closes the connection's open epoch (if any volume wrote in it): one Barrier; returns its number or -1. */
  private closeEpoch(): number {
    if (this.peer === null || this.epochs === null) return -1;
    return this.epochs.close();
  }

  async flush(): Promise<void> {
    this.counters.flushesInFlight++;
    let network: Promise<void> | null = null;
    // The Barrier leaves first: the local flush may run on this thread (disk/file-disk) and
    // the peer's flush should overlap it.
    const startedMs = performance.now();
    // Ahead (or dropping the link) nothing new is sent, so the flush is the local disk's alone (DRBD: no remote part).
    if (this.peer !== null && !this.peerDiskless && this.notSending === 'no') {
      this.closeEpoch();
      const epoch = this.tl.newestClosedEpoch;
      if (epoch >= 0 && epoch > this.ackedThroughEpoch) {
        network = new Promise<void>((resolve) => this.flushWaiters.push({ epoch, sinceMs: startedMs, resolve }));
        this.peer.push?.();
      }
    }
    this.counters.lo++;
    try {
      if (this.diskless) {
        this.counters.lo--;
        // Nothing sent since the last acknowledged Barrier: the peer has it all already.
        if (network === null && (this.peer === null || this.peerDiskless)) throw eioError('flush: diskless and not connected to a peer with data');
      } else {
        try {
          await this.disk.flush();
          this.counters.diskFlushLatency.record(performance.now() - startedMs);
        } catch (err) {
          this.onLocalIoError('flush', 0, err as Error);
          // No Barrier pending: the peer has every write we sent on stable storage already.
          if (network === null && (this.peer === null || this.peerDiskless)) throw err;
        } finally {
          this.counters.lo--;
        }
      }
      if (network !== null) await network;
    } finally {
      this.counters.flushesInFlight--;
    }
  }

  /** True while the peer's send queue is full (drbd-reactor's `congested`). */
  get isCongested(): boolean {
    return this.congested;
  }

  /** Bytes of mirrored writes sent and not yet acknowledged (DRBD's ap_in_flight); walks at most max-buffers entries. */
  peerInFlightBytes(): number {
    let bytes = 0;
    for (const write of this.pending.values()) bytes += write.lengthBytes;
    return bytes;
  }

  /** Bytes sent and not yet barrier-acknowledged: what congestion-fill is compared with. */
  get transferLogBytes(): number {
    return this.tl.bytesInFlight;
  }

  trim(): Promise<void> {
    return Promise.reject(new Error('ReplicatedVolume does not support trim'));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.requestTimer !== null) clearInterval(this.requestTimer);
    this.requestTimer = null;
  }

  private rangeOutOfSync(offsetBytes: number, lengthBytes: number): boolean {
    const first = Math.floor(offsetBytes / BM_BLOCK_BYTES);
    const end = Math.ceil((offsetBytes + lengthBytes) / BM_BLOCK_BYTES);
    const next = this.bitmap.nextSet(first);
    return next >= 0 && next < end;
  }
}
