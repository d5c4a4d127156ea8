import { describe, it, expect } from 'vitest';
import {
  attachNbd,
  buildAttachArgs,
  buildDetachArgs,
  detachNbd,
  ensureKernelNbd,
  findFreeNbdDevice,
  type ExecResult,
  type NbdClientDeps,
} from '../../src/frontend/nbd-client/attach.js';
import { UdrbdError } from '../../src/util/errors.js';

interface Call {
  file: string;
  args: readonly string[];
}

/** A fake system: a set of existing paths, and scripted exec results keyed by program. */
function fakeDeps(paths: string[], results: Record<string, ExecResult | ((args: readonly string[]) => ExecResult)>) {
  const existing = new Set(paths);
  const calls: Call[] = [];
  const deps: NbdClientDeps = {
    exec: async (file, args) => {
      calls.push({ file, args });
      const r = results[file];
      if (r === undefined) return { exitCode: null, stdout: '', stderr: '', spawnErrorCode: 'ENOENT' };
      return typeof r === 'function' ? r(args) : r;
    },
    sysfs: {
      exists: (p) => existing.has(p),
      readdir: (dir) => {
        const prefix = dir.endsWith('/') ? dir : `${dir}/`;
        const names = new Set<string>();
        for (const p of existing) if (p.startsWith(prefix)) names.add(p.slice(prefix.length).split('/')[0]!);
        return [...names];
      },
    },
  };
  return { deps, calls, existing };
}

const ok: ExecResult = { exitCode: 0, stdout: '', stderr: '' };
const nbdSysfs = (n: number): string[] => {
  const out = ['/sys/module/nbd'];
  for (let i = 0; i < n; i++) out.push(`/sys/block/nbd${i}`, `/dev/nbd${i}`);
  return out;
};

async function expectUdrbdError(p: Promise<unknown>, message: RegExp, exitCode = 20): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UdrbdError);
  expect((err as UdrbdError).message).toMatch(message);
  expect((err as UdrbdError).exitCode).toBe(exitCode);
}

describe('nbd-client argument building (Debian 12 nbd-client 3.24)', () => {
  it('attaches over a unix socket with block size, timeout and export name', () => {
    expect(buildAttachArgs({ socketPath: '/run/udrbd/r0.nbd', device: '/dev/nbd3', exportName: 'r0' })).toEqual([
      '-unix', '/run/udrbd/r0.nbd', '/dev/nbd3', '-b', '4096', '-t', '30', '-N', 'r0',
    ]);
  });

  it('passes explicit block size, timeout and connections', () => {
    expect(
      buildAttachArgs({
        socketPath: '/run/udrbd/r0.nbd', device: '/dev/nbd0', exportName: 'r0', blockSizeBytes: 512, timeoutSeconds: 120, connections: 4,
      }),
    ).toEqual(['-unix', '/run/udrbd/r0.nbd', '/dev/nbd0', '-b', '512', '-t', '120', '-N', 'r0', '-C', '4']);
  });

  it('detaches with -d', () => {
    expect(buildDetachArgs('/dev/nbd12')).toEqual(['-d', '/dev/nbd12']);
  });

  it('refuses arguments nbd-client would reject or misread', () => {
    const base = { socketPath: '/run/udrbd/r0.nbd', device: '/dev/nbd0', exportName: 'r0' };
    expect(() => buildAttachArgs({ ...base, device: '/dev/sda' })).toThrow(/not an nbd device/);
    expect(() => buildAttachArgs({ ...base, blockSizeBytes: 8192 })).toThrow(/512, 1024, 2048, 4096/);
    expect(() => buildAttachArgs({ ...base, timeoutSeconds: 0 })).toThrow(/timeout/);
    expect(() => buildAttachArgs({ ...base, socketPath: 'relative.sock' })).toThrow(/absolute/);
    expect(() => buildAttachArgs({ ...base, socketPath: '/' + 'x'.repeat(200) })).toThrow(/at most 107 bytes/);
    expect(() => buildAttachArgs({ ...base, exportName: '' })).toThrow(/empty/);
    expect(() => buildDetachArgs('/dev/nbd')).toThrow(/not an nbd device/);
  });
});

describe('finding a free /dev/nbdX', () => {
  it('picks the lowest device without a sysfs pid file', () => {
    const { deps, existing } = fakeDeps(nbdSysfs(12), {});
    existing.add('/sys/block/nbd0/pid');
    existing.add('/sys/block/nbd1/pid');
    expect(findFreeNbdDevice(deps)).toBe('/dev/nbd2');
  });

  it('sorts numerically (nbd10 after nbd2)', () => {
    const { deps, existing } = fakeDeps(['/sys/block/nbd10', '/dev/nbd10', '/sys/block/nbd2', '/dev/nbd2'], {});
    existing.add('/sys/block/nbd2/pid');
    expect(findFreeNbdDevice(deps)).toBe('/dev/nbd10');
  });

  it('says so when every device is in use', () => {
    const { deps, existing } = fakeDeps(nbdSysfs(2), {});
    existing.add('/sys/block/nbd0/pid');
    existing.add('/sys/block/nbd1/pid');
    expect(() => findFreeNbdDevice(deps)).toThrow(/all 2 nbd devices are in use/);
  });

  it('points at the FUSE + loop frontend when there are no nbd devices', () => {
    const { deps } = fakeDeps([], {});
    expect(() => findFreeNbdDevice(deps)).toThrow(/the kernel has no nbd module: use the FUSE \+ loop frontend/);
  });
});

