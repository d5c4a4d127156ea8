/**
 * replication/receiver — SecondaryReceiver, the peer side of mirrored writes:
 * applies Data packets to the local disk in arrival order per overlapping
 * range (honouring FUA / flush flags), acknowledges as the protocol says
 * (B: RecvAck on receipt, C: WriteAck once written, NegAck on failure or when
 * it must not accept writes). Every write counts into the connection's epoch
 * (replication/epochs ReceiverEpochs, shared by the volumes), which answers
 * the Barrier once all volumes' writes of it are done and each volume's disk
 * is flushed (this receiver flushes its own). It is told whether to accept
 * writes; it never decides that itself. Each local write and Barrier flush is
 * timed into the counters' disk histograms.
 */
import { performance } from 'node:perf_hooks';
import type { BlockDevice, WriteFlags } from '../disk/block-device.js';
import type { PeerChannel } from '../peer/channel.js';
import { releaseReceivedPayload } from '../peer/codec.js';
import { type DataPacket, DataFlag, PacketType } from '../peer/packets.js';
import type { ReceivedEpoch, ReceiverEpochMember, ReceiverEpochs } from './epochs.js';
import { runAside } from '../util/aside.js';
import type { Logger } from '../util/log.js';
import type { ReplicationCounters } from './counters.js';
import type { ReplicationOptions, ReplicationProtocol } from './options.js';
import type { RangeHold, RangeLock } from './range-lock.js';
import { type LocalIoErrorHandler, setOutOfSync } from './volume.js';
import type { DirtyBitmap } from '../meta/types.js';

const FUA: WriteFlags = Object.freeze({ fua: true });

export interface SecondaryReceiverDeps {
  readonly disk: BlockDevice;
  readonly options: ReplicationOptions;
  readonly counters: ReplicationCounters;
  readonly log: Logger;
  readonly rangeLock: RangeLock;
  readonly peer: PeerChannel;
  /** The volume this data path is (DRBD's vnr): every per-volume packet it sends carries it. */
  readonly vnr: number;
  /** The connection's epochs, shared with the other volumes on it. */
  readonly epochs: ReceiverEpochs;
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

export class SecondaryReceiver implements ReceiverEpochMember {
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
    const epoch = this.deps.epochs.record(packet.epoch);
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

  private async apply(packet: DataPacket, epoch: ReceivedEpoch): Promise<void> {
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
    this.deps.epochs.writeDone(epoch);
  }

  /** This volume's disk-flushes (the connection drains only when some volume has it off). */
  get diskFlushes(): boolean {
    return this.deps.options.diskFlushes;
  }

  /** Flushes the disk for the connection's Barrier of `epoch`; a volume without a usable disk (diskless) has nothing to flush. */
  async flushForBarrier(epoch: number): Promise<boolean> {
    if (!this.acceptWrites) return true;
    const { counters, disk } = this.deps;
    const startedMs = performance.now();
    counters.lo++;
    try {
      await disk.flush();
    } catch (err) {
      this.deps.log.error({ epoch, err: (err as Error).message }, 'flush for barrier failed; dropping the connection');
      this.deps.onLocalIoError?.('flush', 0, err as Error);
      return false;
    } finally {
      counters.lo--;
    }
    counters.diskFlushLatency.record(performance.now() - startedMs);
    return true;
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
