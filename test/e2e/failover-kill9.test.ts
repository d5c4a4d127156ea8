/**
 * Issue 5 acceptance, hard failover (root, FUSE + loop): XFS on alpha's
 * device, fio writing with fsync plus a witness writer that logs each file's
 * checksum only after its fsync returned; kill -9 alpha's resource process
 * mid-write; the stale mount/loop/FUSE are cleaned up (the restarted resource
 * process does it at start); beta is promoted, XFS recovers its log on mount,
 * and every file whose fsync returned before the kill is intact on beta.
 */
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { run } from '../helpers/fuse-harness.js';
import { XfsPair, DEVICE, RESOURCE, SYNC_TIMEOUT_MS, requireTwoNodeXfsPrerequisites, checksumMap } from '../helpers/two-node-xfs-harness.js';
import { repoRoot } from '../helpers/fuse-harness.js';
import { isMountPoint } from '../../src/frontend/exposure/fuse-loop-exposure.js';

/** Upper bound on how long the load runs if nothing stops it. */
const LOAD_RUNTIME_MS = 60_000;
/** Files the witness must have fsynced before the kill, so the check means something. */
const WITNESS_FILES_BEFORE_KILL_MIN = 40;
const WAIT_FOR_WITNESS_MS = 60_000;
/** After the kill, the writers must notice (EIO) within this long. */
const WRITERS_STOP_MS = 60_000;

let pair: XfsPair | null = null;
const children: ResultPromise[] = [];

beforeAll(async () => {
  await requireTwoNodeXfsPrerequisites();
});

afterEach(async () => {
  for (const child of children.splice(0)) {
    child.kill('SIGKILL');
    await child.catch(() => undefined);
  }
  const p = pair;
  pair = null;
  if (p === null) return;
  const problems = await p.destroy();
  if (problems.length > 0) throw new Error(`cleanup problems: ${problems.join('; ')}`);
});

async function witnessLines(logPath: string): Promise<Array<[string, string]>> {
  let text = '';
  try {
    text = await fs.readFile(logPath, 'utf8');
  } catch {
    return [];
  }
  // A line is complete only with its newline (the log was fsynced after each one).
  return text
    .split('\n')
    .slice(0, -1)
    .map((line) => line.split(' ') as [string, string]);
}

describe('hard failover with kill -9 of the Primary under fsync load', () => {
  it('every file whose fsync returned before the kill is intact on the promoted peer; stale exposure cleaned up', async () => {
    pair = new XfsPair();
    const p = pair;
    const c = p.cluster;
    await p.start();
    await c.admOk('alpha', ['primary', '--force', RESOURCE]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', SYNC_TIMEOUT_MS);
    await run('mkfs.xfs', ['-q', DEVICE.alpha]);
    await p.mount('alpha');
    const alphaExposure = await p.exposure('alpha');
    expect(alphaExposure.loops).toHaveLength(1);

    const witnessLog = path.join(c.dir, 'witness.log');
    const fio = execa('fio', [
      '--name=load', `--directory=${p.mnt.alpha}`, '--size=32M', '--bs=64k', '--rw=randwrite', '--fsync=4',
      '--ioengine=psync', '--time_based', `--runtime=${LOAD_RUNTIME_MS / 1000}`, '--output-format=terse',
    ], { reject: false, timeout: LOAD_RUNTIME_MS + WRITERS_STOP_MS, stdin: 'ignore' });
    children.push(fio);
    const witness = execa(process.execPath, [path.join(repoRoot, 'test/helpers/failover-writer.mjs'), p.mnt.alpha, witnessLog, String(LOAD_RUNTIME_MS)], {
      reject: false, timeout: LOAD_RUNTIME_MS + WRITERS_STOP_MS, stdin: 'ignore',
    });
    children.push(witness);

    await c.waitFor(`${WITNESS_FILES_BEFORE_KILL_MIN} witness files fsynced`, async () => (await witnessLines(witnessLog)).length >= WITNESS_FILES_BEFORE_KILL_MIN, WAIT_FOR_WITNESS_MS);
    expect(witness.exitCode).toBeNull(); // still writing: the kill lands mid-load
    const alphaPid = c.pid('alpha');
    expect(alphaPid).toBeDefined();
    c.kill9('alpha');
    await c.waitGone('alpha');
    const killedAt = Date.now();

    const [witnessResult, fioResult] = await Promise.all([witness, fio]);
    expect(Date.now() - killedAt).toBeLessThan(WRITERS_STOP_MS);
    expect(witnessResult.stdout).toMatch(/stopped: /); // it failed (EIO), it did not just run out of time
    expect(fioResult.exitCode).not.toBe(0);
    const acked = await witnessLines(witnessLog);
    expect(acked.length).toBeGreaterThanOrEqual(WITNESS_FILES_BEFORE_KILL_MIN);

    await c.waitState('beta', 'cstate', /^(WFConnection|Unconnected|StandAlone)$/);
    expect(await c.query('beta', 'dstate')).toBe('UpToDate/DUnknown');

    // alpha's crash left XFS on a loop device over a dead FUSE mount: umount still works,
    // and the next resource process on alpha removes the loop device, the FUSE mount and the link.
    await p.umount('alpha');
    const stale = await p.exposure('alpha');
    expect(stale.loops).toEqual(alphaExposure.loops);
    await c.admOk('alpha', ['attach', RESOURCE]);
    expect(await p.exposure('alpha')).toEqual({ link: null, loops: [], fuseMounted: false });
    expect(c.logText('alpha')).toContain('removed the stale FUSE + loop exposure of a crashed resource process');
    expect(await c.query('alpha', 'role')).toBe('Secondary/Unknown');

    await c.admOk('beta', ['primary', RESOURCE]);
    await p.mount('beta'); // XFS log recovery
    const sums = await checksumMap(p.mnt.beta, acked.map(([name]) => name));
    const missingOrWrong = acked.filter(([name, sum]) => sums.get(name) !== sum).map(([name]) => name);
    expect(missingOrWrong).toEqual([]);
    await p.umount('beta');
    expect(await isMountPoint(p.mnt.beta)).toBe(false);
    await run('xfs_repair', ['-n', DEVICE.beta]);
  });
});
