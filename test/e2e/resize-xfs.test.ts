/**
 * Issue 19 on the FUSE + loop path: XFS on the Primary's /dev/drbdN, both
 * backing files grown, `udrbdadm resize` — the loop device grows by itself
 * (the FUSE file's new size, then losetup -c, as /dev/drbdN grows in DRBD),
 * xfs_growfs takes the space while mounted, the files written before keep
 * their checksums, and after the resync of the new area both backing data
 * areas are identical. 320 → 400 MiB (mkfs.xfs wants ≥ 300 MiB), with the
 * libfuse 3 addon and with fuse-native (libfuse 2).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, NODES } from '../helpers/cluster.js';
import { computeLayout } from '../../src/meta/superblock.js';
import { cleanupStale, isMountPoint } from '../../src/frontend/exposure/fuse-loop-exposure.js';
import { checksums, forceCleanup, requireFuseLoopPrerequisites, run } from '../helpers/fuse-harness.js';

const MiB = 1024 * 1024;
const OLD_FILE_BYTES = 320 * MiB;
const NEW_FILE_BYTES = 400 * MiB;
const NEW_BYTES = computeLayout(NEW_FILE_BYTES).dataSizeBytes;
const RESOURCE = 'rz16';
const DEVICE = '/dev/drbd280';

function linkTarget(file: string): string | null {
  try {
    return fs.readlinkSync(file);
  } catch {
    return null;
  }
}

let cluster: Cluster | undefined;
let mnt = '';

afterEach(async () => {
  const c = cluster;
  cluster = undefined;
  if (!c) return;
  const frontendDir = path.join(c.paths('alpha').runDir, 'frontend');
  const fuseDirs = NODES.map((n) => path.join(frontendDir, `${RESOURCE}.${n}.fuse`));
  if (mnt && (await isMountPoint(mnt))) await run('umount', [mnt]).catch(() => run('umount', ['-l', mnt]));
  await c.destroy();
  await cleanupStale(frontendDir).catch(() => undefined);
  const problems = await forceCleanup({ filesystemMounts: [mnt], volumeFiles: fuseDirs.map((d) => path.join(d, 'volume')), fuseMounts: fuseDirs, links: [] });
  // Only a link to a loop device: never remove anything else at /dev/drbdN.
  if (linkTarget(DEVICE)?.startsWith('/dev/loop')) fs.rmSync(DEVICE, { force: true });
  if (problems.length > 0) throw new Error(`cleanup problems: ${problems.join('; ')}`);
});

describe('resize on the FUSE + loop path', () => {
  for (const backend of ['fuse3', 'fuse-native'] as const) {
    it(`${backend}: the loop device grows with the device, xfs_growfs takes it online, files keep their checksums, both disks end identical`, async () => {
      await requireFuseLoopPrerequisites();
      cluster = new Cluster({ resource: RESOURCE, port: 9216, minorBase: 280, diskSizeBytes: OLD_FILE_BYTES, frontend: 'fuse' });
      const c = cluster;
      // fuse-native (libfuse 2) cannot drop the kernel's attribute cache: resize waits out its 1 s timeout instead.
      if (backend === 'fuse-native') c.env.UDRBD_FUSE_BACKEND = 'fuse-native';
      else delete c.env.UDRBD_FUSE_BACKEND;
      mnt = path.join(c.dir, 'mnt');
      fs.mkdirSync(mnt);
      await c.upConnected();
      // fresh zeroed files on both: skip the initial sync
      await c.admOk('alpha', ['new-current-uuid', '--clear-bitmap', c.resource]);
      await c.waitState('beta', 'dstate', 'UpToDate/UpToDate');
      await c.admOk('alpha', ['primary', c.resource]);
      const loop = fs.readlinkSync(DEVICE);
      expect(loop).toMatch(/^\/dev\/loop\d+$/);
      await run('mkfs.xfs', ['-q', DEVICE]);
      await run('mount', [DEVICE, mnt]);
      const files = [0, 1, 2].map((i) => path.join(mnt, `f${i}`));
      for (const f of files) await run('dd', ['if=/dev/urandom', `of=${f}`, 'bs=1M', 'count=4', 'conv=fsync', 'status=none']);
      const sums = await checksums(files);
      const sizeBefore = Number((await run('df', ['-B1', '--output=size', mnt])).split('\n')[1]);

      for (const node of NODES) fs.truncateSync(c.disks[node], NEW_FILE_BYTES);
      await c.admOk('alpha', ['resize', c.resource]);
      expect(await run('blockdev', ['--getsize64', loop])).toBe(String(NEW_BYTES));
      expect(c.logText('alpha')).toContain('loop device grew (losetup -c)');
      await run('xfs_growfs', [mnt]);
      const sizeAfter = Number((await run('df', ['-B1', '--output=size', mnt])).split('\n')[1]);
      expect(sizeAfter - sizeBefore).toBeGreaterThan(70 * MiB);
      // the new space is usable: a file larger than the old free space fits now
      await run('dd', ['if=/dev/urandom', `of=${path.join(mnt, 'big')}`, 'bs=1M', 'count=64', 'conv=fsync', 'status=none']);
      expect(await checksums(files)).toEqual(sums);

      await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 120_000);
      await c.waitState('alpha', 'cstate', 'Connected', 120_000);
      await run('umount', [mnt]);
      await c.admOk('alpha', ['secondary', c.resource]);
      expect(c.hashDataArea('alpha', NEW_BYTES)).toBe(c.hashDataArea('beta', NEW_BYTES));
      expect(c.logText('alpha').includes('through fuse-native')).toBe(backend === 'fuse-native');
    });
  }
});
