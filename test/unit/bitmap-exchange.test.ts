/**
 * replication/bitmap-exchange: two exchanges on one link. Found by the
 * torture (seed 1, episode 15, disk-eio): a Primary detached on EIO, then
 * `attach` on the live link renegotiated after an earlier resync on that
 * same link; the second bitmap exchange tripped "no Bitmap packet after the
 * last one" and killed the SyncSource's resource process.
 */
import { describe, it, expect } from 'vitest';
import { Bitmap } from '../../src/meta/bitmap.js';
import { BitmapExchange } from '../../src/replication/bitmap-exchange.js';
import type { PeerChannel } from '../../src/peer/channel.js';
import { PacketType, type Packet } from '../../src/peer/packets.js';

/** A channel whose Bitmap packets reach `deliver` on a later turn, in order. */
function channelTo(deliver: () => BitmapExchange): PeerChannel {
  return {
    send(packet: Packet): boolean {
      if (packet.type === PacketType.Bitmap) setImmediate(() => deliver().handleBitmap(packet));
      return true;
    },
    drained: () => Promise.resolve(),
    onPacket: () => undefined,
    onClose: () => undefined,
    close: () => undefined,
    isOpen: true,
  };
}

describe('bitmap exchange', () => {
  it('a second exchange on the same link (re-attach after a resync) merges again instead of killing the process', async () => {
    const bitsA = new Bitmap(100_000);
    const bitsB = new Bitmap(100_000);
    const a = new BitmapExchange(bitsA, 0);
    const b = new BitmapExchange(bitsB, 0);
    const toB = channelTo(() => b);
    const toA = channelTo(() => a);
    bitsA.setRange(5, 5 + 1);
    bitsB.setRange(70_000, 70_000 + 1);
    const [ra1, rb1] = await Promise.all([a.exchange(toB), b.exchange(toA)]);
    expect(ra1).toEqual({ bitsSet: 2, newlySetFromPeer: 1 });
    expect(rb1).toEqual({ bitsSet: 2, newlySetFromPeer: 1 });
    // The resync clears both; then writes while one side was diskless mark new blocks.
    bitsA.clearAll();
    bitsB.clearAll();
    bitsB.setRange(42, 42 + 1);
    bitsA.setRange(99_000, 99_000 + 1);
    // b starts its round first: its packets arrive before a's exchange() (one round ahead).
    const rb2 = b.exchange(toA);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    const ra2 = await a.exchange(toB);
    expect(ra2).toEqual({ bitsSet: 2, newlySetFromPeer: 1 });
    expect(await rb2).toEqual({ bitsSet: 2, newlySetFromPeer: 1 });
    expect(bitsA.test(42) && bitsA.test(99_000) && bitsB.test(42) && bitsB.test(99_000)).toBe(true);
  });

  it('a link lost during an exchange fails it', async () => {
    const x = new BitmapExchange(new Bitmap(1000), 0);
    const silent = { ...channelTo(() => x), send: () => true } as unknown as PeerChannel;
    const pending = x.exchange(silent);
    await new Promise((r) => setImmediate(r));
    x.abort();
    await expect(pending).rejects.toThrow('link lost during bitmap exchange');
  });
});
