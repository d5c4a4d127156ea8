/**
 * replication/receiver — SecondaryReceiver, the peer side of mirrored writes:
 * applies Data packets to the local disk in arrival order per overlapping
 * range (honouring FUA / flush flags), acknowledges as the protocol says
 * (B: RecvAck on receipt, C: WriteAck once written, NegAck on failure or when
 * it must not accept writes), and answers each Barrier only after the epoch's
 * writes are done and fdatasync'ed (write ordering method `flush`). It is
 * told whether to accept writes; it never decides that itself. Each local
 * write and Barrier flush is timed into the counters' disk histograms.
 */
import { performance } from 'node:perf_hooks';
import type { BlockDevice, WriteFlags } from '../disk/block-device.js';
import type { PeerChannel } from '../peer/channel.js';
import { releaseReceivedPayload } from '../peer/codec.js';
import { type BarrierPacket, type DataPacket, DataFlag, PacketType } from '../peer/packets.js';
import { runAside } from '../util/aside.js';
import { assert } from '../util/assert.js';
import type { Logger } from '../util/log.js';
import type { ReplicationCounters } from './counters.js';
import type { ReplicationOptions, ReplicationProtocol } from './options.js';
import type { RangeHold, RangeLock } from './range-lock.js';
import { type LocalIoErrorHandler, setOutOfSync } from './volume.js';
import type { DirtyBitmap } from '../meta/types.js';

const FUA: WriteFlags = Object.freeze({ fua: true });

/** Epochs open on the receiver at once; the Primary closes one per burst or max-epoch-size writes. */
const EPOCHS_OPEN_MAX = 1 << 16;

interface EpochRecord {
  /** Data packets of this epoch received. */
  writes: number;
  /** ... not yet finished on the local disk. */
  pending: number;
  /** Set by the Barrier handler while it waits for `pending` to reach 0. */
  drained: (() => void) | null;
}

export interface SecondaryReceiverDeps {
  readonly disk: BlockDevice;
  readonly options: ReplicationOptions;
  readonly counters: ReplicationCounters;
  readonly log: Logger;
  readonly rangeLock: RangeLock;
  readonly peer: PeerChannel;
  /** The volume this data path is (DRBD's vnr): every per-volume packet it sends carries it. */
  readonly vnr: number;
  readonly onLocalIoError?: LocalIoErrorHandler;
}

/**
 * Which protocol's ack a Data packet asks for: the sender's ack bit when it
 * set one (the protocol may have changed online while writes were in flight),
 * otherwise this node's own protocol.
 */
function ackWanted(flags: number, own: ReplicationProtocol): ReplicationProtocol {
  if ((flags & DataFlag.ackWrite) !== 0) return 'C';
  if ((flags & DataFlag.ackReceive) !== 0) return 'B';
  if ((flags & DataFlag.ackNone) !== 0) return 'A';
  return own;
}

export class SecondaryReceiver {
  private readonly epochs = new Map<number, EpochRecord>();
  private barrierChain: Promise<void> = Promise.resolve();
  /** Barriers received and not yet answered, in arrival order (bounded by EPOCHS_OPEN_MAX). */
  private readonly barriersWaiting: Array<{ epoch: number; record: EpochRecord | undefined }> = [];
  /** Newest epoch a completed fdatasync covers (group commit), or null. */
  private flushedThroughEpoch: number | null = null;
  private acceptWrites = true;
  private refuseReason = '';
  /** The peer is diskless: every write applied here is out of sync there (receive_Data, pdsk < Inconsistent). */
  private markOutOfSync: DirtyBitmap | null = null;

  constructor(private readonly deps: SecondaryReceiverDeps) {}

  /** Whether Data packets are applied (true) or refused with NegAck (e.g. no usable disk). */
  setAcceptWrites(accept: boolean, reason = ''): void {
    this.acceptWrites = accept;
    this.refuseReason = reason;
  }

  /** While the peer has no disk: the bitmap to mark each applied write in, or null. */
  setMarkOutOfSync(bitmap: DirtyBitmap | null): void {
    this.markOutOfSync = bitmap;
  }

  handleData(packet: DataPacket): void {
    const { counters, options } = this.deps;
    const lengthBytes = packet.payload.length;
    counters.receivedBytes += lengthBytes;
    const epoch = this.epochRecord(packet.epoch);
    epoch.writes++;
    if (!this.acceptWrites) {
      this.deps.log.warn({ offsetBytes: packet.offsetBytes, lengthBytes, reason: this.refuseReason }, 'refusing peer write (NegAck)');
      this.ack(PacketType.NegAck, packet.offsetBytes, lengthBytes, packet.blockId);
      return;
    }
    if (this.markOutOfSync !== null) setOutOfSync(this.markOutOfSync, packet.offsetBytes, lengthBytes);
    if (ackWanted(packet.flags, options.protocol) === 'B') this.ack(PacketType.RecvAck, packet.offsetBytes, lengthBytes, packet.blockId);
    counters.ua++;
    epoch.pending++;
    // Peer writes are applied concurrently (the epoch counts them for its Barrier); apply turns a disk error into NegAck.
    runAside(this.apply(packet, epoch), this.deps.log, 'peer write');
  }

