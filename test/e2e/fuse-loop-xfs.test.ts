/**
 * XFS on a FileDisk exposed through FUSE + loop + device link (root).
 * The in-process tests serve FUSE from this very process, so every access to
 * the volume goes through child processes (execa), never synchronous fs calls.
 */
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { FileDisk } from '../../src/disk/file-disk.js';
import { exposeVolume, cleanupStale, isMountPoint, type VolumeExposure } from '../../src/frontend/exposure/fuse-loop-exposure.js';
import { attachLoop, detachLoop, findLoopDevicesBackedBy, loopBackingFile } from '../../src/frontend/loop/losetup.js';
import { silentLogger } from '../../src/util/log.js';
import { readDeviceLink } from '../../src/frontend/device-link/device-link.js';
import { UdrbdError } from '../../src/util/errors.js';
import { requireFuseLoopPrerequisites, run, exitCodeOf, checksums, compileExposeChild, forceCleanup, CountingDevice } from '../helpers/fuse-harness.js';

const MiB = 1024 * 1024;
const DISK_BYTES = 512 * MiB;
const CHILD_READY_TIMEOUT_MS = 60_000;

/** Counts flushes on the way to the real disk: proves fsync in XFS reaches device.flush(). */

interface Scene {
  dir: string;
  diskFile: string;
  fuseDir: string;
  xfsDir: string;
  devicePath: string;
  runtimeDir: string;
}

let scene: Scene | null = null;
const exposures: VolumeExposure[] = [];
const disks: FileDisk[] = [];
const children: ChildProcess[] = [];

async function newScene(): Promise<Scene> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'udrbd-fuse-e2e-'));
  const s: Scene = {
    dir,
    diskFile: path.join(dir, 'disk.img'),
    fuseDir: path.join(dir, 'fuse'),
    xfsDir: path.join(dir, 'xfs'),
    devicePath: path.join(dir, 'drbd1'),
    runtimeDir: path.join(dir, 'run'),
  };
  await fs.writeFile(s.diskFile, '');
  await fs.truncate(s.diskFile, DISK_BYTES);
  await fs.mkdir(s.xfsDir);
  scene = s;
  return s;
}

async function assertNothingLeft(s: Scene, volumeFile: string): Promise<void> {
  expect(await isMountPoint(s.xfsDir)).toBe(false);
  expect(await isMountPoint(s.fuseDir)).toBe(false);
  expect(await findLoopDevicesBackedBy(volumeFile)).toEqual([]);
  expect(await readDeviceLink(s.devicePath)).toBeNull();
  await expect(fs.lstat(s.devicePath)).rejects.toMatchObject({ code: 'ENOENT' });
  expect((await fs.readdir(s.runtimeDir)).filter((n) => n.endsWith('.json'))).toEqual([]);
}

beforeAll(async () => {
  await requireFuseLoopPrerequisites();
});

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  const s = scene;
  scene = null;
  if (s === null) return;
  if (await isMountPoint(s.xfsDir)) await exitCodeOf('umount', [s.xfsDir]);
  for (const exposure of exposures.splice(0)) await exposure.teardown().catch(() => undefined);
  const problems = await forceCleanup({
    filesystemMounts: [s.xfsDir],
    volumeFiles: [path.join(s.fuseDir, 'volume')],
    fuseMounts: [s.fuseDir],
    links: [s.devicePath],
  });
  for (const disk of disks.splice(0)) await disk.close().catch(() => undefined);
  if (!(await isMountPoint(s.fuseDir))) await fs.rm(s.dir, { recursive: true, force: true });
  if (problems.length > 0) throw new Error(`cleanup problems: ${problems.join('; ')}`);
});

