/**
 * Issue 19, a re-attach while Connected tells the peer the disk it now has
 * behind it (DRBD 8.4 after_state_ch, Attaching -> Negotiating: P_SIZES,
 * P_UUIDS, P_STATE; receive_sizes then runs drbd_determine_dev_size). On a
 * real pair with external meta-data (so a data disk can grow while
 * detached): the Secondary detaches, both data disks grow, the Secondary
 * attaches again — and both devices grow to the new size without a
 * `resize`, the new area and the writes made while it was away are resynced
 * from the Primary, and the two disks end identical. Before the fix the
 * re-attach sent only P_UUIDS and both devices kept the old size.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
const OLD_FILE_BYTES = 64 * MiB;
const NEW_FILE_BYTES = 96 * MiB;

let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

describe('re-attach while Connected', () => {
  it('sends the disk sizes: both nodes grow to the disks they now have and resync the new area', async () => {
    cluster = new Cluster({ resource: 'ras', port: 9951, minorBase: 1700, diskSizeBytes: OLD_FILE_BYTES, metaDisk: { kind: 'indexed', index: 0 } });
    const c = cluster;
    await c.upConnected();
    await c.admOk('alpha', ['new-current-uuid', '--clear-bitmap', c.resource]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate');
    await c.admOk('alpha', ['primary', c.resource]);
    const oldBytes = Number((await c.statusJson('alpha')).sizeBytes);
    expect(oldBytes).toBe(OLD_FILE_BYTES);

    await c.admOk('beta', ['detach', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/Diskless');
    // written while the Secondary has no disk: resynced after the attach
    const away = crypto.randomBytes(64 * 1024);
    await c.write('alpha', 8 * MiB, away);
    for (const node of ['alpha', 'beta'] as const) fs.truncateSync(c.disks[node], NEW_FILE_BYTES);

    await c.admOk('beta', ['attach', c.resource]);
    await c.waitFor('both devices grown to the new disks', async () => {
      const sizes = await Promise.all((['alpha', 'beta'] as const).map(async (n) => Number((await c.statusJson(n)).sizeBytes)));
      return sizes.every((b) => b === NEW_FILE_BYTES);
    }, 30_000);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected');
    expect(c.logText('alpha')).toMatch(/size = 96 MB/);

    const tail = crypto.randomBytes(64 * 1024);
    await c.write('alpha', NEW_FILE_BYTES - tail.length, tail);
    expect(c.readDisk('beta', NEW_FILE_BYTES - tail.length, tail.length).equals(tail)).toBe(true);
    expect(c.readDisk('beta', 8 * MiB, away.length).equals(away)).toBe(true);
    expect(c.hashDataArea('alpha', NEW_FILE_BYTES)).toBe(c.hashDataArea('beta', NEW_FILE_BYTES));
  }, 180_000);
});
