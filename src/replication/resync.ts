/**
 * replication/resync — moving out-of-sync blocks from the SyncSource to the
 * SyncTarget. ResyncTarget walks the bitmap in runs of contiguous set bits
 * (bounded size and in-flight count), paced by replication/resync-pacer
 * (resync-rate or DRBD's dynamic controller, and c-min-rate); it writes each
 * RsDataReply, clears the bits and acknowledges with RsWriteAck; it also
 * syncs a block on demand before an application read of it. ResyncResponder
 * (any node with good data) answers RsDataRequest from its disk and clears
 * its bits on RsWriteAck. Both hold the shared range lock across each block
 * so an application write that overlaps a block being resynced wins.
 * With csums-alg (checksum-based resync) the target reads its own copy of
 * each run and sends its digest (CsumRsRequest); the source answers with the
 * data only when its own digest differs, else RsIsInSync.
 * Progress is plain numbers (drbd_proc.c: drbd_syncer_progress). Who syncs from whom is decided
 * elsewhere.
 */
import { type BlockDevice, BYPASS_CACHE } from '../disk/block-device.js';
import type { DirtyBitmap } from '../meta/types.js';
import { BM_BLOCK_BYTES } from '../meta/types.js';
import type { PeerChannel } from '../peer/channel.js';
import { releaseReceivedPayload } from '../peer/codec.js';
import { directPool } from '../disk/direct-buffers.js';
import { type AckPacket, type CsumRsRequest, PacketType, type RsDataReply, type RsDataRequest } from '../peer/packets.js';
import { runAside, trackUntilFulfilled } from '../util/aside.js';
import { assert } from '../util/assert.js';
import type { Logger } from '../util/log.js';
import { BlockIdAllocator, BlockIdTag, blockIdTag } from './block-id.js';
import type { ReplicationCounters } from './counters.js';
import { type BlockDigest, blockDigest } from '../util/digest.js';
import { type ReplicationOptions, SECTOR_BYTES } from './options.js';
import { type RangeHold, type RangeLock, Slots } from './range-lock.js';
import { AnswerThrottle, ResyncPacer } from './resync-pacer.js';
import type { RsControllerSettings } from './rs-controller.js';
import { setInSync } from './volume.js';

/** Full passes over the bitmap before a resync gives up on blocks that keep failing. */
const RESYNC_PASSES_MAX = 4;
/** Progress samples kept for the "current" speed: one per second ≈ DRBD's ~18 s window. */
const SPEED_SAMPLES_MAX = 18;
const SPEED_SAMPLE_INTERVAL_MS = 1000;
/** No progress for this long is shown as "(stalled)". */
const STALLED_AFTER_MS = 180_000;
/**
 * Longest run one checksum request covers: one digest decides the whole run,
 * so a single changed 4 KiB block costs at most this much copying.
 */
export const CSUMS_RUN_BYTES_MAX = 64 * 1024;

export interface ResyncProgress {
  readonly totalBits: number;
  readonly leftBits: number;
  /** Per-mille done exactly as /proc/drbd computes it. */
  readonly perMille: number;
  /** KiB/s over the last ~18 s. */
  readonly currentKiBps: number;
  /** KiB/s since start, paused time excluded. */
  readonly averageKiBps: number;
  /** Seconds to finish at the current speed, or null when unknown. */
  readonly etaSeconds: number | null;
  /**
   * The `want:` of /proc/drbd (DRBD's c_sync_rate), KiB/s: the fixed limit
   * (0 = unlimited), or with the dynamic controller the rate its last step asked for.
   */
  readonly wantKiBps: number;
  readonly paused: boolean;
  readonly stalled: boolean;
  readonly elapsedMs: number;
  readonly pausedMs: number;
}

export interface ResyncResult {
  /** True when every out-of-sync block was synced. */
  readonly ok: boolean;
  readonly syncedBlocks: number;
  readonly failedBlocks: number;
  /** Payload bytes that crossed the link for this resync. */
  readonly transferredBytes: number;
  readonly elapsedMs: number;
  /** Blocks the source found equal by checksum (csums-alg) and did not send. */
  readonly sameCsumBlocks: number;
  /** Times the resync stepped back for application I/O (c-min-rate: drbd_rs_should_slow_down). */
  readonly throttledSteps: number;
}