describe('FUSE + loop exposure of a FileDisk, XFS on the device link', () => {
  it('carries XFS: 200 MiB with fsync, fsync reaches device.flush, xfs_repair clean, data survives re-exposure, teardown leaves nothing', async () => {
    const s = await newScene();
    const disk = FileDisk.open(s.diskFile);
    disks.push(disk);
    const counting = new CountingDevice(disk);
    const exposure = await exposeVolume({ device: counting, mountDir: s.fuseDir, devicePath: s.devicePath, runtimeDir: s.runtimeDir });
    exposures.push(exposure);

    expect(await readDeviceLink(s.devicePath)).toBe(exposure.loopDevice);
    expect(await loopBackingFile(exposure.loopDevice)).toBe(exposure.volumeFile);
    expect(exposure.loopDirectIo).toBe(true);
    // Requests capped at the FUSE request size (1 MiB with libfuse 3), not the loop default of 1280 KiB.
    expect(await fs.readFile(`/sys/block/${path.basename(exposure.loopDevice)}/queue/max_sectors_kb`, 'utf8')).toBe('1024\n');
    expect(await run('blockdev', ['--getsize64', s.devicePath])).toBe(String(DISK_BYTES));

    await run('mkfs.xfs', ['-q', s.devicePath]);
    await run('mount', [s.devicePath, s.xfsDir]);
    const flushesBefore = counting.flushCount;
    await run('dd', ['if=/dev/urandom', `of=${s.xfsDir}/big`, 'bs=1M', 'count=200', 'conv=fsync', 'status=none']);
    expect(counting.flushCount).toBeGreaterThan(flushesBefore);
    await run('sh', ['-c', `head -c 300000 /dev/urandom > "$1/small" && mkdir "$1/dir" && head -c 4096 /dev/urandom > "$1/dir/page" && sync "$1/small" "$1/dir/page"`, 'sh', s.xfsDir]);
    const files = [`${s.xfsDir}/big`, `${s.xfsDir}/small`, `${s.xfsDir}/dir/page`];
    const sums = await checksums(files);
    expect(sums.every((sum) => /^[0-9a-f]{64}$/.test(sum))).toBe(true);

    // Held open while mounted: teardown refuses with DRBD's wording and exit code 11, and changes nothing.
    expect(await exposure.isHeldOpen()).toBe(true);
    expect((await exposure.heldOpenReport()).mountPoints).toEqual([s.xfsDir]);
    const refusal = await exposure.teardown().then(() => null, (err: unknown) => err);
    expect(refusal).toBeInstanceOf(UdrbdError);
    expect((refusal as UdrbdError).exitCode).toBe(11);
    expect((refusal as UdrbdError).message).toContain('State change failed: (-12) Device is held open by someone');
    expect(await readDeviceLink(s.devicePath)).toBe(exposure.loopDevice);
    expect(await loopBackingFile(exposure.loopDevice)).toBe(exposure.volumeFile);

    await run('umount', [s.xfsDir]);
    await run('xfs_repair', ['-n', s.devicePath]);
    await run('mount', [s.devicePath, s.xfsDir]);
    expect(await checksums(files)).toEqual(sums);
    await run('umount', [s.xfsDir]);

    expect(await exposure.isHeldOpen()).toBe(false);
    await exposure.teardown();
    await exposure.teardown(); // idempotent
    await assertNothingLeft(s, exposure.volumeFile);
    exposures.splice(0);
    await disk.close();
    disks.splice(0);

    // A fresh exposure of the same backing file shows the same filesystem: the data reached the disk.
    const again = FileDisk.open(s.diskFile);
    disks.push(again);
    const second = await exposeVolume({ device: again, mountDir: s.fuseDir, devicePath: s.devicePath, runtimeDir: s.runtimeDir });
    exposures.push(second);
    await run('mount', [s.devicePath, s.xfsDir]);
    expect(await checksums(files)).toEqual(sums);
    await run('umount', [s.xfsDir]);
    await run('xfs_repair', ['-n', s.devicePath]);
    await second.teardown();
    await assertNothingLeft(s, second.volumeFile);
  });

  it('counts a process holding the device open (through the link) as held open, and not after it exits', async () => {
    const s = await newScene();
    const disk = FileDisk.open(s.diskFile);
    disks.push(disk);
    const exposure = await exposeVolume({ device: disk, mountDir: s.fuseDir, devicePath: s.devicePath, runtimeDir: s.runtimeDir });
    exposures.push(exposure);
    expect(await exposure.isHeldOpen()).toBe(false);

    const holder = spawn('sh', ['-c', 'exec 3<"$1"; echo ready; exec sleep 60', 'sh', s.devicePath], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(holder);
    await new Promise<void>((resolve, reject) => {
      holder.stdout?.once('data', () => resolve());
      holder.once('exit', (code) => reject(new Error(`holder exited early (${code})`)));
    });
    const report = await exposure.heldOpenReport();
    expect(report.held).toBe(true);
    expect(report.mountPoints).toEqual([]);
    expect(report.openBy.map((o) => o.pid)).toContain(holder.pid);
    const refusal = await exposure.teardown().then(() => null, (err: unknown) => err);
    expect((refusal as UdrbdError).exitCode).toBe(11);

    const exited = new Promise((resolve) => holder.once('exit', resolve));
    holder.kill('SIGKILL');
    await exited;
    expect(await exposure.isHeldOpen()).toBe(false);
    await exposure.teardown();
    await assertNothingLeft(s, exposure.volumeFile);
  });
});

describe('FUSE + loop exposure after the process hosting FUSE is killed', () => {
  let childScript = '';
  let buildDir = '';

  beforeAll(async () => {
    buildDir = await fs.mkdtemp(path.join(os.tmpdir(), 'udrbd-fuse-child-'));
    childScript = await compileExposeChild(buildDir);
  });

  it('kill -9 while XFS is mounted: writes fail, cleanupStale leaves the mounted device, then cleans up fully after umount', async () => {
    try {
      const s = await newScene();
      const child = spawn(process.execPath, [childScript, s.diskFile, s.fuseDir, s.devicePath, s.runtimeDir], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
      const ready = await new Promise<{ loopDevice: string; volumeFile: string }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`child not ready after ${CHILD_READY_TIMEOUT_MS} ms: ${stderr}`)), CHILD_READY_TIMEOUT_MS);
        let out = '';
        child.stdout?.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          const nl = out.indexOf('\n');
          if (nl >= 0) { clearTimeout(timer); resolve(JSON.parse(out.slice(0, nl)) as { loopDevice: string; volumeFile: string }); }
        });
        child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`child exited ${code}: ${stderr}`)); });
      });
      expect(await readDeviceLink(s.devicePath)).toBe(ready.loopDevice);

      await run('mkfs.xfs', ['-q', s.devicePath]);
      await run('mount', [s.devicePath, s.xfsDir]);
      await run('dd', ['if=/dev/urandom', `of=${s.xfsDir}/before`, 'bs=1M', 'count=20', 'conv=fsync', 'status=none']);
      // A live owner's exposure is never touched by cleanupStale.
      expect(await cleanupStale(s.runtimeDir)).toEqual({ cleaned: [], stillHeld: [], live: [s.devicePath] });

      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;

      // XFS sees I/O errors now; the write with fsync fails instead of hanging.
      expect(await exitCodeOf('dd', ['if=/dev/zero', `of=${s.xfsDir}/after`, 'bs=1M', 'count=4', 'conv=fsync', 'status=none'])).not.toBe(0);

      // Still mounted: cleanupStale reports it and removes nothing.
      const first = await cleanupStale(s.runtimeDir);
      expect(first.cleaned).toEqual([]);
      expect(first.live).toEqual([]);
      expect(first.stillHeld).toHaveLength(1);
      expect(first.stillHeld[0]?.devicePath).toBe(s.devicePath);
      expect(first.stillHeld[0]?.why).toContain(`mounted on ${s.xfsDir}`);
      expect(await readDeviceLink(s.devicePath)).toBe(ready.loopDevice);

      await run('umount', [s.xfsDir]);
      expect(await cleanupStale(s.runtimeDir)).toEqual({ cleaned: [s.devicePath], stillHeld: [], live: [] });
      await assertNothingLeft(s, ready.volumeFile);
      // Idempotent: nothing left to do.
      expect(await cleanupStale(s.runtimeDir)).toEqual({ cleaned: [], stillHeld: [], live: [] });
    } finally {
      await fs.rm(buildDir, { recursive: true, force: true });
    }
  });
});

