/**
 * replication/volume under on-congestion (drbd_req.c maybe_pull_ahead), over
 * an in-memory link whose return direction is held (no BarrierAck comes
 * back, so the bytes in flight only grow): past congestion-fill or
 * congestion-extents the volume stops sending Data; with pull-ahead every
 * write completes locally, its bits are set and the newly set range goes to
 * the peer as P_OUT_OF_SYNC; the resource layer hears `congested` once and
 * `aheadDrained` when the held acks arrive. `block` and protocol C never pull
 * ahead; `disconnect` marks without telling the peer.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { PacketType } from '../../src/peer/packets.js';
import type { OnCongestion, ReplicationOptions } from '../../src/replication/options.js';
import { connect, makeNode, pattern, sleep, until, type MemoryEnd, type Node } from '../helpers/replication-helpers.js';

const SIZE_BYTES = 16 * 1024 * 1024;
const BLOCK_BYTES = 4096;
const EXTENT_BYTES = 4 * 1024 * 1024;
const open: MemoryEnd[] = [];
afterEach(() => {
  for (const end of open.splice(0)) if (end.isOpen) end.close('Disconnecting');
});

interface Probe {
  congested: Array<Exclude<OnCongestion, 'block'>>;
  drained: number;
  accept: boolean;
}

function pair(options: Partial<ReplicationOptions>): { p: Node; s: Node; toPeer: MemoryEnd; back: MemoryEnd; probe: Probe } {
  const p = makeNode(SIZE_BYTES, options);
  const s = makeNode(SIZE_BYTES, options);
  const [toPeer, back] = connect(p, s);
  open.push(toPeer, back);
  const probe: Probe = { congested: [], drained: 0, accept: true };
  p.engine.volume.setCongestionHandler({
    congested: (policy) => {
      probe.congested.push(policy);
      return probe.accept;
    },
    aheadDrained: () => {
      probe.drained++;
    },
  });
  p.engine.volume.setCongestionArmed(true);
  // The peer's answers (BarrierAck) stay queued: the bytes in flight never drain.
  back.held = true;
  return { p, s, toPeer, back, probe };
}

const received = (end: MemoryEnd, type: number): number => end.other.received.filter((d) => d.packet.type === type).length;

describe('on-congestion pull-ahead (protocol A)', () => {
  it('past congestion-fill: writes complete locally, bits set on both nodes via P_OUT_OF_SYNC, Data no longer sent', async () => {
    const { p, s, toPeer, back, probe } = pair({ protocol: 'A', onCongestion: 'pull-ahead', congestionFillBytes: 16 * BLOCK_BYTES });
    for (let i = 0; i < 16; i++) await p.engine.volume.write(pattern(BLOCK_BYTES, i), i * BLOCK_BYTES);
    expect(probe.congested).toEqual([]);
    expect(p.engine.volume.transferLogBytes).toBe(16 * BLOCK_BYTES);
    // The 17th write finds 64 KiB in flight: Ahead; it and every later one are only marked.
    for (let i = 16; i < 48; i++) await p.engine.volume.write(pattern(BLOCK_BYTES, i), i * BLOCK_BYTES);
    expect(probe.congested).toEqual(['pull-ahead']);
    expect(p.engine.volume.isAhead).toBe(true);
    expect(p.lines.some((l) => l.includes('Congestion-fill threshold reached'))).toBe(true);
    expect(p.bitmap.countSet()).toBe(32);
    for (let i = 16; i < 48; i++) expect(p.memory.data.subarray(i * BLOCK_BYTES, (i + 1) * BLOCK_BYTES).equals(pattern(BLOCK_BYTES, i))).toBe(true);
    await until('32 P_OUT_OF_SYNC at the peer', () => received(toPeer, PacketType.OutOfSync) === 32);
    expect(received(toPeer, PacketType.Data)).toBe(16);
    expect(s.bitmap.countSet()).toBe(32);
    // Writing a marked block again sends nothing new: its bits were already set.
    await p.engine.volume.write(pattern(BLOCK_BYTES, 99), 20 * BLOCK_BYTES);
    await sleep(10);
    expect(received(toPeer, PacketType.OutOfSync)).toBe(32);
    // A flush while Ahead is the local disk's alone: it does not wait for the held BarrierAcks.
    await p.engine.volume.flush();
    expect(probe.drained).toBe(0);
    back.release();
    await until('aheadDrained', () => probe.drained === 1);
    expect(p.engine.volume.transferLogBytes).toBe(0);
    // Back to mirroring once the resource layer left Ahead.
    p.engine.volume.leaveAhead();
    await p.engine.volume.write(pattern(BLOCK_BYTES, 100), 100 * BLOCK_BYTES);
    await until('the Data of the write after Ahead', () => received(toPeer, PacketType.Data) === 17);
  });

  it('past congestion-extents: writes in flight over that many 4 MiB extents pull ahead', async () => {
    const { p, probe } = pair({ protocol: 'A', onCongestion: 'pull-ahead', congestionExtents: 2 });
    await p.engine.volume.write(pattern(BLOCK_BYTES, 1), 0);
    await p.engine.volume.write(pattern(BLOCK_BYTES, 2), EXTENT_BYTES);
    expect(probe.congested).toEqual([]);
    await p.engine.volume.write(pattern(BLOCK_BYTES, 3), 2 * EXTENT_BYTES);
    expect(probe.congested).toEqual(['pull-ahead']);
    expect(p.lines.some((l) => l.includes('Congestion-extents threshold reached'))).toBe(true);
    expect(p.bitmap.countSet()).toBe(1);
  });

  it('the resource layer refusing (not Connected any more) leaves the volume mirroring', async () => {
    const { p, toPeer, probe } = pair({ protocol: 'A', onCongestion: 'pull-ahead', congestionFillBytes: 4 * BLOCK_BYTES });
    probe.accept = false;
    for (let i = 0; i < 8; i++) await p.engine.volume.write(pattern(BLOCK_BYTES, i), i * BLOCK_BYTES);
    expect(probe.congested).toEqual(['pull-ahead']);
    expect(p.engine.volume.isAhead).toBe(false);
    expect(p.bitmap.countSet()).toBe(0);
    await until('8 Data', () => received(toPeer, PacketType.Data) === 8);
  });
});

describe('the other policies and protocols', () => {
  it('disconnect: writes past the threshold are marked locally only, the peer hears nothing until the link is closed', async () => {
    const { p, toPeer, probe } = pair({ protocol: 'A', onCongestion: 'disconnect', congestionFillBytes: 4 * BLOCK_BYTES });
    for (let i = 0; i < 8; i++) await p.engine.volume.write(pattern(BLOCK_BYTES, i), i * BLOCK_BYTES);
    expect(probe.congested).toEqual(['disconnect']);
    await sleep(10);
    expect(received(toPeer, PacketType.OutOfSync)).toBe(0);
    expect(received(toPeer, PacketType.Data)).toBe(4);
    expect(p.bitmap.countSet()).toBe(4);
    // The link goes: the 4 unacknowledged writes go out of sync as well.
    p.engine.detachPeer('Disconnecting');
    expect(p.bitmap.countSet()).toBe(8);
  });

  it('block (the default) never pulls ahead, and neither does a non-block policy under protocol C', async () => {
    for (const options of [{ protocol: 'A', onCongestion: 'block' }, { protocol: 'C', onCongestion: 'pull-ahead' }] as const) {
      const { p, back, probe } = pair({ ...options, congestionFillBytes: 2 * BLOCK_BYTES, congestionExtents: 1 });
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 8; i++) writes.push(p.engine.volume.write(pattern(BLOCK_BYTES, i), i * BLOCK_BYTES));
      if (options.protocol === 'C') back.release();
      await Promise.all(writes);
      expect(probe.congested, JSON.stringify(options)).toEqual([]);
      expect(p.bitmap.countSet()).toBe(0);
    }
  });
});

describe('the P_OUT_OF_SYNC backlog is bounded', () => {
  it('Ahead on a link that moves nothing: once the send queue is above high water the link is closed, every write still marked', async () => {
    const p = makeNode(SIZE_BYTES, { protocol: 'A', onCongestion: 'pull-ahead', congestionFillBytes: 4 * BLOCK_BYTES });
    const s = makeNode(SIZE_BYTES, { protocol: 'A' });
    const [toPeer, back] = connect(p, s);
    open.push(toPeer, back);
    const probe: Probe = { congested: [], drained: 0, accept: true };
    p.engine.volume.setCongestionHandler({ congested: (policy) => (probe.congested.push(policy), true), aheadDrained: () => undefined });
    p.engine.volume.setCongestionArmed(true);
    // Nothing leaves alpha: its queue grows with every packet; the memory channel's high water is 256 packets.
    toPeer.held = true;
    for (let i = 0; i < 600; i++) await p.engine.volume.write(pattern(BLOCK_BYTES, i), i * BLOCK_BYTES);
    expect(probe.congested).toEqual(['pull-ahead']);
    expect(toPeer.isOpen).toBe(false);
    expect(p.engine.isAttached).toBe(false);
    expect(p.lines.some((l) => l.includes('data path detached from peer') && l.includes('NetworkFailure'))).toBe(true);
    expect(p.lines.some((l) => l.includes('P_OUT_OF_SYNC backlog above the send high-water mark'))).toBe(true);
    // Every write is marked: the 4 sent before Ahead (never acknowledged) and the 596 after.
    expect(p.bitmap.countSet()).toBe(600);
  });
});
