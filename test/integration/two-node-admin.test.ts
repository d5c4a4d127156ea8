/**
 * The operator verbs on a connected pair: online verify finds blocks that
 * differ, invalidate / invalidate-remote run a full sync in the right
 * direction, pause-sync / resume-sync hold and continue a resync, and status
 * shows the progress. Two resource processes, file-backed disks.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

// Regression: the VerifyT side once crashed answering a 64-block OvRequest, because the
// codec limited an OvReply to one digest (64 bytes) instead of one digest per 4 KiB block.
describe('online verify', () => {
  it('finds the blocks that differ on the peer and marks them; a reconnect resyncs exactly those', async () => {
    cluster = new Cluster({ port: 7791, net: ['verify-alg crc32c;'] });
    const c = cluster;
    await c.upSynced();
    await c.admOk('alpha', ['verify', c.resource]);
    await c.waitFor('first verify finished', () => c.logText('alpha').includes('Online verify done'), 20_000);
    await c.waitState('alpha', 'cstate', 'Connected', 5_000);
    expect(c.logText('alpha')).toContain('conn( Connected -> VerifyS )');
    expect(c.logText('beta')).toContain('conn( Connected -> VerifyT )');
    expect(c.logText('alpha')).not.toContain('block out of sync!');
    // corrupt 3 blocks behind beta's back
    const fd = fs.openSync(c.disks.beta, 'r+');
    for (const block of [10, 11, 5000]) fs.writeSync(fd, crypto.randomBytes(4096), 0, 4096, block * 4096);
    fs.closeSync(fd);
    await c.admOk('alpha', ['verify', c.resource]);
    await c.waitFor('verify finished with a report', () => c.logText('alpha').includes('Online verify found 3 4k block out of sync!'), 20_000);
    await c.waitState('alpha', 'cstate', 'Connected');
    expect((await c.statusJson('alpha')).outOfSyncKiB).toBe(12);
    await c.admOk('beta', ['disconnect', c.resource]);
    await c.admOk('beta', ['connect', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected');
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
  });

  it('without verify-alg: (-14) Need a verify algorithm to start online verify', async () => {
    cluster = new Cluster({ port: 7792 });
    const c = cluster;
    await c.upSynced();
    const r = await c.adm('alpha', ['verify', c.resource]);
    expect(r.exitCode).toBe(11);
    expect(r.stderr).toContain('(-14) Need a verify algorithm to start online verify');
  });
});

describe('invalidate', () => {
  it('invalidate on the Secondary pulls a full sync from the peer', async () => {
    cluster = new Cluster({ port: 7793 });
    const c = cluster;
    await c.upSynced();
    // make beta differ silently, then invalidate it
    const fd = fs.openSync(c.disks.beta, 'r+');
    fs.writeSync(fd, crypto.randomBytes(MiB), 0, MiB, 7 * MiB);
    fs.closeSync(fd);
    await c.admOk('beta', ['invalidate', c.resource]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected', 60_000);
    expect(c.logText('beta')).toContain('conn( Connected -> StartingSyncT )');
    expect(c.logText('beta')).toContain('conn( WFSyncUUID -> SyncTarget )');
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
  });

  it('invalidate-remote on the Primary pushes a full sync to the peer', async () => {
    cluster = new Cluster({ port: 7794 });
    const c = cluster;
    await c.upSynced();
    const fd = fs.openSync(c.disks.beta, 'r+');
    fs.writeSync(fd, crypto.randomBytes(MiB), 0, MiB, 9 * MiB);
    fs.closeSync(fd);
    await c.admOk('alpha', ['invalidate-remote', c.resource]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected', 60_000);
    expect(c.logText('alpha')).toContain('conn( Connected -> StartingSyncS )');
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
  });
});

describe('pause-sync / resume-sync', () => {
  it('holds a running resync (PausedSyncS/PausedSyncT, no progress) and continues it; status shows done %', async () => {
    cluster = new Cluster({ port: 7795, disk: ['c-plan-ahead 0;', 'resync-rate 8M;'] });
    const c = cluster;
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.admOk('alpha', ['primary', '--force', c.resource]);
    await c.waitState('beta', 'cstate', 'SyncTarget');
    await new Promise((r) => setTimeout(r, 700));
    const text = await c.admOk('beta', ['status', c.resource]);
    expect(text).toMatch(/replication:SyncTarget peer-disk:UpToDate done:\d+\.\d\d/);
    await c.admOk('beta', ['pause-sync', c.resource]);
    await c.waitState('beta', 'cstate', 'PausedSyncT');
    await c.waitState('alpha', 'cstate', 'PausedSyncS');
    // requests already in flight when the pause began still land (rate-limited); then nothing moves
    const leftBits = async (): Promise<number> => ((await c.statusJson('beta')).sync as { leftBits: number }).leftBits;
    let previous = -1;
    await c.waitFor('in-flight resync requests drained', async () => {
      const now = await leftBits();
      const settled = now === previous;
      previous = now;
      await new Promise((r) => setTimeout(r, 300));
      return settled;
    }, 10_000);
    const left1 = await leftBits();
    expect(left1).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 1_000));
    const left2 = await leftBits();
    expect(left2).toBe(left1);
    const again = await c.adm('beta', ['pause-sync', c.resource]);
    expect(again.exitCode).not.toBe(0);
    expect(again.stderr).toContain('Sync-pause flag is already set');
    await c.admOk('beta', ['resume-sync', c.resource]);
    await c.waitState('beta', 'cstate', /^(SyncTarget|Connected)$/);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
  });
});
