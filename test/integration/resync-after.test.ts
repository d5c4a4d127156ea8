/**
 * test/integration/resync-after — `disk { resync-after RES; }` on two real
 * resources (one configuration, one run dir per node, as on a real machine):
 * rcrb names rcra; both need a resync; while rcra resyncs (slowly, a fixed
 * 2 MiB/s) rcrb waits in PausedSyncT with the dependency flag — `a` in
 * /proc/drbd's flags, `_flags_aftr_isp=1` in sh-status, `resync-suspended:`
 * …dependency in status and events2 — then resyncs once rcra is done; both
 * end UpToDate with identical data. A resync-after loop among resources
 * that are up is refused with DRBD's ERR_RESYNC_AFTER_CYCLE text and exit 10.
 * The states are observed, not timed.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
let clusters: Cluster[] = [];
afterEach(async () => {
  // rcrb first: it polls rcra
  for (const c of clusters.reverse()) await c.destroy();
  clusters = [];
});

interface LogLine { time: number; msg: string }

function stateLines(c: Cluster): LogLine[] {
  return c.logText('beta').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);
}

function firstIndex(lines: LogLine[], includes: string): number {
  return lines.findIndex((l) => l.msg.includes(includes));
}

/** A connected pair without the initial sync, alpha Primary; then beta disconnects and alpha writes `bytes`. */
async function needsResync(c: Cluster, bytes: number): Promise<void> {
  await c.upConnected();
  await c.admOk('alpha', ['new-current-uuid', '--clear-bitmap', c.resource]);
  await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate');
  await c.admOk('alpha', ['primary', c.resource]);
  await c.admOk('beta', ['disconnect', c.resource]);
  await c.waitState('alpha', 'cstate', 'WFConnection');
  for (let at = 0; at < bytes; at += MiB) await c.write('alpha', at, crypto.randomBytes(MiB));
}

describe('resync-after', () => {
  it("rcrb's resync waits in PausedSyncT with the dependency flag while rcra resyncs, then runs; a loop is refused", async () => {
    const a = new Cluster({ resource: 'rcra', port: 9021, minorBase: 234, diskSizeBytes: 16 * MiB, disk: ['c-plan-ahead 0;', 'resync-rate 2M;'] });
    clusters.push(a);
    const b = new Cluster({ resource: 'rcrb', port: 9023, minorBase: 236, diskSizeBytes: 16 * MiB, disk: ['resync-after rcra;'] });
    clusters.push(b);
    // One configuration with both resources and one run dir per machine, as drbdadm and the kernel see them.
    const combined = path.join(a.dir, 'both.conf');
    fs.writeFileSync(combined, a.configText() + b.configText());
    for (const c of [a, b]) {
      c.configPaths.alpha = combined;
      c.configPaths.beta = combined;
    }
    b.env.UDRBD_RUN_DIR = a.env.UDRBD_RUN_DIR;
    b.env.UDRBD_LOG_DIR = a.env.UDRBD_LOG_DIR;
    // drbdadm hands the kernel the minor of the resource named
    expect(await b.admOk('alpha', ['-d', 'attach', 'rcrb'])).toContain('--resync-after=234');

    await needsResync(a, 12 * MiB);
    await needsResync(b, 4 * MiB);

    await a.admOk('beta', ['connect', 'rcra']);
    await a.waitState('beta', 'cstate', 'SyncTarget');
    await b.admOk('beta', ['connect', 'rcrb']);
    await b.waitState('beta', 'cstate', 'PausedSyncT');
    // rcra is still resyncing (12 MiB at 2 MiB/s), so rcrb stays paused with nothing synced
    expect(await a.query('beta', 'cstate')).toBe('SyncTarget');
    const paused = await b.statusJson('beta');
    expect(paused).toMatchObject({ cstate: 'PausedSyncT', outOfSyncKiB: 4096 });
    expect(paused.resyncSuspended).toMatchObject({ dependency: true, user: false });
    // the SyncSource holds back for its own rcra the same way
    expect(await b.query('alpha', 'cstate')).toBe('PausedSyncS');

    const proc = await b.admOk('beta', ['proc-drbd']);
    expect(proc).toMatch(/^237: cs:PausedSyncT ro:Secondary\/Primary ds:Inconsistent\/UpToDate C ra[p-]---$/m);
    expect(await b.admOk('beta', ['sh-status', 'rcrb'])).toContain('\n_flags_aftr_isp=1\n');
    expect(await b.admOk('beta', ['status', 'rcrb'])).toMatch(/replication:PausedSyncT peer-disk:UpToDate( done:[0-9.]+)? resync-suspended:(peer,)?dependency\n/);
    expect(await b.admOk('beta', ['events', '--now', 'rcrb'])).toMatch(/^exists peer-device name:rcrb .*replication:PausedSyncT .*resync-suspended:(peer,)?dependency/m);

    // rcra ends; rcrb resumes and ends too
    await a.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await b.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await b.waitState('beta', 'cstate', 'Connected');
    await b.waitState('alpha', 'cstate', 'Connected');
    expect(a.hashDataArea('alpha')).toBe(a.hashDataArea('beta'));
    expect(b.hashDataArea('alpha')).toBe(b.hashDataArea('beta'));

    // the sequence on rcrb's SyncTarget: paused at the start, resumed only after rcra's resync was done
    const lines = stateLines(b);
    const pausedAt = firstIndex(lines, 'conn( WFSyncUUID -> PausedSyncT )');
    const resumedAt = firstIndex(lines, 'conn( PausedSyncT -> SyncTarget )');
    const doneAt = firstIndex(lines, 'conn( SyncTarget -> Connected )');
    expect(pausedAt).toBeGreaterThanOrEqual(0);
    expect(resumedAt).toBeGreaterThan(pausedAt);
    // its own aftr_isp clears first or with the resume; the peer's (peer_isp) may clear in the same or a later change
    const aftrClearedAt = firstIndex(lines, 'aftr_isp( 1 -> 0 )');
    expect(aftrClearedAt).toBeGreaterThan(pausedAt);
    expect(aftrClearedAt).toBeLessThanOrEqual(resumedAt);
    expect(doneAt).toBeGreaterThan(resumedAt);
    const rcraDone = stateLines(a).find((l) => l.msg.includes('conn( SyncTarget -> Connected )'));
    expect(rcraDone).toBeDefined();
    expect(lines[aftrClearedAt]!.time).toBeGreaterThanOrEqual(rcraDone!.time);
    // rcrb's 4 MiB went over in one resync, after the pause
    const result = b.logText('beta').split('\n').find((l) => l.includes('"resync result"'));
    expect(JSON.parse(result!)).toMatchObject({ ok: true, syncedBlocks: 1024 });

    // rcra naming rcrb (up, and naming rcra) would close a loop: refused, nothing changes
    const text = fs.readFileSync(combined, 'utf8');
    expect(text.split('resync-rate 2M; }')).toHaveLength(2); // rcra's disk section only
    fs.writeFileSync(combined, text.replace('resync-rate 2M; }', 'resync-rate 2M; resync-after rcrb; }'));
    const refused = await a.adm('alpha', ['adjust', 'rcra']);
    expect(refused.stderr).toContain('234: Failure: (133) This would cause a resync-after dependency cycle');
    expect(refused.exitCode).toBe(10);
    expect(await a.query('alpha', 'cstate')).toBe('Connected');
  }, 180_000);
});
