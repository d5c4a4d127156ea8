/**
 * replication/verify — online verify (drbdadm verify). VerifySource walks a
 * range of the volume in runs, sends OvRequest, and compares the peer's
 * per-4-KiB digests (OvReply) with its own; VerifyResponder answers
 * OvRequest and applies OvResult. Mismatched blocks are set out of sync on
 * both nodes and logged as DRBD does ("Out of sync: start=S, size=N
 * (sectors)"); a later resync repairs them. The requests are paced as a
 * resync's are (replication/resync-pacer: w_make_ov_request asks
 * drbd_rs_number_requests too). Knows nothing of states.
 */
import { type BlockDevice, BYPASS_CACHE } from '../disk/block-device.js';
import { directPool } from '../disk/direct-buffers.js';
import type { DirtyBitmap } from '../meta/types.js';
import { BM_BLOCK_BYTES } from '../meta/types.js';
import type { PeerChannel } from '../peer/channel.js';
import { type OvReply, type OvRequest, type OvResult, PacketType } from '../peer/packets.js';
import { runAside, trackUntilFulfilled } from '../util/aside.js';
import { assert } from '../util/assert.js';
import type { Logger } from '../util/log.js';
import { BlockIdAllocator, BlockIdTag } from './block-id.js';
import type { ReplicationCounters } from './counters.js';
import { type BlockDigest, blockDigest } from '../util/digest.js';
import { type ReplicationOptions, SECTOR_BYTES } from './options.js';
import { type RangeHold, type RangeLock, Slots } from './range-lock.js';
import { ProgressMeter, type ResyncProgress } from './resync.js';
import { AnswerThrottle, ResyncPacer } from './resync-pacer.js';
import type { RsControllerSettings } from './rs-controller.js';
import { setOutOfSync } from './volume.js';

/** Bytes one OvRequest covers (its reply carries one digest per 4 KiB block). */
export const VERIFY_RUN_BYTES = 256 * 1024;

export interface VerifyResult {
  readonly ok: boolean;
  readonly verifiedBlocks: number;
  readonly outOfSyncBlocks: number;
  readonly elapsedMs: number;
}

/** Digests of each 4 KiB block of `data` (the last may be shorter), concatenated. */
export function digestBlocks(digest: BlockDigest, data: Buffer): Buffer {
  const blocks = Math.ceil(data.length / BM_BLOCK_BYTES);
  const out = Buffer.alloc(blocks * digest.digestBytes);
  for (let i = 0; i < blocks; i++) {
    digest.digestInto(data.subarray(i * BM_BLOCK_BYTES, Math.min(data.length, (i + 1) * BM_BLOCK_BYTES)), out, i * digest.digestBytes);
  }
  return out;
}

/** Coalesces contiguous out-of-sync sectors into one log line, as DRBD's ov_out_of_sync_print. */
class OutOfSyncReporter {
  private startSector = -1;
  private sizeSectors = 0;
  constructor(private readonly log: Logger) {}

  found(offsetBytes: number, lengthBytes: number): void {
    const sector = offsetBytes / SECTOR_BYTES;
    const sectors = lengthBytes / SECTOR_BYTES;
    if (this.startSector >= 0 && this.startSector + this.sizeSectors === sector) {
      this.sizeSectors += sectors;
      return;
    }
    this.print();
    this.startSector = sector;
    this.sizeSectors = sectors;
  }

  print(): void {
    if (this.startSector < 0) return;
    this.log.warn({ startSector: this.startSector, sizeSectors: this.sizeSectors }, `Out of sync: start=${this.startSector}, size=${this.sizeSectors} (sectors)`);
    this.startSector = -1;
    this.sizeSectors = 0;
  }
}

export interface VerifyDeps {
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
}

interface VerifyRequest {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly hold: RangeHold;
  /** Digests of the local blocks, taken right after the read (the data itself is not kept). */
  readonly localDigest: Buffer;
  settle: () => void;
}

