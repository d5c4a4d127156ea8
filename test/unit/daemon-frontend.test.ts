/**
 * daemon/frontend's ResourceFrontend on the kernel-nbd path, with a fake
 * system: nbd-client and modprobe are scripted NbdClientDeps, sysfs is a set
 * of paths, the held-open checks are fakes (there is no /dev/nbdN on this
 * machine). runDir and the configured device path live in a temp dir; the
 * NBD server itself is real (a unix socket in that dir).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import { pino } from 'pino';
import { ResourceFrontend, nbdTcpOfVolume, volumeFrontendNames, type FrontendMode, type HeldOpenChecks, type ResourceFrontendOptions } from '../../src/daemon/frontend.js';
import { StateChangeRefused } from '../../src/daemon/runtime.js';
import type { BlockDevice } from '../../src/disk/block-device.js';
import type { ExecResult, NbdClientDeps } from '../../src/frontend/nbd-client/index.js';
import type { HeldOpenReport } from '../../src/frontend/device-link/held-open.js';
import { UdrbdError } from '../../src/util/errors.js';
import { silentLogger, type Logger } from '../../src/util/log.js';

const SIZE_BYTES = 4 * 1024 * 1024;

/** A small in-memory volume (what the replicated volume is to the frontend). */
class MemoryVolume implements BlockDevice {
  readonly sizeBytes = SIZE_BYTES;
  readonly capabilities = { canFlush: true, canFua: false, canTrim: false, maxRequestBytes: 1024 * 1024 };
  private readonly data = Buffer.alloc(SIZE_BYTES);
  async read(buffer: Buffer, offsetBytes: number): Promise<void> {
    this.data.copy(buffer, 0, offsetBytes, offsetBytes + buffer.length);
  }
  async write(buffer: Buffer, offsetBytes: number): Promise<void> {
    buffer.copy(this.data, offsetBytes);
  }
  async flush(): Promise<void> {}
  async trim(): Promise<void> {}
  async close(): Promise<void> {}
}

interface Call {
  file: string;
  args: readonly string[];
}

/**
 * A kernel with (or without) the nbd module and `devices` /dev/nbdN; nbd-client
 * attach creates /sys/block/nbdN/pid, nbd-client -d removes it.
 */
function fakeSystem(options: { nbdModule: boolean; devices: number; modprobeLoads?: boolean }) {
  const existing = new Set<string>();
  if (options.nbdModule) existing.add('/sys/module/nbd');
  const addDevices = (): void => {
    for (let i = 0; i < options.devices; i++) existing.add(`/sys/block/nbd${i}`).add(`/dev/nbd${i}`);
  };
  if (options.nbdModule) addDevices();
  const calls: Call[] = [];
  const ok: ExecResult = { exitCode: 0, stdout: '', stderr: '' };
  const deps: NbdClientDeps = {
    exec: async (file, args) => {
      calls.push({ file, args });
      if (file === 'modprobe') {
        if (options.modprobeLoads) {
          existing.add('/sys/module/nbd');
          addDevices();
          return ok;
        }
        return { exitCode: 1, stdout: '', stderr: 'modprobe: FATAL: Module nbd not found in directory /lib/modules/6.1.0-test' };
      }
      if (file === 'nbd-client' && args[0] === '-unix') {
        const device = args[2]!;
        existing.add(`/sys/block/${path.basename(device)}/pid`);
        return ok;
      }
      if (file === 'nbd-client' && args[0] === '-d') {
        existing.delete(`/sys/block/${path.basename(args[1]!)}/pid`);
        return ok;
      }
      return { exitCode: null, stdout: '', stderr: '', spawnErrorCode: 'ENOENT' };
    },
    sysfs: {
      exists: (p) => existing.has(p),
      readdir: (dir) => {
        const prefix = `${dir}/`;
        const names = new Set<string>();
        for (const p of existing) if (p.startsWith(prefix)) names.add(p.slice(prefix.length).split('/')[0]!);
        return [...names];
      },
    },
  };
  return { deps, calls, existing };
}

