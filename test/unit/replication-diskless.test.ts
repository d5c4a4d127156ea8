/**
 * The data path without a local disk (DRBD's diskless Primary) and with a
 * failing one: replication/local-disk, replication/peer-read and the
 * volume's diskless mode, on two in-memory engines.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FaultDisk } from '../../src/disk/fault/fault-disk.js';
import { parsePlan } from '../../src/disk/fault/plan.js';
import { Bitmap } from '../../src/meta/bitmap.js';
import { ReplicationEngine } from '../../src/replication/engine.js';
import { capturingLogger, connect, makeNode, noActivityLog, pattern, setBits, type MemoryEnd, type Node } from '../helpers/replication-helpers.js';
import { MemoryDisk } from '../../src/disk/memory-disk.js';

const SIZE_BYTES = 4 * 1024 * 1024;
const open: MemoryEnd[] = [];
afterEach(() => {
  for (const end of open.splice(0)) if (end.isOpen) end.close('Disconnecting');
});

const BOTH_UP_TO_DATE = { localUpToDate: true, peerDiskless: false, peerUpToDate: true };

function pair(p: Node = makeNode(SIZE_BYTES), s: Node = makeNode(SIZE_BYTES)): { p: Node; s: Node } {
  const [a, b] = connect(p, s);
  open.push(a, b);
  p.engine.setDiskStates(BOTH_UP_TO_DATE);
  s.engine.setDiskStates(BOTH_UP_TO_DATE);
  return { p, s };
}

/** A node whose disk is a FaultDisk over memory, plus the errors its data path reported. */
function faultyNode(): { node: Node; fault: FaultDisk; errors: string[] } {
  const memory = new MemoryDisk(SIZE_BYTES);
  const fault = new FaultDisk(memory);
  const bitmap = new Bitmap(SIZE_BYTES / 4096);
  const { log, lines } = capturingLogger();
  const errors: string[] = [];
  const engine = new ReplicationEngine({ disk: fault, bitmap, activityLog: noActivityLog, log, vnr: 0, onLocalIoError: (op, offsetBytes) => errors.push(`${op}@${offsetBytes}`) });
  return { node: { memory, disk: fault as never, bitmap, engine, lines }, fault, errors };
}

describe('diskless Primary', () => {
  it('reads come from the peer, writes and flushes go to the peer only', async () => {
    const { p, s } = pair();
    const old = pattern(8192, 1);
    await p.engine.volume.write(old, 0);
    p.engine.detachLocal();
    s.engine.setDiskStates({ localUpToDate: true, peerDiskless: true, peerUpToDate: false });
    const fresh = pattern(8192, 2);
    await p.engine.volume.write(fresh, 65536);
    await p.engine.volume.flush();
    expect(s.memory.data.subarray(65536, 65536 + 8192).equals(fresh)).toBe(true);
    expect(p.memory.data.subarray(65536, 65536 + 8192).every((b) => b === 0)).toBe(true);
    // The peer, which alone has the data now, marked what it applied for our re-attach.
    expect(setBits(s.bitmap)).toEqual([16, 17]);
    const back = Buffer.alloc(8192);
    await p.engine.volume.read(back, 65536);
    expect(back.equals(fresh)).toBe(true);
    await p.engine.volume.read(back, 0);
    expect(back.equals(old)).toBe(true);
    expect(p.engine.counters.pe).toBe(0);
    expect(s.engine.counters.pe).toBe(0); // a diskless read is not acknowledged
  });

  it('without a connection every request fails with EIO', async () => {
    const { p } = pair();
    p.engine.detachLocal();
    p.engine.detachPeer('Disconnecting');
    await expect(p.engine.volume.write(pattern(4096, 3), 0)).rejects.toMatchObject({ code: 'EIO' });
    await expect(p.engine.volume.read(Buffer.alloc(4096), 0)).rejects.toMatchObject({ code: 'EIO' });
    await expect(p.engine.volume.flush()).rejects.toMatchObject({ code: 'EIO' });
  });

  it('after attachLocal, reads stay with the peer until the handshake says the local data is current', async () => {
    const { p, s } = pair();
    p.engine.detachLocal();
    const fresh = pattern(4096, 4);
    await p.engine.volume.write(fresh, 0);
    p.engine.attachLocal({ disk: p.disk, bitmap: p.bitmap, activityLog: noActivityLog });
    const back = Buffer.alloc(4096);
    await p.engine.volume.read(back, 0);
    expect(back.equals(fresh)).toBe(true); // from the peer: the local copy is stale
    expect(p.memory.data.subarray(0, 4096).every((b) => b === 0)).toBe(true);
    p.engine.localDataReady();
    await p.engine.volume.read(back, 0);
    expect(back.every((b) => b === 0)).toBe(true); // now local
    expect(s.memory.data.subarray(0, 4096).equals(fresh)).toBe(true);
  });
});

describe('a failing local disk', () => {
  it('a failed write completes from the peer\'s copy, is reported, and is marked out of sync locally', async () => {
    const { node, fault, errors } = faultyNode();
    const { p, s } = pair(node);
    fault.setPlan(parsePlan({ rules: [{ op: 'write', effect: 'eio' }] }));
    const data = pattern(4096, 5);
    await p.engine.volume.write(data, 8192);
    expect(errors).toEqual(['write@8192']);
    expect(setBits(p.bitmap)).toEqual([2]);
    expect(s.memory.data.subarray(8192, 8192 + 4096).equals(data)).toBe(true);
  });

  it('a failed read is retried on an UpToDate peer', async () => {
    const { node, fault, errors } = faultyNode();
    const { p } = pair(node);
    const data = pattern(4096, 6);
    await p.engine.volume.write(data, 0);
    fault.setPlan(parsePlan({ rules: [{ op: 'read', effect: 'eio' }] }));
    const back = Buffer.alloc(4096);
    await p.engine.volume.read(back, 0);
    expect(back.equals(data)).toBe(true);
    expect(errors).toEqual(['read@0']);
  });

  it('a failed read fails when the peer is not UpToDate', async () => {
    const { node, fault } = faultyNode();
    const { p } = pair(node);
    p.engine.setDiskStates({ localUpToDate: true, peerDiskless: false, peerUpToDate: false });
    fault.setPlan(parsePlan({ rules: [{ op: 'read', effect: 'eio' }] }));
    await expect(p.engine.volume.read(Buffer.alloc(4096), 0)).rejects.toMatchObject({ code: 'EIO' });
  });

  it('a failed flush with every write on the peer\'s stable storage does not fail the flush', async () => {
    const { node, fault, errors } = faultyNode();
    const { p } = pair(node);
    await p.engine.volume.write(pattern(4096, 7), 0);
    await p.engine.volume.flush();
    fault.setPlan(parsePlan({ rules: [{ op: 'flush', effect: 'eio' }] }));
    await p.engine.volume.flush();
    expect(errors).toEqual(['flush@0']);
  });

  it('a Primary with a diskless peer does not send its writes, it marks them', async () => {
    const { p, s } = pair();
    p.engine.setDiskStates({ localUpToDate: true, peerDiskless: true, peerUpToDate: false });
    await p.engine.volume.write(pattern(4096, 8), 4096);
    expect(setBits(p.bitmap)).toEqual([1]);
    expect(s.memory.data.subarray(4096, 8192).every((b) => b === 0)).toBe(true);
  });
});
