/**
 * replication/epochs — the epoch stream of one connection, shared by every
 * volume on it (DRBD 8.4 keeps it in drbd_tconn, not per device):
 *
 * - SenderEpochs (the Primary side: send.current_epoch_nr and the transfer
 *   log's epochs): every mirrored write of any volume is counted into the one
 *   open epoch; closing it sends one P_BARRIER; its P_BARRIER_ACK, which
 *   counts the writes of every volume, releases each volume's part
 *   (got_BarrierAck → tl_release). So a write on volume 1 issued after a
 *   write on volume 0 completed is in a later epoch than it.
 * - ReceiverEpochs (the Secondary side: current_epoch / drbd_may_finish_epoch):
 *   counts every received Data packet into its epoch whatever its volume; a
 *   Barrier is answered once every write of its epoch is done on every volume
 *   and every volume's disk is flushed (drbd_flush(tconn)), or only drained
 *   when some volume runs with disk-flushes no (drbd_bump_write_ordering takes
 *   the weakest method of the attached disks).
 *
 * Knows nothing of volumes' bitmaps, AL or states: members are told of closes
 * and acks (sender) or asked to flush (receiver).
 */
import type { PeerChannel } from '../peer/channel.js';
import { type BarrierAckPacket, type BarrierPacket, PacketType } from '../peer/packets.js';
import { assert } from '../util/assert.js';

/** Epochs open at once on either side; the Primary closes one per burst or max-epoch-size writes. */
export const EPOCHS_OPEN_MAX = 1 << 16;
/** Volumes sharing one connection's epochs (DRBD's minor numbers per resource are bounded likewise). */
export const EPOCH_MEMBERS_MAX = 256;

/** A volume's side of the sender's epochs (replication/volume ReplicatedVolume). */
export interface SenderEpochMember {
  /** `epoch` was closed (its Barrier is queued behind this volume's Data of it). */
  epochClosed(epoch: number): void;
  /** The peer has every write of `epoch`, on every volume, on stable storage. */
  epochAcked(epoch: number): void;
}

export class SenderEpochs {
  private current = 1;
  private openWrites = 0;
  /** Closed epochs awaiting their BarrierAck, oldest first, with the writes of every volume. */
  private readonly closed: Array<{ epoch: number; writes: number }> = [];
  private readonly members = new Set<SenderEpochMember>();
  private acked = 0;

  constructor(private readonly channel: PeerChannel) {}

  /** The open epoch's number: the next write of any volume goes into it. */
  get epoch(): number {
    return this.current;
  }

  /** Writes of every volume in the open epoch. */
  get writesInOpenEpoch(): number {
    return this.openWrites;
  }

  /** The newest barrier-acknowledged epoch, 0 before the first. */
  get ackedThroughEpoch(): number {
    return this.acked;
  }

  join(member: SenderEpochMember): void {
    assert(this.members.size < EPOCH_MEMBERS_MAX || this.members.has(member), `at most ${EPOCH_MEMBERS_MAX} volumes share one connection's epochs`);
    this.members.add(member);
  }

  leave(member: SenderEpochMember): void {
    this.members.delete(member);
  }

  /** Counts a write into the open epoch; returns its number (the Data packet carries it). */
  noteWrite(): number {
    this.openWrites++;
    return this.current;
  }

  /** Closes the open epoch and sends its Barrier; returns its number, or -1 when no volume wrote in it. */
  close(): number {
    if (this.openWrites === 0) return -1;
    assert(this.closed.length < EPOCHS_OPEN_MAX, `fewer than ${EPOCHS_OPEN_MAX} epochs await their BarrierAck`);
    const epoch = this.current;
    this.closed.push({ epoch, writes: this.openWrites });
    this.openWrites = 0;
    this.current = (this.current + 1) >>> 0;
    for (const member of this.members) member.epochClosed(epoch);
    this.channel.send({ type: PacketType.Barrier, epoch });
    return epoch;
  }

  /** P_BARRIER_ACK: the oldest closed epoch is on the peer's stable storage; every volume releases its part. */
  handleBarrierAck(packet: BarrierAckPacket): void {
    const oldest = this.closed.shift();
    assert(oldest !== undefined, `BarrierAck ${packet.epoch} answers a Barrier that was sent`);
    assert(oldest.epoch === packet.epoch, `BarrierAck ${packet.epoch} is for the oldest open epoch ${oldest.epoch}`);
    assert(oldest.writes === packet.writes, `BarrierAck ${packet.epoch} covers ${packet.writes} writes; the epoch had ${oldest.writes} on all volumes`);
    this.acked = packet.epoch;
    for (const member of this.members) member.epochAcked(packet.epoch);
  }
}

/** One received epoch: its Data packets of every volume. */
export interface ReceivedEpoch {
  writes: number;
  /** ... not yet finished on their local disk. */
  pending: number;
  /** Set while the Barrier waits for `pending` to reach 0. */
  drained: (() => void) | null;
}

