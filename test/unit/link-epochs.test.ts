/**
 * One connection, several volumes: the epoch stream both sides share
 * (replication/epochs) and the per-volume channels on one link
 * (peer/link-mux), alone and with two ReplicationEngines per node over an
 * in-memory link. DRBD 8.4 keeps the epochs per connection: a write on
 * volume 1 issued after a write on volume 0 completed lands in a later
 * epoch, and a Barrier is answered once every volume's writes of its epoch
 * are done and every volume's disk is flushed.
 */
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { LinkLossReason, PeerChannel } from '../../src/peer/channel.js';
import { LinkMux } from '../../src/peer/link-mux.js';
import { type Packet, PacketType } from '../../src/peer/packets.js';
import { ReceiverEpochs, SenderEpochs, newLinkEpochs } from '../../src/replication/epochs.js';
import { TransferLog } from '../../src/replication/transfer-log.js';
import { channelPair, makeNode, pattern, sleep, until } from '../helpers/replication-helpers.js';

const quiet = pino({ level: 'silent' });
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A PeerChannel that records what is sent and lets the test deliver packets and close it. */
class FakeLink implements PeerChannel {
  readonly sent: Packet[] = [];
  isOpen = true;
  closedWith: LinkLossReason | null = null;
  private handler: ((p: Packet) => void) | null = null;
  private closeHandler: ((r: LinkLossReason) => void) | null = null;
  send(packet: Packet): boolean {
    this.sent.push(packet);
    return true;
  }
  drained(): Promise<void> {
    return Promise.resolve();
  }
  onPacket(handler: (p: Packet) => void): void {
    this.handler = handler;
  }
  onClose(handler: (r: LinkLossReason) => void): void {
    this.closeHandler = handler;
  }
  close(reason: LinkLossReason): void {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.closedWith = reason;
    this.closeHandler?.(reason);
  }
  deliver(packet: Packet): void {
    this.handler?.(packet);
  }
}

const data = (volume: number, epoch: number): Packet => ({ type: PacketType.Data, volume, offsetBytes: 0, blockId: 1, epoch, flags: 0, payload: Buffer.alloc(512) });

describe('SenderEpochs: one epoch stream for every volume of a connection', () => {
  it('numbers the writes of two volumes in one stream, one Barrier per epoch, the ack releasing both volumes', () => {
    const link = new FakeLink();
    const epochs = new SenderEpochs(link);
    const logs = [new TransferLog(), new TransferLog()];
    const acked: string[] = [];
    logs.forEach((tl, vnr) => epochs.join({ epochClosed: (e) => tl.epochClosed(e), epochAcked: (e) => acked.push(`${vnr}:${e}:${tl.barrierAcked(e)}`) }));
    logs[0]!.add(0, 4096, epochs.noteWrite());
    logs[1]!.add(0, 4096, epochs.noteWrite());
    expect(epochs.writesInOpenEpoch).toBe(2);
    expect(epochs.close()).toBe(1);
    logs[1]!.add(4096, 4096, epochs.noteWrite());
    expect(epochs.close()).toBe(2);
    expect(epochs.close()).toBe(-1); // nothing written since
    expect(link.sent).toEqual([{ type: PacketType.Barrier, epoch: 1 }, { type: PacketType.Barrier, epoch: 2 }]);
    epochs.handleBarrierAck({ type: PacketType.BarrierAck, epoch: 1, writes: 2 });
    epochs.handleBarrierAck({ type: PacketType.BarrierAck, epoch: 2, writes: 1 });
    // Volume 0 wrote nothing in epoch 2: its part of that ack is empty.
    expect(acked).toEqual(['0:1:1', '1:1:1', '0:2:0', '1:2:1']);
    expect(logs.map((tl) => tl.size)).toEqual([0, 0]);
    expect(epochs.ackedThroughEpoch).toBe(2);
  });

  it('refuses a BarrierAck whose write count is not the epoch\'s on all volumes', () => {
    const epochs = new SenderEpochs(new FakeLink());
    epochs.noteWrite();
    epochs.noteWrite();
    epochs.close();
    expect(() => epochs.handleBarrierAck({ type: PacketType.BarrierAck, epoch: 1, writes: 1 })).toThrow(/invariant.*2 on all volumes/);
  });
});