/** /proc/drbd's per-mille: computed on values >>10 (>>16 above 2^32 bits). */
export function syncPerMille(totalBits: number, leftBits: number): number {
  const shift = totalBits > 2 ** 32 ? 16 : 10;
  const divisor = 2 ** shift;
  const left = Math.floor(leftBits / divisor);
  const total = Math.floor(totalBits / divisor);
  return 1000 - Math.floor((left * 1000) / (total + 1));
}

/** Progress bookkeeping shared by resync and verify. */
export class ProgressMeter {
  private readonly startMs: number;
  private pausedSinceMs = -1;
  private pausedTotalMs = 0;
  private readonly samples: Array<{ atMs: number; doneBits: number }> = [];
  private lastProgressMs: number;
  doneBits = 0;

  constructor(
    readonly totalBits: number,
    /** The `want:` rate, KiB/s; the resync's pacing updates it (fixed rate changed online, controller step). */
    public wantKiBps: number,
    private readonly now: () => number,
  ) {
    this.startMs = now();
    this.lastProgressMs = this.startMs;
    this.samples.push({ atMs: this.startMs, doneBits: 0 });
  }

  advance(bits: number): void {
    this.doneBits += bits;
    const at = this.now();
    this.lastProgressMs = at;
    const newest = this.samples[this.samples.length - 1]!;
    if (at - newest.atMs >= SPEED_SAMPLE_INTERVAL_MS) {
      this.samples.push({ atMs: at, doneBits: this.doneBits });
      if (this.samples.length > SPEED_SAMPLES_MAX) this.samples.shift();
    }
  }

  pause(): void {
    if (this.pausedSinceMs < 0) this.pausedSinceMs = this.now();
  }

  resume(): void {
    if (this.pausedSinceMs >= 0) {
      this.pausedTotalMs += this.now() - this.pausedSinceMs;
      this.pausedSinceMs = -1;
    }
  }

  get paused(): boolean {
    return this.pausedSinceMs >= 0;
  }

  snapshot(leftBits: number): ResyncProgress {
    const at = this.now();
    const pausedMs = this.pausedTotalMs + (this.pausedSinceMs >= 0 ? at - this.pausedSinceMs : 0);
    const elapsedMs = at - this.startMs;
    const activeSeconds = Math.max(0.001, (elapsedMs - pausedMs) / 1000);
    const averageKiBps = Math.floor((this.doneBits * (BM_BLOCK_BYTES / 1024)) / activeSeconds);
    const oldest = this.samples[0]!;
    const windowSeconds = Math.max(0.001, (at - oldest.atMs) / 1000);
    const currentKiBps = Math.floor(((this.doneBits - oldest.doneBits) * (BM_BLOCK_BYTES / 1024)) / windowSeconds);
    const leftKiB = leftBits * (BM_BLOCK_BYTES / 1024);
    return {
      totalBits: this.totalBits,
      leftBits,
      perMille: syncPerMille(this.totalBits, leftBits),
      currentKiBps,
      averageKiBps,
      etaSeconds: currentKiBps > 0 ? Math.ceil(leftKiB / currentKiBps) : leftBits === 0 ? 0 : null,
      wantKiBps: this.wantKiBps,
      paused: this.paused,
      stalled: !this.paused && at - this.lastProgressMs > STALLED_AFTER_MS,
      elapsedMs,
      pausedMs,
    };
  }
}

// Resync transfers bypass the page cache (BYPASS_CACHE: O_DIRECT where the disk
// can), as DRBD's do: a full sync must not evict the applications' cache or
// fault in a fresh page per 4 KiB on both nodes. The SyncSource reads into
// aligned memory from disk/direct-buffers' pool, which the reply sends as is.

