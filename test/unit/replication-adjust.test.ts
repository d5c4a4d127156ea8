/**
 * The data path under `adjust` (ReplicationEngine.applyOptions): the
 * protocol changes while writes are in flight and every write completes as
 * it was sent, whichever node changes first; max-buffers grows and shrinks
 * the bound on requests in flight; a running resync takes a new rate at
 * once; an invalid option set changes nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { PacketType, type DataPacket } from '../../src/peer/packets.js';
import { Slots } from '../../src/replication/range-lock.js';
import { connect, makeNode, pattern, sleep, type MemoryEnd } from '../helpers/replication-helpers.js';

const SIZE_BYTES = 8 * 1024 * 1024;
/** Bound on a poll loop in these tests (each look sleeps 5 ms). */
const WAIT_LOOKS_MAX = 2000;

async function waitUntil(what: string, predicate: () => boolean): Promise<void> {
  for (let look = 0; look < WAIT_LOOKS_MAX; look++) {
    if (predicate()) return;
    await sleep(5);
  }
  throw new Error(`timed out waiting for ${what}`);
}
const open: MemoryEnd[] = [];
afterEach(() => {
  for (const end of open.splice(0)) if (end.isOpen) end.close('Disconnecting');
});

describe('protocol changed online', () => {
  for (const [from, to, first] of [
    ['C', 'A', 'primary'],
    ['A', 'C', 'primary'],
    ['C', 'B', 'secondary'],
    ['B', 'C', 'secondary'],
    ['A', 'B', 'secondary'],
  ] as const) {
    it(`${from} → ${to}, the ${first} first, with writes in flight: every write completes and reaches the peer, none is left pending`, async () => {
      const p = makeNode(SIZE_BYTES, { protocol: from });
      const s = makeNode(SIZE_BYTES, { protocol: from });
      const [a, b] = connect(p, s, { latencyMs: 2 });
      open.push(a, b);
      s.disk.writeDelayMs = 3;
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 60; i++) {
        writes.push(p.engine.volume.write(pattern(4096, i), i * 8192));
        if (i === 20) (first === 'primary' ? p : s).engine.applyOptions({ protocol: to });
        if (i === 40) (first === 'primary' ? s : p).engine.applyOptions({ protocol: to });
        if (i % 10 === 0) await sleep(1);
      }
      await Promise.all(writes);
      await p.engine.volume.flush();
      expect(p.engine.options.protocol).toBe(to);
      expect(s.engine.options.protocol).toBe(to);
      expect(p.engine.counters.pe).toBe(0);
      expect(p.bitmap.countSet()).toBe(0);
      for (let i = 0; i < 60; i++) expect(s.memory.data.subarray(i * 8192, i * 8192 + 4096).equals(pattern(4096, i))).toBe(true);
      // each Data packet asked for the ack of the protocol it was sent under
      const sent = b.received.filter((d) => d.packet.type === PacketType.Data).map((d) => (d.packet as DataPacket).flags & 0x1c);
      expect(sent.length).toBe(60);
      const flagOf = { A: 0x10, B: 0x4, C: 0x8 } as const;
      if (first === 'primary') {
        expect(sent.slice(0, 20).every((f) => f === flagOf[from])).toBe(true);
        expect(sent.slice(21).every((f) => f === flagOf[to])).toBe(true);
      } else {
        expect(sent.slice(0, 41).every((f) => f === flagOf[from])).toBe(true);
        expect(sent.slice(41).every((f) => f === flagOf[to])).toBe(true);
      }
    });
  }

  it('after a switch to B, writes complete on RecvAck before the peer disk finishes', async () => {
    const p = makeNode(SIZE_BYTES, { protocol: 'C' });
    const s = makeNode(SIZE_BYTES, { protocol: 'C' });
    const [a, b] = connect(p, s);
    open.push(a, b);
    s.disk.writeDelayMs = 150;
    p.engine.applyOptions({ protocol: 'B' });
    const started = Date.now();
    await p.engine.volume.write(pattern(8192, 1), 0);
    expect(Date.now() - started).toBeLessThan(100);
  });

  it('an invalid option set is refused as a whole and changes nothing', () => {
    const p = makeNode(SIZE_BYTES, { protocol: 'C', maxBuffers: 64 });
    expect(() => p.engine.applyOptions({ protocol: 'B', maxBuffers: 0 })).toThrow(/maxBuffers/);
    expect(p.engine.options.protocol).toBe('C');
    expect(p.engine.options.maxBuffers).toBe(64);
  });
});