/** The VerifyS side. */
export class VerifySource {
  private readonly digest: BlockDigest;
  private readonly ids = new BlockIdAllocator(BlockIdTag.verify);
  private readonly inflight: Slots;
  private readonly requests = new Map<number, VerifyRequest>();
  private readonly reporter: OutOfSyncReporter;
  private readonly now: () => number;
  private meter: ProgressMeter | null = null;
  private aborted: string | null = null;
  private verifiedBlocks = 0;
  private outOfSyncBlocks = 0;
  private donePromise: Promise<VerifyResult> | null = null;
  private readonly pacer: ResyncPacer;
  /** Blocks of the range not yet verified (DRBD's ov_left). */
  private leftBlocks = 0;

  constructor(private readonly deps: VerifyDeps) {
    this.digest = blockDigest(deps.options.verifyAlg);
    this.inflight = new Slots(deps.options.resyncInflightMax);
    this.reporter = new OutOfSyncReporter(deps.log);
    this.now = deps.now ?? Date.now;
    const inFlightSectors = (): number => this.inFlightBytes() / SECTOR_BYTES;
    this.pacer = new ResyncPacer(deps, { now: this.now, leftBlocks: () => this.leftBlocks, inFlightSectors, what: 'online verify' });
  }

  /** Bytes of OvRequests sent and not yet answered; walks at most resyncInflightMax entries. */
  private inFlightBytes(): number {
    let bytes = 0;
    for (const request of this.requests.values()) bytes += request.lengthBytes;
    return bytes;
  }

  /** c-* settings changed online (`adjust`): the running verify's pacing takes them from its next step. */
  setController(settings: RsControllerSettings): void {
    this.pacer.setController(settings);
  }

  /** resync-rate changed online (`adjust`). */
  setRateKiBps(rateKiBps: number): void {
    this.pacer.setRateKiBps(rateKiBps);
  }

  /** Times the verify stepped back for application I/O (c-min-rate). */
  get throttledSteps(): number {
    return this.pacer.throttledSteps;
  }

  /** Verifies [startBytes, endBytes) of the volume (default: all of it). */
  start(startBytes = 0, endBytes = this.deps.disk.sizeBytes): Promise<VerifyResult> {
    assert(this.donePromise === null, 'verify started once');
    assert(startBytes % BM_BLOCK_BYTES === 0 && startBytes <= endBytes && endBytes <= this.deps.disk.sizeBytes, 'verify range is valid');
    this.leftBlocks = Math.ceil((endBytes - startBytes) / BM_BLOCK_BYTES);
    this.pacer.start();
    this.meter = new ProgressMeter(this.leftBlocks, this.pacer.wantKiBps, this.now);
    this.deps.log.info({ startSector: startBytes / SECTOR_BYTES }, `Starting Online Verify from sector ${startBytes / SECTOR_BYTES}`);
    this.donePromise = this.run(startBytes, endBytes);
    return this.donePromise;
  }

  progress(): ResyncProgress {
    assert(this.meter !== null, 'verify started');
    this.meter.wantKiBps = this.pacer.wantKiBps;
    return this.meter.snapshot(this.meter.totalBits - this.meter.doneBits);
  }

  abort(reason: string): void {
    if (this.aborted !== null) return;
    this.aborted = reason;
    for (const [blockId, request] of [...this.requests]) this.finish(blockId, request);
  }

  private async run(startBytes: number, endBytes: number): Promise<VerifyResult> {
    const startMs = this.now();
    const pending = new Set<Promise<void>>();
    let at = startBytes;
    while (at < endBytes && this.aborted === null && this.deps.peer.isOpen) {
      const allowedBlocks = await this.pacer.next();
      if (allowedBlocks === 0) continue;
      const lengthBytes = Math.min(VERIFY_RUN_BYTES, endBytes - at, allowedBlocks * BM_BLOCK_BYTES);
      await this.pacer.spend(Math.ceil(lengthBytes / BM_BLOCK_BYTES));
      const slot = this.inflight.acquire();
      if (slot !== true) await slot;
      const request = this.request(at, lengthBytes);
      trackUntilFulfilled(pending, request);
      at += lengthBytes;
    }
    await Promise.all(pending);
    this.reporter.print();
    const elapsedMs = this.now() - startMs;
    const ok = this.aborted === null && this.deps.peer.isOpen;
    if (ok) {
      this.deps.log.info(`Online verify done (total ${Math.round(elapsedMs / 1000)} sec; paused 0 sec; ${this.progress().averageKiBps} K/sec)`);
      if (this.outOfSyncBlocks > 0) this.deps.log.warn(`Online verify found ${this.outOfSyncBlocks} 4k block out of sync!`);
    }
    return { ok, verifiedBlocks: this.verifiedBlocks, outOfSyncBlocks: this.outOfSyncBlocks, elapsedMs };
  }

