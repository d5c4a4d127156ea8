/**
 * Two volumes of one resource exposed by one process at once (root): two
 * ResourceFrontends (volumes 0 and 1, minors 1800 and 1801) each serve a
 * FileDisk as a FUSE file + loop device behind its own device link, with
 * both FUSE backends (the libfuse 3 addon and fuse-native): data written
 * through each kernel device lands on its own disk only, one volume held
 * open does not hold the other, tearing one down leaves the other working,
 * and both leave no mount, loop device, link, socket or state file. The
 * volumes are served by this process, so the devices are only touched from
 * child processes (dd, nbdinfo, sh), never by fs calls here.
 */
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { pino } from 'pino';
import { FileDisk } from '../../src/disk/file-disk.js';
import { ResourceFrontend } from '../../src/daemon/frontend.js';
import { isMountPoint } from '../../src/frontend/exposure/fuse-loop-exposure.js';
import { loadFuse3 } from '../../src/frontend/fuse/fuse3-native.js';
import { readDeviceLink } from '../../src/frontend/device-link/device-link.js';
import { StateChangeRefused } from '../../src/daemon/runtime.js';
import { requireFuseLoopPrerequisites, run, forceCleanup } from '../helpers/fuse-harness.js';

const MiB = 1024 * 1024;
const DISK_BYTES = 32 * MiB;
const PATTERN_BYTES = 2 * MiB;
/** Where each pattern goes: the same offset on both volumes, so crosstalk would show. */
const PATTERN_OFFSET_BYTES = 4 * MiB;
const RESOURCE = 'mv';
const MINORS = [1800, 1801] as const;
const HELD_OPEN_WAIT_MS = 5_000;

interface Scene {
  dir: string;
  runDir: string;
  disks: FileDisk[];
  frontends: ResourceFrontend[];
  devicePaths: string[];
  holders: ResultPromise[];
  logLines: Array<Record<string, unknown>>;
}

let scene: Scene | null = null;
const savedBackend = process.env.UDRBD_FUSE_BACKEND;

async function newScene(): Promise<Scene> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'udrbd-multi-volume-'));
  const runDir = path.join(dir, 'run');
  await fs.mkdir(runDir);
  const s: Scene = { dir, runDir, disks: [], frontends: [], devicePaths: [], holders: [], logLines: [] };
  scene = s;
  const log = pino({ level: 'info' }, { write: (text: string) => void s.logLines.push(JSON.parse(text) as Record<string, unknown>) });
  for (const [volume, minor] of MINORS.entries()) {
    const diskFile = path.join(dir, `disk${volume}.img`);
    await fs.writeFile(diskFile, '');
    await fs.truncate(diskFile, DISK_BYTES);
    s.disks.push(FileDisk.open(diskFile));
    const devicePath = path.join(dir, 'dev', `drbd${minor}`);
    s.devicePaths.push(devicePath);
    s.frontends.push(new ResourceFrontend({ resource: RESOURCE, node: 'alpha', volume, minor, runDir, devicePath, mode: 'fuse', log }));
  }
  return s;
}

/** `<runDir>/frontend/<name>` of volume N's FUSE mount: mv.alpha.fuse, mv.alpha.1.fuse. */
function fuseMountDir(s: Scene, volume: number): string {
  return path.join(s.runDir, 'frontend', volume === 0 ? `${RESOURCE}.alpha.fuse` : `${RESOURCE}.alpha.${volume}.fuse`);
}

async function procMounts(): Promise<string[]> {
  return (await fs.readFile('/proc/mounts', 'utf8')).split('\n').map((line) => line.split(' ')[1] ?? '');
}

/** `losetup -a`'s lines that name one of this scene's volume files. */
async function sceneLoops(s: Scene): Promise<string[]> {
  const out = await run('losetup', ['-a']);
  return out.split('\n').filter((line) => line.includes(s.dir));
}

/** A pattern that differs per volume and per byte position. */
function pattern(seed: number): Buffer {
  const buffer = Buffer.alloc(PATTERN_BYTES);
  for (let i = 0; i < buffer.length; i += 4) buffer.writeUInt32LE(((i * 2654435761) ^ (seed * 0x9e3779b9)) >>> 0, i);
  return buffer;
}