export interface ResyncDeps {
  readonly disk: BlockDevice;
  readonly bitmap: DirtyBitmap;
  readonly options: ReplicationOptions;
  readonly counters: ReplicationCounters;
  readonly log: Logger;
  readonly rangeLock: RangeLock;
  readonly peer: PeerChannel;
  /** The volume this data path is (DRBD's vnr): every per-volume packet it sends carries it. */
  readonly vnr: number;
  readonly now?: () => number;
  /** csums-alg digest when this resync is checksum-based (use_checksum_based_resync), else absent. */
  readonly csums?: BlockDigest;
}

interface ResyncRequest {
  readonly blockId: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly hold: RangeHold;
  /** Resolves true when written locally, false when failed. */
  settle: (ok: boolean) => void;
}

/** The SyncTarget's side: pulls out-of-sync blocks from the peer. */
export class ResyncTarget {
  private readonly deps: ResyncDeps;
  private readonly now: () => number;
  private readonly ids = new BlockIdAllocator(BlockIdTag.resync);
  private readonly inflight: Slots;
  private readonly requests = new Map<number, ResyncRequest>();
  private readonly pacer: ResyncPacer;
  private meter: ProgressMeter | null = null;
  private resumeWaiter: (() => void) | null = null;
  private pausedFlag = false;
  private aborted: string | null = null;
  private syncedBlocks = 0;
  private failedBlocks = 0;
  private transferredBytes = 0;
  private sameCsumBlocks = 0;
  private donePromise: Promise<ResyncResult> | null = null;

  constructor(deps: ResyncDeps) {
    this.deps = deps;
    this.now = deps.now ?? Date.now;
    this.inflight = new Slots(deps.options.resyncInflightMax);
    const inFlightSectors = (): number => this.inFlightBytes() / SECTOR_BYTES;
    this.pacer = new ResyncPacer(deps, { now: this.now, leftBlocks: () => this.deps.bitmap.countSet(), inFlightSectors, what: 'resync' });
  }

  /**
   * c-* settings changed online (`adjust`, or the peer's P_SYNC_PARAM): they
   * apply from the next step on. As drbd_adm_disk_opts, the fifo plan is kept
   * unless c-plan-ahead (its length) changed; c-plan-ahead 0 switches to the
   * fixed rate and back.
   */
  setController(settings: RsControllerSettings): void {
    this.pacer.setController(settings);
  }

  /** resync-rate changed online (`adjust`): the running resync obeys the new limit from now on. */
  setRateKiBps(rateKiBps: number): void {
    this.pacer.setRateKiBps(rateKiBps);
  }

  /** Begins the resync (once); the promise resolves when done or aborted. */
  start(): Promise<ResyncResult> {
    if (this.donePromise === null) {
      const bitsSet = this.deps.bitmap.countSet();
      this.pacer.start();
      this.meter = new ProgressMeter(bitsSet, this.pacer.wantKiBps, this.now);
      if (this.pausedFlag) this.meter.pause();
      this.donePromise = this.run();
    }
    return this.donePromise;
  }

  get done(): Promise<ResyncResult> {
    assert(this.donePromise !== null, 'resync started');
    return this.donePromise;
  }

  /** Bytes of resync requests sent and not yet answered (DRBD's rs_in_flight); walks at most resyncInflightMax entries. */
  inFlightBytes(): number {
    let bytes = 0;
    for (const request of this.requests.values()) bytes += request.lengthBytes;
    return bytes;
  }

  progress(): ResyncProgress {
    assert(this.meter !== null, 'resync started');
    this.meter.wantKiBps = this.pacer.wantKiBps;
    return this.meter.snapshot(this.deps.bitmap.countSet());
  }

  /** PausedSyncT: no new requests until resume(); requests in flight finish. */
  pause(): void {
    this.pausedFlag = true;
    this.meter?.pause();
  }

  resume(): void {
    this.pausedFlag = false;
    this.meter?.resume();
    this.pacer.resume();
    this.resumeWaiter?.();
    this.resumeWaiter = null;
  }

  /** Link lost or resync cancelled: requests in flight fail, the bits stay set. */
  abort(reason: string): void {
    if (this.aborted !== null) return;
    this.aborted = reason;
    for (const request of [...this.requests.values()]) this.finish(request, false, false);
    this.resume();
  }

