/**
 * Issue 5 acceptance, two nodes on loopback (root, FUSE + loop): XFS on the
 * Primary's device link, switchover alpha → beta and back with equal
 * checksums and a clean xfs_repair -n on both; `secondary` while mounted is
 * refused with DRBD's message and exit code 11; the device link disappears
 * on demotion and the Secondary never has a device.
 */
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import fs from 'node:fs/promises';
import { execa } from 'execa';
import { run } from '../helpers/fuse-harness.js';
import { XfsPair, DEVICE, RESOURCE, MiB, SYNC_TIMEOUT_MS, requireTwoNodeXfsPrerequisites, writeFiles, checksumMap } from '../helpers/two-node-xfs-harness.js';

const FILES_PER_ROUND = 20;
const FILE_BYTES = 10 * MiB; // 20 x 10 MiB = 200 MiB per round

let pair: XfsPair | null = null;

beforeAll(async () => {
  await requireTwoNodeXfsPrerequisites();
});

afterEach(async () => {
  const p = pair;
  pair = null;
  if (p === null) return;
  const problems = await p.destroy();
  if (problems.length > 0) throw new Error(`cleanup problems: ${problems.join('; ')}`);
});

describe('two nodes, XFS on the Primary\'s device', () => {
  it('switchover alpha → beta → alpha keeps 200 MiB of fsynced files bit-exact; xfs_repair -n clean on both', async () => {
    pair = new XfsPair();
    const p = pair;
    const c = p.cluster;
    await p.start();
    await c.admOk('alpha', ['primary', '--force', RESOURCE]);
    const alphaUp = await p.exposure('alpha');
    expect(alphaUp.link).toMatch(/^\/dev\/loop\d+$/);
    expect(alphaUp.loops).toEqual([alphaUp.link]);
    const status = await c.statusJson('alpha');
    expect(status.frontend).toEqual({ kind: 'fuse', nbdSocket: `${p.runDir}/${RESOURCE}.alpha.nbd`, kernelDevice: alphaUp.link, devicePath: DEVICE.alpha });
    expect(await run('blockdev', ['--getsize64', DEVICE.alpha])).toBe(String(c.dataSizeBytes('alpha')));

    await run('mkfs.xfs', ['-q', DEVICE.alpha]);
    await p.mount('alpha');
    const first = await writeFiles(p.mnt.alpha, 'a', FILES_PER_ROUND, FILE_BYTES);
    const firstSums = await checksumMap(p.mnt.alpha, first);
    expect(firstSums.size).toBe(FILES_PER_ROUND);
    await p.umount('alpha');
    await run('xfs_repair', ['-n', DEVICE.alpha]);

    // beta can take over only once the initial full sync made it UpToDate.
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', SYNC_TIMEOUT_MS);
    await c.admOk('alpha', ['secondary', RESOURCE]);
    expect(await p.exposure('alpha')).toEqual({ link: null, loops: [], fuseMounted: false });
    expect((await c.statusJson('alpha')).frontend).toBeNull();

    await c.admOk('beta', ['primary', RESOURCE]);
    expect(await c.query('beta', 'role')).toBe('Primary/Secondary');
    await p.mount('beta');
    expect(await checksumMap(p.mnt.beta, first)).toEqual(firstSums);
    const second = await writeFiles(p.mnt.beta, 'b', FILES_PER_ROUND, FILE_BYTES);
    const secondSums = await checksumMap(p.mnt.beta, second);
    await p.umount('beta');
    await run('xfs_repair', ['-n', DEVICE.beta]);
    await c.admOk('beta', ['secondary', RESOURCE]);
    expect(await p.exposure('beta')).toEqual({ link: null, loops: [], fuseMounted: false });

    // And back: alpha sees both rounds, written on either node.
    await c.admOk('alpha', ['primary', RESOURCE]);
    await p.mount('alpha');
    expect(await checksumMap(p.mnt.alpha, first)).toEqual(firstSums);
    expect(await checksumMap(p.mnt.alpha, second)).toEqual(secondSums);
    await p.umount('alpha');
    await run('xfs_repair', ['-n', DEVICE.alpha]);
    await c.admOk('alpha', ['secondary', RESOURCE]);
    expect(await c.query('alpha', 'dstate')).toBe('UpToDate/UpToDate');
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
  });

  it('secondary while mounted: refused with DRBD\'s -12 and exit 11, nothing torn down; the Secondary never has a device', async () => {
    pair = new XfsPair();
    const p = pair;
    const c = p.cluster;
    await p.start();
    await c.admOk('alpha', ['primary', '--force', RESOURCE]);
    await run('mkfs.xfs', ['-q', DEVICE.alpha]);
    await p.mount('alpha');
    const exposed = await p.exposure('alpha');
    expect(exposed.link).toMatch(/^\/dev\/loop\d+$/);

    const refused = await c.adm('alpha', ['secondary', RESOURCE]);
    expect(refused.exitCode).toBe(11);
    expect(refused.stderr).toContain('10: State change failed: (-12) Device is held open by someone');
    expect(await c.query('alpha', 'role')).toBe('Primary/Secondary');
    expect(await p.exposure('alpha')).toEqual(exposed);

    const downRefused = await c.adm('alpha', ['down', RESOURCE]);
    expect(downRefused.exitCode).toBe(11);
    expect(downRefused.stderr).toContain('State change failed: (-12) Device is held open by someone');
    expect(await c.query('alpha', 'role')).toBe('Primary/Secondary');

    // The Secondary: no device link, no FUSE mount, no loop device, nothing to write to.
    expect(await p.exposure('beta')).toEqual({ link: null, loops: [], fuseMounted: false });
    expect((await c.statusJson('beta')).frontend).toBeNull();
    expect((await execa('blockdev', ['--getsize64', DEVICE.beta], { reject: false })).exitCode).not.toBe(0);

    // An open file descriptor on the device (no mount) also holds it.
    await p.umount('alpha');
    const holder = execa('sh', ['-c', `exec 3<${DEVICE.alpha}; exec sleep 30`], { reject: false });
    try {
      await c.waitFor('holder has the device open', async () => (await execa('sh', ['-c', `ls -l /proc/${holder.pid}/fd`], { reject: false })).stdout.includes('/dev/loop'));
      const heldByFd = await c.adm('alpha', ['secondary', RESOURCE]);
      expect(heldByFd.exitCode).toBe(11);
      expect(heldByFd.stderr).toContain('(-12) Device is held open by someone');
    } finally {
      holder.kill('SIGKILL');
      await holder;
    }

    await c.admOk('alpha', ['secondary', RESOURCE]);
    expect(await c.query('alpha', 'role')).toBe('Secondary/Secondary');
    expect(await p.exposure('alpha')).toEqual({ link: null, loops: [], fuseMounted: false });
  });

  it('UDRBD_FRONTEND=none: the Primary serves only the NBD socket (nbdinfo sees the volume), gone on demotion', async () => {
    pair = new XfsPair();
    const p = pair;
    const c = p.cluster;
    c.env.UDRBD_FRONTEND = 'none';
    await p.start();
    const socket = `${p.runDir}/${RESOURCE}.alpha.nbd`;
    await expect(fs.stat(socket)).rejects.toMatchObject({ code: 'ENOENT' });
    await c.admOk('alpha', ['primary', '--force', RESOURCE]);
    expect((await c.statusJson('alpha')).frontend).toEqual({ kind: 'none', nbdSocket: socket, kernelDevice: null, devicePath: null });
    expect((await fs.stat(socket)).mode & 0o777).toBe(0o600);
    expect(await p.exposure('alpha')).toEqual({ link: null, loops: [], fuseMounted: false });
    const size = await run('nbdinfo', ['--size', `nbd+unix:///${RESOURCE}?socket=${socket}`]);
    expect(Number(size.trim())).toBe(c.dataSizeBytes('alpha'));
    await c.admOk('alpha', ['secondary', RESOURCE]);
    await expect(fs.stat(socket)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await c.statusJson('alpha')).frontend).toBeNull();
  });
});
