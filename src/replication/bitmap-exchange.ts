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

export class BitmapExchange {
  private peerDone = false;
  private aborted = false;
  private waiter: (() => void) | null = null;
  /** Bits the peer had set that we did not. */
  newlySetFromPeer = 0;

  constructor(private readonly bitmap: DirtyBitmap) {}

  /** Sends our bitmap, then resolves once the peer's has been merged into ours. */
  async exchange(peer: PeerChannel): Promise<{ bitsSet: number; newlySetFromPeer: number }> {
    await this.send(peer);
    if (!this.peerDone) {
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
    if (this.aborted) throw new Error('link lost during bitmap exchange');
    return { bitsSet: this.bitmap.countSet(), newlySetFromPeer: this.newlySetFromPeer };
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
      if (!peer.send({ type: PacketType.Bitmap, firstByte, bits, last })) await peer.drained();
      if (last) break;
    }
  }

  handleBitmap(packet: BitmapPacket): void {
    assert(!this.peerDone, 'no Bitmap packet after the last one');
    this.newlySetFromPeer += mergeBitmapChunk(this.bitmap, packet.firstByte, packet.bits);
    if (packet.last) {
      this.peerDone = true;
      this.waiter?.();
      this.waiter = null;
    }
  }

  /** Link lost: a pending exchange fails. */
  abort(): void {
    this.aborted = true;
    this.peerDone = true;
    this.waiter?.();
    this.waiter = null;
  }
}