  /** Before an application read on the SyncTarget: fetch the range's out-of-sync blocks now. */
  async syncRange(offsetBytes: number, lengthBytes: number): Promise<void> {
    const { bitmap } = this.deps;
    const firstBit = Math.floor(offsetBytes / BM_BLOCK_BYTES);
    const endBit = Math.min(bitmap.bitCount, Math.ceil((offsetBytes + lengthBytes) / BM_BLOCK_BYTES));
    let bit = bitmap.nextSet(firstBit);
    while (bit >= 0 && bit < endBit) {
      const runEnd = Math.min(bitmap.nextClear(bit), endBit);
      const ok = await this.fetchRun(bit, runEnd);
      if (!ok) throw new Error(`cannot sync blocks ${bit}..${runEnd - 1} from the peer before reading them`);
      bit = runEnd < endBit ? bitmap.nextSet(runEnd) : -1;
    }
  }

  private async run(): Promise<ResyncResult> {
    const { bitmap, options, log } = this.deps;
    const runBytesMax = this.deps.csums ? Math.min(options.resyncRunBytesMax, CSUMS_RUN_BYTES_MAX) : options.resyncRunBytesMax;
    const runBitsMax = runBytesMax / BM_BLOCK_BYTES;
    const startMs = this.now();
    const pending = new Set<Promise<boolean>>();
    for (let pass = 0; pass < RESYNC_PASSES_MAX && this.aborted === null; pass++) {
      const failedBefore = this.failedBlocks;
      let bit = bitmap.nextSet(0);
      while (bit >= 0 && this.aborted === null && this.deps.peer.isOpen) {
        if (this.pausedFlag) {
          await new Promise<void>((resolve) => {
            this.resumeWaiter = resolve;
          });
          continue;
        }
        const allowedBlocks = await this.pacer.next();
        // A pause may have come while the pacing waited (or right after start(), before its first look).
        if (allowedBlocks === 0 || this.pausedFlag) continue;
        // Application writes may have synced blocks while the pacing waited.
        bit = bitmap.nextSet(bit);
        if (bit < 0) break;
        const runEnd = Math.min(bitmap.nextClear(bit), bit + runBitsMax, bit + allowedBlocks);
        await this.pacer.spend(runEnd - bit);
        const fetch = this.fetchRun(bit, runEnd);
        trackUntilFulfilled(pending, fetch);
        // Wait here for a free slot so requests in flight stay bounded.
        const slot = this.inflight.acquire();
        if (slot !== true) await slot;
        this.inflight.release();
        bit = runEnd < bitmap.bitCount ? bitmap.nextSet(runEnd) : -1;
      }
      await Promise.all(pending);
      if (bitmap.countSet() === 0 || this.aborted !== null || !this.deps.peer.isOpen) break;
      if (this.failedBlocks > failedBefore && pass > 0) break;
    }
    if (this.aborted === null && options.diskFlushes) {
      // Everything synced must be on stable storage before the resync counts as done (unless disk-flushes no).
      try {
        await this.deps.disk.flush();
      } catch (err) {
        log.error({ err: (err as Error).message }, 'flush at end of resync failed');
        this.failedBlocks += 1;
      }
    }
    const elapsedMs = this.now() - startMs;
    const left = bitmap.countSet();
    const ok = this.aborted === null && left === 0 && this.failedBlocks === 0;
    const progress = this.progress();
    const seconds = Math.round(elapsedMs / 1000);
    if (ok) log.info(`Resync done (total ${seconds} sec; paused ${Math.round(progress.pausedMs / 1000)} sec; ${progress.averageKiBps} K/sec)`);
    else log.warn({ leftBits: left, failedBlocks: this.failedBlocks, aborted: this.aborted }, 'resync ended with blocks out of sync');
    if (this.deps.csums) {
      // drbd_resync_finished's line for a checksum-based resync.
      const totalKiB = this.syncedBlocks * (BM_BLOCK_BYTES / 1024);
      const eliminatedKiB = this.sameCsumBlocks * (BM_BLOCK_BYTES / 1024);
      const percent = this.syncedBlocks > 0 ? Math.floor((this.sameCsumBlocks * 100) / this.syncedBlocks) : 0;
      log.info(`${percent} % had equal checksums, eliminated: ${eliminatedKiB}K; transferred ${Math.floor(this.transferredBytes / 1024)}K total ${totalKiB}K`);
    }
    return {
      ok, syncedBlocks: this.syncedBlocks, failedBlocks: this.failedBlocks, transferredBytes: this.transferredBytes, elapsedMs,
      sameCsumBlocks: this.sameCsumBlocks, throttledSteps: this.pacer.throttledSteps,
    };
  }

