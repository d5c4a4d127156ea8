/**
 * nbd-client attach against the real system. Where the kernel has nbd
 * (module loads, /dev/nbd0 exists) this attaches a /dev/nbdX to our server,
 * writes through the kernel block device and detaches. Where it has not (as
 * on the build machine) it proves the operator gets the FUSE + loop hint
 * instead — either way the file asserts what this machine actually does.
 */
import fs from 'node:fs';
import { describe, it, expect, afterEach } from 'vitest';
import { execa } from 'execa';
import {
  attachNbd,
  detachNbd,
  ensureKernelNbd,
  execaExec,
  isNbdConnected,
} from '../../src/frontend/nbd-client/attach.js';
import { requireTool, serveSparseFile, type ServedFile } from '../helpers/nbd-helpers.js';

const MiB = 1024 * 1024;

// Decided once, with the same code path attach uses (modprobe nbd if needed).
const kernelProbe = await ensureKernelNbd().then(
  () => null,
  (err: unknown) => err as Error,
);
const kernelHasNbd = kernelProbe === null && fs.existsSync('/dev/nbd0');

let served: ServedFile | null = null;
let attached: string | null = null;
afterEach(async () => {
  if (attached) await detachNbd(attached).catch(() => undefined);
  attached = null;
  if (served) await served.cleanup();
  served = null;
});

describe('execa-backed exec', () => {
  it('reports exit codes and output without throwing', async () => {
    const r = await execaExec('sh', ['-c', 'echo out; echo err >&2; exit 3'], 10_000);
    expect(r).toMatchObject({ exitCode: 3, stdout: 'out', stderr: 'err' });
    expect(r.spawnErrorCode).toBeUndefined();
  });

  it('reports a program that does not exist as ENOENT', async () => {
    const r = await execaExec('udrbd-no-such-program', [], 10_000);
    expect(r.spawnErrorCode).toBe('ENOENT');
    expect(r.exitCode).toBeNull();
  });

  it('finds the Debian nbd-client 3.x', async () => {
    const r = await execa('nbd-client', ['-V'], { reject: false });
    expect(`${r.stdout}\n${r.stderr}`).toMatch(/nbd-client(, from nbd | version )3\.\d+/);
  });
});

if (kernelHasNbd) {
  describe('nbd-client attach on a kernel with nbd', () => {
    it('attaches a free /dev/nbdX, writes through it, and detaches', async () => {
      served = await serveSparseFile(64 * MiB, 'r0');
      attached = await attachNbd({ socketPath: served.socketPath, exportName: 'r0', timeoutSeconds: 30 });
      expect(isNbdConnected(attached)).toBe(true);
      const size = await execa('blockdev', ['--getsize64', attached]);
      expect(Number(size.stdout.trim())).toBe(64 * MiB);
      await execa('sh', ['-c', `head -c 1048576 /dev/zero | tr '\\0' 'U' | dd of=${attached} bs=1M seek=3 oflag=direct conv=fsync status=none`]);
      const got = Buffer.alloc(MiB);
      const fd = fs.openSync(served.imagePath, 'r');
      try {
        fs.readSync(fd, got, 0, MiB, 3 * MiB);
      } finally {
        fs.closeSync(fd);
      }
      expect(got.equals(Buffer.alloc(MiB, 'U'))).toBe(true);
      await detachNbd(attached);
      expect(isNbdConnected(attached)).toBe(false);
      attached = null;
    });
  });
} else {
  describe('nbd-client attach on a kernel without nbd (this machine has no /dev/nbd0)', () => {
    it('refuses with the FUSE + loop hint instead of running nbd-client', async () => {
      await requireTool('nbdinfo');
      served = await serveSparseFile(MiB, 'r0');
      await expect(attachNbd({ socketPath: served.socketPath, exportName: 'r0' })).rejects.toThrow(
        /^the kernel has no nbd module: use the FUSE \+ loop frontend/,
      );
      expect(kernelProbe?.message).toMatch(/the kernel has no nbd module/);
    });
  });
}
