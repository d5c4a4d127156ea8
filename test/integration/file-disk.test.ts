/**
 * disk/file-disk on a real file: FUA writes are synchronous for their own
 * range only (an O_DSYNC descriptor), never a whole-file fdatasync, and
 * flush() is the fdatasync — on the calling thread when the disk is idle and
 * little was written since the last flush, in libuv's pool otherwise.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FileDisk } from '../../src/disk/file-disk.js';
import { alignedMemoryAvailable, directPool, isDirectIoBuffer } from '../../src/disk/direct-buffers.js';
import { FrameDecoder, encodePacket, releaseReceivedPayload } from '../../src/peer/codec.js';
import { PacketType, type WirePacket } from '../../src/peer/packets.js';
import { assert } from '../../src/util/assert.js';

const O_DSYNC = fs.constants.O_DSYNC;
const O_DIRECT = fs.constants.O_DIRECT;
/** Access-mode bits of open flags (Linux <fcntl.h>; Node does not export it). */
const O_ACCMODE = 0o3;
const SIZE_BYTES = 8 * 1024 * 1024;

/** open flags (fdinfo `flags:`, octal) of this process's descriptors on `file`. */
function openFlagsOf(file: string): number[] {
  const real = fs.realpathSync(file);
  const flags: number[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (target !== real) continue;
    const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    const m = /^flags:\s+([0-7]+)$/m.exec(info);
    if (m) flags.push(parseInt(m[1]!, 8));
  }
  return flags;
}