/** Held-open checks that answer from `state` (mounted or not). */
function fakeHeldOpen(state: { mountedOn: string[] }): { checks: HeldOpenChecks; asked: string[] } {
  const asked: string[] = [];
  const report = (device: string): HeldOpenReport => {
    asked.push(device);
    return {
      held: state.mountedOn.length > 0,
      device,
      majorMinor: '43:0',
      mountPoints: [...state.mountedOn],
      holders: [],
      exclusivelyClaimed: false,
      openBy: [],
      scanComplete: true,
    };
  };
  return { checks: { sync: (d) => report(d), report: async (d) => report(d) }, asked };
}

let dir = '';
let frontends: ResourceFrontend[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-frontend-'));
  frontends = [];
});

afterEach(async () => {
  for (const f of frontends) await f.teardown().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

function makeFrontend(mode: FrontendMode, deps: NbdClientDeps, heldOpen: HeldOpenChecks): { frontend: ResourceFrontend; runDir: string; devicePath: string } {
  const runDir = path.join(dir, 'run');
  const devicePath = path.join(dir, 'dev', 'drbd71');
  fs.mkdirSync(runDir, { recursive: true });
  const frontend = new ResourceFrontend({ resource: 'r7', node: 'alpha', volume: 0, minor: 71, runDir, devicePath, mode, log: silentLogger(), nbdDeps: deps, heldOpen });
  frontends.push(frontend);
  return { frontend, runDir, devicePath };
}

function stateFile(runDir: string): string {
  return path.join(runDir, 'frontend', 'drbd71.nbd-attach.json');
}

describe('ResourceFrontend, mode nbd (fake nbd-client)', () => {
  it('attach: nbd-client on the NBD socket, device link to /dev/nbdN, state file; teardown: nbd-client -d, link and state file gone', async () => {
    const sys = fakeSystem({ nbdModule: true, devices: 2 });
    const held = fakeHeldOpen({ mountedOn: [] });
    const { frontend, runDir, devicePath } = makeFrontend('nbd', sys.deps, held.checks);
    await frontend.cleanupStale();
    await frontend.exposeVolume(new MemoryVolume());

    const socket = path.join(runDir, 'r7.alpha.nbd');
    expect(sys.calls).toEqual([{ file: 'nbd-client', args: ['-unix', socket, '/dev/nbd0', '-b', '4096', '-t', '60', '-N', 'r7'] }]);
    expect(fs.readlinkSync(devicePath)).toBe('/dev/nbd0');
    expect(JSON.parse(fs.readFileSync(stateFile(runDir), 'utf8'))).toEqual({ version: 1, pid: process.pid, devicePath, nbdDevice: '/dev/nbd0' });
    expect(fs.statSync(socket).isSocket()).toBe(true);
    expect(frontend.describe()).toEqual({ kind: 'nbd', nbdSocket: socket, kernelDevice: '/dev/nbd0', devicePath });
    expect(frontend.isHeldOpen()).toBe(false);

    await frontend.teardown();
    expect(sys.calls.slice(1)).toEqual([{ file: 'nbd-client', args: ['-d', '/dev/nbd0'] }]);
    expect(sys.existing.has('/sys/block/nbd0/pid')).toBe(false);
    expect(fs.lstatSync(devicePath, { throwIfNoEntry: false })).toBeUndefined();
    expect(fs.existsSync(stateFile(runDir))).toBe(false);
    expect(fs.existsSync(socket)).toBe(false);
    expect(frontend.describe()).toBeUndefined();
    expect(held.asked).toContain('/dev/nbd0');
  });

  it('teardown while the nbd device is mounted: DRBD\'s -12, no nbd-client -d, link and state file stay', async () => {
    const sys = fakeSystem({ nbdModule: true, devices: 1 });
    const state = { mountedOn: [] as string[] };
    const held = fakeHeldOpen(state);
    const { frontend, runDir, devicePath } = makeFrontend('nbd', sys.deps, held.checks);
    await frontend.exposeVolume(new MemoryVolume());
    state.mountedOn = ['/mnt/rabbitmq'];

    expect(frontend.isHeldOpen()).toBe(true);
    const err = await frontend.teardown().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(StateChangeRefused);
    expect(err).toMatchObject({ code: -12, text: 'Device is held open by someone', exitCode: 11 });
    expect(sys.calls.filter((c) => c.args[0] === '-d')).toEqual([]);
    expect(fs.readlinkSync(devicePath)).toBe('/dev/nbd0');
    expect(fs.existsSync(stateFile(runDir))).toBe(true);

    state.mountedOn = [];
    await frontend.teardown();
    expect(sys.calls.filter((c) => c.args[0] === '-d')).toEqual([{ file: 'nbd-client', args: ['-d', '/dev/nbd0'] }]);
  });
});

describe('ResourceFrontend, mode auto', () => {
  it('falls back to fuse when the nbd module is missing (modprobe nbd fails)', async () => {
    const sys = fakeSystem({ nbdModule: false, devices: 0 });
    const { frontend } = makeFrontend('auto', sys.deps, fakeHeldOpen({ mountedOn: [] }).checks);
    expect(await frontend.chooseKind()).toBe('fuse');
    expect(sys.calls).toEqual([{ file: 'modprobe', args: ['nbd'] }]);
  });

  it('picks nbd when modprobe loads the module and /dev/nbd0 exists', async () => {
    const sys = fakeSystem({ nbdModule: false, devices: 2, modprobeLoads: true });
    const { frontend } = makeFrontend('auto', sys.deps, fakeHeldOpen({ mountedOn: [] }).checks);
    expect(await frontend.chooseKind()).toBe('nbd');
  });

  it('an explicit mode is used as given, without probing the kernel', async () => {
    const sys = fakeSystem({ nbdModule: false, devices: 0 });
    for (const mode of ['fuse', 'nbd', 'none'] as const) {
      const { frontend } = makeFrontend(mode, sys.deps, fakeHeldOpen({ mountedOn: [] }).checks);
      expect(await frontend.chooseKind()).toBe(mode);
    }
    expect(sys.calls).toEqual([]);
  });
});

describe('ResourceFrontend.cleanupStale', () => {
  /** A pid that is certainly not running: a child that already exited. */
  function deadPid(): number {
    const r = spawnSync('sh', ['-c', 'echo $$']);
    return Number(r.stdout.toString().trim());
  }

  it('a stale attach record of a dead process: nbd-client -d, link and record removed', async () => {
    const sys = fakeSystem({ nbdModule: true, devices: 4 });
    sys.existing.add('/sys/block/nbd3/pid'); // still connected to the dead process's server
    const held = fakeHeldOpen({ mountedOn: [] });
    const { frontend, runDir, devicePath } = makeFrontend('nbd', sys.deps, held.checks);
    fs.mkdirSync(path.join(runDir, 'frontend'), { recursive: true });
    fs.mkdirSync(path.dirname(devicePath), { recursive: true });
    fs.symlinkSync('/dev/nbd3', devicePath);
    fs.writeFileSync(stateFile(runDir), JSON.stringify({ version: 1, pid: deadPid(), devicePath, nbdDevice: '/dev/nbd3' }));

    await frontend.cleanupStale();
    expect(sys.calls).toEqual([{ file: 'nbd-client', args: ['-d', '/dev/nbd3'] }]);
    expect(sys.existing.has('/sys/block/nbd3/pid')).toBe(false);
    expect(fs.lstatSync(devicePath, { throwIfNoEntry: false })).toBeUndefined();
    expect(fs.existsSync(stateFile(runDir))).toBe(false);
  });

  it('a stale attach that is still mounted stays (logged), and one of a live process is not touched', async () => {
    const sys = fakeSystem({ nbdModule: true, devices: 4 });
    sys.existing.add('/sys/block/nbd3/pid');
    const { frontend, runDir, devicePath } = makeFrontend('nbd', sys.deps, fakeHeldOpen({ mountedOn: ['/mnt/x'] }).checks);
    fs.mkdirSync(path.join(runDir, 'frontend'), { recursive: true });
    fs.mkdirSync(path.dirname(devicePath), { recursive: true });
    fs.symlinkSync('/dev/nbd3', devicePath);
    fs.writeFileSync(stateFile(runDir), JSON.stringify({ version: 1, pid: deadPid(), devicePath, nbdDevice: '/dev/nbd3' }));
    await frontend.cleanupStale();
    expect(sys.calls).toEqual([]);
    expect(fs.readlinkSync(devicePath)).toBe('/dev/nbd3');
    expect(fs.existsSync(stateFile(runDir))).toBe(true);

    // The same record owned by a live process (our parent) is someone else's current attach.
    const live = fakeSystem({ nbdModule: true, devices: 4 });
    live.existing.add('/sys/block/nbd3/pid');
    const other = makeFrontend('nbd', live.deps, fakeHeldOpen({ mountedOn: [] }).checks);
    fs.writeFileSync(stateFile(runDir), JSON.stringify({ version: 1, pid: process.ppid, devicePath, nbdDevice: '/dev/nbd3' }));
    await other.frontend.cleanupStale();
    expect(live.calls).toEqual([]);
    expect(fs.readlinkSync(devicePath)).toBe('/dev/nbd3');
    expect(fs.existsSync(stateFile(runDir))).toBe(true);
  });
});

/** A pid that is certainly not running: a child that already exited. */
function exitedPid(): number {
  const r = spawnSync('sh', ['-c', 'echo $$']);
  return Number(r.stdout.toString().trim());
}

/** A logger whose lines land in `lines` (parsed), to see the fields every line carries. */
function capturingLogger(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (text: string) => void lines.push(JSON.parse(text) as Record<string, unknown>) });
  return { log, lines };
}

