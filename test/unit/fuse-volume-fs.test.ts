import { describe, it, expect } from 'vitest';
import { MemoryDisk } from '../../src/disk/memory-disk.js';
import type { BlockDevice } from '../../src/disk/block-device.js';
import { silentLogger } from '../../src/util/log.js';
import { VolumeFs, FUSE_INFLIGHT_MAX, FUSE_REQUEST_MAX_BYTES } from '../../src/frontend/fuse/volume-fs.js';
import { createTunedFuse, extraMountOptions, mergeMountOptions, fuseNative } from '../../src/frontend/fuse/fuse-native.js';

const MiB = 1024 * 1024;

function volume(device: BlockDevice, readOnly = false): ReturnType<VolumeFs['fuseOperations']> & Record<string, unknown> {
  const fs = new VolumeFs({ device, mountDir: '/nonexistent', fsname: 'udrbd:test', readOnly, log: silentLogger() });
  return fs.fuseOperations();
}

function call<T extends unknown[]>(fn: ((...args: [...T, (...r: unknown[]) => void]) => void) | undefined, ...args: T): Promise<unknown[]> {
  if (!fn) throw new Error('operation not implemented');
  return new Promise((resolve) => fn(...args, (...r: unknown[]) => resolve(r)));
}

describe('FUSE mount options', () => {
  it('adds big_writes, max_write and direct_io to what fuse-native builds', () => {
    const words = extraMountOptions({ fsname: 'x', subtype: 'udrbd', bigWrites: true, maxWriteBytes: MiB, maxReadBytes: MiB, directIo: true, timeout: false });
    expect(words).toEqual(['big_writes', 'max_write=1048576', 'direct_io']);
    expect(mergeMountOptions('-omax_read=1048576,fsname=a', words)).toBe('-omax_read=1048576,fsname=a,big_writes,max_write=1048576,direct_io');
    expect(mergeMountOptions('', ['big_writes'])).toBe('-obig_writes');
    expect(mergeMountOptions('-obig_writes', ['big_writes'])).toBe('-obig_writes');
  });

  it("extends fuse-native's own _fuseOptions through a subclass (node_modules untouched)", () => {
    const fuse = createTunedFuse('/nonexistent', {}, {
      fsname: 'udrbd:drbd1', subtype: 'udrbd', bigWrites: true, maxWriteBytes: MiB, maxReadBytes: MiB, directIo: false, timeout: false,
    }) as unknown as { _fuseOptions(): string };
    const opts = fuse._fuseOptions().slice(2).split(',');
    expect(opts).toEqual(expect.arrayContaining(['fsname=udrbd:drbd1', 'subtype=udrbd', 'max_read=1048576', 'big_writes', 'max_write=1048576']));
    expect(opts).not.toContain('direct_io');
    // A plain fuse-native instance still builds its own list without the additions.
    const Plain = fuseNative() as unknown as new (m: string, o: object, p: object) => { _fuseOptions(): string };
    expect(new Plain('/nonexistent', {}, { maxRead: MiB })._fuseOptions()).toBe('-omax_read=1048576');
  });
});