  /** Requests bits [firstBit, endBit) as one RsDataRequest; resolves true once written locally. */
  private async fetchRun(firstBit: number, endBit: number): Promise<boolean> {
    const { disk, peer, rangeLock, bitmap, counters } = this.deps;
    const offsetBytes = firstBit * BM_BLOCK_BYTES;
    const lengthBytes = Math.min(endBit * BM_BLOCK_BYTES, disk.sizeBytes) - offsetBytes;
    assert(lengthBytes > 0, 'resync run is not empty');
    const slot = this.inflight.acquire();
    if (slot !== true) await slot;
    let slotHeld = true;
    try {
      const granted = rangeLock.acquire(offsetBytes, offsetBytes + lengthBytes);
      const hold: RangeHold = granted instanceof Promise ? await granted : granted;
      // An application write may have synced the blocks while we waited.
      const next = bitmap.nextSet(firstBit);
      if (this.aborted !== null || !peer.isOpen || next < 0 || next >= endBit) {
        rangeLock.release(hold);
        return this.aborted === null && peer.isOpen;
      }
      const blockId = this.ids.next();
      const done = new Promise<boolean>((resolve) => {
        this.requests.set(blockId, { blockId, offsetBytes, lengthBytes, hold, settle: resolve });
      });
      const digest = this.deps.csums ? await this.localDigest(offsetBytes, lengthBytes) : null;
      if (this.aborted !== null || !peer.isOpen) {
        rangeLock.release(hold);
        return false;
      }
      counters.pe++;
      if (digest !== null) {
        const request: CsumRsRequest = { type: PacketType.CsumRsRequest, volume: this.deps.vnr, offsetBytes, lengthBytes, blockId, digest };
        peer.send(request);
      } else {
        const request: RsDataRequest = { type: PacketType.RsDataRequest, volume: this.deps.vnr, offsetBytes, lengthBytes, blockId };
        peer.send(request);
      }
      this.pacer.requested(lengthBytes / SECTOR_BYTES);
      slotHeld = false;
      const ok = await done;
      return ok;
    } finally {
      if (slotHeld) this.inflight.release();
    }
  }

  /**
   * The digest of this node's own copy of a run (read_for_csum), or null when
   * it cannot be read: the run is then requested in full.
   */
  private async localDigest(offsetBytes: number, lengthBytes: number): Promise<Buffer | null> {
    const csums = this.deps.csums;
    assert(csums !== undefined, 'checksum-based resync');
    const data = directPool.take(lengthBytes);
    try {
      await this.deps.disk.read(data, offsetBytes, BYPASS_CACHE);
      this.deps.counters.diskReadBytes += lengthBytes;
      this.pacer.ownDiskIo(lengthBytes); // the resync's own read, not application I/O
      const digest = Buffer.alloc(csums.digestBytes);
      csums.digestInto(data, digest, 0);
      return digest;
    } catch (err) {
      this.deps.log.warn({ offsetBytes, lengthBytes, err: (err as Error).message }, 'cannot read local blocks for the resync checksum; requesting them in full');
      return null;
    } finally {
      directPool.give(data);
    }
  }

  /** The source's blocks hash as ours (P_RS_IS_IN_SYNC): in sync without copying. */
  handleIsInSync(packet: AckPacket): void {
    const request = this.requests.get(packet.blockId);
    if (request === undefined) {
      this.deps.log.warn({ blockId: packet.blockId }, 'RsIsInSync for unknown request ignored');
      return;
    }
    this.sameCsumBlocks += Math.ceil(request.lengthBytes / BM_BLOCK_BYTES);
    // got_IsInSync counts these sectors as come in for the controller too.
    this.pacer.received(request.lengthBytes / SECTOR_BYTES);
    this.finish(request, true, true);
  }

