/**
 * The status screens of a Connected Primary/Secondary pair with XFS mounted
 * on the Primary's FUSE + loop device (root), from a real two-node run:
 * /proc/drbd's text and the init table, golden, on both nodes; and what the
 * oracle (drbd-utils' drbd_pretty_status) proves about `mounted`/`fstype`.
 * udrbd's /dev/drbdN is a link to /dev/loopN and mount(8) records the loop
 * device in /proc/mounts, which drbd_pretty_status joins with `drbdadm
 * sh-dev all` by name: there it finds no mount, udrbd's table (which
 * resolves the link) does. Mounted by the configured path itself
 * (`mount --no-canonicalize`), /proc/mounts names /dev/drbdN as DRBD's own
 * device would be named, and both tables are identical. The init script's
 * `stop` unmounts the file system and takes the resource down.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, NODES, type NodeName } from '../helpers/cluster.js';
import { initScript, normaliseCounters, oracleStatus, patchConfig } from '../helpers/boot-harness.js';
import { requireTwoNodeXfsPrerequisites, DISK_BYTES, SYNC_TIMEOUT_MS } from '../helpers/two-node-xfs-harness.js';
import { forceCleanup } from '../helpers/fuse-harness.js';
import { cleanupStale, isMountPoint } from '../../src/frontend/exposure/fuse-loop-exposure.js';
import { readDeviceLink } from '../../src/frontend/device-link/device-link.js';
import { isProcessAlive } from '../../src/control/paths.js';

const MINORS: Record<NodeName, number> = { alpha: 57, beta: 58 };
const DEVICE: Record<NodeName, string> = { alpha: '/dev/drbd57', beta: '/dev/drbd58' };

let cluster: Cluster | undefined;
let mnt = '';

afterEach(async () => {
  const c = cluster;
  cluster = undefined;
  if (!c) return;
  if (await isMountPoint(mnt)) {
    const r = await execa('umount', [mnt], { reject: false, timeout: 60_000 });
    if (r.exitCode !== 0) await execa('umount', ['-l', mnt], { reject: false, timeout: 60_000 });
  }
  for (const node of NODES) await c.adm(node, ['down', c.resource], 30_000).catch(() => undefined);
  for (const node of NODES) {
    const pid = c.pid(node);
    if (pid !== undefined && isProcessAlive(pid)) process.kill(pid, 'SIGKILL');
    await c.waitGone(node).catch(() => undefined);
  }
  const frontendDir = path.join(c.paths('alpha').runDir, 'frontend');
  await cleanupStale(frontendDir).catch(() => undefined);
  const problems = await forceCleanup({
    filesystemMounts: [mnt],
    volumeFiles: NODES.map((n) => path.join(frontendDir, `${c.resource}.${n}.fuse`, 'volume')),
    fuseMounts: NODES.map((n) => path.join(frontendDir, `${c.resource}.${n}.fuse`)),
    links: [],
  });
  for (const node of NODES) {
    const target = await readDeviceLink(DEVICE[node]).catch(() => null);
    if (target !== null && target.startsWith('/dev/loop')) await fs.rm(DEVICE[node], { force: true });
  }
  if (problems.length === 0) await c.destroy();
  else throw new Error(`cleanup left: ${problems.join('; ')}`);
});

async function procMountSource(mountPoint: string): Promise<string | undefined> {
  const text = await fs.readFile('/proc/mounts', 'utf8');
  return text.split('\n').map((l) => l.split(' ')).find((f) => f[1] === mountPoint)?.[0];
}

describe('status screens of a Connected pair with XFS mounted (FUSE + loop)', () => {
  it('golden /proc/drbd and init table on both nodes; the oracle agrees once /proc/mounts names the configured device', async () => {
    await requireTwoNodeXfsPrerequisites();
    cluster = new Cluster({ resource: 'btxfs', port: 7951, diskSizeBytes: DISK_BYTES, frontend: 'fuse' });
    const c = cluster;
    patchConfig(c, { minors: MINORS });
    mnt = path.join(c.dir, 'mnt');
    await fs.mkdir(mnt);
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    // both disks are blank: skip the initial sync, as for a new pair (new-current-uuid --clear-bitmap)
    await c.admOk('alpha', ['new-current-uuid', '--clear-bitmap', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', SYNC_TIMEOUT_MS);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', SYNC_TIMEOUT_MS);
    await c.admOk('alpha', ['primary', c.resource]);
    await c.waitFor('alpha exposes its device link', async () => (await readDeviceLink(DEVICE.alpha)) !== null, 30_000);
    const loop = (await readDeviceLink(DEVICE.alpha))!;
    expect(loop).toMatch(/^\/dev\/loop\d+$/);
    await execa('mkfs.xfs', ['-q', '-f', DEVICE.alpha], { timeout: 120_000 });

    // 1. mounted as an operator does: /proc/mounts names the loop device
    await execa('mount', [DEVICE.alpha, mnt], { timeout: 60_000 });
    expect(await procMountSource(mnt)).toBe(loop);
    const header = ['drbd driver loaded OK; device status:', 'version: 8.4.11 (api:1/proto:86-101)', 'srcversion: udrbd-userspace     '];
    const mountedRow = (m: string): string => `57:btxfs  Connected  Primary/Secondary  UpToDate/UpToDate  C  ${m}  xfs`;
    const colsFor = (m: string): string => `m:res     cs         ro                 ds                 p  ${'mounted'.padEnd(m.length + 2)}fstype`;
    const alphaTable = [...header, colsFor(mnt), mountedRow(mnt), ''].join('\n');
    const alphaProc = await c.admOk('alpha', ['proc-drbd']);
    expect(normaliseCounters(alphaProc)).toBe(
      [
        'version: 8.4.11 (api:1/proto:86-101)',
        'srcversion: udrbd-userspace     ',
        '',
        '57: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----',
        '    ns:N nr:N dw:N dr:N al:N bm:N lo:N pe:N ua:N ap:N ep:N wo:f oos:0',
        '',
      ].join('\n'),
    );
    const status1 = await initScript(c, 'alpha', 'status');
    expect(status1.exitCode).toBe(0);
    expect(status1.stdout).toBe(alphaTable);
    // drbd_pretty_status joins by device name and misses the loop device: same table without the mount
    expect(await oracleStatus(c, 'alpha', alphaProc)).toBe(
      [...header, 'm:res     cs         ro                 ds                 p  mounted  fstype', '57:btxfs  Connected  Primary/Secondary  UpToDate/UpToDate  C' + ' '.repeat(11), ''].join('\n'),
    );

    // 2. mounted by the configured path itself: /proc/mounts names /dev/drbd57, and the oracle agrees exactly
    await execa('umount', [mnt], { timeout: 60_000 });
    await execa('mount', ['--no-canonicalize', DEVICE.alpha, mnt], { timeout: 60_000 });
    expect(await procMountSource(mnt)).toBe(DEVICE.alpha);
    const alphaProc2 = await c.admOk('alpha', ['proc-drbd']);
    const status2 = await initScript(c, 'alpha', 'status');
    expect(status2.stdout).toBe(alphaTable);
    expect(await oracleStatus(c, 'alpha', alphaProc2)).toBe(alphaTable);

    // the Secondary's screens
    const betaProc = await c.admOk('beta', ['proc-drbd']);
    expect(normaliseCounters(betaProc).split('\n').slice(3, 5)).toEqual([
      '58: cs:Connected ro:Secondary/Primary ds:UpToDate/UpToDate C r-----',
      '    ns:N nr:N dw:N dr:N al:N bm:N lo:N pe:N ua:N ap:N ep:N wo:f oos:0',
    ]);
    const betaTable = [...header, 'm:res     cs         ro                 ds                 p  mounted  fstype', '58:btxfs  Connected  Secondary/Primary  UpToDate/UpToDate  C' + ' '.repeat(11), ''].join('\n');
    expect((await initScript(c, 'beta', 'status')).stdout).toBe(betaTable);
    expect(await oracleStatus(c, 'beta', betaProc)).toBe(betaTable);

    // 3. stop unmounts what is mounted from the udrbd device and takes the resource down
    const stop = await initScript(c, 'alpha', 'stop', 120_000);
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect(await isMountPoint(mnt)).toBe(false);
    expect(await c.query('alpha', 'role')).toBe('Unconfigured');
    await c.waitState('beta', 'cstate', 'WFConnection');
  });
});
