/**
 * The fuse-native (libfuse 2) fallback of the volume file — what serves the
 * FUSE + loop path when the libfuse 3 addon is not built, or when
 * UDRBD_FUSE_BACKEND=fuse-native asks for it — on a real mount with a loop
 * device on it (root): data written with dd + fsync through the loop device
 * lands on the device byte for byte, fsync/flush reach device.flush(), and
 * the environment override really selects this backend. The volume is served
 * by this process, so every access goes through child processes (execa),
 * never fs calls on the mount.
 */
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FileDisk } from '../../src/disk/file-disk.js';
import { VolumeFs, defaultFuseBackend } from '../../src/frontend/fuse/volume-fs.js';
import { fuseNative } from '../../src/frontend/fuse/fuse-native.js';
import { attachLoop, detachLoop } from '../../src/frontend/loop/losetup.js';
import { isMountPoint, exposeVolume, type VolumeExposure } from '../../src/frontend/exposure/fuse-loop-exposure.js';
import { readDeviceLink } from '../../src/frontend/device-link/device-link.js';
import { silentLogger } from '../../src/util/log.js';
import { requireFuseLoopPrerequisites, run, checksums, forceCleanup, CountingDevice } from '../helpers/fuse-harness.js';

const MiB = 1024 * 1024;
const DISK_BYTES = 64 * MiB;
const WRITTEN_BYTES = 8 * MiB;
/** libfuse 2 never sends a request larger than this. */
const LIBFUSE2_REQUEST_MAX_BYTES = 128 * 1024;


interface Scene { dir: string; diskFile: string; fuseDir: string; disk: FileDisk; volume: VolumeFs | null; loopDevice: string | null; exposure?: VolumeExposure; link?: string }
let scene: Scene | null = null;
/** The device link of the exposure test (unique to this file). */
const DEVICE_PATH = '/dev/drbd73';

beforeAll(async () => {
  await requireFuseLoopPrerequisites();
});

afterEach(async () => {
  const s = scene;
  scene = null;
  if (s === null) return;
  if (s.exposure !== undefined) await s.exposure.teardown().catch(() => undefined);
  if (s.loopDevice !== null) await detachLoop(s.loopDevice, silentLogger()).catch(() => undefined);
  if (s.volume !== null) await s.volume.unmount().catch(() => undefined);
  const links = s.link !== undefined && (await readDeviceLink(s.link)) !== null ? [s.link] : [];
  const problems = await forceCleanup({ filesystemMounts: [], volumeFiles: [path.join(s.fuseDir, 'volume')], fuseMounts: [s.fuseDir], links });
  await s.disk.close().catch(() => undefined);
  if (!(await isMountPoint(s.fuseDir))) await fs.rm(s.dir, { recursive: true, force: true });
  if (problems.length > 0) throw new Error(`cleanup problems: ${problems.join('; ')}`);
});