/** A volume's side of the receiver's epochs (replication/receiver SecondaryReceiver). */
export interface ReceiverEpochMember {
  /** This volume's disk-flushes: false makes the connection's barriers drain only. */
  readonly diskFlushes: boolean;
  /** Flushes this volume's disk for a Barrier; false after a failed flush (the member has logged and reported it). */
  flushForBarrier(epoch: number): Promise<boolean>;
}

export class ReceiverEpochs {
  private readonly epochs = new Map<number, ReceivedEpoch>();
  private barrierChain: Promise<void> = Promise.resolve();
  /** Barriers received and not yet answered, in arrival order (bounded by EPOCHS_OPEN_MAX). */
  private readonly barriersWaiting: Array<{ epoch: number; record: ReceivedEpoch | undefined }> = [];
  /** Newest epoch a completed flush covers (group commit), or null. */
  private flushedThroughEpoch: number | null = null;
  private readonly members = new Set<ReceiverEpochMember>();

  constructor(private readonly channel: PeerChannel) {}

  join(member: ReceiverEpochMember): void {
    assert(this.members.size < EPOCH_MEMBERS_MAX || this.members.has(member), `at most ${EPOCH_MEMBERS_MAX} volumes share one connection's epochs`);
    this.members.add(member);
  }

  leave(member: ReceiverEpochMember): void {
    this.members.delete(member);
  }

  /** The record a received Data packet of `epoch` counts into (any volume). */
  record(epoch: number): ReceivedEpoch {
    let record = this.epochs.get(epoch);
    if (record === undefined) {
      assert(this.epochs.size < EPOCHS_OPEN_MAX, `fewer than ${EPOCHS_OPEN_MAX} epochs open`);
      record = { writes: 0, pending: 0, drained: null };
      this.epochs.set(epoch, record);
    }
    return record;
  }

  /** A write counted into `record` is done on its disk. */
  writeDone(record: ReceivedEpoch): void {
    assert(record.pending > 0, 'a done write was pending in its epoch');
    record.pending--;
    if (record.pending === 0 && record.drained) record.drained();
  }

  handleBarrier(packet: BarrierPacket): void {
    const record = this.epochs.get(packet.epoch);
    assert(this.barriersWaiting.length < EPOCHS_OPEN_MAX, `fewer than ${EPOCHS_OPEN_MAX} barriers unanswered`);
    this.barriersWaiting.push({ epoch: packet.epoch, record });
    // Barriers are answered strictly in order, each after its epoch is on stable storage.
    this.barrierChain = this.barrierChain.then(() => this.completeEpoch(packet.epoch, record));
  }

  /** Resolves once every Barrier received so far is answered (orderly disconnect, tests). */
  idle(): Promise<void> {
    return this.barrierChain;
  }

  private async completeEpoch(epoch: number, record: ReceivedEpoch | undefined): Promise<void> {
    if (record && record.pending > 0) {
      await new Promise<void>((resolve) => {
        record.drained = resolve;
      });
    }
    assert(!record || record.pending === 0, `epoch ${epoch} has no writes in flight at its barrier`);
    this.epochs.delete(epoch);
    const head = this.barriersWaiting.shift();
    assert(head !== undefined && head.epoch === epoch, 'barriers complete in the order they arrived');
    const ack = (): void => {
      if (this.channel.isOpen) this.channel.send({ type: PacketType.BarrierAck, epoch, writes: record ? record.writes : 0 });
    };
    if (this.flushedThroughEpoch !== null && this.flushedThroughEpoch - epoch >= 0 && this.flushedThroughEpoch - epoch < EPOCHS_OPEN_MAX) {
      // An earlier flush started after this epoch's writes were done: it is on stable storage already.
      return ack();
    }
    // Group commit: one flush also covers the following barriers already received whose writes are all done.
    let covered = epoch;
    for (const next of this.barriersWaiting) {
      if (next.record !== undefined && next.record.pending > 0) break;
      covered = next.epoch;
    }
    const members = [...this.members];
    // disk-flushes no on any volume: DRBD's "drain" ordering for the connection — the writes are complete, not flushed.
    if (!members.every((m) => m.diskFlushes)) return ack();
    // The flushes may run on this thread (disk/file-disk): acks already queued leave first.
    this.channel.push?.();
    const flushed = await Promise.all(members.map((m) => m.flushForBarrier(epoch)));
    if (!flushed.every(Boolean)) {
      if (this.channel.isOpen) this.channel.close('ProtocolError');
      return;
    }
    this.flushedThroughEpoch = covered;
    ack();
  }
}

/** One connection's epochs, both directions; created per established link and handed to every volume's engine. */
export interface LinkEpochs {
  readonly sender: SenderEpochs;
  readonly receiver: ReceiverEpochs;
}

export function newLinkEpochs(channel: PeerChannel): LinkEpochs {
  return { sender: new SenderEpochs(channel), receiver: new ReceiverEpochs(channel) };
}
