/**
 * disk-flushes on the data path, counted on ProbeDisk: with `yes` the
 * Secondary flushes its disk at each epoch end (a Barrier) and the SyncTarget
 * after a resync; with `no` (DRBD's drain ordering) it does neither, yet every
 * write still completes and the Barrier is still acknowledged; the switch
 * works online. And the attach-time log lines: DRBD's "Method to ensure write
 * ordering" and the battery-backed-cache warning for each unsafe option.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { connect, capturingLogger, makeNode, pattern, type MemoryEnd } from '../helpers/replication-helpers.js';
import { logWriteOrdering } from '../../src/daemon/meta-store.js';
import { PacketType } from '../../src/peer/packets.js';

const SIZE_BYTES = 8 * 1024 * 1024;
const open: MemoryEnd[] = [];
afterEach(() => {
  for (const end of open.splice(0)) if (end.isOpen) end.close('Disconnecting');
});

/** 5 epochs of 4 writes on the Primary, each ended by a flush (a Barrier to the peer). */
async function fiveEpochs(p: ReturnType<typeof makeNode>, seed: number): Promise<void> {
  for (let e = 0; e < 5; e++) {
    for (let i = 0; i < 4; i++) await p.engine.volume.write(pattern(4096, seed + e * 4 + i), (e * 4 + i) * 65536);
    await p.engine.volume.flush();
  }
}

describe('disk-flushes', () => {
  it('yes: the Secondary flushes its disk at every epoch end', async () => {
    const p = makeNode(SIZE_BYTES);
    const s = makeNode(SIZE_BYTES, { diskFlushes: true });
    open.push(...connect(p, s));
    await fiveEpochs(p, 1);
    expect(s.disk.flushes.length).toBeGreaterThanOrEqual(5);
    expect(s.memory.data.equals(p.memory.data)).toBe(true);
  });

  it('no: the Secondary never flushes, every Barrier is still acknowledged after its writes, data equal', async () => {
    const p = makeNode(SIZE_BYTES);
    const s = makeNode(SIZE_BYTES, { diskFlushes: false });
    const [a, b] = connect(p, s);
    open.push(a, b);
    await fiveEpochs(p, 1);
    expect(s.disk.flushes).toEqual([]);
    expect(p.disk.flushes.length).toBe(5); // the Primary's own disk still gets the flush the application asked for
    const barriers = b.received.filter((d) => d.packet.type === PacketType.Barrier).length;
    expect(barriers).toBeGreaterThanOrEqual(5);
    expect(a.received.filter((d) => d.packet.type === PacketType.BarrierAck).length).toBe(barriers);
    expect(s.memory.data.equals(p.memory.data)).toBe(true);
  });

  it('changes online: yes → no on the Secondary stops its flushes from the next epoch', async () => {
    const p = makeNode(SIZE_BYTES);
    const s = makeNode(SIZE_BYTES);
    open.push(...connect(p, s));
    await fiveEpochs(p, 1);
    const before = s.disk.flushes.length;
    expect(before).toBeGreaterThanOrEqual(5);
    s.engine.applyOptions({ diskFlushes: false });
    await fiveEpochs(p, 100);
    expect(s.disk.flushes.length).toBe(before);
    expect(s.engine.options.diskFlushes).toBe(false);
  });

  for (const diskFlushes of [true, false]) {
    it(`${diskFlushes ? 'yes' : 'no'}: the SyncTarget ${diskFlushes ? 'flushes once' : 'does not flush'} after a resync`, async () => {
      const p = makeNode(SIZE_BYTES, { resyncRunBytesMax: 64 * 1024 });
      const s = makeNode(SIZE_BYTES, { resyncRunBytesMax: 64 * 1024, diskFlushes });
      open.push(...connect(p, s));
      p.memory.data.set(pattern(1024 * 1024, 7), 0);
      p.bitmap.setRange(0, 256);
      await Promise.all([p.engine.exchangeBitmaps(), s.engine.exchangeBitmaps()]);
      const result = await s.engine.startResyncAsTarget().done;
      expect(result.ok).toBe(true);
      expect(s.disk.flushes.length).toBe(diskFlushes ? 1 : 0);
      expect(s.memory.data.equals(p.memory.data)).toBe(true);
    });
  }
});

describe('write-ordering log lines at attach', () => {
  const all = { diskBarrier: false, diskFlushes: true, diskDrain: true, mdFlushes: true, alUpdates: true };
  it("defaults: DRBD's 'Method to ensure write ordering: flush' and no warning", () => {
    const { log, lines } = capturingLogger();
    logWriteOrdering(all, log);
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['Method to ensure write ordering: flush']);
  });

  it('disk-flushes no, md-flushes no, al-updates no: drain, and a warning each (battery-backed cache for the flushes)', () => {
    const { log, lines } = capturingLogger();
    logWriteOrdering({ ...all, diskFlushes: false, mdFlushes: false, alUpdates: false }, log);
    const parsed = lines.map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(parsed[0]!.msg).toBe('Method to ensure write ordering: drain');
    const warnings = parsed.filter((l) => l.level === 40).map((l) => l.msg);
    expect(warnings).toHaveLength(3);
    expect(warnings[0]).toMatch(/^disk-flushes no: .*battery-backed/);
    expect(warnings[1]).toMatch(/^md-flushes no: .*battery-backed/);
    expect(warnings[2]).toMatch(/^al-updates no: .*resyncs the whole device/);
  });

  it('disk-barrier yes: flushes instead, said so', () => {
    const { log, lines } = capturingLogger();
    logWriteOrdering({ ...all, diskBarrier: true }, log);
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual([
      'Method to ensure write ordering: flush',
      'disk-barrier yes: udrbd has no barriers on its backing disk; using flushes instead',
    ]);
  });
});