describe('FileDisk FUA and flush', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-filedisk-'));
    file = path.join(dir, 'disk.img');
    fs.writeFileSync(file, Buffer.alloc(0));
    fs.truncateSync(file, SIZE_BYTES);
  });
  afterEach(() => {
    vi.restoreAllMocks();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a FUA write goes through an O_DSYNC descriptor and lands, without an fdatasync of the whole file', async () => {
    const disk = FileDisk.open(file);
    try {
      const flags = openFlagsOf(file);
      // plain, O_DSYNC (FUA writes) and O_DIRECT (resync transfers)
      expect(alignedMemoryAvailable, 'native/udrbd-io built (scripts/setup.sh builds it)').toBe(true);
      expect(flags).toHaveLength(3);
      expect(flags.filter((f) => (f & O_DSYNC) === O_DSYNC)).toHaveLength(1);
      expect(flags.filter((f) => (f & O_DIRECT) === O_DIRECT)).toHaveLength(1);
      const fdatasync = vi.spyOn(fs, 'fdatasync');
      const fdatasyncSync = vi.spyOn(fs, 'fdatasyncSync');
      const data = Buffer.alloc(64 * 1024, 0x5a);
      await disk.write(data, 1024 * 1024, { fua: true });
      await disk.write(Buffer.alloc(4096, 0x33), 2 * 1024 * 1024, { fua: true });
      expect(fdatasync).not.toHaveBeenCalled();
      expect(fdatasyncSync).not.toHaveBeenCalled();
      const back = Buffer.alloc(data.length);
      await disk.read(back, 1024 * 1024);
      expect(back.equals(data)).toBe(true);
      expect(fs.readFileSync(file).subarray(2 * 1024 * 1024, 2 * 1024 * 1024 + 4096).equals(Buffer.alloc(4096, 0x33))).toBe(true);
      await disk.flush();
      // Idle, nothing dirty: the flush ran on this thread.
      expect(fdatasync.mock.calls.length + fdatasyncSync.mock.calls.length).toBe(1);
    } finally {
      await disk.close();
    }
    expect(openFlagsOf(file)).toHaveLength(0);
  });

  it('a small flush on an idle disk runs inline; after a large write, or with I/O in flight, it goes to the pool', async () => {
    const disk = FileDisk.open(file);
    try {
      const fdatasync = vi.spyOn(fs, 'fdatasync');
      const fdatasyncSync = vi.spyOn(fs, 'fdatasyncSync');
      const writeSync = vi.spyOn(fs, 'writeSync');
      // A 4 KiB write is a pwrite on this thread, and lands.
      await disk.write(Buffer.alloc(4096, 0x11), 0);
      expect(writeSync).toHaveBeenCalled();
      expect(fs.readFileSync(file).subarray(0, 4096).equals(Buffer.alloc(4096, 0x11))).toBe(true);
      await disk.flush();
      expect(fdatasyncSync).toHaveBeenCalledTimes(1);
      expect(fdatasync).not.toHaveBeenCalled();

      // 2 MiB written since the last flush: its writeback may take long, so not on the event loop.
      await disk.write(Buffer.alloc(2 * 1024 * 1024, 0x22), 4 * 1024 * 1024);
      await disk.flush();
      expect(fdatasync).toHaveBeenCalledTimes(1);
      expect(fdatasyncSync).toHaveBeenCalledTimes(1);

      // A read in flight: the flush does not block its completion.
      const reading = disk.read(Buffer.alloc(1024 * 1024), 0);
      const flushing = disk.flush();
      await Promise.all([reading, flushing]);
      expect(fdatasync).toHaveBeenCalledTimes(2);
      expect(fdatasyncSync).toHaveBeenCalledTimes(1);
    } finally {
      await disk.close();
    }
  });

  it('after a slow inline flush (a stalled device), flushes and large writes leave the event loop for a while', async () => {
    const disk = FileDisk.open(file);
    try {
      const fdatasync = vi.spyOn(fs, 'fdatasync');
      const realSync = fs.fdatasyncSync;
      const fdatasyncSync = vi.spyOn(fs, 'fdatasyncSync').mockImplementation((fd: number) => {
        const startMs = performance.now();
        while (performance.now() - startMs < 40); // a device that takes 40 ms to flush
        realSync(fd);
      });
      await disk.flush();
      expect(fdatasyncSync).toHaveBeenCalledTimes(1);
      await disk.flush();
      await disk.flush();
      expect(fdatasyncSync).toHaveBeenCalledTimes(1);
      expect(fdatasync).toHaveBeenCalledTimes(2);
      // ... and so do large writes (a stalled device will throttle them too); small ones stay inline.
      const write = vi.spyOn(fs, 'write');
      const writeSync = vi.spyOn(fs, 'writeSync');
      await disk.write(Buffer.alloc(1024 * 1024, 0x41), 0);
      expect(write).toHaveBeenCalledTimes(1);
      await disk.write(Buffer.alloc(4096, 0x42), 2 * 1024 * 1024);
      expect(writeSync).toHaveBeenCalledTimes(1);
      expect(write).toHaveBeenCalledTimes(1);
    } finally {
      await disk.close();
    }
  });

  it('writes up to 1 MiB are inline; larger and FUA ones use the pool; after a slow large inline write, large writes use the pool for a while and small flushes stay inline', async () => {
    const MiB = 1024 * 1024;
    const disk = FileDisk.open(file);
    try {
      const write = vi.spyOn(fs, 'write');
      const realWriteSync = fs.writeSync;
      let slowWrites = 0;
      const writeSync = vi.spyOn(fs, 'writeSync').mockImplementation(((fd: number, buffer: Buffer, offset: number, length: number, position: number) => {
        if (slowWrites > 0 && length > 16 * 1024) {
          slowWrites--;
          const startMs = performance.now();
          while (performance.now() - startMs < 10); // the kernel throttling dirty pages for 10 ms
        }
        return realWriteSync(fd, buffer, offset, length, position);
      }) as typeof fs.writeSync);
      const fdatasync = vi.spyOn(fs, 'fdatasync');
      const fdatasyncSync = vi.spyOn(fs, 'fdatasyncSync');

      // 1 MiB: one pwrite on this thread, and it lands.
      await disk.write(Buffer.alloc(MiB, 0x31), 0);
      expect(writeSync).toHaveBeenCalledTimes(1);
      expect(write).not.toHaveBeenCalled();
      expect(fs.readFileSync(file).subarray(0, MiB).equals(Buffer.alloc(MiB, 0x31))).toBe(true);
      // Larger than 1 MiB, or FUA: the pool.
      await disk.write(Buffer.alloc(2 * MiB, 0x32), 2 * MiB);
      await disk.write(Buffer.alloc(64 * 1024, 0x33), 6 * MiB, { fua: true });
      expect(write).toHaveBeenCalledTimes(2);
      expect(writeSync).toHaveBeenCalledTimes(1);
      await disk.flush(); // 2 MiB dirty: pool
      expect(fdatasync).toHaveBeenCalledTimes(1);

      // A large inline write that took 10 ms: large writes leave the event loop.
      slowWrites = 1;
      await disk.write(Buffer.alloc(MiB, 0x34), 0);
      expect(writeSync).toHaveBeenCalledTimes(2);
      await disk.write(Buffer.alloc(MiB, 0x35), MiB);
      expect(writeSync).toHaveBeenCalledTimes(2);
      expect(write).toHaveBeenCalledTimes(3);
      await disk.flush(); // 2 MiB dirty: pool
      expect(fdatasync).toHaveBeenCalledTimes(2);
      // Small writes stay inline; a throttled write is no sign of a slow device flush, so an
      // idle flush of ≤ 1 MiB written stays inline too.
      await disk.write(Buffer.alloc(4096, 0x36), 7 * MiB);
      expect(writeSync).toHaveBeenCalledTimes(3);
      await disk.flush();
      expect(fdatasyncSync).toHaveBeenCalledTimes(1);
      expect(fdatasync).toHaveBeenCalledTimes(2);
      // Large writes still back off.
      await disk.write(Buffer.alloc(MiB, 0x37), 3 * MiB);
      expect(writeSync).toHaveBeenCalledTimes(3);
      expect(write).toHaveBeenCalledTimes(4);
      const back = fs.readFileSync(file);
      expect(back.subarray(0, MiB).equals(Buffer.alloc(MiB, 0x34))).toBe(true);
      expect(back.subarray(MiB, 2 * MiB).equals(Buffer.alloc(MiB, 0x35))).toBe(true);
    } finally {
      await disk.close();
    }
  });

  it('read-only: no O_DSYNC descriptor, and a FUA write is refused', async () => {
    const disk = FileDisk.open(file, { readOnly: true, directIo: false });
    try {
      const flags = openFlagsOf(file);
      expect(flags).toHaveLength(1);
      expect(flags[0]! & O_DSYNC).toBe(0);
      expect(flags[0]! & O_ACCMODE).toBe(fs.constants.O_RDONLY);
      await expect(disk.write(Buffer.alloc(4096), 0, { fua: true })).rejects.toThrow(/read-only/);
    } finally {
      disk.closeSync();
    }
    expect(openFlagsOf(file)).toHaveLength(0);
  });
});

