/**
 * The resource process on its own (one node, no peer): up/down, the drbdadm
 * query verbs, refusals with DRBD's text and exit codes, the per resource+node
 * lock, runtime file permissions, clean meta-data after down, and AL-driven
 * recovery after kill -9. Uses the built dist (udrbdadm + udrbd) and the real
 * drbdmeta as the oracle for the on-disk state.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Cluster, DAEMON, DRBDMETA } from '../helpers/cluster.js';

let cluster: Cluster;

beforeEach(() => {
  cluster = new Cluster({ port: 7741, diskSizeBytes: 64 * 1024 * 1024 });
});
afterEach(async () => {
  await cluster.destroy();
});

function drbdmeta(file: string, command: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(DRBDMETA, ['--force', '/dev/drbd9', 'v08', file, 'internal', command], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('udrbdadm up / down and the query verbs', () => {
  it('prints Unconfigured before up, the attached state after up, and Unconfigured again after down', async () => {
    const r = cluster.resource;
    expect(await cluster.query('alpha', 'role')).toBe('Unconfigured');
    expect(await cluster.query('alpha', 'cstate')).toBe('Unconfigured');
    expect(await cluster.query('alpha', 'dstate')).toBe('Unconfigured');
    await cluster.admOk('alpha', ['up', r]);
    expect(await cluster.query('alpha', 'role')).toBe('Secondary/Unknown');
    expect(await cluster.query('alpha', 'dstate')).toBe('Inconsistent/DUnknown');
    expect(['StandAlone', 'Unconnected', 'WFConnection']).toContain(await cluster.query('alpha', 'cstate'));
    await cluster.admOk('alpha', ['down', r]);
    expect(await cluster.query('alpha', 'role')).toBe('Unconfigured');
    expect(fs.existsSync(cluster.paths('alpha').socketPath)).toBe(false);
    // down on a resource that is not up succeeds silently, as drbdadm does
    const again = await cluster.adm('alpha', ['down', r]);
    expect(again.exitCode).toBe(0);
  });

  it('leaves clean v08 meta-data after down that the real drbdmeta reads', async () => {
    await cluster.admOk('alpha', ['up', cluster.resource]);
    await cluster.admOk('alpha', ['primary', '--force', cluster.resource]);
    await cluster.admOk('alpha', ['down', cluster.resource]);
    const dump = drbdmeta(cluster.disks.alpha, 'dump-md');
    expect(dump.status, dump.stderr).toBe(0);
    expect(dump.stdout).toContain('version "v08";');
    const gi = drbdmeta(cluster.disks.alpha, 'get-gi');
    // current UUID no longer 4 (forced primary made a new one), bitmap UUID = 4; consistent + was-up-to-date
    expect(gi.stdout).toMatch(/^[0-9A-F]{16}:0000000000000004:0000000000000000:0000000000000000:1:1:0:/);
    expect(gi.stdout.startsWith('0000000000000004')).toBe(false);
  });

  it('creates the control socket 0600 in a 0700 run dir and logs state changes in DRBD vocabulary', async () => {
    await cluster.admOk('alpha', ['up', cluster.resource]);
    const p = cluster.paths('alpha');
    expect(fs.statSync(p.runDir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(p.socketPath).mode & 0o777).toBe(0o600);
    expect(Number(fs.readFileSync(p.pidPath, 'utf8'))).toBeGreaterThan(1);
    await cluster.admOk('alpha', ['primary', '--force', cluster.resource]);
    const log = cluster.logText('alpha');
    expect(log).toContain('disk( Attaching -> Inconsistent )');
    expect(log).toContain('role( Secondary -> Primary ) disk( Inconsistent -> UpToDate )');
    expect(log).toContain('Forced to consider local data as UpToDate!');
  });

  it('refuses a second up, and a second resource process for the same resource and node', async () => {
    await cluster.admOk('alpha', ['up', cluster.resource]);
    const second = await cluster.adm('alpha', ['up', cluster.resource]);
    expect(second.exitCode).toBe(10);
    expect(second.stderr).toContain('10: Failure: (161) Minor or volume exists already (delete it first)');
    const direct = spawnSync(process.execPath, [DAEMON, '--config', cluster.configPath, '--node', 'alpha', '--resource', cluster.resource], {
      env: cluster.env,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      timeout: 20_000,
    });
    expect(direct.status).toBe(10);
    expect(direct.output[3]).toContain(`udrbd resource ${cluster.resource} is already up on node alpha`);
    // the running one is untouched
    expect(await cluster.query('alpha', 'dstate')).toBe('Inconsistent/DUnknown');
  });

  it('reports a missing meta-data area as an up failure with a non-zero exit and the reason', async () => {
    fs.truncateSync(cluster.disks.beta, 0);
    fs.truncateSync(cluster.disks.beta, 64 * 1024 * 1024);
    const r = await cluster.adm('beta', ['up', cluster.resource]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/No valid meta data found/);
    expect(await cluster.query('beta', 'role')).toBe('Unconfigured');
  });
});

describe("DRBD's refusals", () => {
  it('primary on Inconsistent data without --force: (-2) Need access to UpToDate data, exit 17', async () => {
    await cluster.admOk('alpha', ['up', cluster.resource]);
    const r = await cluster.adm('alpha', ['primary', cluster.resource]);
    expect(r.exitCode).toBe(17);
    expect(r.stderr).toContain('10: State change failed: (-2) Need access to UpToDate data');
    expect(r.stderr).toContain("Command 'drbdsetup-84 primary 10' terminated with exit code 17");
    expect(await cluster.query('alpha', 'role')).toBe('Secondary/Unknown');
    expect(cluster.logText('alpha')).toContain('State change failed: Need access to UpToDate data');
  });

  it('accepts --force both as `primary --force RES` and as `-- --force primary RES`', async () => {
    // attach only (no connect), so the two nodes are independent StandAlone Primaries
    await cluster.admOk('alpha', ['attach', cluster.resource]);
    await cluster.admOk('beta', ['attach', cluster.resource]);
    expect(await cluster.query('beta', 'cstate')).toBe('StandAlone');
    await cluster.admOk('alpha', ['primary', '--force', cluster.resource]);
    await cluster.admOk('beta', ['--', '--force', 'primary', cluster.resource]);
    expect(await cluster.query('alpha', 'role')).toBe('Primary/Unknown');
    expect(await cluster.query('beta', 'role')).toBe('Primary/Unknown');
    expect(await cluster.query('beta', 'dstate')).toBe('UpToDate/DUnknown');
  });

  it('verbs that need a disk or a connection are refused with their SS codes', async () => {
    await cluster.admOk('alpha', ['up', cluster.resource]);
    const inv = await cluster.adm('alpha', ['invalidate', cluster.resource]);
    expect(inv.exitCode).toBe(11);
    expect(inv.stderr).toContain('(-15) Need a connection to start verify or resync');
    const out = await cluster.adm('alpha', ['outdate', cluster.resource]);
    expect(out.exitCode).toBe(5);
    expect(out.stderr).toContain('(-16) Disk state is lower than outdated');
  });
});

describe('crash safety', () => {
  it('kill -9 of a Primary during writes leaves meta-data unclean; the next up recovers the hot extents from the AL', async () => {
    const r = cluster.resource;
    await cluster.admOk('alpha', ['up', r]);
    await cluster.admOk('alpha', ['primary', '--force', r]);
    // after the forced promotion the bitmap is empty (no peer ever seen: it marks nothing)
    const before = await cluster.statusJson('alpha');
    const oosBefore = before.outOfSyncKiB as number;
    const block = Buffer.alloc(64 * 1024, 0xab);
    const extentsTouched = [0, 3, 7];
    for (const extent of extentsTouched) await cluster.write('alpha', extent * 4 * 1024 * 1024 + 8192, block);
    cluster.kill9('alpha');
    await cluster.waitGone('alpha');
    const unclean = drbdmeta(cluster.disks.alpha, 'dump-md');
    expect(unclean.stderr).toContain('Found meta data is "unclean", please apply-al first');
    await cluster.admOk('alpha', ['up', r]);
    const after = await cluster.statusJson('alpha');
    // every touched 4 MiB extent (1024 blocks × 4 KiB) is out of sync now
    expect((after.outOfSyncKiB as number) - oosBefore).toBeGreaterThanOrEqual(extentsTouched.length * 4096);
    expect(after.disk).toBe('UpToDate');
    const data = cluster.readDisk('alpha', 3 * 4 * 1024 * 1024 + 8192, block.length);
    expect(data.equals(block)).toBe(true);
  });
});

describe('signals and generation UUIDs', () => {
  it('SIGTERM takes the resource down like `udrbdadm down` (clean meta-data, no process, no socket)', async () => {
    await cluster.admOk('alpha', ['attach', cluster.resource]);
    await cluster.admOk('alpha', ['primary', '--force', cluster.resource]);
    const pid = cluster.pid('alpha')!;
    process.kill(pid, 'SIGTERM');
    await cluster.waitGone('alpha');
    expect(fs.existsSync(cluster.paths('alpha').socketPath)).toBe(false);
    expect(fs.existsSync(cluster.paths('alpha').lockPath)).toBe(false);
    const dump = drbdmeta(cluster.disks.alpha, 'dump-md');
    expect(dump.stderr).not.toContain('unclean');
    expect(cluster.logText('alpha')).toContain('role( Primary -> Secondary )');
  });

  it('new-current-uuid (StandAlone) starts a new data generation; refused with "Device is connected" when connected', async () => {
    await cluster.admOk('alpha', ['attach', cluster.resource]);
    await cluster.admOk('alpha', ['primary', '--force', cluster.resource]);
    const before = (await cluster.statusJson('alpha')).uuids as Record<string, string>;
    await cluster.admOk('alpha', ['new-current-uuid', cluster.resource]);
    const after = (await cluster.statusJson('alpha')).uuids as Record<string, string>;
    expect(after.current).not.toBe(before.current);
    expect(after.bitmap).toBe(before.current);
    // bit 0 of the current UUID is set while Primary
    expect(BigInt(`0x${after.current}`) & 1n).toBe(1n);
    await cluster.admOk('alpha', ['down', cluster.resource]);
    await cluster.admOk('alpha', ['up', cluster.resource]);
    await cluster.admOk('beta', ['up', cluster.resource]);
    await cluster.waitState('alpha', 'cstate', 'Connected');
    const r = await cluster.adm('alpha', ['new-current-uuid', cluster.resource]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('10: Failure: (151) Device is connected');
  });
});
