/**
 * disk-flushes no / md-flushes no / al-updates no on a real two-node pair:
 * the resource process logs DRBD's "Method to ensure write ordering: drain"
 * and the battery-backed-cache warnings, replicates as usual, and — because
 * al-updates no leaves no activity log to recover from — a Primary killed -9
 * comes back with every block out of sync and resyncs the whole device, as
 * DRBD 8.4 does for a crashed Primary with MDF_AL_DISABLED.
 */
import crypto from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

describe('write-ordering options on a two-node pair', () => {
  it('disk-flushes no, md-flushes no, al-updates no: warnings at attach, replication, full resync after kill -9 of the Primary', async () => {
    cluster = new Cluster({ resource: 'xm2', port: 8252, minorBase: 144, diskSizeBytes: 32 * MiB, disk: ['disk-flushes no;', 'md-flushes no;', 'al-updates no;'] });
    const c = cluster;
    await c.upSynced();
    for (const node of ['alpha', 'beta'] as const) {
      const log = c.logText(node);
      expect(log).toContain('Method to ensure write ordering: drain');
      expect(log).toMatch(/disk-flushes no: [^"]*battery-backed/);
      expect(log).toMatch(/md-flushes no: [^"]*battery-backed/);
      expect(log).toContain('al-updates no: no activity-log transactions are written');
    }
    for (let i = 0; i < 3; i++) await c.write('alpha', 4 * MiB + i * MiB, crypto.randomBytes(MiB));
    await c.waitFor('beta has the writes', () => c.hashDataArea('alpha') === c.hashDataArea('beta'));
    const counters = (await c.statusJson('alpha')).counters as Record<string, number>;
    expect(counters.al).toBe(0); // no activity-log transaction written (/proc/drbd al:)
    c.kill9('alpha');
    await c.waitGone('alpha');
    await c.waitState('beta', 'cstate', /^(WFConnection|Unconnected)$/);
    await c.admOk('alpha', ['up', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    const alphaLog = c.logText('alpha');
    expect(alphaLog).toContain('Assuming that all blocks are out of sync (aka FullSync)');
    const began = [...alphaLog.matchAll(/Began resync as SyncSource \(will sync (\d+) KB/g)].map((m) => Number(m[1]));
    expect(began.at(-1)).toBe(c.dataSizeBytes('alpha') / 1024);
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
  });
});
