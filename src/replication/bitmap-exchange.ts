/**
 * replication/bitmap-exchange — after a sync handshake both nodes send their
 * out-of-sync bitmap and OR the peer's into their own, so both agree on the
 * union of out-of-sync blocks (DRBD's P_BITMAP exchange). Chunks with no set
 * bit are not sent (DRBD compresses them away with RLE). Knows nothing of who
 * becomes SyncSource.
 */
import type { DirtyBitmap } from '../meta/types.js';
import type { PeerChannel } from '../peer/channel.js';
import { type BitmapPacket, PacketType } from '../peer/packets.js';
import { assert } from '../util/assert.js';

/** Bitmap bytes per Bitmap packet (32768 bits = 128 MiB of data). */
export const BITMAP_CHUNK_BYTES = 4096;
const BITS_PER_CHUNK = BITMAP_CHUNK_BYTES * 8;

/** Fills `out` with bits [firstBit, firstBit + out.length*8) of `bitmap`, LE bit order; returns bits set. */
export function encodeBitmapChunk(bitmap: DirtyBitmap, firstBit: number, out: Buffer): number {
  assert(firstBit % 8 === 0, `bitmap chunk starts on a byte (bit ${firstBit})`);
  return bitmap.exportBytes(firstBit / 8, out);
}

/** ORs chunk bytes into `bitmap` starting at byte `firstByte` (word at a time); returns bits newly set. */
export function mergeBitmapChunk(bitmap: DirtyBitmap, firstByte: number, bits: Buffer): number {
  return bitmap.orBytes(firstByte, bits);
}

/**
 * One per link, for every exchange on it: the first after the connect, and
 * each renegotiation on the live link (a re-attach, `primary --force`). The
 * peer may be one round ahead (its packets of round N+1 arrive before we
 * start round N+1): they are merged as they come and count for that round.
 */
export class BitmapExchange {
  /** Rounds we started (exchange() calls). */
  private ourRounds = 0;
  /** Rounds whose last packet the peer sent. */
  private peerRounds = 0;
  /** Bits newly set by the peer's packets of the round it is sending. */
  private peerRoundNewlySet = 0;
  /** newlySetFromPeer of each round the peer finished and exchange() has not taken yet. */
  private readonly finishedRounds: number[] = [];
  private aborted = false;
  private waiter: (() => void) | null = null;

  constructor(
    private readonly bitmap: DirtyBitmap,
    /** The volume whose bitmap this is (the header of every Bitmap packet sent). */
    private readonly vnr: number,
  ) {}

  /** Sends our bitmap, then resolves once the peer's (of the same round) has been merged into ours. */
  async exchange(peer: PeerChannel): Promise<{ bitsSet: number; newlySetFromPeer: number }> {
    assert(this.waiter === null, 'one bitmap exchange at a time on a link');
    const round = ++this.ourRounds;
    await this.send(peer);
    if (this.peerRounds < round && !this.aborted) {
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
    if (this.aborted) throw new Error('link lost during bitmap exchange');
    const newlySetFromPeer = this.finishedRounds.shift() ?? 0;
    return { bitsSet: this.bitmap.countSet(), newlySetFromPeer };
  }

  private async send(peer: PeerChannel): Promise<void> {
    const totalBytes = Math.ceil(this.bitmap.bitCount / 8);
    for (let firstByte = 0; firstByte < totalBytes || firstByte === 0; firstByte += BITMAP_CHUNK_BYTES) {
      const chunkBytes = Math.min(BITMAP_CHUNK_BYTES, totalBytes - firstByte);
      const last = firstByte + BITMAP_CHUNK_BYTES >= totalBytes;
      const firstBit = firstByte * 8;
      const next = this.bitmap.nextSet(firstBit);
      const empty = next < 0 || next >= firstBit + BITS_PER_CHUNK;
      if (empty && !last) continue;
      const bits = Buffer.alloc(Math.max(0, chunkBytes));
      if (!empty) encodeBitmapChunk(this.bitmap, firstBit, bits);
      if (!peer.isOpen) throw new Error('link lost during bitmap exchange');
      if (!peer.send({ type: PacketType.Bitmap, volume: this.vnr, firstByte, bits, last })) await peer.drained();
      if (last) break;
    }
  }

  handleBitmap(packet: BitmapPacket): void {
    assert(this.peerRounds <= this.ourRounds, 'no Bitmap packet more than one exchange ahead of ours');
    this.peerRoundNewlySet += mergeBitmapChunk(this.bitmap, packet.firstByte, packet.bits);
    if (packet.last) {
      this.peerRounds++;
      this.finishedRounds.push(this.peerRoundNewlySet);
      this.peerRoundNewlySet = 0;
      if (this.peerRounds >= this.ourRounds) {
        this.waiter?.();
        this.waiter = null;
      }
    }
  }

  /** Link lost: a pending exchange fails. */
  abort(): void {
    this.aborted = true;
    this.waiter?.();
    this.waiter = null;
  }
}