describe('FUSE volume file operations', () => {
  it('shows one file, the volume, with the device size', async () => {
    const ops = volume(new MemoryDisk(4 * MiB));
    expect(await call(ops.readdir, '/')).toEqual([0, ['volume']]);
    const [err, stat] = (await call(ops.getattr, '/volume')) as [number, { size: number; mode: number }];
    expect(err).toBe(0);
    expect(stat.size).toBe(4 * MiB);
    expect(stat.mode & 0o170000).toBe(0o100000);
    expect((await call(ops.getattr, '/other'))[0]).toBe(fuseNative().ENOENT);
  });

  it('maps reads and writes to the device, with short reads at the end', async () => {
    const disk = new MemoryDisk(2 * MiB);
    const ops = volume(disk);
    const data = Buffer.alloc(8192, 0xab);
    expect(await call(ops.write, '/volume', 0, data, data.length, MiB)).toEqual([8192]);
    expect(disk.data.subarray(MiB, MiB + 8192).equals(data)).toBe(true);
    const readBack = Buffer.alloc(8192);
    expect(await call(ops.read, '/volume', 0, readBack, 8192, MiB)).toEqual([8192]);
    expect(readBack.equals(data)).toBe(true);
    const tail = Buffer.alloc(8192);
    expect(await call(ops.read, '/volume', 0, tail, 8192, 2 * MiB - 4096)).toEqual([4096]);
    expect(await call(ops.read, '/volume', 0, tail, 8192, 2 * MiB)).toEqual([0]);
  });

  it('refuses a write past the end with ENOSPC and leaves the device unchanged', async () => {
    const disk = new MemoryDisk(MiB);
    const ops = volume(disk);
    expect(await call(ops.write, '/volume', 0, Buffer.alloc(8192, 1), 8192, MiB - 4096)).toEqual([fuseNative().ENOSPC]);
    expect(disk.data.every((b) => b === 0)).toBe(true);
  });

  it('maps fsync and flush to device.flush()', async () => {
    const disk = new MemoryDisk(MiB);
    const ops = volume(disk);
    expect(await call(ops.fsync, '/volume', 1, 0)).toEqual([0]);
    expect(await call(ops.flush, '/volume', 0)).toEqual([0]);
    expect(disk.flushCount).toBe(2);
  });

  it('answers EIO when the device fails', async () => {
    const failing: BlockDevice = {
      sizeBytes: MiB,
      capabilities: { canFlush: true, canFua: false, canTrim: false, maxRequestBytes: MiB },
      read: () => Promise.reject(new Error('disk gone')),
      write: () => Promise.reject(new Error('disk gone')),
      flush: () => Promise.reject(new Error('disk gone')),
      trim: () => Promise.reject(new Error('disk gone')),
      close: () => Promise.resolve(),
    };
    const ops = volume(failing);
    const EIO = fuseNative().EIO;
    expect(await call(ops.read, '/volume', 0, Buffer.alloc(512), 512, 0)).toEqual([EIO]);
    expect(await call(ops.write, '/volume', 0, Buffer.alloc(512), 512, 0)).toEqual([EIO]);
    expect(await call(ops.fsync, '/volume', 0, 0)).toEqual([EIO]);
  });

  it('refuses create, unlink, rename, mkdir and resizing truncate with EPERM', async () => {
    const ops = volume(new MemoryDisk(MiB));
    const EPERM = fuseNative().EPERM;
    expect(await call(ops.create, '/new', 0o644)).toEqual([EPERM]);
    expect(await call(ops.unlink, '/volume')).toEqual([EPERM]);
    expect(await call(ops.rename, '/volume', '/x')).toEqual([EPERM]);
    expect(await call(ops.mkdir, '/d', 0o755)).toEqual([EPERM]);
    expect(await call(ops.truncate, '/volume', 0)).toEqual([EPERM]);
    expect(await call(ops.ftruncate, '/volume', 0, 4096)).toEqual([EPERM]);
    expect(await call(ops.truncate, '/volume', MiB)).toEqual([0]);
  });

  it('refuses opens for writing and writes on a read-only volume', async () => {
    const disk = new MemoryDisk(MiB);
    const ops = volume(disk, true);
    const EROFS = fuseNative().EROFS;
    expect(await call(ops.open, '/volume', 2 /* O_RDWR */)).toEqual([EROFS]);
    expect(await call(ops.open, '/volume', 0 /* O_RDONLY */)).toEqual([0, 0]);
    expect(await call(ops.write, '/volume', 0, Buffer.alloc(512, 1), 512, 0)).toEqual([EROFS]);
    expect(disk.data.every((b) => b === 0)).toBe(true);
  });

  it('keeps at most FUSE_INFLIGHT_MAX requests at the device and runs the rest in order', async () => {
    let atDevice = 0;
    let maxAtDevice = 0;
    const release: Array<() => void> = [];
    const disk = new MemoryDisk(MiB);
    const slow: BlockDevice = {
      sizeBytes: disk.sizeBytes,
      capabilities: disk.capabilities,
      read: (b, o) => disk.read(b, o),
      write: (b, o) => {
        atDevice++;
        maxAtDevice = Math.max(maxAtDevice, atDevice);
        return new Promise<void>((resolve, reject) => release.push(() => { atDevice--; disk.write(b, o).then(resolve, reject); }));
      },
      flush: () => disk.flush(),
      trim: (o, l) => disk.trim(o, l),
      close: () => disk.close(),
    };
    const ops = volume(slow);
    const total = FUSE_INFLIGHT_MAX + 10;
    const results = Array.from({ length: total }, (_, i) => call(ops.write, '/volume', 0, Buffer.alloc(512, i & 0xff), 512, i * 512));
    for (let rounds = 0; rounds < 10_000 && (release.length > 0 || atDevice > 0); rounds++) {
      const next = release.shift();
      if (next) next();
      await new Promise((r) => setImmediate(r));
    }
    expect(await Promise.all(results)).toEqual(Array.from({ length: total }, () => [512]));
    expect(maxAtDevice).toBe(FUSE_INFLIGHT_MAX);
    expect(disk.data[(total - 1) * 512]).toBe((total - 1) & 0xff);
  });

  it('splits a request bigger than the device maxRequestBytes', async () => {
    const disk = new MemoryDisk(2 * MiB);
    const sizes: number[] = [];
    const small: BlockDevice = {
      sizeBytes: disk.sizeBytes,
      capabilities: { ...disk.capabilities, maxRequestBytes: 64 * 1024 },
      read: (b, o) => disk.read(b, o),
      write: (b, o) => { sizes.push(b.length); return disk.write(b, o); },
      flush: () => disk.flush(),
      trim: (o, l) => disk.trim(o, l),
      close: () => disk.close(),
    };
    const ops = volume(small);
    const data = Buffer.alloc(FUSE_REQUEST_MAX_BYTES, 7);
    expect(await call(ops.write, '/volume', 0, data, data.length, 0)).toEqual([FUSE_REQUEST_MAX_BYTES]);
    expect(sizes).toEqual(Array.from({ length: 16 }, () => 64 * 1024));
    expect(disk.data.subarray(0, MiB).every((b) => b === 7)).toBe(true);
  });
});