describe('per-volume names', () => {
  it('volume 0 keeps the one-volume names; volume N gets its own socket, export and mount point', () => {
    expect(volumeFrontendNames('r0', 'alpha', 0)).toEqual({ nbdSocketName: 'r0.alpha.nbd', exportName: 'r0', fuseMountName: 'r0.alpha.fuse' });
    expect(volumeFrontendNames('r0', 'alpha', 1)).toEqual({ nbdSocketName: 'r0.alpha.1.nbd', exportName: 'r0/1', fuseMountName: 'r0.alpha.1.fuse' });
    expect(volumeFrontendNames('r0', 'alpha', 65535)).toEqual({ nbdSocketName: 'r0.alpha.65535.nbd', exportName: 'r0/65535', fuseMountName: 'r0.alpha.65535.fuse' });
    expect(() => volumeFrontendNames('r0', 'alpha', 65536)).toThrow(/volume number is 0\.\.65535/);
    expect(() => volumeFrontendNames('r0', 'alpha', -1)).toThrow(/volume number/);
    expect(() => volumeFrontendNames('r0', 'alpha', 1.5)).toThrow(/volume number/);
  });

  it('UDRBD_NBD_TCP is volume 0\'s address; volume N listens on its port + N, and past 65535 is refused', () => {
    expect(nbdTcpOfVolume({ host: '127.0.0.1', port: 10809 }, 0)).toEqual({ host: '127.0.0.1', port: 10809 });
    expect(nbdTcpOfVolume({ host: '::1', port: 10809 }, 3)).toEqual({ host: '::1', port: 10812 });
    expect(() => nbdTcpOfVolume({ host: '127.0.0.1', port: 65535 }, 1)).toThrow(UdrbdError);
    expect(() => nbdTcpOfVolume({ host: '127.0.0.1', port: 65535 }, 1)).toThrow(/port 65535 \+ volume 1 is past 65535/);
  });
});