describe('fuse-native (libfuse 2) volume backend under a loop device', () => {
  it('UDRBD_FUSE_BACKEND=fuse-native selects it', () => {
    const saved = process.env.UDRBD_FUSE_BACKEND;
    process.env.UDRBD_FUSE_BACKEND = 'fuse-native';
    try {
      expect(defaultFuseBackend()).toEqual({ backend: 'fuse-native', reason: 'UDRBD_FUSE_BACKEND=fuse-native' });
    } finally {
      if (saved === undefined) delete process.env.UDRBD_FUSE_BACKEND;
      else process.env.UDRBD_FUSE_BACKEND = saved;
    }
  });

  it('mounts, a loop device on it takes dd + fsync, the bytes land on the device, fsync reaches device.flush', async () => {
    expect(() => fuseNative()).not.toThrow(); // the optional dependency and its libfuse 2 prebuild load
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'udrbd-fuse-native-e2e-'));
    const diskFile = path.join(dir, 'disk.img');
    await fs.writeFile(diskFile, '');
    await fs.truncate(diskFile, DISK_BYTES);
    const disk = FileDisk.open(diskFile);
    const s: Scene = { dir, diskFile, fuseDir: path.join(dir, 'fuse'), disk, volume: null, loopDevice: null };
    scene = s;
    const counting = new CountingDevice(disk);
    const volume = new VolumeFs({ device: counting, mountDir: s.fuseDir, fsname: 'udrbd:fusenativetest', backend: 'fuse-native', log: silentLogger() });
    await volume.mount();
    s.volume = volume;
    expect(volume.backend).toBe('fuse-native');
    const mountLine = (await fs.readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.includes(` ${s.fuseDir} `));
    expect(mountLine).toMatch(/ - fuse\.udrbd udrbd:fusenativetest /);
    expect(await run('stat', ['-c', '%s', volume.volumePath])).toBe(String(DISK_BYTES));

    const loop = await attachLoop(volume.volumePath, { directIo: true, log: silentLogger() });
    s.loopDevice = loop.loopDevice;
    expect(await run('blockdev', ['--getsize64', loop.loopDevice])).toBe(String(DISK_BYTES));

    const flushesBefore = counting.flushCount;
    await run('sh', ['-c', `head -c ${WRITTEN_BYTES} /dev/urandom > "$1/src" && dd if="$1/src" of="$2" bs=1M seek=4 conv=fsync status=none`, 'sh', s.dir, loop.loopDevice]);
    expect(counting.flushCount).toBeGreaterThan(flushesBefore);
    // What the loop device took is byte for byte what the device file holds (at 4 MiB).
    await run('sh', ['-c', `dd if="$1" of="$2/landed" bs=1M skip=4 count=${WRITTEN_BYTES / MiB} status=none`, 'sh', s.diskFile, s.dir]);
    const [sent, landed] = await checksums([`${s.dir}/src`, `${s.dir}/landed`]);
    expect(landed).toBe(sent);
    // And reads back through the loop device (bypassing its page cache).
    await run('sh', ['-c', `dd if="$1" of="$2/readback" bs=1M skip=4 count=${WRITTEN_BYTES / MiB} iflag=direct status=none`, 'sh', loop.loopDevice, s.dir]);
    expect((await checksums([`${s.dir}/readback`]))[0]).toBe(sent);

    expect(volume.stats.writeRequests).toBeGreaterThan(0);
    expect(volume.stats.requestLargestBytes).toBeLessThanOrEqual(LIBFUSE2_REQUEST_MAX_BYTES);
    expect(volume.stats.ioErrors).toBe(0);
  });

  it('with UDRBD_FUSE_BACKEND=fuse-native the FUSE + loop exposure uses it: dd + fsync through the device link lands on the device, flush reaches it, teardown removes the link', async () => {
    const saved = process.env.UDRBD_FUSE_BACKEND;
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'udrbd-fuse-native-e2e-'));
    const diskFile = path.join(dir, 'disk.img');
    await fs.writeFile(diskFile, '');
    await fs.truncate(diskFile, DISK_BYTES);
    const disk = FileDisk.open(diskFile);
    const s: Scene = { dir, diskFile, fuseDir: path.join(dir, 'fuse'), disk, volume: null, loopDevice: null, link: DEVICE_PATH };
    scene = s;
    expect(await readDeviceLink(DEVICE_PATH)).toBeNull();
    const counting = new CountingDevice(disk);
    process.env.UDRBD_FUSE_BACKEND = 'fuse-native';
    try {
      s.exposure = await exposeVolume({ device: counting, mountDir: s.fuseDir, devicePath: DEVICE_PATH, runtimeDir: path.join(dir, 'run'), log: silentLogger() });
    } finally {
      if (saved === undefined) delete process.env.UDRBD_FUSE_BACKEND;
      else process.env.UDRBD_FUSE_BACKEND = saved;
    }
    const exposure = s.exposure;
    expect(exposure.backend).toBe('fuse-native');
    expect(await readDeviceLink(DEVICE_PATH)).toBe(exposure.loopDevice);

    const flushesBefore = counting.flushCount;
    await run('sh', ['-c', `head -c ${WRITTEN_BYTES} /dev/urandom > "$1/src" && dd if="$1/src" of="$2" bs=1M conv=fsync status=none`, 'sh', s.dir, DEVICE_PATH]);
    expect(counting.flushCount).toBeGreaterThan(flushesBefore);
    await run('sh', ['-c', `head -c ${WRITTEN_BYTES} "$1" > "$2/landed"`, 'sh', s.diskFile, s.dir]);
    const [sent, landed] = await checksums([`${s.dir}/src`, `${s.dir}/landed`]);
    expect(landed).toBe(sent);
    expect(exposure.stats.ioErrors).toBe(0);

    await exposure.teardown();
    s.exposure = undefined;
    expect(await readDeviceLink(DEVICE_PATH)).toBeNull();
    expect(await isMountPoint(s.fuseDir)).toBe(false);
  });
});
