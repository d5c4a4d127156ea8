/**
 * The backing disk on a real block device: a loop device over a 512 MiB
 * sparse file. udrbdadm create-md --force on a resource whose `disk` is the
 * loop device, then the real drbdmeta's dump-md of the loop device equals
 * udrbd's, and the size udrbd works with (device size, meta-data offsets) is
 * the one `blockdev --getsize64` reports. Needs root (losetup); the loop
 * device is always detached in afterAll.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { FileDisk } from '../../src/disk/file-disk.js';
import { computeLayout } from '../../src/meta/superblock.js';
import { DRBDMETA, dumpBody, requireDrbdmeta, sparseFile, tmpDir, withoutFlagsLine } from '../helpers/meta-helpers.js';

const CLI = path.resolve('dist/cli/udrbdadm.js');
const MiB = 1024 * 1024;
const SIZE_BYTES = 512 * MiB;

let dir = '';
let loop = '';

function udrbdadm(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, '-c', path.join(dir, 'r0.conf'), '--node', 'alpha', ...args], {
    encoding: 'utf8',
    env: { ...process.env, UDRBD_RUN_DIR: path.join(dir, 'run'), UDRBD_LOG_DIR: path.join(dir, 'log') },
    timeout: 60_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The real drbdmeta on the block device itself (no file, so no "not a block device" path). */
function drbdmetaOnDevice(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(DRBDMETA, ['--force', '/dev/drbd9', 'v08', loop, 'internal', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  requireDrbdmeta();
  if (!fs.existsSync(CLI)) execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
  dir = tmpDir();
  const backing = sparseFile(dir, 'backing.img', SIZE_BYTES);
  loop = execFileSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' }).trim();
  if (!/^\/dev\/loop\d+$/.test(loop)) throw new Error(`losetup -f --show printed '${loop}'`);
  fs.writeFileSync(
    path.join(dir, 'r0.conf'),
    `resource r0 {
  device minor 4;
  disk "${loop}";
  meta-disk internal;
  on alpha { address 127.0.0.1:7831; }
  on beta { address 127.0.0.2:7831; }
}
`,
  );
});

afterAll(() => {
  if (loop) spawnSync('losetup', ['-d', loop]);
  loop = '';
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  dir = '';
});

describe('meta-data on a block device (loop device)', () => {
  it('create-md --force on a loop device: drbdmeta dump-md of the device equals udrbd dump-md, and the size is blockdev --getsize64', () => {
    expect(fs.statSync(loop).isBlockDevice()).toBe(true);
    const deviceBytes = Number(execFileSync('blockdev', ['--getsize64', loop], { encoding: 'utf8' }).trim());
    expect(deviceBytes).toBe(SIZE_BYTES);
    const disk = FileDisk.open(loop, { readOnly: true });
    try {
      expect(disk.sizeBytes).toBe(deviceBytes);
    } finally {
      disk.closeSync();
    }

    const created = udrbdadm(['create-md', '--force', 'r0']);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain('New drbd meta data block successfully created.');

    const mine = udrbdadm(['dump-md', 'r0']);
    expect(mine.code, mine.stderr).toBe(0);
    const real = drbdmetaOnDevice('dump-md');
    expect(real.code, real.stderr).toBe(0);
    expect(withoutFlagsLine(dumpBody(mine.stdout))).toBe(withoutFlagsLine(dumpBody(real.stdout)));

    // The offsets both tools print derive from the device size blockdev reports.
    const layout = computeLayout(deviceBytes);
    expect(layout.mdOffsetBytes).toBe(deviceBytes - 4096);
    for (const text of [mine.stdout, real.stdout]) {
      expect(text).toContain(`# md_offset ${layout.mdOffsetBytes}\n`);
      expect(text).toContain(`# al_offset ${layout.alOffsetBytes}\n`);
      expect(text).toContain(`# bm_offset ${layout.bmOffsetBytes}\n`);
    }
    const gi = udrbdadm(['get-gi', 'r0']);
    expect(gi.code).toBe(0);
    expect(gi.stdout).toBe(drbdmetaOnDevice('get-gi').stdout);
  });
});