describe('two volumes of one resource in one process', () => {
  function volumeFrontend(volume: number, minor: number, extra: Partial<ResourceFrontendOptions> & { deps: NbdClientDeps; heldOpen: HeldOpenChecks }): { frontend: ResourceFrontend; runDir: string; devicePath: string } {
    const runDir = path.join(dir, 'run');
    const devicePath = extra.devicePath ?? path.join(dir, 'dev', `drbd${minor}`);
    fs.mkdirSync(runDir, { recursive: true });
    const { deps, heldOpen, ...rest } = extra;
    const frontend = new ResourceFrontend({ resource: 'r7', node: 'alpha', volume, minor, runDir, devicePath, mode: 'nbd', log: silentLogger(), nbdDeps: deps, heldOpen, ...rest });
    frontends.push(frontend);
    return { frontend, runDir, devicePath };
  }

  it('expose at once on distinct nbd devices, sockets, exports and state files; tearing down volume 1 leaves volume 0 exposed', async () => {
    const sys = fakeSystem({ nbdModule: true, devices: 4 });
    const held = fakeHeldOpen({ mountedOn: [] });
    const v0 = volumeFrontend(0, 1800, { deps: sys.deps, heldOpen: held.checks });
    const v1 = volumeFrontend(1, 1801, { deps: sys.deps, heldOpen: held.checks });
    await v0.frontend.cleanupStale();
    await v1.frontend.cleanupStale();
    // At once: each must still get its own /dev/nbdN (the attaches of one process queue).
    await Promise.all([v0.frontend.exposeVolume(new MemoryVolume()), v1.frontend.exposeVolume(new MemoryVolume())]);

    const socket0 = path.join(v0.runDir, 'r7.alpha.nbd');
    const socket1 = path.join(v0.runDir, 'r7.alpha.1.nbd');
    expect(sys.calls).toEqual([
      { file: 'nbd-client', args: ['-unix', socket0, '/dev/nbd0', '-b', '4096', '-t', '60', '-N', 'r7'] },
      { file: 'nbd-client', args: ['-unix', socket1, '/dev/nbd1', '-b', '4096', '-t', '60', '-N', 'r7/1'] },
    ]);
    expect(v0.frontend.describe()).toEqual({ kind: 'nbd', nbdSocket: socket0, kernelDevice: '/dev/nbd0', devicePath: v0.devicePath });
    expect(v1.frontend.describe()).toEqual({ kind: 'nbd', nbdSocket: socket1, kernelDevice: '/dev/nbd1', devicePath: v1.devicePath });
    expect(v1.frontend.exportName).toBe('r7/1');
    expect(fs.readlinkSync(v0.devicePath)).toBe('/dev/nbd0');
    expect(fs.readlinkSync(v1.devicePath)).toBe('/dev/nbd1');
    const state0 = path.join(v0.runDir, 'frontend', 'drbd1800.nbd-attach.json');
    const state1 = path.join(v0.runDir, 'frontend', 'drbd1801.nbd-attach.json');
    expect(JSON.parse(fs.readFileSync(state1, 'utf8'))).toEqual({ version: 1, pid: process.pid, devicePath: v1.devicePath, nbdDevice: '/dev/nbd1' });

    await v1.frontend.teardown();
    expect(sys.calls.slice(2)).toEqual([{ file: 'nbd-client', args: ['-d', '/dev/nbd1'] }]);
    expect(fs.existsSync(socket1)).toBe(false);
    expect(fs.existsSync(state1)).toBe(false);
    expect(fs.lstatSync(v1.devicePath, { throwIfNoEntry: false })).toBeUndefined();
    // Volume 0 is untouched: socket, link, state file, attach.
    expect(fs.statSync(socket0).isSocket()).toBe(true);
    expect(fs.readlinkSync(v0.devicePath)).toBe('/dev/nbd0');
    expect(fs.existsSync(state0)).toBe(true);
    expect(sys.existing.has('/sys/block/nbd0/pid')).toBe(true);
    expect(v0.frontend.describe()?.kernelDevice).toBe('/dev/nbd0');

    await v0.frontend.teardown();
    expect(fs.existsSync(socket0)).toBe(false);
    expect(fs.readdirSync(path.join(v0.runDir, 'frontend'))).toEqual([]);
  });

  it('every log line carries the volume and minor', async () => {
    const sys = fakeSystem({ nbdModule: true, devices: 2 });
    const { log, lines } = capturingLogger();
    const v1 = volumeFrontend(1, 1801, { deps: sys.deps, heldOpen: fakeHeldOpen({ mountedOn: [] }).checks, log });
    await v1.frontend.exposeVolume(new MemoryVolume());
    await v1.frontend.teardown();
    const exposed = lines.find((l) => l.msg === 'device exposed (nbd)');
    expect(exposed).toMatchObject({ volume: 1, minor: 1801, kernelDevice: '/dev/nbd0' });
    expect(lines.find((l) => l.msg === 'device exposure torn down')).toMatchObject({ volume: 1, minor: 1801 });
    expect(lines.length).toBeGreaterThan(2);
    for (const line of lines) expect(line).toMatchObject({ volume: 1, minor: 1801 });
  });

  it('a second volume naming a device path a live exposure holds is refused, and exposes once it is torn down', async () => {
    const sys = fakeSystem({ nbdModule: true, devices: 4 });
    const held = fakeHeldOpen({ mountedOn: [] });
    const v0 = volumeFrontend(0, 1800, { deps: sys.deps, heldOpen: held.checks });
    const twin = volumeFrontend(1, 1801, { deps: sys.deps, heldOpen: held.checks, devicePath: v0.devicePath });
    await v0.frontend.exposeVolume(new MemoryVolume());
    const err = await twin.frontend.exposeVolume(new MemoryVolume()).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(UdrbdError);
    expect((err as Error).message).toBe(`r7/1: cannot expose the volume: device ${v0.devicePath} is held by r7 in this process; every volume needs its own volume number and device path`);
    expect(twin.frontend.describe()).toBeUndefined();
    // Nothing of volume 0 moved: one attach, its link and socket.
    expect(sys.calls.filter((c) => c.args[0] === '-unix')).toHaveLength(1);
    expect(fs.readlinkSync(v0.devicePath)).toBe('/dev/nbd0');
    expect(fs.existsSync(path.join(v0.runDir, 'r7.alpha.1.nbd'))).toBe(false);

    await v0.frontend.teardown();
    await twin.frontend.exposeVolume(new MemoryVolume());
    expect(twin.frontend.describe()).toMatchObject({ kernelDevice: '/dev/nbd0', devicePath: v0.devicePath });
  });

  it('NBD on TCP: volume 0 on the port, volume 1 on port + 1, both at once', async () => {
    const sys = fakeSystem({ nbdModule: true, devices: 0 });
    const held = fakeHeldOpen({ mountedOn: [] }).checks;
    const nbdTcp = { host: '127.0.0.1', port: 9990 };
    const v0 = volumeFrontend(0, 1800, { deps: sys.deps, heldOpen: held, mode: 'none', nbdTcp });
    const v1 = volumeFrontend(1, 1801, { deps: sys.deps, heldOpen: held, mode: 'none', nbdTcp });
    await v0.frontend.exposeVolume(new MemoryVolume());
    await v1.frontend.exposeVolume(new MemoryVolume());
    expect(v0.frontend.describe()).toMatchObject({ kind: 'none', nbdTcp: '127.0.0.1:9990', devicePath: null });
    expect(v1.frontend.describe()).toMatchObject({ kind: 'none', nbdTcp: '127.0.0.1:9991', devicePath: null });
    // Each port greets with the NBD magic: a real listener per volume.
    for (const port of [9990, 9991]) {
      const greeting = await new Promise<Buffer>((resolve, reject) => {
        const socket = net.createConnection({ host: '127.0.0.1', port });
        socket.once('error', reject);
        socket.once('data', (data: Buffer) => {
          socket.destroy();
          resolve(data);
        });
      });
      expect(greeting.subarray(0, 8).toString('latin1')).toBe('NBDMAGIC');
    }
    // The probes were NBD clients (held open) until the server sees them gone.
    for (let waitedMs = 0; (v0.frontend.isHeldOpen() || v1.frontend.isHeldOpen()) && waitedMs < 2_000; waitedMs += 20) await new Promise((r) => setTimeout(r, 20));
    await v0.frontend.teardown();
    await v1.frontend.teardown();
    expect(sys.calls).toEqual([]);
  });
});

