import { describe, it, expect, afterEach } from 'vitest';
import { PacketType, type BarrierAckPacket } from '../../src/peer/packets.js';
import { connect, flipBits, makeNode, pattern, sleep, setBits, type MemoryEnd, type Node } from '../helpers/replication-helpers.js';

const SIZE_BYTES = 8 * 1024 * 1024;
const open: MemoryEnd[] = [];
afterEach(() => {
  for (const end of open.splice(0)) if (end.isOpen) end.close('Disconnecting');
});

function pair(protocol: 'A' | 'B' | 'C', latencyMs = 0, extra = {}): { p: Node; s: Node; a: MemoryEnd; b: MemoryEnd } {
  const p = makeNode(SIZE_BYTES, { protocol, ...extra });
  const s = makeNode(SIZE_BYTES, { protocol, ...extra });
  const [a, b] = connect(p, s, { latencyMs });
  open.push(a, b);
  return { p, s, a, b };
}

describe('replication: when a write completes', () => {
  it('protocol C: every acknowledged write is already on the peer disk when it resolves', async () => {
    const { p, s } = pair('C', 1);
    const writes: Promise<void>[] = [];
    let checked = 0;
    for (let i = 0; i < 200; i++) {
      const offset = i * 32 * 1024; // distinct ranges
      const data = pattern(4096 * (1 + (i % 8)), i);
      writes.push(
        p.engine.volume.write(data, offset).then(() => {
          expect(s.memory.data.subarray(offset, offset + data.length).equals(data)).toBe(true);
          checked++;
        }),
      );
    }
    await Promise.all(writes);
    expect(checked).toBe(200);
    expect(p.bitmap.countSet()).toBe(0);
    expect(p.engine.counters.pe).toBe(0);
    expect(p.engine.counters.ap).toBe(0);
  });

  it('protocol A: writes complete without waiting for the (delayed) peer; flush waits for it', async () => {
    const { p, s } = pair('A', 150);
    const data = pattern(64 * 1024, 7);
    const started = Date.now();
    await p.engine.volume.write(data, 0);
    expect(Date.now() - started).toBeLessThan(100);
    expect(s.memory.data.subarray(0, data.length).equals(data)).toBe(false);
    await p.engine.volume.flush();
    expect(Date.now() - started).toBeGreaterThanOrEqual(290); // barrier and its ack each cross the link
    expect(s.memory.data.subarray(0, data.length).equals(data)).toBe(true);
    expect(s.disk.flushes.length).toBeGreaterThan(0);
  });

  it('protocol B: completes on RecvAck, before the peer disk finishes; C waits for it', async () => {
    for (const protocol of ['B', 'C'] as const) {
      const { p, s } = pair(protocol, 0);
      s.disk.writeDelayMs = 150;
      const data = pattern(8192, 3);
      const started = Date.now();
      await p.engine.volume.write(data, 4096);
      const elapsed = Date.now() - started;
      if (protocol === 'B') {
        expect(elapsed).toBeLessThan(100);
        expect(s.disk.writesDone).toBe(0);
      } else {
        expect(elapsed).toBeGreaterThanOrEqual(140);
        expect(s.memory.data.subarray(4096, 4096 + 8192).equals(data)).toBe(true);
      }
    }
  });

  it('flush returns only after the peer fdatasynced every earlier write (Barrier → BarrierAck)', async () => {
    const { p, s } = pair('B', 2);
    s.disk.writeDelayMs = 20;
    const writes = [];
    for (let i = 0; i < 20; i++) writes.push(p.engine.volume.write(pattern(4096, i), i * 4096));
    await Promise.all(writes);
    expect(s.disk.writesDone).toBeLessThan(20); // B: acked on receipt, not yet written
    await p.engine.volume.flush();
    expect(s.disk.writesDone).toBe(20);
    // the peer's flush happened after all 20 writes had been done
    expect(s.disk.flushes.some((writesBefore) => writesBefore === 20)).toBe(true);
    expect(p.disk.flushes.length).toBeGreaterThan(0);
  });

  it('a flush hands its Barrier to the transport before the local flush starts, and the Secondary its WriteAcks before its barrier flush', async () => {
    // A local flush may block the thread (disk/file-disk runs small ones inline): what is queued must leave first.
    const { p, s, a, b } = pair('C');
    const events: string[] = [];
    a.push = () => events.push('primary: push');
    const send = a.send.bind(a);
    a.send = (packet) => {
      if (packet.type === PacketType.Barrier) events.push('primary: send Barrier');
      return send(packet);
    };
    b.push = () => events.push('secondary: push');
    const pFlush = p.disk.flush.bind(p.disk);
    p.disk.flush = () => (events.push('primary: local flush'), pFlush());
    const sFlush = s.disk.flush.bind(s.disk);
    s.disk.flush = () => (events.push('secondary: barrier flush'), sFlush());
    await p.engine.volume.write(pattern(4096, 1), 0);
    await p.engine.volume.flush();
    const firstLocalFlush = events.indexOf('primary: local flush');
    const firstBarrierFlush = events.indexOf('secondary: barrier flush');
    expect(firstLocalFlush).toBeGreaterThan(-1);
    expect(firstBarrierFlush).toBeGreaterThan(-1);
    expect(events.slice(0, firstBarrierFlush)).toContain('secondary: push');
    expect(events[firstBarrierFlush - 1]).toBe('secondary: push');
    // The epoch's Barrier was sent (and, if the flush sent it, pushed) before the local flush began.
    const firstBarrierSent = events.indexOf('primary: send Barrier');
    expect(firstBarrierSent).toBeGreaterThan(-1);
    expect(firstBarrierSent).toBeLessThan(firstLocalFlush);
  });

  it('epochs close as in DRBD 8.4 (drbd_req_complete): a write issued after another completed is in a later epoch; a stream gets one Barrier per completion of an open-epoch write, not one per write', async () => {
    const { p, a, b } = pair('C', 1);
    const barriers: number[] = [];
    const dataEpochs = new Map<number, number>(); // offset -> epoch
    const send = a.send.bind(a);
    a.send = (packet) => {
      if (packet.type === PacketType.Barrier) barriers.push(packet.epoch);
      if (packet.type === PacketType.Data) dataEpochs.set(packet.offsetBytes, packet.epoch);
      return send(packet);
    };
    // A lone write: its Barrier is on the way when it completes (the peer's flush can start before an fsync).
    await p.engine.volume.write(pattern(4096, 0), 0);
    expect(barriers).toEqual([dataEpochs.get(0)]);
    expect(new Set(dataEpochs.values()).size).toBe(1);

    // A stream at queue depth 4: each new write is issued when one completes.
    const WRITES = 32;
    const DEPTH = 4;
    const completedBefore = new Map<number, number[]>(); // offset -> offsets completed before it was issued
    const completed: number[] = [];
    let next = 1;
    const issue = async (): Promise<void> => {
      while (next <= WRITES) {
        const offset = next++ * 4096;
        completedBefore.set(offset, [...completed]);
        await p.engine.volume.write(pattern(4096, offset), offset);
        completed.push(offset);
      }
    };
    await Promise.all(Array.from({ length: DEPTH }, issue));
    for (const [offset, earlier] of completedBefore) {
      for (const done of earlier) expect(dataEpochs.get(offset)!, `write at ${offset} issued after ${done} completed`).toBeGreaterThan(dataEpochs.get(done)!);
    }
    const streamBarriers = barriers.length - 1;
    expect(streamBarriers).toBeGreaterThan(0);
    expect(streamBarriers).toBeLessThanOrEqual(WRITES / 2); // one per write would be 32
    // A flush after the stream sends no Barrier for an empty epoch; it waits for the last one's ack.
    const before = barriers.length;
    await p.engine.volume.flush();
    expect(barriers.length).toBe(before);

    // Writes issued one per event-loop turn, none completed meanwhile (the Secondary's WriteAcks
    // are held back until all are issued, so no machine load can complete one early). The first
    // finds no write awaiting its ack: a lone write, its own epoch and Barrier. The other 15 share
    // one epoch and one Barrier — not one per write (each would cost the Secondary a device flush).
    const sendB = b.send.bind(b);
    let heldAcks: Parameters<typeof sendB>[0][] | null = [];
    b.send = (packet) => {
      if (heldAcks !== null && packet.type === PacketType.WriteAck) {
        heldAcks.push(packet);
        return true;
      }
      return sendB(packet);
    };
    const burst: Promise<void>[] = [];
    const first = 64;
    for (let i = 0; i < 16; i++) {
      burst.push(p.engine.volume.write(pattern(4096, first + i), (first + i) * 4096));
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(completed.length).toBe(WRITES);
    // Every Data reaches the Secondary (1 ms link) and is written and acked (held); bounded wait.
    for (let waitedMs = 0; heldAcks.length < 16 && waitedMs < 5000; waitedMs += 5) await sleep(5);
    const acks = heldAcks;
    heldAcks = null;
    expect(acks).toHaveLength(16);
    for (const ack of acks) sendB(ack);
    await Promise.all(burst);
    const loneEpoch = dataEpochs.get(first * 4096)!;
    const burstEpochs = new Set(Array.from({ length: 15 }, (_, i) => dataEpochs.get((first + 1 + i) * 4096)));
    expect(burstEpochs.size).toBe(1);
    expect([...burstEpochs][0]).toBeGreaterThan(loneEpoch);
    expect(barriers.slice(before)).toEqual([loneEpoch, ...burstEpochs]);
  });

  it('a lone write (no other write awaiting its ack) sends its Barrier right behind its Data, before the ack arrives; a flush after it adds none', async () => {
    // The peer's fdatasync then starts as soon as it has written the block, and the WriteAck's
    // arrival on the Primary completes the write without a Barrier send in front of it.
    const { p, a, b } = pair('C', 1);
    const sent: string[] = [];
    const send = a.send.bind(a);
    a.send = (packet) => {
      if (packet.type === PacketType.Data || packet.type === PacketType.Barrier) sent.push(`${packet.type === PacketType.Data ? 'Data' : 'Barrier'} ${packet.epoch}`);
      return send(packet);
    };
    const sendB = b.send.bind(b);
    b.send = (packet) => {
      if (packet.type === PacketType.WriteAck) sent.push('WriteAck');
      return sendB(packet);
    };
    await p.engine.volume.write(pattern(4096, 1), 0);
    expect(sent).toHaveLength(3);
    const epoch = Number(sent[0]!.split(' ')[1]);
    expect(sent).toEqual([`Data ${epoch}`, `Barrier ${epoch}`, 'WriteAck']);
    await p.engine.volume.flush();
    expect(sent).toHaveLength(3);
    // The next lone write opens (and closes) the next epoch.
    await p.engine.volume.write(pattern(4096, 2), 4096);
    expect(sent.slice(3)).toEqual([`Data ${epoch + 1}`, `Barrier ${epoch + 1}`, 'WriteAck']);
  });

  it('overlapping concurrent writes reach both disks in the same order', async () => {
    const { p, s } = pair('C', 1);
    s.disk.writeDelayMs = 1;
    const writes = [];
    let last: Buffer = Buffer.alloc(0);
    for (let i = 0; i < 50; i++) {
      const data = pattern(8192, 100 + i);
      last = data;
      writes.push(p.engine.volume.write(data, 4096 * (i % 2))); // ranges overlap in block 1
    }
    await Promise.all(writes);
    expect(s.memory.data.subarray(0, 16384).equals(p.memory.data.subarray(0, 16384))).toBe(true);
    expect(p.memory.data.subarray(4096, 12288).equals(last)).toBe(true);
  });

  it('a peer that refuses writes answers NegAck; the Primary completes locally and marks the range out of sync', async () => {
    const { p, s } = pair('C', 0);
    s.engine.setAcceptPeerWrites(false, 'test: disk not usable');
    await p.engine.volume.write(pattern(8192, 1), 40960);
    expect(setBits(p.bitmap)).toEqual([10, 11]);
    expect(s.memory.data.subarray(40960, 40960 + 8192).every((b) => b === 0)).toBe(true);
  });

  it('request timer: a peer that takes writes but never answers is expelled after ko-count * timeout (Timeout); the write completes locally, out of sync', async () => {
    const { p, s, a } = pair('C', 0, { requestTimeoutMs: 300 });
    s.disk.writeDelayMs = 60_000; // the peer's disk is stuck: no WriteAck will come
    const data = pattern(8192, 11);
    const started = Date.now();
    await p.engine.volume.write(data, 64 * 1024);
    const waitedMs = Date.now() - started;
    expect(waitedMs).toBeGreaterThanOrEqual(300);
    expect(a.isOpen).toBe(false);
    expect(p.lines.some((l) => l.includes('"reason":"Timeout"') && l.includes('data path detached from peer'))).toBe(true);
    expect(p.memory.data.subarray(64 * 1024, 64 * 1024 + data.length).equals(data)).toBe(true);
    expect(setBits(p.bitmap)).toEqual([16, 17]);
    expect(p.lines.some((l) => l.includes('Remote failed to finish a request within ko-count * timeout'))).toBe(true);
  });

  it('request timer: a flush whose Barrier is never answered also expels the peer', async () => {
    const { p, a } = pair('A', 0, { requestTimeoutMs: 300 });
    a.held = true; // nothing reaches the peer: the BarrierAck never comes
    await p.engine.volume.write(pattern(4096, 12), 0);
    await p.engine.volume.flush();
    expect(a.isOpen).toBe(false);
    expect(p.lines.some((l) => l.includes('"reason":"Timeout"') && l.includes('data path detached from peer'))).toBe(true);
    expect(setBits(p.bitmap)).toEqual([0]);
  });

  it('request timer off (ko-count 0): a slow peer is waited for', async () => {
    const { p, s, a } = pair('C', 0, { requestTimeoutMs: 0 });
    s.disk.writeDelayMs = 500;
    await p.engine.volume.write(pattern(4096, 13), 0);
    expect(a.isOpen).toBe(true);
    expect(setBits(p.bitmap)).toEqual([]);
  });

  it('max-buffers bounds application requests in flight', async () => {
    const { p, s } = pair('C', 0, { maxBuffers: 4 });
    s.disk.writeDelayMs = 5;
    let peak = 0;
    const writes = [];
    for (let i = 0; i < 40; i++) {
      writes.push(p.engine.volume.write(pattern(4096, i), i * 4096));
      peak = Math.max(peak, p.engine.counters.ap);
    }
    const timer = setInterval(() => (peak = Math.max(peak, p.engine.counters.ap)), 1);
    await Promise.all(writes);
    clearInterval(timer);
    expect(peak).toBeLessThanOrEqual(4);
    expect(s.memory.data.subarray(0, 40 * 4096).equals(p.memory.data.subarray(0, 40 * 4096))).toBe(true);
  });
});

describe('replication: lost link, bitmap and resync', () => {
  it('cut mid-burst: the bitmap holds exactly the writes not covered by a BarrierAck; resync makes the disks equal', async () => {
    const { p, s, a, b } = pair('C', 3);
    const writes: Array<{ offset: number; length: number }> = [];
    const done = [];
    for (let i = 0; i < 300; i++) {
      const offset = i * 16384;
      const length = 4096 * (1 + (i % 3));
      writes.push({ offset, length });
      done.push(p.engine.volume.write(pattern(length, i), offset));
      if (i % 20 === 19) await sleep(2);
      if (i === 150) a.close('NetworkFailure');
    }
    await Promise.all(done);
    // Exact expectation from what crossed the wire: epochs barrier-acked before the cut.
    const ackedEpochs = new Set(a.received.filter((d) => d.packet.type === PacketType.BarrierAck).map((d) => (d.packet as BarrierAckPacket).epoch));
    const epochOf = new Map<number, number>();
    for (const d of b.received) if (d.packet.type === PacketType.Data) epochOf.set((d.packet).offsetBytes, (d.packet).epoch);
    // Data packets still in flight at the cut never reached b.received; their writes are unacked too.
    const expected = new Set<number>();
    for (const w of writes) {
      const epoch = epochOf.get(w.offset);
      if (epoch !== undefined && ackedEpochs.has(epoch)) continue;
      for (let bit = w.offset / 4096; bit < (w.offset + w.length) / 4096; bit++) expected.add(bit);
    }
    expect(ackedEpochs.size).toBeGreaterThan(0);
    expect(setBits(p.bitmap)).toEqual([...expected].sort((x, y) => x - y));

    // reconnect and resync
    const [a2, b2] = connect(p, s, { latencyMs: 1 });
    open.push(a2, b2);
    await Promise.all([p.engine.exchangeBitmaps(), s.engine.exchangeBitmaps()]);
    expect(setBits(s.bitmap)).toEqual(setBits(p.bitmap));
    const result = await s.engine.startResyncAsTarget().done;
    expect(result.ok).toBe(true);
    expect(p.memory.data.equals(s.memory.data)).toBe(true);
    expect(s.bitmap.countSet()).toBe(0);
    // the SyncSource clears its bits as the last RsWriteAcks cross the link
    for (let i = 0; i < 100 && p.bitmap.countSet() > 0; i++) await sleep(5);
    expect(p.bitmap.countSet()).toBe(0);
  });

  it('disconnected writes resync only the changed blocks (bytes within 10% of changed, rounded up to 4 KiB)', async () => {
    const { p, s, a } = pair('C', 1);
    for (let i = 0; i < 64; i++) await p.engine.volume.write(pattern(65536, i), i * 65536);
    await p.engine.volume.flush();
    expect(p.bitmap.countSet()).toBe(0);
    a.close('NetworkFailure');
    let changedBytes = 0;
    for (let i = 0; i < 40; i++) {
      const offset = i * 131072 + 512 * (i % 8); // unaligned starts touch extra blocks
      const length = 3000 + 512 * (i % 5) - ((3000 + 512 * (i % 5)) % 512);
      await p.engine.volume.write(pattern(length, 1000 + i), offset);
      changedBytes += length;
    }
    const changedRounded = Math.ceil(changedBytes / 4096) * 4096;
    const [a2, b2] = connect(p, s, { latencyMs: 1 });
    open.push(a2, b2);
    await Promise.all([p.engine.exchangeBitmaps(), s.engine.exchangeBitmaps()]);
    const nsBefore = p.engine.counters.sentBytes;
    const result = await s.engine.startResyncAsTarget().done;
    expect(result.ok).toBe(true);
    expect(result.transferredBytes).toBe(p.engine.counters.sentBytes - nsBefore);
    expect(result.transferredBytes).toBeGreaterThanOrEqual(changedBytes);
    expect(result.transferredBytes).toBeLessThanOrEqual(Math.ceil((changedRounded * 1.1) / 4096) * 4096 + 40 * 4096);
    expect(p.memory.data.equals(s.memory.data)).toBe(true);
  });

  it('full sync from a fresh peer, with progress numbers; ends with fdatasync on the target', async () => {
    const { p, s } = pair('C', 0);
    p.memory.data.set(pattern(SIZE_BYTES, 42));
    p.bitmap.setAll();
    await Promise.all([p.engine.exchangeBitmaps(), s.engine.exchangeBitmaps()]);
    expect(s.bitmap.countSet()).toBe(SIZE_BYTES / 4096);
    const target = s.engine.startResyncAsTarget();
    const first = target.progress();
    expect(first.totalBits).toBe(SIZE_BYTES / 4096);
    const flushesBefore = s.disk.flushes.length;
    const result = await target.done;
    expect(result).toMatchObject({ ok: true, failedBlocks: 0, syncedBlocks: SIZE_BYTES / 4096 });
    const last = target.progress();
    expect(last.leftBits).toBe(0);
    expect(last.perMille).toBe(1000);
    expect(last.averageKiBps).toBeGreaterThan(0);
    expect(s.disk.flushes.length).toBeGreaterThan(flushesBefore);
    expect(p.memory.data.equals(s.memory.data)).toBe(true);
    expect(s.lines.some((l) => l.includes('Resync done (total'))).toBe(true);
  });

  it('application writes during resync stay correct (overlapping writes win over resync data)', async () => {
    const { p, s } = pair('C', 1, { resyncRunBytesMax: 64 * 1024, resyncInflightMax: 4 });
    p.memory.data.set(pattern(SIZE_BYTES, 9));
    p.bitmap.setAll();
    await Promise.all([p.engine.exchangeBitmaps(), s.engine.exchangeBitmaps()]);
    const target = s.engine.startResyncAsTarget();
    const writes = [];
    for (let i = 0; i < 200; i++) {
      const offset = ((i * 7919) % (SIZE_BYTES / 4096 - 4)) * 4096;
      writes.push(p.engine.volume.write(pattern(8192, 5000 + i), offset));
      if (i % 10 === 0) await sleep(1);
    }
    await Promise.all(writes);
    const result = await target.done;
    expect(result.ok).toBe(true);
    await p.engine.volume.flush();
    expect(p.memory.data.equals(s.memory.data)).toBe(true);
  });

  it('resync obeys resyncRateKiBps', async () => {
    const { p, s } = pair('C', 0, { resyncRateKiBps: 2048, resyncRunBytesMax: 64 * 1024 });
    p.memory.data.set(pattern(1024 * 1024, 4), 0);
    p.bitmap.setRange(0, 256); // 1 MiB out of sync
    await Promise.all([p.engine.exchangeBitmaps(), s.engine.exchangeBitmaps()]);
    const started = Date.now();
    const result = await s.engine.startResyncAsTarget().done;
    expect(result.ok).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(400); // 1 MiB at 2 MiB/s ≈ 500 ms
    expect(p.memory.data.equals(s.memory.data)).toBe(true);
  });

  it('on the SyncTarget, reading an out-of-sync block fetches it from the peer first', async () => {
    const { p, s } = pair('C', 0, { resyncRateKiBps: 256, resyncRunBytesMax: 4096 });
    p.memory.data.set(pattern(SIZE_BYTES, 77));
    p.bitmap.setAll();
    await Promise.all([p.engine.exchangeBitmaps(), s.engine.exchangeBitmaps()]);
    const target = s.engine.startResyncAsTarget();
    const offset = SIZE_BYTES - 65536;
    const buffer = Buffer.alloc(8192);
    await s.engine.volume.read(buffer, offset);
    expect(buffer.equals(p.memory.data.subarray(offset, offset + 8192))).toBe(true);
    expect(s.bitmap.test(offset / 4096)).toBe(false);
    target.abort('test done');
    const result = await target.done;
    expect(result.ok).toBe(false);
  });
});

describe('replication: online verify', () => {
  for (const alg of ['sha1', 'crc32c', 'md5']) {
    it(`finds injected differences with verify-alg ${alg} and logs them in sectors`, async () => {
      const { p, s } = pair('C', 0, { verifyAlg: alg });
      const data = pattern(SIZE_BYTES, 11);
      p.memory.data.set(data);
      s.memory.data.set(data);
      flipBits(s.memory.data, 5 * 4096 + 17, 0xff); // block 5
      flipBits(s.memory.data, 6 * 4096, 0x01); // block 6 (contiguous with 5)
      flipBits(s.memory.data, 1000 * 4096 + 4095, 0x80); // block 1000
      const { done } = p.engine.startVerify();
      const result = await done;
      expect(result).toMatchObject({ ok: true, outOfSyncBlocks: 3, verifiedBlocks: SIZE_BYTES / 4096 });
      expect(setBits(p.bitmap)).toEqual([5, 6, 1000]);
      await sleep(5);
      expect(setBits(s.bitmap)).toEqual([5, 6, 1000]);
      expect(p.lines.some((l) => l.includes('Out of sync: start=40, size=16 (sectors)'))).toBe(true);
      expect(p.lines.some((l) => l.includes('Out of sync: start=8000, size=8 (sectors)'))).toBe(true);
      // a resync repairs what verify found
      const resync = await s.engine.startResyncAsTarget().done;
      expect(resync.ok).toBe(true);
      expect(p.memory.data.equals(s.memory.data)).toBe(true);
    });
  }
});