describe('losetup wrapper on a plain file', () => {
  it('attaches with direct I/O, finds the device by backing file, detaches idempotently', async () => {
    const s = await newScene();
    const plain = path.join(s.dir, 'plain.img');
    await fs.writeFile(plain, '');
    await fs.truncate(plain, 64 * MiB);
    const log = silentLogger();
    const attached = await attachLoop(plain, { directIo: true, requestMaxBytes: 256 * 1024, log });
    try {
      expect(attached.loopDevice).toMatch(/^\/dev\/loop\d+$/);
      expect(attached.directIo).toBe(true);
      // requestMaxBytes caps the device's request size (never raises it).
      expect(attached.maxRequestKiB).toBe(256);
      expect(await fs.readFile(`/sys/block/${path.basename(attached.loopDevice)}/queue/max_sectors_kb`, 'utf8')).toBe('256\n');
      expect(await loopBackingFile(attached.loopDevice)).toBe(plain);
      expect(await findLoopDevicesBackedBy(plain)).toEqual([attached.loopDevice]);
      expect(await run('blockdev', ['--getsize64', attached.loopDevice])).toBe(String(64 * MiB));
      // A loop device backed by another file than expected is someone else's: left attached.
      await detachLoop(attached.loopDevice, log, path.join(s.dir, 'other.img'));
      expect(await loopBackingFile(attached.loopDevice)).toBe(plain);
    } finally {
      await detachLoop(attached.loopDevice, log);
    }
    expect(await findLoopDevicesBackedBy(plain)).toEqual([]);
    // Detach put the request size back to the kernel default: the next user of the number inherits nothing.
    const queue = `/sys/block/${path.basename(attached.loopDevice)}/queue`;
    expect(await fs.readFile(`${queue}/max_sectors_kb`, 'utf8')).toBe(await fs.readFile(`${queue}/max_hw_sectors_kb`, 'utf8'));
    await detachLoop(attached.loopDevice, log); // already free: no error
  });

  it('names losetup and the file when attaching fails', async () => {
    const s = await newScene();
    const missing = path.join(s.dir, 'missing.img');
    const err = await attachLoop(missing, { directIo: false, log: silentLogger() }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(UdrbdError);
    expect((err as UdrbdError).message).toContain('losetup');
    expect((err as UdrbdError).message).toContain(missing);
  });
});