describe('cleanupStale is scoped to its own volume', () => {
  it('cleans only its own device\'s stale records: not another volume\'s live exposure in this process, not other devices\' leftovers', async () => {
    const sys = fakeSystem({ nbdModule: true, devices: 4 });
    const held = fakeHeldOpen({ mountedOn: [] });
    const runDir = path.join(dir, 'run');
    const frontendDir = path.join(runDir, 'frontend');
    const options = (volume: number, minor: number): ResourceFrontendOptions => ({
      resource: 'r7', node: 'alpha', volume, minor, runDir, devicePath: path.join(dir, 'dev', `drbd${minor}`), mode: 'nbd', log: silentLogger(), nbdDeps: sys.deps, heldOpen: held.checks,
    });
    const v0 = new ResourceFrontend(options(0, 1800));
    frontends.push(v0);
    await v0.exposeVolume(new MemoryVolume());
    const device0 = path.join(dir, 'dev', 'drbd1800');
    const state0 = path.join(frontendDir, 'drbd1800.nbd-attach.json');
    expect(JSON.parse(fs.readFileSync(state0, 'utf8'))).toMatchObject({ pid: process.pid, nbdDevice: '/dev/nbd0' });

    // Leftovers: volume 1's own (its pid reused by this process, and a FUSE record of a dead one), and another resource's device.
    const device1 = path.join(dir, 'dev', 'drbd1801');
    const device9 = path.join(dir, 'dev', 'drbd1809');
    sys.existing.add('/sys/block/nbd2/pid').add('/sys/block/nbd3/pid');
    fs.symlinkSync('/dev/nbd2', device1);
    fs.symlinkSync('/dev/nbd3', device9);
    fs.writeFileSync(path.join(frontendDir, 'drbd1801.nbd-attach.json'), JSON.stringify({ version: 1, pid: process.pid, devicePath: device1, nbdDevice: '/dev/nbd2' }));
    fs.writeFileSync(path.join(frontendDir, 'drbd1809.nbd-attach.json'), JSON.stringify({ version: 1, pid: exitedPid(), devicePath: device9, nbdDevice: '/dev/nbd3' }));
    const fuseRecord = (devicePath: string, name: string): void => {
      const mountDir = path.join(frontendDir, `${name}.fuse`);
      fs.writeFileSync(path.join(frontendDir, `${path.basename(devicePath)}.fuse-loop.json`), JSON.stringify({ version: 1, pid: exitedPid(), pidStartTicks: '1', devicePath, mountDir, volumeFile: path.join(mountDir, 'volume'), loopDevice: null }));
    };
    fuseRecord(device1, 'r7.alpha.1');
    fuseRecord(device9, 'r9.alpha');
    // A dead-pid record squatting on volume 1's file name but naming another path is not volume 1's.
    fs.mkdirSync(path.join(dir, 'elsewhere'));
    const twinPath = path.join(dir, 'elsewhere', 'drbd1801');

    const v1 = new ResourceFrontend(options(1, 1801));
    frontends.push(v1);
    await v1.cleanupStale();
    expect(sys.calls.filter((c) => c.args[0] === '-d')).toEqual([{ file: 'nbd-client', args: ['-d', '/dev/nbd2'] }]);
    expect(fs.lstatSync(device1, { throwIfNoEntry: false })).toBeUndefined();
    expect(fs.existsSync(path.join(frontendDir, 'drbd1801.nbd-attach.json'))).toBe(false);
    expect(fs.existsSync(path.join(frontendDir, 'drbd1801.fuse-loop.json'))).toBe(false);
    // Volume 0's live exposure is untouched.
    expect(fs.readlinkSync(device0)).toBe('/dev/nbd0');
    expect(fs.existsSync(state0)).toBe(true);
    expect(sys.existing.has('/sys/block/nbd0/pid')).toBe(true);
    expect(v0.describe()?.kernelDevice).toBe('/dev/nbd0');
    // Another device's leftovers are its own process's to clean.
    expect(fs.readlinkSync(device9)).toBe('/dev/nbd3');
    expect(fs.existsSync(path.join(frontendDir, 'drbd1809.nbd-attach.json'))).toBe(true);
    expect(fs.existsSync(path.join(frontendDir, 'drbd1809.fuse-loop.json'))).toBe(true);

    fs.writeFileSync(path.join(frontendDir, 'drbd1801.nbd-attach.json'), JSON.stringify({ version: 1, pid: exitedPid(), devicePath: twinPath, nbdDevice: '/dev/nbd3' }));
    await v1.cleanupStale();
    expect(fs.existsSync(path.join(frontendDir, 'drbd1801.nbd-attach.json'))).toBe(true);
    expect(sys.existing.has('/sys/block/nbd3/pid')).toBe(true);

    // And volume 0's own cleanupStale is refused while it is exposed: it would see its own live record.
    await expect(v0.cleanupStale()).rejects.toThrow(/cleanupStale before the volume is exposed/);
  });
});