describe('ReceiverEpochs: a Barrier waits for every volume', () => {
  function member(diskFlushes = true, fails = false): { diskFlushes: boolean; flushed: number[]; flushForBarrier(e: number): Promise<boolean> } {
    return {
      diskFlushes,
      flushed: [],
      async flushForBarrier(e: number) {
        this.flushed.push(e);
        return !fails;
      },
    };
  }

  it('answers once both volumes\' writes of the epoch are done, after flushing both disks', async () => {
    const link = new FakeLink();
    const epochs = new ReceiverEpochs(link);
    const [m0, m1] = [member(), member()];
    epochs.join(m0);
    epochs.join(m1);
    const record = epochs.record(7);
    record.writes += 2;
    record.pending += 2; // one Data of volume 0, one of volume 1
    epochs.handleBarrier({ type: PacketType.Barrier, epoch: 7 });
    await tick();
    epochs.writeDone(record);
    await tick();
    expect(link.sent).toEqual([]); // volume 1's write is still in flight
    expect(m0.flushed).toEqual([]);
    epochs.writeDone(record);
    await epochs.idle();
    expect(m0.flushed).toEqual([7]);
    expect(m1.flushed).toEqual([7]);
    expect(link.sent).toEqual([{ type: PacketType.BarrierAck, epoch: 7, writes: 2 }]);
  });

  it('drains only when some volume has disk-flushes no; a failed flush drops the connection unanswered', async () => {
    const drainLink = new FakeLink();
    const drain = new ReceiverEpochs(drainLink);
    const [f0, f1] = [member(true), member(false)];
    drain.join(f0);
    drain.join(f1);
    drain.record(1).writes++;
    drain.handleBarrier({ type: PacketType.Barrier, epoch: 1 });
    await drain.idle();
    expect(f0.flushed).toEqual([]);
    expect(drainLink.sent).toEqual([{ type: PacketType.BarrierAck, epoch: 1, writes: 1 }]);

    const failLink = new FakeLink();
    const failing = new ReceiverEpochs(failLink);
    failing.join(member());
    failing.join(member(true, true));
    failing.record(1).writes++;
    failing.handleBarrier({ type: PacketType.Barrier, epoch: 1 });
    await failing.idle();
    expect(failLink.sent).toEqual([]);
    expect(failLink.closedWith).toBe('ProtocolError');
  });
});

describe('LinkMux: one connection, a channel per volume', () => {
  it('routes by the header\'s volume, holds what arrives early in order, gives connection packets to the lowest listener', () => {
    const link = new FakeLink();
    const mux = new LinkMux(link, [1, 0], quiet);
    const got: string[] = [];
    mux.channel(1).onPacket((p) => got.push(`1:${p.type === PacketType.Data ? 'Data' : 'Barrier'}`));
    link.deliver(data(1, 1));
    link.deliver(data(0, 1)); // volume 0 not listening yet: held, and everything after it
    link.deliver({ type: PacketType.Barrier, epoch: 1 });
    link.deliver(data(1, 2));
    expect(got).toEqual(['1:Data']);
    mux.channel(0).onPacket((p) => got.push(`0:${p.type === PacketType.Data ? 'Data' : 'Barrier'}`));
    expect(got).toEqual(['1:Data', '0:Data', '0:Barrier', '1:Data']);
    expect(() => link.deliver(data(5, 1))).toThrow(/volume 5/);
  });

  it('a volume closing its channel closes the connection; every volume hears the loss once', async () => {
    const link = new FakeLink();
    const mux = new LinkMux(link, [0, 1], quiet);
    const heard: string[] = [];
    mux.channel(0).onClose((r) => heard.push(`0:${r}`));
    mux.channel(1).onClose((r) => heard.push(`1:${r}`));
    mux.channel(1).close('ProtocolError');
    expect(link.isOpen).toBe(false);
    expect(mux.channel(0).isOpen).toBe(false);
    mux.channel(0).onClose((r) => heard.push(`late:${r}`));
    await tick();
    expect(heard).toEqual(['0:ProtocolError', '1:ProtocolError', 'late:ProtocolError']);
  });
});