describe('other options changed online', () => {
  it('max-buffers: a larger bound lets waiting requests in at once; a smaller one holds new ones back', async () => {
    const slots = new Slots(2);
    expect(slots.acquire()).toBe(true);
    expect(slots.acquire()).toBe(true);
    let third = false;
    void (slots.acquire() as Promise<void>).then(() => (third = true));
    await sleep(1);
    expect(third).toBe(false);
    slots.setCapacity(3);
    await sleep(1);
    expect(third).toBe(true);
    expect(slots.inUse).toBe(3);
    slots.setCapacity(1);
    let fourth = false;
    void (slots.acquire() as Promise<void>).then(() => (fourth = true));
    slots.release();
    slots.release();
    await sleep(1);
    expect(fourth).toBe(false); // 1 in use = the new bound
    slots.release();
    await sleep(1);
    expect(fourth).toBe(true);
    expect(slots.inUse).toBe(1);
  });

  it('resync-rate: a running resync slows down to the new rate at once', async () => {
    const p = makeNode(SIZE_BYTES, { resyncRateKiBps: 0, resyncRunBytesMax: 64 * 1024 });
    const s = makeNode(SIZE_BYTES, { resyncRateKiBps: 0, resyncRunBytesMax: 64 * 1024 });
    const [a, b] = connect(p, s);
    open.push(a, b);
    p.memory.data.set(pattern(2 * 1024 * 1024, 4), 0);
    p.bitmap.setRange(0, 512); // 2 MiB out of sync
    await Promise.all([p.engine.exchangeBitmaps(), s.engine.exchangeBitmaps()]);
    const target = s.engine.startResyncAsTarget();
    s.engine.applyOptions({ resyncRateKiBps: 2048 });
    const started = Date.now();
    const result = await target.done;
    expect(result.ok).toBe(true);
    // the first 1 MiB (16 requests of 64 KiB) left before the change; the other 1 MiB at 2 MiB/s ≈ 0.5 s (unlimited: a few ms)
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
    expect(s.engine.options.resyncRateKiBps).toBe(2048);
    expect(p.memory.data.equals(s.memory.data)).toBe(true);
  });

  it('c-max-rate online: a running controller-paced resync asks for the new ceiling from its next step', async () => {
    const slow = { planAheadDs: 5, fillTargetSectors: 2048, delayTargetDs: 10, maxRateKiBps: 40, minRateKiBps: 0, resyncRateKiBps: 250 };
    const p = makeNode(SIZE_BYTES, { resyncController: slow, resyncRunBytesMax: 64 * 1024 });
    const s = makeNode(SIZE_BYTES, { resyncController: slow, resyncRunBytesMax: 64 * 1024 });
    const [a, b] = connect(p, s);
    open.push(a, b);
    p.memory.data.set(pattern(2 * 1024 * 1024, 5), 0);
    p.bitmap.setRange(0, 512); // 2 MiB out of sync
    await Promise.all([p.engine.exchangeBitmaps(), s.engine.exchangeBitmaps()]);
    const target = s.engine.startResyncAsTarget();
    const want = (): number => s.engine.resyncProgress()?.wantKiBps ?? -1;
    // c-max-rate 40 KiB/s: 8 sectors per 100 ms step = one 4 KiB block, c_sync_rate 40
    await waitUntil('a step at c-max-rate 40', () => want() === 40);
    expect(s.engine.resyncProgress()!.leftBits).toBeGreaterThan(400); // ≤ a few blocks per step so far
    s.engine.applyOptions({ resyncController: { ...slow, maxRateKiBps: 102400 } });
    // in flight far below c-fill-target 2048: the correction the plan built up goes out at once
    await waitUntil('a step above 40 KiB/s', () => want() > 40 || s.engine.resyncProgress() === null);
    const result = await target.done;
    expect(result.ok).toBe(true);
    expect(p.memory.data.equals(s.memory.data)).toBe(true);
  });

  it('ko-count 0 → 7 online: the request timer starts on the live link and expels a stuck peer', async () => {
    const p = makeNode(SIZE_BYTES, { protocol: 'C', requestTimeoutMs: 0 });
    const s = makeNode(SIZE_BYTES, { protocol: 'C', requestTimeoutMs: 0 });
    const [a, b] = connect(p, s);
    open.push(a, b);
    s.disk.writeDelayMs = 60_000; // stuck peer disk: no WriteAck will come
    p.engine.applyOptions({ requestTimeoutMs: 300 });
    const started = Date.now();
    await p.engine.volume.write(pattern(4096, 21), 0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(a.isOpen).toBe(false);
    expect(p.lines.some((l) => l.includes('Remote failed to finish a request within ko-count * timeout'))).toBe(true);
  });
});
