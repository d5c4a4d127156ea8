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
import { ResourceFrontend, type FrontendMode, type HeldOpenChecks } from '../../src/daemon/frontend.js';
import { StateChangeRefused } from '../../src/daemon/runtime.js';
import type { BlockDevice } from '../../src/disk/block-device.js';
import type { ExecResult, NbdClientDeps } from '../../src/frontend/nbd-client/index.js';
import type { HeldOpenReport } from '../../src/frontend/device-link/held-open.js';
import { silentLogger } from '../../src/util/log.js';

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
  const frontend = new ResourceFrontend({ resource: 'r7', node: 'alpha', runDir, devicePath, mode, log: silentLogger(), nbdDeps: deps, heldOpen });
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
