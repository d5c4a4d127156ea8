/**
 * What a Primary's write waits for from the peer, two regressions:
 *
 * A mirrored write keeps its activity-log extent referenced until the peer
 * barrier-acknowledged it, or until the link is lost and its range is marked
 * out of sync (drbd_req.c: drbd_al_complete_io runs from drbd_req_destroy,
 * after RQ_NET_DONE). Regression: with protocol A the reference was dropped at
 * the local completion, so the extent could leave the log — and a crash of the
 * Primary stop resyncing it — while the peer did not have the data yet.
 *
 * A NegAck on a live link (the Secondary's disk failed the write) completes
 * the write from the local disk with its range out of sync; it used to wait
 * for the link to close (found by the torture's disk-eio-secondary fault: the
 * writer hung in D state with ap 1, pe 0).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ActivityLogApi } from '../../src/meta/types.js';
import { connect, makeNode, pattern, until, type MemoryEnd } from '../helpers/replication-helpers.js';

const SIZE_BYTES = 16 * 1024 * 1024;
const BLOCK_BYTES = 4096;
const EXTENT_BYTES = 4 * 1024 * 1024;
const open: MemoryEnd[] = [];
afterEach(() => {
  for (const end of open.splice(0)) if (end.isOpen) end.close('Disconnecting');
});

/** Counts references per 4 MiB extent; never blocks. */
class CountingAl implements ActivityLogApi {
  readonly refs = new Map<number, number>();
  beginWrite(offsetBytes: number, lengthBytes: number): undefined {
    for (const e of extents(offsetBytes, lengthBytes)) this.refs.set(e, (this.refs.get(e) ?? 0) + 1);
    return undefined;
  }
  endWrite(offsetBytes: number, lengthBytes: number): void {
    for (const e of extents(offsetBytes, lengthBytes)) {
      const n = (this.refs.get(e) ?? 0) - 1;
      expect(n, `extent ${e} released more often than taken`).toBeGreaterThanOrEqual(0);
      if (n === 0) this.refs.delete(e);
      else this.refs.set(e, n);
    }
  }
}

function extents(offsetBytes: number, lengthBytes: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(offsetBytes / EXTENT_BYTES); e <= Math.floor((offsetBytes + lengthBytes - 1) / EXTENT_BYTES); e++) out.push(e);
  return out;
}

describe('activity-log references of mirrored writes', () => {
  for (const protocol of ['A', 'C'] as const) {
    it(`protocol ${protocol}: the extent stays referenced after the write completed, until the BarrierAck`, async () => {
      const al = new CountingAl();
      const p = makeNode(SIZE_BYTES, { protocol }, al);
      const s = makeNode(SIZE_BYTES, { protocol });
      const [toPeer, back] = connect(p, s);
      open.push(toPeer, back);
      back.held = true; // the peer's acks (and BarrierAcks) wait
      const write = p.engine.volume.write(pattern(BLOCK_BYTES, 1), 5 * EXTENT_BYTES / 4);
      if (protocol === 'A') {
        await write;
        // Completed upwards, not yet acknowledged by the peer: extent 1 still in the log.
        expect(al.refs.get(1)).toBe(1);
      }
      back.release();
      if (protocol === 'C') await write;
      await until('the BarrierAck released the extent', () => al.refs.size === 0);
      expect(p.bitmap.countSet()).toBe(0);
    });
  }

  it('protocol A: a link lost before the BarrierAck marks the range out of sync, then releases the extent', async () => {
    const al = new CountingAl();
    const p = makeNode(SIZE_BYTES, { protocol: 'A' }, al);
    const s = makeNode(SIZE_BYTES, { protocol: 'A' });
    const [toPeer, back] = connect(p, s);
    open.push(toPeer, back);
    back.held = true;
    for (let i = 0; i < 4; i++) await p.engine.volume.write(pattern(BLOCK_BYTES, i), 2 * EXTENT_BYTES + i * BLOCK_BYTES);
    expect(al.refs.get(2)).toBe(4);
    p.engine.volume.stopMirroring();
    expect(p.bitmap.countSet()).toBe(4);
    expect(al.refs.size).toBe(0);
  });
});

describe('a peer that refuses a write (NegAck) on a live link', () => {
  for (const protocol of ['B', 'C'] as const) {
    it(`protocol ${protocol}: the write completes from the local disk, its range out of sync (regression: it waited for the link to close)`, async () => {
      const p = makeNode(SIZE_BYTES, { protocol });
      const s = makeNode(SIZE_BYTES, { protocol });
      const [toPeer, back] = connect(p, s);
      open.push(toPeer, back);
      s.engine.setAcceptPeerWrites(false, 'test: the peer refuses');
      let done = false;
      const write = p.engine.volume.write(pattern(BLOCK_BYTES, 7), 3 * BLOCK_BYTES).then(() => {
        done = true;
      });
      await until('the refused write completed', () => done);
      await write;
      expect(p.bitmap.countSet()).toBe(1);
      expect(p.memory.data.subarray(3 * BLOCK_BYTES, 4 * BLOCK_BYTES).equals(pattern(BLOCK_BYTES, 7))).toBe(true);
      expect(toPeer.isOpen).toBe(true);
    });
  }
});

describe('a peer Data packet past the end of a (shrunk) device', () => {
  it('is NegAcked with DRBD\'s read_in_block line, no disk error; the write completes locally, out of sync', async () => {
    const p = makeNode(SIZE_BYTES, { protocol: 'C' });
    const s = makeNode(SIZE_BYTES / 2, { protocol: 'C' }); // the peer's device ends at 8 MiB
    const [toPeer, back] = connect(p, s);
    open.push(toPeer, back);
    const offsetBytes = SIZE_BYTES / 2; // the first block past the peer's end
    await p.engine.volume.write(pattern(BLOCK_BYTES, 9), offsetBytes);
    expect(p.bitmap.countSet()).toBe(1);
    expect(p.memory.data.subarray(offsetBytes, offsetBytes + BLOCK_BYTES).equals(pattern(BLOCK_BYTES, 9))).toBe(true);
    const line = s.lines.find((l) => l.includes('request from peer beyond end of local disk'));
    expect(line).toContain(`capacity: ${SIZE_BYTES / 2 / 512}s < sector: ${offsetBytes / 512}s + size: ${BLOCK_BYTES}`);
    expect(s.lines.some((l) => l.includes('local write of peer data failed'))).toBe(false);
    expect(toPeer.isOpen).toBe(true);
    // a write below the end still replicates
    await p.engine.volume.write(pattern(BLOCK_BYTES, 10), 0);
    expect(s.memory.data.subarray(0, BLOCK_BYTES).equals(pattern(BLOCK_BYTES, 10))).toBe(true);
  });
});