  /** One run: hold the range, read locally, ask the peer; resolves when compared. Holds a slot. */
  private async request(offsetBytes: number, lengthBytes: number): Promise<void> {
    const { rangeLock, disk, peer, counters } = this.deps;
    const granted = rangeLock.acquire(offsetBytes, offsetBytes + lengthBytes);
    const hold: RangeHold = granted instanceof Promise ? await granted : granted;
    const local = directPool.take(lengthBytes);
    let localDigest: Buffer;
    try {
      // Every block is read once on both nodes: bypass the page cache, like a resync.
      await disk.read(local, offsetBytes, BYPASS_CACHE);
      counters.diskReadBytes += lengthBytes;
      this.pacer.ownDiskIo(lengthBytes); // the verify's own read, not application I/O
      localDigest = digestBlocks(this.digest, local);
    } catch (err) {
      rangeLock.release(hold);
      this.inflight.release();
      this.deps.log.error({ offsetBytes, err: (err as Error).message }, 'verify: local read failed');
      return;
    } finally {
      directPool.give(local);
    }
    if (this.aborted !== null || !peer.isOpen) {
      rangeLock.release(hold);
      this.inflight.release();
      return;
    }
    const blockId = this.ids.next();
    const done = new Promise<void>((resolve) => {
      this.requests.set(blockId, { offsetBytes, lengthBytes, hold, localDigest, settle: resolve });
    });
    counters.pe++;
    this.pacer.requested(lengthBytes / SECTOR_BYTES);
    peer.send({ type: PacketType.OvRequest, volume: this.deps.vnr, offsetBytes, lengthBytes, blockId });
    await done;
  }

  handleReply(packet: OvReply): void {
    const request = this.requests.get(packet.blockId);
    if (request === undefined) return;
    const { bitmap, peer } = this.deps;
    const mine = request.localDigest;
    const size = this.digest.digestBytes;
    const blocks = Math.ceil(request.lengthBytes / BM_BLOCK_BYTES);
    const theirsComplete = packet.digest.length === mine.length;
    for (let i = 0; i < blocks; i++) {
      const equal = theirsComplete && mine.compare(packet.digest, i * size, (i + 1) * size, i * size, (i + 1) * size) === 0;
      const blockOffset = request.offsetBytes + i * BM_BLOCK_BYTES;
      const blockLength = Math.min(BM_BLOCK_BYTES, request.offsetBytes + request.lengthBytes - blockOffset);
      if (!equal) {
        this.outOfSyncBlocks++;
        setOutOfSync(bitmap, blockOffset, blockLength);
        this.reporter.found(blockOffset, blockLength);
        if (peer.isOpen) peer.send({ type: PacketType.OvResult, volume: this.deps.vnr, offsetBytes: blockOffset, lengthBytes: blockLength, inSync: false });
      } else {
        this.reporter.print();
      }
    }
    this.verifiedBlocks += blocks;
    this.leftBlocks -= blocks;
    this.pacer.received(request.lengthBytes / SECTOR_BYTES);
    this.meter?.advance(blocks);
    this.finish(packet.blockId, request);
  }

  private finish(blockId: number, request: VerifyRequest): void {
    this.requests.delete(blockId);
    this.deps.counters.pe--;
    this.deps.rangeLock.release(request.hold);
    this.inflight.release();
    request.settle();
  }
}

export interface VerifyResponderDeps extends VerifyDeps {
  /** The peer is Primary: no c-min-rate wait here (its application reads would wait too). */
  readonly peerPrimary: () => boolean;
}

/**
 * The VerifyT side: digests its blocks on request, records blocks found out
 * of sync. Its answers wait for application I/O per c-min-rate as a
 * SyncSource's do (receive_DataRequest throttles P_OV_REQUEST too), with
 * DRBD's ov_left as the blocks left: set from a verify's first request
 * ("Online Verify start sector"), counted down by each answer sent (DRBD
 * counts OvResults; udrbd's VerifyS sends those only for blocks out of sync).
 */