/** Writes `data` at PATTERN_OFFSET_BYTES through the device link with direct I/O (dd in a child). */
async function writeThroughDevice(s: Scene, devicePath: string, data: Buffer, name: string): Promise<void> {
  const file = path.join(s.dir, name);
  await fs.writeFile(file, data);
  await run('dd', [`if=${file}`, `of=${devicePath}`, 'bs=1M', `seek=${PATTERN_OFFSET_BYTES / MiB}`, 'oflag=direct', 'conv=fsync,notrunc', 'status=none']);
}

async function readFromDisk(disk: FileDisk): Promise<Buffer> {
  const buffer = Buffer.alloc(PATTERN_BYTES);
  await disk.read(buffer, PATTERN_OFFSET_BYTES);
  return buffer;
}

/** The probe clients (nbdinfo, a shell holding the device) count as users until their process is gone. */
async function waitNotHeld(frontend: ResourceFrontend): Promise<void> {
  for (let waitedMs = 0; frontend.isHeldOpen(); waitedMs += 50) {
    if (waitedMs >= HELD_OPEN_WAIT_MS) throw new Error(`still held open after ${HELD_OPEN_WAIT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

beforeAll(async () => {
  await requireFuseLoopPrerequisites();
  const { addon, reason } = loadFuse3();
  if (addon === null) throw new Error(`libfuse 3 addon missing: ${reason}`);
  const nbdinfo = await execa('sh', ['-c', 'command -v nbdinfo'], { reject: false });
  if (nbdinfo.exitCode !== 0) throw new Error('nbdinfo is required (apt-get install libnbd-bin)');
});

afterEach(async () => {
  if (savedBackend === undefined) delete process.env.UDRBD_FUSE_BACKEND;
  else process.env.UDRBD_FUSE_BACKEND = savedBackend;
  const s = scene;
  scene = null;
  if (s === null) return;
  for (const holder of s.holders) holder.kill('SIGKILL');
  await Promise.allSettled(s.holders);
  for (const frontend of s.frontends) await frontend.teardown().catch(() => undefined);
  const problems = await forceCleanup({
    filesystemMounts: [],
    volumeFiles: MINORS.map((_, volume) => path.join(fuseMountDir(s, volume), 'volume')),
    fuseMounts: MINORS.map((_, volume) => fuseMountDir(s, volume)),
    links: s.devicePaths,
  });
  for (const disk of s.disks) await disk.close().catch(() => undefined);
  if (!(await isMountPoint(fuseMountDir(s, 0))) && !(await isMountPoint(fuseMountDir(s, 1)))) await fs.rm(s.dir, { recursive: true, force: true });
  if (problems.length > 0) throw new Error(`cleanup problems: ${problems.join('; ')}`);
});

describe.each([
  { backend: 'fuse3', env: undefined },
  { backend: 'fuse-native', env: 'fuse-native' },
] as const)('two volumes of one resource, FUSE + loop, $backend', ({ backend, env }) => {
  it('both exposed at once, each device writes only its own disk, one torn down leaves the other working, nothing left after both', async () => {
    if (env === undefined) delete process.env.UDRBD_FUSE_BACKEND;
    else process.env.UDRBD_FUSE_BACKEND = env;
    const s = await newScene();
    const [v0, v1] = s.frontends as [ResourceFrontend, ResourceFrontend];
    const [disk0, disk1] = s.disks as [FileDisk, FileDisk];
    const [dev0, dev1] = s.devicePaths as [string, string];
    await v0.cleanupStale();
    await v1.cleanupStale();
    // At once, as a runtime promoting both volumes would.
    await Promise.all([v0.exposeVolume(disk0), v1.exposeVolume(disk1)]);

    const d0 = v0.describe();
    const d1 = v1.describe();
    expect(d0).toEqual({ kind: 'fuse', nbdSocket: path.join(s.runDir, 'mv.alpha.nbd'), kernelDevice: expect.stringMatching(/^\/dev\/loop\d+$/), devicePath: dev0 });
    expect(d1).toEqual({ kind: 'fuse', nbdSocket: path.join(s.runDir, 'mv.alpha.1.nbd'), kernelDevice: expect.stringMatching(/^\/dev\/loop\d+$/), devicePath: dev1 });
    expect(d0!.kernelDevice).not.toBe(d1!.kernelDevice);
    expect(await readDeviceLink(dev0)).toBe(d0!.kernelDevice);
    expect(await readDeviceLink(dev1)).toBe(d1!.kernelDevice);
    const mounts = await procMounts();
    expect(mounts).toContain(fuseMountDir(s, 0));
    expect(mounts).toContain(fuseMountDir(s, 1));
    expect(await sceneLoops(s)).toHaveLength(2);
    // Both mounts by the backend asked for, and every line says which volume it is about.
    const mounted = s.logLines.filter((l) => l.msg === 'FUSE volume mounted');
    expect(mounted.map((l) => l.volume).sort()).toEqual([0, 1]);
    for (const line of mounted) expect(line.backend).toBe(backend === 'fuse3' ? 'fuse3' : undefined);
    for (const line of s.logLines) expect([[0, 1800], [1, 1801]]).toContainEqual([line.volume, line.minor]);

    // Each export answers by its own name on its own socket, and not by the other's.
    const size = async (exportName: string, socket: string): Promise<string> =>
      (await execa('nbdinfo', ['--size', `nbd+unix:///${exportName}?socket=${socket}`], { reject: false, timeout: 20_000 })).stdout.trim();
    expect(await size('mv', d0!.nbdSocket)).toBe(String(DISK_BYTES));
    expect(await size('mv/1', d1!.nbdSocket)).toBe(String(DISK_BYTES));
    expect(await size('mv', d1!.nbdSocket)).toBe('');

    const a = pattern(1);
    const b = pattern(2);
    await writeThroughDevice(s, dev0, a, 'a.bin');
    await writeThroughDevice(s, dev1, b, 'b.bin');
    expect((await readFromDisk(disk0)).equals(a)).toBe(true);
    expect((await readFromDisk(disk1)).equals(b)).toBe(true);

    // Volume 1 held open (a process has its device open) does not hold volume 0.
    const holder = execa('sh', ['-c', 'exec 3<"$1"; echo open; exec sleep 60', 'sh', dev1], { reject: false });
    s.holders.push(holder);
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
    expect(v1.isHeldOpen()).toBe(true);
    await waitNotHeld(v0);
    const refusal = await v1.teardown().then(() => null, (err: unknown) => err);
    expect(refusal).toBeInstanceOf(StateChangeRefused);
    expect(refusal).toMatchObject({ code: -12, text: 'Device is held open by someone' });

    await v0.teardown();
    expect(v0.describe()).toBeUndefined();
    expect(await procMounts()).not.toContain(fuseMountDir(s, 0));
    expect(await readDeviceLink(dev0)).toBeNull();
    await expect(fs.access(d0!.nbdSocket)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await sceneLoops(s)).toEqual([expect.stringContaining(fuseMountDir(s, 1))]);

    // Volume 1 still serves: a new pattern through its device reaches its disk.
    holder.kill('SIGKILL');
    await holder;
    const c = pattern(3);
    await writeThroughDevice(s, dev1, c, 'c.bin');
    expect((await readFromDisk(disk1)).equals(c)).toBe(true);
    expect((await readFromDisk(disk0)).equals(a)).toBe(true);
    await waitNotHeld(v1);
    await v1.teardown();

    const after = await procMounts();
    expect(after).not.toContain(fuseMountDir(s, 0));
    expect(after).not.toContain(fuseMountDir(s, 1));
    expect(await sceneLoops(s)).toEqual([]);
    for (const dev of [dev0, dev1]) await expect(fs.lstat(dev)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await fs.readdir(path.join(s.runDir, 'frontend'))).filter((n) => n.endsWith('.json'))).toEqual([]);
    expect((await fs.readdir(s.runDir)).filter((n) => n.endsWith('.nbd'))).toEqual([]);
  });
});