  handleReply(packet: RsDataReply): void {
    const request = this.requests.get(packet.blockId);
    if (request === undefined) {
      this.deps.log.warn({ blockId: packet.blockId }, 'RsDataReply for unknown request ignored');
      return;
    }
    assert(packet.offsetBytes === request.offsetBytes, 'RsDataReply offset matches its request');
    assert(packet.payload.length === request.lengthBytes, 'RsDataReply length matches its request');
    this.deps.counters.receivedBytes += packet.payload.length;
    this.transferredBytes += packet.payload.length;
    this.pacer.received(packet.payload.length / SECTOR_BYTES);
    // Replies are written concurrently (bounded by the target's in-flight slots); writeReply turns a disk error into RsNegAck.
    runAside(this.writeReply(request, packet.payload), this.deps.log, 'resync write');
  }

  private async writeReply(request: ResyncRequest, payload: Buffer): Promise<void> {
    const { disk, peer, counters, log } = this.deps;
    let ok = true;
    try {
      await disk.write(payload, request.offsetBytes, BYPASS_CACHE);
      counters.diskWrittenBytes += payload.length;
      this.pacer.ownDiskIo(payload.length);
    } catch (err) {
      ok = false;
      log.error({ offsetBytes: request.offsetBytes, err: (err as Error).message }, 'resync write failed');
    }
    // The disk is done with the payload: its reassembly buffer may be reused.
    releaseReceivedPayload(payload);
    if (this.requests.get(request.blockId) !== request) return; // aborted meanwhile
    if (peer.isOpen) {
      peer.send({
        type: ok ? PacketType.RsWriteAck : PacketType.RsNegAck,
        volume: this.deps.vnr,
        offsetBytes: request.offsetBytes,
        lengthBytes: request.lengthBytes,
        blockId: request.blockId,
      });
    }
    this.finish(request, ok, true);
  }

  /** Source could not read the blocks (RsNegAck). */
  handleNegAck(packet: AckPacket): void {
    const request = this.requests.get(packet.blockId);
    if (request === undefined) return;
    this.deps.log.warn({ offsetBytes: request.offsetBytes, lengthBytes: request.lengthBytes }, 'peer could not read resync blocks (RsNegAck)');
    this.pacer.received(request.lengthBytes / SECTOR_BYTES);
    this.finish(request, false, true);
  }

  private finish(request: ResyncRequest, ok: boolean, countFailure: boolean): void {
    this.requests.delete(request.blockId);
    this.deps.counters.pe--;
    const blocks = Math.ceil(request.lengthBytes / BM_BLOCK_BYTES);
    if (ok) {
      const firstBit = request.offsetBytes / BM_BLOCK_BYTES;
      const cleared = this.deps.bitmap.clearRange(firstBit, firstBit + blocks);
      this.syncedBlocks += blocks;
      this.meter?.advance(cleared);
    } else if (countFailure) {
      this.failedBlocks += blocks;
    }
    this.deps.rangeLock.release(request.hold);
    this.inflight.release();
    request.settle(ok);
  }
}

/** Answers the peer's resync requests from the local disk (the SyncSource's side). */
export interface ResyncResponderDeps extends Omit<ResyncDeps, 'csums'> {
  /** The peer is Primary: its reads of a SyncTarget's blocks come this way too, so no c-min-rate wait here. */
  readonly peerPrimary: () => boolean;
}

export class ResyncResponder {
  private csums: BlockDigest | null = null;
  private readonly throttle: AnswerThrottle;

  constructor(private readonly deps: ResyncResponderDeps) {
    this.throttle = new AnswerThrottle(deps, { now: deps.now ?? Date.now, leftBlocks: () => deps.bitmap.countSet(), what: 'resync' });
  }