/** Bytes of `file` in the page cache (util-linux fincore). */
function residentBytes(file: string): number {
  return Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8' }).trim());
}

describe('FileDisk bypassCache transfers (O_DIRECT)', () => {
  const MiB = 1024 * 1024;
  let dir: string;
  let file: string;
  beforeEach(() => {
    expect(alignedMemoryAvailable, 'native/udrbd-io built (scripts/setup.sh builds it)').toBe(true);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-direct-'));
    file = path.join(dir, 'disk.img');
    fs.writeFileSync(file, Buffer.alloc(0));
    fs.truncateSync(file, SIZE_BYTES);
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('bulk writes count as unflushed: after more than 1 MiB of them the flush leaves the event loop (the device cache holds them)', async () => {
    const disk = FileDisk.open(file);
    try {
      const fdatasync = vi.spyOn(fs, 'fdatasync');
      const fdatasyncSync = vi.spyOn(fs, 'fdatasyncSync');
      await disk.write(crypto.randomBytes(MiB), 0, { bypassCache: true });
      await disk.flush(); // 1 MiB: inline
      expect(fdatasyncSync).toHaveBeenCalledTimes(1);
      await disk.write(crypto.randomBytes(MiB), 0, { bypassCache: true });
      await disk.write(crypto.randomBytes(MiB), MiB, { bypassCache: true });
      expect(disk.directTransfers.writes).toBe(3);
      await disk.flush(); // 2 MiB: the pool
      expect(fdatasync).toHaveBeenCalledTimes(1);
      expect(fdatasyncSync).toHaveBeenCalledTimes(1);
    } finally {
      vi.restoreAllMocks();
      await disk.close();
    }
  });

  it('a bulk write from ordinary memory and a bulk read into aligned memory reach the device without the page cache', async () => {
    const disk = FileDisk.open(file);
    const data = crypto.randomBytes(MiB);
    try {
      expect(isDirectIoBuffer(data)).toBe(false); // copied into aligned staging memory
      await disk.write(data, 2 * MiB, { bypassCache: true });
      expect(disk.directTransfers).toEqual({ reads: 0, writes: 1, offReason: null });
      expect(residentBytes(file)).toBe(0);
      const back = directPool.take(MiB);
      try {
        expect(isDirectIoBuffer(back)).toBe(true);
        await disk.read(back, 2 * MiB, { bypassCache: true });
        expect(back.equals(data)).toBe(true);
      } finally {
        directPool.give(back);
      }
      expect(disk.directTransfers.reads).toBe(1);
      expect(residentBytes(file)).toBe(0);
      // The same bytes through the page cache (which now holds them).
      const plain = Buffer.alloc(MiB);
      await disk.read(plain, 2 * MiB);
      expect(plain.equals(data)).toBe(true);
      expect(residentBytes(file)).toBeGreaterThan(0);
      await disk.flush();
    } finally {
      await disk.close();
    }
    expect(fs.readFileSync(file).subarray(2 * MiB, 3 * MiB).equals(data)).toBe(true);
  });

  it('stays coherent with page-cache writes: a bulk read sees unflushed buffered data, a buffered read sees a bulk write over cached pages', async () => {
    const disk = FileDisk.open(file);
    const aligned = directPool.take(256 * 1024);
    try {
      const dirty = crypto.randomBytes(256 * 1024);
      await disk.write(dirty, MiB); // page cache, not flushed
      await disk.read(aligned, MiB, { bypassCache: true });
      expect(disk.directTransfers.reads).toBe(1);
      expect(aligned.equals(dirty)).toBe(true);

      const cached = Buffer.alloc(256 * 1024);
      await disk.read(cached, MiB); // pages cached now
      const fresh = crypto.randomBytes(256 * 1024);
      await disk.write(fresh, MiB, { bypassCache: true });
      expect(disk.directTransfers.writes).toBe(1);
      await disk.read(cached, MiB);
      expect(cached.equals(fresh)).toBe(true);
    } finally {
      directPool.give(aligned);
      await disk.close();
    }
  });

  it('goes through the page cache for unaligned offsets or lengths, a read into unaligned memory, and when direct I/O is off', async () => {
    const disk = FileDisk.open(file);
    try {
      const a = crypto.randomBytes(8192);
      await disk.write(a, 512, { bypassCache: true }); // offset not a 4 KiB multiple
      const b = crypto.randomBytes(6000);
      await disk.write(b, 4 * MiB, { bypassCache: true }); // length not a 4 KiB multiple
      const c = Buffer.alloc(8192);
      await disk.read(c, 512, { bypassCache: true }); // ordinary memory: not copied for reads
      expect(c.equals(a)).toBe(true);
      expect(disk.directTransfers).toEqual({ reads: 0, writes: 0, offReason: null });
      const d = Buffer.alloc(6000);
      await disk.read(d, 4 * MiB);
      expect(d.equals(b)).toBe(true);
    } finally {
      await disk.close();
    }
    const off = FileDisk.open(file, { directIo: false });
    try {
      expect(openFlagsOf(file).filter((f) => (f & O_DIRECT) === O_DIRECT)).toHaveLength(0);
      const e = crypto.randomBytes(MiB);
      await off.write(e, 0, { bypassCache: true });
      const back = directPool.take(MiB);
      try {
        await off.read(back, 0, { bypassCache: true });
        expect(back.equals(e)).toBe(true);
      } finally {
        directPool.give(back);
      }
      expect(off.directTransfers).toEqual({ reads: 0, writes: 0, offReason: 'direct I/O disabled by the caller' });
    } finally {
      await off.close();
    }
  });
});

describe('received RsDataReply payloads (peer/codec) go to the disk with O_DIRECT as they are', () => {
  const MiB = 1024 * 1024;
  let dir: string;
  beforeEach(() => {
    expect(alignedMemoryAvailable, 'native/udrbd-io built (scripts/setup.sh builds it)').toBe(true);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-rsreply-'));
  });
  afterEach(() => {
    vi.restoreAllMocks();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Decodes `packet` as the peer session does: reads into a reused receive buffer, large body tails read in place. */
  function receive(packet: WirePacket): WirePacket {
    const stream = Buffer.concat(encodePacket(packet));
    const delivered: WirePacket[] = [];
    const decoder = new FrameDecoder((p) => delivered.push(p), { volumes: new Set([0]) });
    const receiveBuffer = Buffer.alloc(64 * 1024);
    for (let pos = 0; pos < stream.length; ) {
      const target = decoder.directReadTarget() ?? receiveBuffer;
      const n = Math.min(target.length, 100_000, stream.length - pos);
      stream.copy(target, 0, pos, pos + n);
      pos += n;
      decoder.received(n, target);
      receiveBuffer.fill(0xee);
    }
    expect(delivered).toHaveLength(1);
    return delivered[0]!;
  }

  it('the payload is assembled on a page boundary of aligned memory, the SyncTarget writes it without a staging copy, and released it is reused', async () => {
    const file = path.join(dir, 'disk.img');
    fs.writeFileSync(file, Buffer.alloc(0));
    fs.truncateSync(file, SIZE_BYTES);
    const disk = FileDisk.open(file);
    try {
      const data = crypto.randomBytes(MiB);
      const got = receive({ type: PacketType.RsDataReply, volume: 0, offsetBytes: 2 * MiB, blockId: 5, payload: data });
      assert(got.type === PacketType.RsDataReply, 'the decoder returns the RsDataReply it was given');
      expect(got.payload.equals(data)).toBe(true);
      expect(isDirectIoBuffer(got.payload)).toBe(true);
      const take = vi.spyOn(directPool, 'take');
      await disk.write(got.payload, got.offsetBytes, { bypassCache: true });
      expect(take).not.toHaveBeenCalled(); // no aligned staging buffer: the payload itself went to the device
      expect(disk.directTransfers.writes).toBe(1);
      const back = Buffer.alloc(MiB);
      await disk.read(back, 2 * MiB);
      expect(back.equals(data)).toBe(true);
      const store = got.payload.buffer;
      releaseReceivedPayload(got.payload);
      take.mockRestore();
      const next = receive({ type: PacketType.RsDataReply, volume: 0, offsetBytes: 0, blockId: 6, payload: crypto.randomBytes(MiB) });
      assert(next.type === PacketType.RsDataReply, 'the decoder returns the RsDataReply it was given');
      expect(next.payload.buffer).toBe(store);
      expect(isDirectIoBuffer(next.payload)).toBe(true);
      // A payload that is not whole pages (sector-sized) still decodes, in ordinary memory.
      const odd = receive({ type: PacketType.RsDataReply, volume: 0, offsetBytes: 0, blockId: 7, payload: crypto.randomBytes(64 * 1024 + 512) });
      assert(odd.type === PacketType.RsDataReply, 'the decoder returns the RsDataReply it was given');
      expect(isDirectIoBuffer(odd.payload)).toBe(false);
      releaseReceivedPayload(next.payload);
      releaseReceivedPayload(odd.payload);
    } finally {
      await disk.close();
    }
  });
});