export class VerifyResponder {
  private digestNow: BlockDigest;
  private readonly reporter: OutOfSyncReporter;
  private readonly throttle: AnswerThrottle;
  /** DRBD's ov_left on the VerifyT; -1 until a verify's first request. */
  private leftBlocks = -1;
  private lastOffsetBytes = 0;
  outOfSyncBlocks = 0;

  constructor(private readonly deps: VerifyResponderDeps) {
    this.digestNow = blockDigest(deps.options.verifyAlg);
    this.reporter = new OutOfSyncReporter(deps.log);
    this.throttle = new AnswerThrottle(deps, { now: deps.now ?? Date.now, leftBlocks: () => Math.max(0, this.leftBlocks), what: 'online verify' });
  }

  /** Verify requests that waited for application I/O (c-min-rate on the VerifyT). */
  get throttledAnswers(): number {
    return this.throttle.throttledAnswers;
  }

  /** The configured verify-alg's digest (it may change online between verify runs). */
  private get digest(): BlockDigest {
    if (this.digestNow.name !== this.deps.options.verifyAlg.toLowerCase()) this.digestNow = blockDigest(this.deps.options.verifyAlg);
    return this.digestNow;
  }

  handleRequest(packet: OvRequest): void {
    // VerifyS walks forward: a request below the last one is a new verify (DRBD resets
    // ov_start_sector when one ends; this side knows no states).
    if (this.leftBlocks < 0 || packet.offsetBytes < this.lastOffsetBytes) {
      this.leftBlocks = this.deps.bitmap.bitCount - Math.floor(packet.offsetBytes / BM_BLOCK_BYTES);
      this.deps.log.info({ startSector: packet.offsetBytes / SECTOR_BYTES }, `Online Verify start sector: ${packet.offsetBytes / SECTOR_BYTES}`);
    }
    this.lastOffsetBytes = packet.offsetBytes;
    this.deps.counters.ua++;
    // Requests are answered concurrently (bounded by the peer's in-flight limit); answer turns a read error into an empty digest.
    runAside(this.answer(packet), this.deps.log, 'verify read');
  }

  private async answer(packet: OvRequest): Promise<void> {
    const { disk, peer, rangeLock, counters, log } = this.deps;
    const { offsetBytes, lengthBytes, blockId } = packet;
    // Before the range lock, as for a resync request: the wait must not hold out application writes.
    await this.throttle.beforeAnswer(this.deps.peerPrimary());
    const granted = rangeLock.acquire(offsetBytes, offsetBytes + lengthBytes);
    const hold: RangeHold = granted instanceof Promise ? await granted : granted;
    let digest: Buffer;
    try {
      const data = directPool.take(lengthBytes);
      try {
        await disk.read(data, offsetBytes, BYPASS_CACHE);
        counters.diskReadBytes += lengthBytes;
        this.throttle.ownDiskIo(lengthBytes); // the verify's own read, not application I/O
        digest = digestBlocks(this.digest, data);
      } finally {
        directPool.give(data);
      }
    } catch (err) {
      log.error({ offsetBytes, err: (err as Error).message }, 'verify: local read failed');
      digest = Buffer.alloc(0); // an incomplete digest makes the whole run out of sync
    } finally {
      rangeLock.release(hold);
      counters.ua--;
    }
    if (this.leftBlocks > 0) this.leftBlocks = Math.max(0, this.leftBlocks - Math.ceil(lengthBytes / BM_BLOCK_BYTES));
    if (peer.isOpen) peer.send({ type: PacketType.OvReply, volume: this.deps.vnr, offsetBytes, lengthBytes, blockId, digest });
  }

  handleResult(packet: OvResult): void {
    if (packet.inSync) {
      this.reporter.print();
      return;
    }
    this.outOfSyncBlocks += Math.ceil(packet.lengthBytes / BM_BLOCK_BYTES);
    setOutOfSync(this.deps.bitmap, packet.offsetBytes, packet.lengthBytes);
    this.reporter.found(packet.offsetBytes, packet.lengthBytes);
  }

  /** End of verify on this side: print the last coalesced range. */
  flushReport(): void {
    this.reporter.print();
  }
}
