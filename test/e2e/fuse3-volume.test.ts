/**
 * The libfuse 3 backend of the volume file (native/udrbd-fuse3) on a real
 * mount with a loop device on it (root): it must negotiate what fuse-native
 * could not — several requests in flight from the loop device (async direct
 * I/O) and requests above 128 KiB — while keeping the durability and
 * namespace rules: data lands on the device byte for byte, fsync/flush reach
 * device.flush(), the namespace cannot change, and a read-only volume refuses
 * writers. The volume is served by this process, so every access goes
 * through child processes (execa), never fs calls on the mount.
 */
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FileDisk } from '../../src/disk/file-disk.js';
import { VolumeFs } from '../../src/frontend/fuse/volume-fs.js';
import { loadFuse3, type Fuse3Handle } from '../../src/frontend/fuse/fuse3-native.js';
import { attachLoop, detachLoop } from '../../src/frontend/loop/losetup.js';
import { isMountPoint } from '../../src/frontend/exposure/fuse-loop-exposure.js';
import { silentLogger } from '../../src/util/log.js';
import { requireFuseLoopPrerequisites, run, exitCodeOf, checksums, forceCleanup, CountingDevice } from '../helpers/fuse-harness.js';

const MiB = 1024 * 1024;
const DISK_BYTES = 256 * MiB;
/** What libfuse 2 (fuse-native) could never exceed. */
const LIBFUSE2_REQUEST_MAX_BYTES = 128 * 1024;


interface Scene { dir: string; diskFile: string; fuseDir: string; disk: FileDisk; volume: VolumeFs | null; loopDevice: string | null }
let scene: Scene | null = null;

async function newScene(readOnly = false): Promise<Scene & { counting: CountingDevice; volume: VolumeFs }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'udrbd-fuse3-e2e-'));
  const diskFile = path.join(dir, 'disk.img');
  await fs.writeFile(diskFile, '');
  await fs.truncate(diskFile, DISK_BYTES);
  const disk = FileDisk.open(diskFile);
  const s: Scene = { dir, diskFile, fuseDir: path.join(dir, 'fuse'), disk, volume: null, loopDevice: null };
  scene = s;
  const counting = new CountingDevice(disk);
  const volume = new VolumeFs({ device: counting, mountDir: s.fuseDir, fsname: 'udrbd:fuse3test', readOnly, backend: 'fuse3', log: silentLogger() });
  await volume.mount();
  s.volume = volume;
  return { ...s, counting, volume };
}

beforeAll(async () => {
  await requireFuseLoopPrerequisites();
  const { addon, reason } = loadFuse3();
  if (addon === null) throw new Error(`libfuse 3 addon missing: ${reason}`);
  for (const tool of ['fio', 'mkdir', 'touch']) {
    if ((await exitCodeOf('sh', ['-c', `command -v ${tool}`])) !== 0) throw new Error(`${tool} is required (apt-get install fio coreutils)`);
  }
});

afterEach(async () => {
  const s = scene;
  scene = null;
  if (s === null) return;
  if (s.loopDevice !== null) await detachLoop(s.loopDevice, silentLogger()).catch(() => undefined);
  if (s.volume !== null) await s.volume.unmount().catch(() => undefined);
  const problems = await forceCleanup({ filesystemMounts: [], volumeFiles: [path.join(s.fuseDir, 'volume')], fuseMounts: [s.fuseDir], links: [] });
  await s.disk.close().catch(() => undefined);
  if (!(await isMountPoint(s.fuseDir))) await fs.rm(s.dir, { recursive: true, force: true });
  if (problems.length > 0) throw new Error(`cleanup problems: ${problems.join('; ')}`);
});

