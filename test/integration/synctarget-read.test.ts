/**
 * Issue 5: "a read of a block that is out of sync locally (during resync as
 * SyncTarget) is served correctly". Two resource processes (NBD socket only,
 * UDRBD_FRONTEND=none): alpha writes while beta is disconnected, alpha steps
 * down, beta reconnects as SyncTarget under a very low resync-rate, beta is
 * promoted during the resync (allowed: the peer is UpToDate), and a real NBD
 * client (nbdsh) reads the changed blocks through beta's export while beta's
 * own disk still holds the stale bytes. The answer must be alpha's data.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { NBDSH_ENV, requireTool } from '../helpers/nbd-helpers.js';

const MiB = 1024 * 1024;
/** Changed while beta is away: 2 MiB at 32 KiB/s is about a minute of resync, far longer than the test reads. */
const CHANGED_BYTES = 2 * MiB;
const CHANGED_OFFSET_BYTES = 8 * MiB;
/** What the NBD client reads: the last 512 KiB of the changed range (a resync works from the low blocks up). */
const READ_BYTES = 512 * 1024;
const READ_OFFSET_BYTES = CHANGED_OFFSET_BYTES + CHANGED_BYTES - READ_BYTES;

let cluster: Cluster | undefined;

beforeAll(async () => {
  await requireTool('nbdsh');
});

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

describe('Primary that is SyncTarget', () => {
  it('serves out-of-sync blocks read through its NBD export with the peer\'s data, not its stale local bytes', async () => {
    cluster = new Cluster({ port: 7811, disk: ['c-plan-ahead 0;', 'resync-rate 32k;'] });
    const c = cluster;
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.waitState('beta', 'cstate', 'Connected');
    // Skip the (rate-limited) initial sync: both start UpToDate with equal (zero) data.
    await c.admOk('alpha', ['new-current-uuid', '--clear-bitmap', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate');
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate');

    await c.admOk('alpha', ['primary', c.resource]);
    await c.admOk('beta', ['disconnect', c.resource]);
    await c.waitState('alpha', 'cstate', /^(WFConnection|Unconnected)$/);
    const data = crypto.randomBytes(CHANGED_BYTES);
    await c.write('alpha', CHANGED_OFFSET_BYTES, data);
    expect((await c.statusJson('alpha')).outOfSyncKiB).toBe(CHANGED_BYTES / 1024);
    await c.admOk('alpha', ['secondary', c.resource]);

    await c.admOk('beta', ['connect', c.resource]);
    await c.waitState('beta', 'cstate', 'SyncTarget');
    await c.waitState('beta', 'dstate', 'Inconsistent/UpToDate');
    await c.admOk('beta', ['primary', c.resource]);
    expect(await c.query('beta', 'role')).toBe('Primary/Secondary');
    expect(await c.query('beta', 'cstate')).toBe('SyncTarget');
    const frontend = (await c.statusJson('beta')).frontend as { kind: string; nbdSocket: string };
    expect(frontend.kind).toBe('none');

    // beta's own disk still has the old (zero) bytes where the client is about to read.
    const expected = data.subarray(READ_OFFSET_BYTES - CHANGED_OFFSET_BYTES);
    expect(c.readDisk('beta', READ_OFFSET_BYTES, READ_BYTES).equals(Buffer.alloc(READ_BYTES))).toBe(true);
    const leftBefore = ((await c.statusJson('beta')).sync as { leftBits: number }).leftBits;
    expect(leftBefore).toBeGreaterThanOrEqual(READ_BYTES / 4096);

    const out = path.join(c.dir, 'read.bin');
    const uri = `nbd+unix:///${c.resource}?socket=${frontend.nbdSocket}`;
    // nbdsh: one NBD_CMD_READ of the window (nbdcopy always copies the whole export).
    const script = `open(${JSON.stringify(out)}, 'wb').write(h.pread(${READ_BYTES}, ${READ_OFFSET_BYTES}))`;
    const r = await execa('nbdsh', ['-u', uri, '-c', script], { reject: false, env: NBDSH_ENV });
    if (r.exitCode !== 0) throw new Error(`nbdsh read failed (${r.exitCode}): ${r.stderr}`);
    const got = fs.readFileSync(out);
    expect(got.length).toBe(READ_BYTES);
    expect(got.equals(expected)).toBe(true);

    // The read pulled those blocks from alpha and wrote them to beta's disk; beta is still SyncTarget for the rest.
    expect(c.readDisk('beta', READ_OFFSET_BYTES, READ_BYTES).equals(expected)).toBe(true);
    expect(await c.query('beta', 'cstate')).toBe('SyncTarget');
    expect(c.readDisk('alpha', CHANGED_OFFSET_BYTES, CHANGED_BYTES).equals(data)).toBe(true);
  });
});
