/**
 * Regression (issue 16, "Also found"): a resource process that ran in its own
 * mount namespace and was killed -9 left its loop device attached after the
 * next `up`, because cleanup looked loop devices up by backing-file path and
 * that path (now "/volume") vanished with the namespace. Root, FUSE + loop,
 * unshare(1). Minor 61 (/dev/drbd61), port 8041, resource oc-stale.
 */
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { Cluster, UDRBDADM } from '../helpers/cluster.js';
import { requireFuseLoopPrerequisites, forceCleanup } from '../helpers/fuse-harness.js';
import { cleanupStale } from '../../src/frontend/exposure/fuse-loop-exposure.js';
import { loopBackingFile, detachLoop } from '../../src/frontend/loop/losetup.js';
import { silentLogger } from '../../src/util/log.js';

const RESOURCE = 'oc-stale';
const DEVICE = '/dev/drbd61';

let cluster: Cluster | null = null;
let recordedLoop: string | null = null;
/** A loop device a test attached itself (detached in afterEach). */
let foreignLoop: string | null = null;

/** `losetup -a` as text (every attached loop device of the machine). */
async function losetupAll(): Promise<string> {
  return (await execa('losetup', ['-a'], { reject: false, timeout: 30_000 })).stdout;
}

beforeAll(async () => {
  await requireFuseLoopPrerequisites();
  const found = await execa('sh', ['-c', 'command -v unshare'], { reject: false });
  if (found.exitCode !== 0) throw new Error('unshare(1) is missing (apt-get install util-linux)');
});

afterEach(async () => {
  if (foreignLoop !== null) await execa('losetup', ['-d', foreignLoop], { reject: false, timeout: 30_000 });
  foreignLoop = null;
  const c = cluster;
  cluster = null;
  if (c === null) return;
  await c.adm('alpha', ['down', RESOURCE], 30_000).catch(() => undefined);
  c.kill9('alpha');
  await c.waitGone('alpha').catch(() => undefined);
  const frontendDir = path.join(c.paths('alpha').runDir, 'frontend');
  await cleanupStale(frontendDir).catch(() => undefined);
  // A failed test may leave the namespace's loop device: detach it only if it still shows the dead namespace's path.
  if (recordedLoop !== null && (await loopBackingFile(recordedLoop)) === '/volume') await detachLoop(recordedLoop, silentLogger(), '/volume').catch(() => undefined);
  const fuseDir = path.join(frontendDir, `${RESOURCE}.alpha.fuse`);
  const problems = await forceCleanup({ filesystemMounts: [], volumeFiles: [path.join(fuseDir, 'volume')], fuseMounts: [fuseDir], links: [] });
  const target = await fs.readlink(DEVICE).catch(() => null);
  if (target !== null && target.startsWith('/dev/loop')) await fs.rm(DEVICE, { force: true });
  await c.destroy();
  if (problems.length > 0) throw new Error(`cleanup problems: ${problems.join('; ')}`);
});

describe('stale FUSE + loop exposure of a process killed in its own mount namespace', () => {
  it('the next up from the host namespace detaches the loop device whose backing path died with the namespace', async () => {
    cluster = new Cluster({ resource: RESOURCE, port: 8041, frontend: 'fuse', minorBase: 61 });
    const c = cluster;
    const before = await losetupAll();

    // up inside a private mount namespace: the daemon inherits it and keeps it alive.
    const up = await execa('unshare', ['-m', '--propagation', 'private', process.execPath, UDRBDADM, '-c', c.configPath, '--node', 'alpha', 'up', RESOURCE], {
      env: c.env,
      reject: false,
      timeout: 60_000,
      stdin: 'ignore',
    });
    expect(up.exitCode, up.stderr).toBe(0);
    await c.admOk('alpha', ['primary', '--force', RESOURCE]);

    const stateFile = path.join(c.paths('alpha').runDir, 'frontend', 'drbd61.fuse-loop.json');
    const record = JSON.parse(await fs.readFile(stateFile, 'utf8')) as { loopDevice: string | null; loopIdentity?: unknown };
    expect(record.loopDevice).toMatch(/^\/dev\/loop\d+$/);
    expect(record.loopIdentity).toBeTruthy();
    recordedLoop = record.loopDevice;
    const loop = record.loopDevice!;
    // From the host the FUSE mount is invisible: the path the kernel shows is the namespace's.
    expect(await loopBackingFile(loop)).toMatch(/\/volume$/);

    c.kill9('alpha');
    await c.waitGone('alpha');
    // What broke: the dead namespace's mount is gone, the kernel now shows "/volume".
    await c.waitFor(`${loop} backing file reads /volume`, async () => (await loopBackingFile(loop)) === '/volume', 10_000);

    await c.admOk('alpha', ['up', RESOURCE]);
    expect(await loopBackingFile(loop)).toBeNull();
    expect(await losetupAll()).not.toContain(`${loop}:`);
    expect(c.logText('alpha')).toContain('stale exposure cleaned up');
    await fs.access(stateFile).then(
      () => expect.fail(`${stateFile} should be gone after the cleanup`),
      () => undefined,
    );

    await c.admOk('alpha', ['down', RESOURCE]);
    // Nothing leaked: every loop device attached now was attached before the test.
    const after = (await losetupAll()).split('\n').filter((l) => l !== '' && !before.includes(l));
    expect(after).toEqual([]);
  }, 120_000);

  it('leaves alone a loop device that now belongs to someone else, even one backed by a file named volume', async () => {
    cluster = new Cluster({ resource: RESOURCE, port: 8041, frontend: 'fuse', minorBase: 61 });
    const c = cluster;
    const up = await execa('unshare', ['-m', '--propagation', 'private', process.execPath, UDRBDADM, '-c', c.configPath, '--node', 'alpha', 'up', RESOURCE], {
      env: c.env,
      reject: false,
      timeout: 60_000,
      stdin: 'ignore',
    });
    expect(up.exitCode, up.stderr).toBe(0);
    await c.admOk('alpha', ['primary', '--force', RESOURCE]);
    const stateFile = path.join(c.paths('alpha').runDir, 'frontend', 'drbd61.fuse-loop.json');
    const loop = (JSON.parse(await fs.readFile(stateFile, 'utf8')) as { loopDevice: string }).loopDevice;
    recordedLoop = loop;
    c.kill9('alpha');
    await c.waitGone('alpha');
    await c.waitFor(`${loop} backing file reads /volume`, async () => (await loopBackingFile(loop)) === '/volume', 10_000);

    // Someone detaches it and the kernel hands the same number to another user's file called "volume".
    await execa('losetup', ['-d', loop], { timeout: 30_000 });
    const otherDir = path.join(c.dir, 'other');
    await fs.mkdir(otherDir);
    const otherFile = path.join(otherDir, 'volume');
    await fs.writeFile(otherFile, Buffer.alloc(1024 * 1024));
    await execa('losetup', [loop, otherFile], { timeout: 30_000 });
    foreignLoop = loop;

    await c.admOk('alpha', ['up', RESOURCE]);
    expect(await loopBackingFile(loop)).toBe(otherFile);
    await c.admOk('alpha', ['down', RESOURCE]);
  }, 120_000);
});