describe('libfuse 3 volume backend under a loop device', () => {
  it('keeps several requests in flight, sends requests above 128 KiB, writes land on the device, fsync reaches device.flush', async () => {
    const s = await newScene();
    expect(s.volume.backend).toBe('fuse3');
    expect((await fs.readFile('/proc/self/mountinfo', 'utf8')).includes(` ${s.fuseDir} `)).toBe(true);
    const loop = await attachLoop(s.volume.volumePath, { directIo: true, log: silentLogger() });
    scene!.loopDevice = loop.loopDevice;
    expect(loop.directIo).toBe(true);

    // 16 MiB of 1 MiB direct writes: the kernel may now send them whole.
    await run('sh', ['-c', `head -c ${16 * MiB} /dev/urandom > "$1/src" && dd if="$1/src" of="$2" bs=1M oflag=direct conv=fsync status=none`, 'sh', s.dir, loop.loopDevice]);
    expect(s.volume.stats.requestLargestBytes).toBeGreaterThan(LIBFUSE2_REQUEST_MAX_BYTES);
    expect(s.counting.flushCount).toBeGreaterThan(0);
    // What the loop device took is byte for byte what the device file holds.
    await run('sh', ['-c', `head -c ${16 * MiB} "$1" > "$2/landed"`, 'sh', s.diskFile, s.dir]);
    const [sent, landed] = await checksums([`${s.dir}/src`, `${s.dir}/landed`]);
    expect(landed).toBe(sent);

    // 4 KiB random writes at queue depth 16 (bounded by size) against a device that takes 1 ms per
    // write: if the kernel keeps several requests in flight, more than one is in the frontend at once.
    s.counting.writeDelayMs = 1;
    await run('fio', ['--name=qd', `--filename=${loop.loopDevice}`, '--rw=randwrite', '--bs=4k', '--direct=1', '--ioengine=libaio', '--iodepth=16',
      `--offset=${32 * MiB}`, `--size=${32 * MiB}`, '--io_size=8M', '--randrepeat=0', '--output-format=terse']);
    s.counting.writeDelayMs = 0;
    expect(s.volume.stats.inflightHighWater).toBeGreaterThan(1);

    const flushesBefore = s.counting.flushCount;
    await run('blockdev', ['--flushbufs', loop.loopDevice]);
    await run('sh', ['-c', `dd if=/dev/zero of="$1" bs=4k count=1 seek=100 oflag=direct conv=fsync status=none`, 'sh', loop.loopDevice]);
    expect(s.counting.flushCount).toBeGreaterThan(flushesBefore);
    expect(s.volume.stats.ioErrors).toBe(0);
  });

  it('serves every request from the workers\' buffers made at mount, and refuses a reply to a worker with no request waiting', async () => {
    const { addon } = loadFuse3();
    const s = await newScene();
    const loop = await attachLoop(s.volume.volumePath, { directIo: true, log: silentLogger() });
    scene!.loopDevice = loop.loopDevice;
    // 64 x 1 MiB writes, then reads of them, through the loop device.
    await run('sh', ['-c', `dd if=/dev/urandom of="$1" bs=1M count=64 oflag=direct conv=fsync status=none && dd if="$1" of=/dev/null bs=1M count=64 iflag=direct status=none`, 'sh', loop.loopDevice]);
    expect(s.counting.requests).toBeGreaterThanOrEqual(128);
    // No request got memory of its own: every one arrived in one of the two buffers per worker.
    expect(s.counting.stores.size).toBeLessThanOrEqual(2 * addon!.threadsMax);
    expect(s.counting.stores.size).toBeGreaterThanOrEqual(2);
    // The addon holds each worker to one reply per request: an unsolicited reply is an error, not a stray wake-up.
    const handle = (s.volume as unknown as { fuse3: { handle: Fuse3Handle } }).fuse3.handle; // test-only peek at the mounted handle
    expect(() => addon!.reply(handle, 0, 0)).toThrow(/no request waiting/);
    expect(() => addon!.reply(handle, addon!.threadsMax, 0)).toThrow(/no request waiting/);
    expect(addon!.buffers(handle)).toHaveLength(2 * addon!.threadsMax);
    expect(s.volume.stats.ioErrors).toBe(0);
  });

  it('shows one file of the device size and refuses every namespace change with EPERM', async () => {
    const s = await newScene();
    expect((await run('ls', ['-a', s.fuseDir])).split('\n').sort()).toEqual(['.', '..', 'volume']);
    expect(await run('stat', ['-c', '%s %F', s.volume.volumePath])).toBe(`${DISK_BYTES} regular file`);
    for (const [cmd, args] of [
      ['mkdir', [`${s.fuseDir}/d`]],
      ['touch', [`${s.fuseDir}/new`]],
      ['rm', ['-f', s.volume.volumePath]],
      ['mv', [s.volume.volumePath, `${s.fuseDir}/moved`]],
      ['chmod', ['0666', s.volume.volumePath]],
      ['truncate', ['-s', '1M', s.volume.volumePath]],
    ] as const) {
      const result = await exitCodeOf(cmd, [...args]);
      expect(result, `${cmd} ${args.join(' ')}`).not.toBe(0);
    }
    const refused = await run('sh', ['-c', `mkdir "$1/d" 2>&1 || true`, 'sh', s.fuseDir]);
    expect(refused).toContain('Operation not permitted');
    expect((await run('ls', ['-a', s.fuseDir])).split('\n').sort()).toEqual(['.', '..', 'volume']);
    expect(await run('stat', ['-c', '%s', s.volume.volumePath])).toBe(String(DISK_BYTES));
  });

  it('a read-only volume serves reads and refuses opening for write (EROFS)', async () => {
    const s = await newScene(true);
    await s.disk.write(Buffer.alloc(4096, 0x5a), 8192);
    const bytes = await run('sh', ['-c', `dd if="$1" bs=4k skip=2 count=1 iflag=direct status=none | od -A n -t x1 | head -1`, 'sh', s.volume.volumePath]);
    expect(bytes.trim().split(/\s+/)).toEqual(new Array(16).fill('5a'));
    const refused = await run('sh', ['-c', `dd if=/dev/zero of="$1" bs=4k count=1 conv=notrunc status=none 2>&1 || true`, 'sh', s.volume.volumePath]);
    expect(refused).toContain('Read-only file system');
    expect(s.volume.stats.writeRequests).toBe(0);
  });
});
