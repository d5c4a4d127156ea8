/**
 * replication/peer-read — PeerReads, application reads served by the peer's
 * disk: a diskless Primary's reads, and the retry of a read the local disk
 * failed (DRBD 8.4 retries a failed READ on the peer, drbd_req.c). It asks
 * with the resync's request (RsDataRequest, answered by the peer's
 * ResyncResponder with RsDataReply or RsNegAck — the path a SyncTarget
 * already uses for an on-demand block), tagged BlockIdTag.read so the
 * answer comes here and the peer expects no RsWriteAck for it: nothing is
 * written here and no bit changes on either side. One instance per link;
 * when the link goes, every read in flight fails with EIO.
 */
import { eioError } from '../disk/block-device.js';
import type { PeerChannel } from '../peer/channel.js';
import { releaseReceivedPayload } from '../peer/codec.js';
import { PacketType, type RsDataReply } from '../peer/packets.js';
import { BlockIdAllocator, BlockIdTag } from './block-id.js';
import type { ReplicationCounters } from './counters.js';
import { Slots } from './range-lock.js';

/** Reads the peer is asked for at once; more wait for a slot. */
export const PEER_READS_INFLIGHT_MAX = 64;

interface PendingRead {
  readonly buffer: Buffer;
  readonly offsetBytes: number;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

export class PeerReads {
  private readonly ids = new BlockIdAllocator(BlockIdTag.read);
  private readonly pending = new Map<number, PendingRead>();
  private readonly slots = new Slots(PEER_READS_INFLIGHT_MAX);
  private closedReason: string | null = null;

  constructor(
    private readonly peer: PeerChannel,
    private readonly counters: ReplicationCounters,
    /** The volume these reads are for (the header of every RsDataRequest sent). */
    private readonly vnr: number,
  ) {}

  /** Fills `buffer` from the peer's disk at `offsetBytes`; rejects with EIO if the peer cannot. */
  async read(buffer: Buffer, offsetBytes: number): Promise<void> {
    const slot = this.slots.acquire();
    if (slot !== true) await slot;
    try {
      if (this.closedReason !== null || !this.peer.isOpen) throw eioError(`read at ${offsetBytes}: no connection to the peer (${this.closedReason ?? 'closed'})`);
      const blockId = this.ids.next();
      await new Promise<void>((resolve, reject) => {
        this.pending.set(blockId, { buffer, offsetBytes, resolve, reject });
        this.peer.send({ type: PacketType.RsDataRequest, volume: this.vnr, offsetBytes, lengthBytes: buffer.length, blockId });
      });
    } finally {
      this.slots.release();
    }
  }

  handleReply(packet: RsDataReply): void {
    const read = this.pending.get(packet.blockId);
    if (read === undefined) {
      releaseReceivedPayload(packet.payload);
      return;
    }
    this.pending.delete(packet.blockId);
    if (packet.offsetBytes !== read.offsetBytes || packet.payload.length !== read.buffer.length) {
      releaseReceivedPayload(packet.payload);
      read.reject(eioError(`peer answered the read at ${read.offsetBytes} (+${read.buffer.length}) with ${packet.offsetBytes} (+${packet.payload.length})`));
      return;
    }
    packet.payload.copy(read.buffer);
    releaseReceivedPayload(packet.payload);
    this.counters.receivedBytes += read.buffer.length;
    read.resolve();
  }

  /** The peer could not read the blocks (RsNegAck). */
  handleNegAck(blockId: number): void {
    const read = this.pending.get(blockId);
    if (read === undefined) return;
    this.pending.delete(blockId);
    read.reject(eioError(`the peer could not read ${read.buffer.length} bytes at ${read.offsetBytes}`));
  }

  /** The link is gone: every read in flight fails. */
  close(reason: string): void {
    this.closedReason = reason;
    for (const read of this.pending.values()) read.reject(eioError(`read at ${read.offsetBytes}: link lost (${reason})`));
    this.pending.clear();
  }
}
