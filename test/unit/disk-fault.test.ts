import { describe, expect, it } from 'vitest';
import { MemoryDisk } from '../../src/disk/memory-disk.js';
import { FaultDisk } from '../../src/disk/fault/fault-disk.js';
import { parsePlan } from '../../src/disk/fault/plan.js';
import { DeadlineDisk, DiskTimeoutError } from '../../src/disk/deadline-disk.js';

const KiB = 1024;

function filled(byte: number, length = 4 * KiB): Buffer {
  return Buffer.alloc(length, byte);
}

describe('FaultDisk', () => {
  it('passes every request through with an empty plan', async () => {
    const inner = new MemoryDisk(64 * KiB);
    const disk = new FaultDisk(inner);
    await disk.write(filled(1), 0);
    await disk.flush();
    const back = Buffer.alloc(4 * KiB);
    await disk.read(back, 0);
    expect(back.equals(filled(1))).toBe(true);
    expect(inner.flushCount).toBe(1);
  });

  it('fails writes in the chosen byte range with EIO and passes the others', async () => {
    const inner = new MemoryDisk(64 * KiB);
    const disk = new FaultDisk(inner, parsePlan({ rules: [{ op: 'write', offsetBytes: 8 * KiB, lengthBytes: 4 * KiB, effect: 'eio' }] }));
    await disk.write(filled(1), 0);
    await expect(disk.write(filled(2), 8 * KiB)).rejects.toMatchObject({ code: 'EIO' });
    await expect(disk.write(filled(2, 8 * KiB), 4 * KiB)).rejects.toMatchObject({ code: 'EIO' }); // overlaps the range
    await disk.write(filled(3), 12 * KiB);
    expect(inner.data[8 * KiB]).toBe(0);
    expect(inner.data[12 * KiB]).toBe(3);
    await disk.read(Buffer.alloc(4 * KiB), 8 * KiB); // reads are not hit by a write rule
    expect(disk.counters.eio).toBe(2);
  });

  it('fails reads after N operations, for count hits only', async () => {
    const disk = new FaultDisk(new MemoryDisk(64 * KiB), parsePlan({ rules: [{ op: 'read', afterOps: 2, count: 1, effect: 'eio' }] }));
    const buf = Buffer.alloc(512);
    await disk.read(buf, 0);
    await disk.read(buf, 0);
    await expect(disk.read(buf, 0)).rejects.toMatchObject({ code: 'EIO' });
    await disk.read(buf, 0);
  });

  it('fails flushes with EIO', async () => {
    const inner = new MemoryDisk(64 * KiB);
    const disk = new FaultDisk(inner, parsePlan({ rules: [{ op: 'flush', effect: 'eio' }] }));
    await expect(disk.flush()).rejects.toMatchObject({ code: 'EIO' });
    expect(inner.flushCount).toBe(0);
  });

  it('stalls a request until the plan changes, then lets it through', async () => {
    const inner = new MemoryDisk(64 * KiB);
    const disk = new FaultDisk(inner, parsePlan({ rules: [{ op: 'write', effect: 'stall' }] }));
    let done = false;
    const write = disk.write(filled(9), 0).then(() => {
      done = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(done).toBe(false);
    expect(inner.data[0]).toBe(0);
    disk.setPlan(parsePlan({ rules: [] }));
    await write;
    expect(inner.data[0]).toBe(9);
  });

  it('a stall with stallMs ends by itself', async () => {
    const disk = new FaultDisk(new MemoryDisk(64 * KiB), parsePlan({ rules: [{ op: 'any', effect: 'stall', stallMs: 20 }] }));
    await disk.flush();
    expect(disk.counters.stalls).toBe(1);
  });

  it('a power cut drops the writes since the last successful flush and nothing before', async () => {
    const inner = new MemoryDisk(64 * KiB);
    const disk = new FaultDisk(inner, parsePlan({ rules: [], powerCut: true }));
    await disk.write(filled(1), 0);
    await disk.flush();
    await disk.write(filled(2), 0); // overwrites flushed data
    await disk.write(filled(3), 4 * KiB);
    const back = Buffer.alloc(4 * KiB);
    await disk.read(back, 0);
    expect(back[0]).toBe(2); // reads see unflushed writes before the cut
    expect(disk.unflushedWrites).toBe(2);
    const cut = await disk.powerCut();
    expect(cut).toEqual({ droppedWrites: 2, droppedBytes: 8 * KiB });
    expect(inner.data[0]).toBe(1);
    expect(inner.data[4 * KiB]).toBe(0);
    await expect(disk.read(back, 0)).rejects.toMatchObject({ code: 'EIO' });
  });

  it('a FUA write survives a power cut', async () => {
    const inner = new MemoryDisk(64 * KiB);
    const disk = new FaultDisk(inner, parsePlan({ rules: [], powerCut: true }));
    await disk.write(filled(5), 0, { fua: true });
    await disk.powerCut();
    expect(inner.data[0]).toBe(5);
  });

  it('a failed flush keeps the writes it did not cover droppable', async () => {
    const inner = new MemoryDisk(64 * KiB);
    const disk = new FaultDisk(inner, parsePlan({ rules: [{ op: 'flush', count: 1, effect: 'eio' }], powerCut: true }));
    await disk.write(filled(7), 0);
    await expect(disk.flush()).rejects.toMatchObject({ code: 'EIO' });
    expect((await disk.powerCut()).droppedWrites).toBe(1);
    expect(inner.data[0]).toBe(0);
  });

  it('parsePlan refuses what it does not understand, naming the field', () => {
    expect(() => parsePlan({ rules: [{ op: 'writ', effect: 'eio' }] })).toThrow(/rules\[0\]\.op/);
    expect(() => parsePlan({ rules: [{ op: 'write', effect: 'eio', offset: 1 }] })).toThrow(/unknown field 'offset'/);
    expect(() => parsePlan({ rules: [{ op: 'write', effect: 'eio', stallMs: 5 }] })).toThrow(/stallMs only/);
    expect(() => parsePlan({ rules: [{ op: 'write', effect: 'eio', lengthBytes: 5 }] })).toThrow(/needs offsetBytes/);
    expect(() => parsePlan({ rule: [] })).toThrow(/unknown field 'rule'/);
    expect(() => parsePlan([])).toThrow(/must be an object/);
  });
});

describe('DeadlineDisk (disk-timeout)', () => {
  it('fails a request the disk does not complete in time and counts it until it really ends', async () => {
    const stalling = new FaultDisk(new MemoryDisk(64 * KiB), parsePlan({ rules: [{ op: 'write', effect: 'stall' }] }));
    const disk = new DeadlineDisk(stalling, 30);
    await expect(disk.write(filled(1), 0)).rejects.toBeInstanceOf(DiskTimeoutError);
    expect(disk.inFlight).toBe(1);
    const drained = disk.drained();
    stalling.setPlan(parsePlan({ rules: [] }));
    await drained;
    expect(disk.inFlight).toBe(0);
  });

  it('passes fast requests and errors through unchanged; 0 means no deadline', async () => {
    const failing = new FaultDisk(new MemoryDisk(64 * KiB), parsePlan({ rules: [{ op: 'read', effect: 'eio' }] }));
    const disk = new DeadlineDisk(failing, 1000);
    await disk.write(filled(1), 0);
    await expect(disk.read(Buffer.alloc(512), 0)).rejects.toMatchObject({ code: 'EIO' });
    const off = new DeadlineDisk(new FaultDisk(new MemoryDisk(64 * KiB), parsePlan({ rules: [{ op: 'flush', effect: 'stall', stallMs: 40 }] })), 0);
    await off.flush();
  });
});