  /** Resync requests that waited for application I/O (c-min-rate on the SyncSource). */
  get throttledAnswers(): number {
    return this.throttle.throttledAnswers;
  }

  handleDataRequest(packet: RsDataRequest | CsumRsRequest): void {
    this.deps.counters.ua++;
    // Requests are answered concurrently (bounded by the peer's in-flight limit); answer turns a read error into RsNegAck.
    runAside(this.answer(packet), this.deps.log, 'resync read');
  }

  /** This node's csums-alg digest (options may change by `adjust` between resyncs). */
  private csumsDigest(): BlockDigest | null {
    const alg = this.deps.options.csumsAlg;
    if (alg === '') return null;
    if (this.csums === null || this.csums.name !== alg.toLowerCase()) this.csums = blockDigest(alg, 'csums-alg');
    return this.csums;
  }

  /** True when a CsumRsRequest's digest matches this node's copy (w_e_end_csum_rs_req). */
  private sameDigest(packet: RsDataRequest | CsumRsRequest, data: Buffer): boolean {
    if (packet.type !== PacketType.CsumRsRequest) return false;
    const csums = this.csumsDigest();
    if (csums === null || csums.digestBytes !== packet.digest.length) return false;
    const mine = Buffer.alloc(csums.digestBytes);
    csums.digestInto(data, mine, 0);
    return mine.equals(packet.digest);
  }

  private async answer(packet: RsDataRequest | CsumRsRequest): Promise<void> {
    const { disk, peer, rangeLock, counters, log } = this.deps;
    const { offsetBytes, lengthBytes, blockId } = packet;
    // A diskless Primary's application read (replication/peer-read) is not resync work.
    const resyncWork = blockIdTag(blockId) !== BlockIdTag.read;
    // Before the range lock, as DRBD throttles before drbd_rs_begin_io: the wait must not hold out application writes.
    if (resyncWork) await this.throttle.beforeAnswer(this.deps.peerPrimary());
    const granted = rangeLock.acquire(offsetBytes, offsetBytes + lengthBytes);
    const hold: RangeHold = granted instanceof Promise ? await granted : granted;
    try {
      const payload = directPool.take(lengthBytes);
      let ok = true;
      try {
        await disk.read(payload, offsetBytes, BYPASS_CACHE);
        counters.diskReadBytes += lengthBytes;
        if (resyncWork) this.throttle.ownDiskIo(lengthBytes);
      } catch (err) {
        ok = false;
        log.error({ offsetBytes, lengthBytes, err: (err as Error).message }, 'cannot read blocks for resync; RsNegAck');
      }
      if (!peer.isOpen) {
        directPool.give(payload);
        return;
      }
      // Queued while the range is held: an overlapping application write's Data follows it.
      if (ok && this.sameDigest(packet, payload)) {
        directPool.give(payload);
        setInSync(this.deps.bitmap, offsetBytes, lengthBytes);
        peer.send({ type: PacketType.RsIsInSync, volume: this.deps.vnr, offsetBytes, lengthBytes, blockId });
      } else if (ok) {
        // The buffer goes back to the pool once the channel no longer references it.
        peer.send({ type: PacketType.RsDataReply, volume: this.deps.vnr, offsetBytes, blockId, payload }, () => directPool.give(payload));
        counters.sentBytes += lengthBytes;
        // An application read of a diskless peer (replication/peer-read) is not acknowledged.
        if (resyncWork) counters.pe++;
      } else {
        directPool.give(payload);
        peer.send({ type: PacketType.RsNegAck, volume: this.deps.vnr, offsetBytes, lengthBytes, blockId });
      }
    } finally {
      rangeLock.release(hold);
      counters.ua--;
    }
  }

  /** The SyncTarget wrote the blocks: they are in sync here too. */
  handleWriteAck(packet: AckPacket): void {
    this.deps.counters.pe--;
    if (packet.type === PacketType.RsWriteAck) setInSync(this.deps.bitmap, packet.offsetBytes, packet.lengthBytes);
    else this.deps.log.warn({ offsetBytes: packet.offsetBytes, lengthBytes: packet.lengthBytes }, 'peer failed to write resync blocks');
  }
}
