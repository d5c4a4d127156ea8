/**
 * The data path on real files: two FileDisk-backed nodes joined by the
 * in-memory link; full sync, a cut with writes while disconnected, reconnect
 * and bitmap-based resync; the two files must hash identically. Resync
 * transfers bypass the page cache (O_DIRECT) where the native addon is built.
 */
import { describe, it, expect, afterEach } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FileDisk } from '../../src/disk/file-disk.js';
import { alignedMemoryAvailable } from '../../src/disk/direct-buffers.js';
import { Bitmap } from '../../src/meta/bitmap.js';
import { ReplicationEngine } from '../../src/replication/engine.js';
import { channelPair, capturingLogger, noActivityLog, pattern, type MemoryEnd } from '../helpers/replication-helpers.js';

const SIZE_BYTES = 16 * 1024 * 1024;
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function fileNode(dir: string, name: string) {
  const file = path.join(dir, name);
  fs.writeFileSync(file, Buffer.alloc(0));
  fs.truncateSync(file, SIZE_BYTES);
  const disk = FileDisk.open(file);
  cleanups.push(() => disk.close());
  const bitmap = new Bitmap(SIZE_BYTES / 4096);
  const engine = new ReplicationEngine({ disk, bitmap, activityLog: noActivityLog, options: { protocol: 'C' }, log: capturingLogger().log, vnr: 0 });
  return { file, disk, bitmap, engine };
}

const sha = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

function link(p: ReturnType<typeof fileNode>, s: ReturnType<typeof fileNode>): [MemoryEnd, MemoryEnd] {
  const [a, b] = channelPair({ latencyMs: 1 });
  cleanups.push(() => {
    if (a.isOpen) a.close('Disconnecting');
  });
  p.engine.attachPeer({ channel: a });
  s.engine.attachPeer({ channel: b });
  p.engine.startMirroring();
  return [a, b];
}

describe('replication on file-backed disks', () => {
  it('full sync, disconnected writes, reconnect: only changed blocks resync and the files hash equal', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-repl-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const p = fileNode(dir, 'primary.img');
    const s = fileNode(dir, 'secondary.img');
    await p.disk.write(pattern(SIZE_BYTES, 1), 0);
    p.bitmap.setAll();

    const [a] = link(p, s);
    await Promise.all([p.engine.exchangeBitmaps(), s.engine.exchangeBitmaps()]);
    const full = await s.engine.startResyncAsTarget().done;
    expect(full.ok).toBe(true);
    expect(full.transferredBytes).toBe(SIZE_BYTES);
    expect(sha(p.file)).toBe(sha(s.file));
    // The source clears its bits as the target's RsWriteAcks arrive (1 ms link): wait for the last ones.
    for (let waitedMs = 0; p.bitmap.countSet() > 0 && waitedMs < 5000; waitedMs += 5) await new Promise((r) => setTimeout(r, 5));
    expect(p.bitmap.countSet()).toBe(0);
    // 1 MiB runs: 16 reads on the source, 16 writes on the target, none through the page cache.
    expect(alignedMemoryAvailable, 'native/udrbd-io built (scripts/setup.sh builds it)').toBe(true);
    expect(p.disk.directTransfers).toMatchObject({ reads: 16, writes: 0, offReason: null });
    expect(s.disk.directTransfers).toMatchObject({ reads: 0, writes: 16, offReason: null });

    a.close('NetworkFailure');
    for (let i = 0; i < 32; i++) await p.engine.volume.write(pattern(32768, 100 + i), i * 262144);
    await p.engine.volume.flush();
    expect(p.bitmap.countSet()).toBe(32 * 8);

    link(p, s);
    await Promise.all([p.engine.exchangeBitmaps(), s.engine.exchangeBitmaps()]);
    const partial = await s.engine.startResyncAsTarget().done;
    expect(partial.ok).toBe(true);
    expect(partial.transferredBytes).toBe(32 * 32768);
    expect(sha(p.file)).toBe(sha(s.file));
    expect(s.disk.directTransfers.writes).toBe(16 + 32);
  });
});