  private async apply(packet: DataPacket, epoch: EpochRecord): Promise<void> {
    const { disk, counters, rangeLock } = this.deps;
    const { offsetBytes, payload } = packet;
    let ok = true;
    const granted = rangeLock.acquire(offsetBytes, offsetBytes + payload.length);
    const hold: RangeHold = granted instanceof Promise ? await granted : granted;
    counters.lo++;
    try {
      if (offsetBytes + payload.length > disk.sizeBytes) {
        // read_in_block: past the end of a (shrunk) device. DRBD drops the connection; udrbd NegAcks the write.
        ok = false;
        this.deps.log.error(
          { offsetBytes, lengthBytes: payload.length, sizeBytes: disk.sizeBytes },
          `request from peer beyond end of local disk: capacity: ${disk.sizeBytes / 512}s < sector: ${offsetBytes / 512}s + size: ${payload.length}`,
        );
      } else {
        if ((packet.flags & DataFlag.flush) !== 0) await disk.flush();
        const fua = (packet.flags & DataFlag.fua) !== 0;
        const startedMs = performance.now();
        await disk.write(payload, offsetBytes, fua ? FUA : undefined);
        counters.diskWriteLatency.record(performance.now() - startedMs);
        counters.diskWrittenBytes += payload.length;
      }
    } catch (err) {
      ok = false;
      this.deps.log.error({ offsetBytes, lengthBytes: payload.length, err: (err as Error).message }, 'local write of peer data failed');
      this.deps.onLocalIoError?.('write', offsetBytes, err as Error);
    } finally {
      counters.lo--;
      rangeLock.release(hold);
    }
    // The disk is done with the payload: its reassembly buffer may be reused.
    releaseReceivedPayload(payload);
    counters.ua--;
    if (!ok) this.ack(PacketType.NegAck, offsetBytes, payload.length, packet.blockId);
    else if (ackWanted(packet.flags, this.deps.options.protocol) === 'C') this.ack(PacketType.WriteAck, offsetBytes, payload.length, packet.blockId);
    epoch.pending--;
    if (epoch.pending === 0 && epoch.drained) epoch.drained();
  }

  handleBarrier(packet: BarrierPacket): void {
    const record = this.epochs.get(packet.epoch);
    this.barriersWaiting.push({ epoch: packet.epoch, record });
    // Barriers are answered strictly in order, each after its epoch is on stable storage.
    this.barrierChain = this.barrierChain.then(() => this.completeEpoch(packet.epoch, record));
  }

  private async completeEpoch(epoch: number, record: EpochRecord | undefined): Promise<void> {
    if (record && record.pending > 0) {
      await new Promise<void>((resolve) => {
        record.drained = resolve;
      });
    }
    assert(!record || record.pending === 0, `epoch ${epoch} has no writes in flight at its barrier`);
    this.epochs.delete(epoch);
    const head = this.barriersWaiting.shift();
    assert(head !== undefined && head.epoch === epoch, 'barriers complete in the order they arrived');
    if (this.flushedThroughEpoch !== null && this.flushedThroughEpoch - epoch >= 0 && this.flushedThroughEpoch - epoch < EPOCHS_OPEN_MAX) {
      // An earlier flush started after this epoch's writes were done: it is on stable storage already.
      if (this.deps.peer.isOpen) this.deps.peer.send({ type: PacketType.BarrierAck, epoch, writes: record ? record.writes : 0 });
      return;
    }
    // Group commit: one fdatasync also covers the following barriers already received whose writes are all done.
    let covered = epoch;
    for (const next of this.barriersWaiting) {
      if (next.record !== undefined && next.record.pending > 0) break;
      covered = next.epoch;
    }
    if (!this.deps.options.diskFlushes) {
      // disk-flushes no: DRBD's "drain" ordering — the epoch's writes are complete, not flushed.
      if (this.deps.peer.isOpen) this.deps.peer.send({ type: PacketType.BarrierAck, epoch, writes: record ? record.writes : 0 });
      return;
    }
    try {
      // The flush may run on this thread (disk/file-disk): let acks already queued (the
      // WriteAcks of this epoch) leave first instead of waiting behind it.
      this.deps.peer.push?.();
      const startedMs = performance.now();
      this.deps.counters.lo++;
      try {
        await this.deps.disk.flush();
      } finally {
        this.deps.counters.lo--;
      }
      this.deps.counters.diskFlushLatency.record(performance.now() - startedMs);
      this.flushedThroughEpoch = covered;
    } catch (err) {
      this.deps.log.error({ epoch, err: (err as Error).message }, 'flush for barrier failed; dropping the connection');
      this.deps.onLocalIoError?.('flush', 0, err as Error);
      if (this.deps.peer.isOpen) this.deps.peer.close('ProtocolError');
      return;
    }
    if (this.deps.peer.isOpen) this.deps.peer.send({ type: PacketType.BarrierAck, epoch, writes: record ? record.writes : 0 });
  }

  /** Resolves once every Barrier received so far is answered (for orderly disconnect and tests). */
  idle(): Promise<void> {
    return this.barrierChain;
  }

  private epochRecord(epoch: number): EpochRecord {
    let record = this.epochs.get(epoch);
    if (record === undefined) {
      assert(this.epochs.size < EPOCHS_OPEN_MAX, `fewer than ${EPOCHS_OPEN_MAX} epochs open`);
      record = { writes: 0, pending: 0, drained: null };
      this.epochs.set(epoch, record);
    }
    return record;
  }

  private ack(
    type: typeof PacketType.RecvAck | typeof PacketType.WriteAck | typeof PacketType.NegAck,
    offsetBytes: number,
    lengthBytes: number,
    blockId: number,
  ): void {
    if (!this.deps.peer.isOpen) return;
    this.deps.peer.send({ type, volume: this.deps.vnr, offsetBytes, lengthBytes, blockId });
  }
}