describe('two volumes replicating over one link', () => {
  const SIZE = 1024 * 1024;

  it('a write on volume 1 after one on volume 0 completed is in a later epoch; each Barrier flushes both disks', async () => {
    const [a, b] = channelPair();
    const primaries = [0, 1].map((vnr) => makeNode(SIZE, { protocol: 'C' }, undefined, vnr));
    const secondaries = [0, 1].map((vnr) => makeNode(SIZE, { protocol: 'C' }, undefined, vnr));
    const [muxA, muxB] = [new LinkMux(a, [0, 1], quiet), new LinkMux(b, [0, 1], quiet)];
    const [epochsA, epochsB] = [newLinkEpochs(a), newLinkEpochs(b)];
    primaries.forEach((n, vnr) => n.engine.attachPeer({ channel: muxA.channel(vnr), epochs: epochsA }));
    secondaries.forEach((n, vnr) => n.engine.attachPeer({ channel: muxB.channel(vnr), epochs: epochsB }));
    for (const n of primaries) n.engine.startMirroring();
    const [p0, p1] = primaries as [ReturnType<typeof makeNode>, ReturnType<typeof makeNode>];
    const [s0, s1] = secondaries as [ReturnType<typeof makeNode>, ReturnType<typeof makeNode>];

    await p0.engine.volume.write(pattern(4096, 1), 0);
    await p1.engine.volume.write(pattern(4096, 2), 8192);
    await p1.engine.volume.flush();
    await p0.engine.volume.flush();

    const sent = b.received.map((d) => d.packet);
    const dataEpochs = sent.flatMap((p) => (p.type === PacketType.Data ? [[p.volume, p.epoch]] : []));
    expect(dataEpochs.map(([v]) => v)).toEqual([0, 1]);
    expect(dataEpochs[1]![1]!).toBeGreaterThan(dataEpochs[0]![1]!);
    const barriers = sent.flatMap((p) => (p.type === PacketType.Barrier ? [p.epoch] : []));
    expect(new Set(barriers).size).toBe(barriers.length); // one number stream, no volume reusing another's
    await until('every Barrier answered', () => a.received.filter((d) => d.packet.type === PacketType.BarrierAck).length === barriers.length);
    const ackedWrites = a.received.reduce((n, d) => n + (d.packet.type === PacketType.BarrierAck ? d.packet.writes : 0), 0);
    expect(ackedWrites).toBe(2);
    // Volume 0's Barrier flushed volume 1's disk too (drbd_flush(tconn)), and the reverse.
    expect(s0.disk.flushes.length).toBe(barriers.length);
    expect(s1.disk.flushes.length).toBe(barriers.length);
    const got0 = Buffer.alloc(4096);
    const got1 = Buffer.alloc(4096);
    await s0.memory.read(got0, 0);
    await s1.memory.read(got1, 8192);
    expect(got0.equals(pattern(4096, 1))).toBe(true);
    expect(got1.equals(pattern(4096, 2))).toBe(true);
    const other = Buffer.alloc(4096);
    await s1.memory.read(other, 0);
    expect(other.equals(Buffer.alloc(4096))).toBe(true); // volume 0's write did not land on volume 1
  });

  it('under protocol A the Barrier of an epoch with writes of both volumes waits for the slower volume\'s disk', async () => {
    const [a, b] = channelPair();
    const primaries = [0, 1].map((vnr) => makeNode(SIZE, { protocol: 'A' }, undefined, vnr));
    const secondaries = [0, 1].map((vnr) => makeNode(SIZE, { protocol: 'A' }, undefined, vnr));
    const [muxA, muxB] = [new LinkMux(a, [0, 1], quiet), new LinkMux(b, [0, 1], quiet)];
    const [epochsA, epochsB] = [newLinkEpochs(a), newLinkEpochs(b)];
    primaries.forEach((n, vnr) => n.engine.attachPeer({ channel: muxA.channel(vnr), epochs: epochsA }));
    secondaries.forEach((n, vnr) => n.engine.attachPeer({ channel: muxB.channel(vnr), epochs: epochsB }));
    for (const n of primaries) n.engine.startMirroring();
    secondaries[0]!.disk.writeDelayMs = 60;
    await primaries[0]!.engine.volume.write(pattern(4096, 3), 0);
    await primaries[1]!.engine.volume.write(pattern(4096, 4), 0);
    const flushed = primaries[1]!.engine.volume.flush();
    await sleep(20);
    // Volume 1's write is on its disk, volume 0's is not: no epoch may be acknowledged yet.
    expect(secondaries[1]!.disk.writesDone).toBe(1);
    expect(secondaries[0]!.disk.writesDone).toBe(0);
    expect(a.received.filter((d) => d.packet.type === PacketType.BarrierAck)).toEqual([]);
    await flushed;
    expect(secondaries[0]!.disk.writesDone).toBe(1);
    // Each flush on the secondary came after both volumes' writes were done.
    expect(secondaries[0]!.disk.flushes.every((w) => w === 1)).toBe(true);
    expect(secondaries[1]!.disk.flushes.every((w) => w === 1)).toBe(true);
  });
});