describe('kernel module check', () => {
  it('does nothing when /sys/module/nbd exists', async () => {
    const { deps, calls } = fakeDeps(['/sys/module/nbd'], {});
    await ensureKernelNbd(deps);
    expect(calls).toEqual([]);
  });

  it('loads the module with modprobe when it is not loaded', async () => {
    const { deps, calls, existing } = fakeDeps([], {
      modprobe: () => {
        existing.add('/sys/module/nbd');
        return ok;
      },
    });
    await ensureKernelNbd(deps);
    expect(calls).toEqual([{ file: 'modprobe', args: ['nbd'] }]);
  });

  it('reports a missing module clearly', async () => {
    const { deps } = fakeDeps([], {
      modprobe: { exitCode: 1, stdout: '', stderr: "modprobe: FATAL: Module nbd not found in directory /lib/modules/6.1.0\n" },
    });
    await expectUdrbdError(
      ensureKernelNbd(deps),
      /^the kernel has no nbd module: use the FUSE \+ loop frontend \(modprobe: FATAL: Module nbd not found/,
    );
  });
});

describe('attach and detach through nbd-client', () => {
  it('attaches a free device and returns it', async () => {
    const { deps, calls, existing } = fakeDeps(nbdSysfs(4), {
      'nbd-client': (args) => {
        existing.add(`/sys/block/${args[2]!.slice(5)}/pid`);
        return ok;
      },
    });
    existing.add('/sys/block/nbd0/pid');
    const device = await attachNbd({ socketPath: '/run/udrbd/r0.nbd', exportName: 'r0', timeoutSeconds: 10 }, deps);
    expect(device).toBe('/dev/nbd1');
    expect(calls).toEqual([
      { file: 'nbd-client', args: ['-unix', '/run/udrbd/r0.nbd', '/dev/nbd1', '-b', '4096', '-t', '10', '-N', 'r0'] },
    ]);
  });

  it('refuses a device that is already connected', async () => {
    const { deps, existing, calls } = fakeDeps(nbdSysfs(1), { 'nbd-client': ok });
    existing.add('/sys/block/nbd0/pid');
    await expectUdrbdError(attachNbd({ socketPath: '/s', exportName: 'r0', device: '/dev/nbd0' }, deps), /already connected/);
    expect(calls).toEqual([]);
  });

  it('says how to install nbd-client when it is missing', async () => {
    const { deps } = fakeDeps(nbdSysfs(1), {});
    await expectUdrbdError(attachNbd({ socketPath: '/s', exportName: 'r0' }, deps), /nbd-client is not installed \(apt-get install nbd-client\)/);
  });

  it('maps a refused socket to "is the NBD server listening?"', async () => {
    const { deps } = fakeDeps(nbdSysfs(1), {
      'nbd-client': { exitCode: 1, stdout: '', stderr: 'Socket failed: Connection refused\n' },
    });
    await expectUdrbdError(
      attachNbd({ socketPath: '/run/udrbd/r0.nbd', exportName: 'r0' }, deps),
      /nbd-client could not attach \/dev\/nbd0 to \/run\/udrbd\/r0.nbd: Socket failed: Connection refused; is the resource up and its NBD server listening\?/,
    );
  });

  it('maps a netlink/module failure to the FUSE + loop hint', async () => {
    const { deps } = fakeDeps(nbdSysfs(1), {
      'nbd-client': {
        exitCode: 1,
        stdout: '',
        stderr: "Couldn't resolve the nbd netlink family, make sure the nbd module is loaded and your nbd driver supports the netlink interface.\n",
      },
    });
    await expectUdrbdError(attachNbd({ socketPath: '/s', exportName: 'r0' }, deps), /use the FUSE \+ loop frontend$/);
  });

  it('fails when nbd-client claims success but the device is not connected', async () => {
    const { deps } = fakeDeps(nbdSysfs(1), { 'nbd-client': ok });
    await expectUdrbdError(attachNbd({ socketPath: '/s', exportName: 'r0' }, deps), /is not connected/);
  });

  it('reports a timed-out nbd-client', async () => {
    const { deps } = fakeDeps(nbdSysfs(1), { 'nbd-client': { exitCode: null, stdout: '', stderr: '', timedOut: true } });
    await expectUdrbdError(attachNbd({ socketPath: '/s', exportName: 'r0' }, deps), /did not finish within 30s/);
  });

  it('detaches a connected device with nbd-client -d', async () => {
    const { deps, calls, existing } = fakeDeps(nbdSysfs(2), { 'nbd-client': ok });
    existing.add('/sys/block/nbd1/pid');
    await detachNbd('/dev/nbd1', deps);
    expect(calls).toEqual([{ file: 'nbd-client', args: ['-d', '/dev/nbd1'] }]);
  });

  it('leaves a device that is not connected alone', async () => {
    const { deps, calls } = fakeDeps(nbdSysfs(2), { 'nbd-client': ok });
    await detachNbd('/dev/nbd1', deps);
    expect(calls).toEqual([]);
  });

  it('reports a failed detach with nbd-client\'s own words', async () => {
    const { deps, existing } = fakeDeps(nbdSysfs(1), {
      'nbd-client': { exitCode: 1, stdout: '', stderr: 'Cannot open NBD: Permission denied\n' },
    });
    existing.add('/sys/block/nbd0/pid');
    await expectUdrbdError(detachNbd('/dev/nbd0', deps), /could not detach \/dev\/nbd0: Cannot open NBD: Permission denied; run as root/);
  });
});
