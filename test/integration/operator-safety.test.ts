/**
 * Operator-safety regressions of issue 14, each named after what broke, on
 * real resource processes (file-backed disks, NBD-socket frontend):
 *   -d acted for real; a down refused with (-12) left the process stuck;
 *   outdate on a connected Secondary exited 0; up with an address not on
 *   this host or a port in use exited 0 and retried forever; a killed
 *   resource process read as "not up"; non-root got raw EACCES.
 * Ports 7901-7919, resources sf*.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, UDRBDADM, type NodeName } from '../helpers/cluster.js';
import { isProcessAlive } from '../../src/control/paths.js';

let cluster: Cluster | undefined;
const cleanups: Array<() => void | Promise<void>> = [];

afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
  await cluster?.destroy();
  cluster = undefined;
});

function fileHash(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Log lines at info level and above (debug lines of pings and requests come and go). */
function infoLines(c: Cluster, node: NodeName): string[] {
  return c.logText(node).split('\n').filter((l) => {
    try {
      return (JSON.parse(l) as { level: number }).level >= 30;
    } catch {
      return false;
    }
  });
}

interface Observed {
  role: string;
  cstate: string;
  dstate: string;
  pid: number | undefined;
  log: string[];
  disk: string;
}

async function observe(c: Cluster, node: NodeName): Promise<Observed> {
  return {
    role: await c.query(node, 'role'),
    cstate: await c.query(node, 'cstate'),
    dstate: await c.query(node, 'dstate'),
    pid: c.pid(node),
    log: infoLines(c, node),
    disk: fileHash(c.disks[node]),
  };
}

describe('-d / --dry-run (regression: udrbdadm -d down took a live Primary down)', () => {
  it('prints the drbdsetup-84/drbdmeta calls for every verb and changes nothing on a live Primary', async () => {
    cluster = new Cluster({ resource: 'sfdry', port: 7901 });
    const c = cluster;
    await c.upSynced();
    const r = c.resource;
    const disk = c.disks.alpha;
    const L = `ipv4:127.0.0.1:${c.port}`;
    const P = `ipv4:127.0.0.2:${c.port}`;
    const netOpts = '--protocol=C --connect-int=1 --ping-int=2 --ping-timeout=10';
    const expected: Array<[string[], string[]]> = [
      [['down', r], [`drbdsetup-84 down ${r}`]],
      [['disconnect', r], [`drbdsetup-84 disconnect ${L} ${P}`]],
      [['connect', r], [`drbdsetup-84 connect ${r} ${L} ${P} ${netOpts}`]],
      [['--', '--discard-my-data', 'connect', r], [`drbdsetup-84 connect ${r} ${L} ${P} ${netOpts} --discard-my-data`]],
      [['pause-sync', r], ['drbdsetup-84 pause-sync 10']],
      [['secondary', r], ['drbdsetup-84 secondary 10']],
      [['detach', r], ['drbdsetup-84 detach 10']],
      [['invalidate', r], ['drbdsetup-84 invalidate 10', `drbdmeta 10 v08 ${disk} internal invalidate`]],
      [['outdate', r], ['drbdsetup-84 outdate 10', `drbdmeta 10 v08 ${disk} internal outdate`]],
      [['create-md', r], [`drbdmeta 10 v08 ${disk} internal create-md`]],
      [['create-md', '--force', r], [`drbdmeta 10 v08 ${disk} internal create-md --force`]],
      [['wipe-md', r], [`drbdmeta 10 v08 ${disk} internal wipe-md`]],
      [['apply-al', r], [`drbdmeta 10 v08 ${disk} internal apply-al`]],
      [['primary', '--force', r], ['drbdsetup-84 primary 10 --force']],
      [['new-current-uuid', '--clear-bitmap', r], ['drbdsetup-84 new-current-uuid 10 --clear-bitmap']],
      [['up', r], [
        `drbdsetup-84 new-resource ${r}`,
        `drbdsetup-84 new-minor ${r} 10 0`,
        `drbdmeta 10 v08 ${disk} internal apply-al`,
        // the Cluster helper's resync lines (TEST_RESYNC_DISK_LINES), in drbdadm's order
        `drbdsetup-84 attach 10 ${disk} ${disk} internal --c-min-rate=0 --resync-rate=100M --c-plan-ahead=0`,
        `drbdsetup-84 connect ${r} ${L} ${P} ${netOpts}`,
      ]],
    ];
    const before = { alpha: await observe(c, 'alpha'), beta: await observe(c, 'beta') };
    expect(before.alpha.role).toBe('Primary/Secondary');
    for (const [args, lines] of expected) {
      for (const flag of args[0] === 'down' ? ['-d', '--dry-run'] : ['-d']) {
        const res = await c.adm('alpha', [flag, ...args]);
        expect({ args, flag, exitCode: res.exitCode, stdout: res.stdout, stderr: res.stderr }).toEqual({ args, flag, exitCode: 0, stdout: `${lines.join('\n')}\n`, stderr: '' });
      }
    }
    const after = { alpha: await observe(c, 'alpha'), beta: await observe(c, 'beta') };
    expect(after).toEqual(before);
    expect(isProcessAlive(after.alpha.pid!)).toBe(true);
  }, 240_000);

  it('prints the same calls and starts nothing when no resource process is running', async () => {
    cluster = new Cluster({ resource: 'sfdry2', port: 7902 });
    const c = cluster;
    const disk = c.disks.beta;
    const diskBefore = fileHash(disk);
    const up = await c.adm('beta', ['-d', 'up', c.resource]);
    expect(up.exitCode).toBe(0);
    expect(up.stdout.split('\n')).toContain(`drbdmeta 11 v08 ${disk} internal apply-al`);
    expect(up.stdout).toContain(`drbdsetup-84 connect sfdry2 ipv4:127.0.0.2:7902 ipv4:127.0.0.1:7902`);
    for (const [args, out] of [
      [['-d', 'down', c.resource], 'drbdsetup-84 down sfdry2\n'],
      [['-d', 'primary', '--force', c.resource], 'drbdsetup-84 primary 11 --force\n'],
      [['-d', 'create-md', c.resource], `drbdmeta 11 v08 ${disk} internal create-md\n`],
      [['-d', 'wipe-md', c.resource], `drbdmeta 11 v08 ${disk} internal wipe-md\n`],
      [['-d', 'dstate', c.resource], `drbdsetup-84 dstate 11\ndrbdmeta 11 v08 ${disk} internal dstate\n`],
    ] as const) {
      const res = await c.adm('beta', [...args]);
      expect({ args, exitCode: res.exitCode, stdout: res.stdout }).toEqual({ args, exitCode: 0, stdout: out });
    }
    expect(c.pid('beta')).toBeUndefined();
    expect(fs.existsSync(c.paths('beta').socketPath)).toBe(false);
    expect(c.logText('beta')).toBe('');
    expect(fileHash(disk)).toBe(diskBefore);
    expect(await c.query('beta', 'cstate')).toBe('Unconfigured');
  });

  it('-d dump still folds common in (it acts on nothing) and -d events prints the call without subscribing', async () => {
    cluster = new Cluster({ resource: 'sfdry3', port: 7903 });
    const c = cluster;
    const dump = await c.adm('alpha', ['-d', 'dump', c.resource]);
    expect(dump.exitCode).toBe(0);
    expect(dump.stdout).toContain('resource sfdry3 {');
    const ev = await c.adm('alpha', ['-d', 'events', c.resource]);
    expect(ev).toEqual({ exitCode: 0, stdout: 'drbdsetup-84 events 10\n', stderr: '' });
  });
});

function nbdSocketPath(c: Cluster, node: NodeName): string {
  return path.join(c.paths(node).runDir, `${c.resource}.${node}.nbd`);
}

/** An NBD client connection that keeps the Primary's device open (the raw socket; handshake times out only after 30 s). */
async function holdOpen(c: Cluster, node: NodeName): Promise<net.Socket> {
  const socket = net.createConnection(nbdSocketPath(c, node));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  socket.on('error', () => undefined);
  cleanups.push(() => void socket.destroy());
  return socket;
}

async function lonePrimary(c: Cluster): Promise<number> {
  await c.admOk('alpha', ['up', c.resource]);
  await c.admOk('alpha', ['primary', '--force', c.resource]);
  await c.waitState('alpha', 'role', 'Primary/Unknown');
  await c.waitFor('the NBD socket exists', () => fs.existsSync(nbdSocketPath(c, 'alpha')), 10_000);
  return c.pid('alpha')!;
}

describe('down refused while held open (regression: the process stayed stopping; later down/SIGTERM did nothing)', () => {
  it('down and SIGTERM are refused with (-12) and leave the Primary as it was; after release down succeeds and the process exits', async () => {
    cluster = new Cluster({ resource: 'sfheld', port: 7904 });
    const c = cluster;
    const pid = await lonePrimary(c);
    const holder = await holdOpen(c, 'alpha');
    const refused = await c.adm('alpha', ['down', c.resource]);
    expect(refused.exitCode).toBe(11);
    expect(refused.stderr).toContain('10: State change failed: (-12) Device is held open by someone');
    expect(refused.stderr).toContain("Command 'drbdsetup-84 down 10' terminated with exit code 11");
    expect(await c.query('alpha', 'role')).toBe('Primary/Unknown');

    process.kill(pid, 'SIGTERM');
    await c.waitFor('SIGTERM refusal logged', () => c.logText('alpha').includes('down on SIGTERM refused: Device is held open by someone'), 10_000);
    expect(isProcessAlive(pid)).toBe(true);
    expect(await c.query('alpha', 'role')).toBe('Primary/Unknown');
    expect(await c.query('alpha', 'dstate')).toBe('UpToDate/DUnknown');

    // Tries again (it used to answer OK and do nothing from here on).
    expect((await c.adm('alpha', ['down', c.resource])).exitCode).toBe(11);
    expect(isProcessAlive(pid)).toBe(true);

    holder.destroy();
    await c.waitFor('the NBD client is gone', async () => (await c.adm('alpha', ['down', c.resource])).exitCode === 0, 10_000);
    await c.waitGone('alpha');
    expect(c.logText('alpha')).toContain('resource down');
    expect(c.pid('alpha')).toBeUndefined();
  });

  it('after release a SIGTERM takes the process down', async () => {
    cluster = new Cluster({ resource: 'sfheld2', port: 7905 });
    const c = cluster;
    const pid = await lonePrimary(c);
    const holder = await holdOpen(c, 'alpha');
    process.kill(pid, 'SIGTERM');
    await c.waitFor('SIGTERM refusal logged', () => c.logText('alpha').includes('down on SIGTERM refused'), 10_000);
    expect(isProcessAlive(pid)).toBe(true);
    holder.destroy();
    await new Promise((r) => setTimeout(r, 300));
    process.kill(pid, 'SIGTERM');
    await c.waitFor('process exited after the second SIGTERM', () => !isProcessAlive(pid), 10_000);
    expect(c.logText('alpha')).toContain('resource down');
  });
});

describe('outdate (regression: outdate on a connected Secondary exited 0 and did nothing)', () => {
  it('refuses (-6) while connected on both roles, (-2) on a disconnected Primary, and outdates a disconnected Secondary on disk', async () => {
    cluster = new Cluster({ resource: 'sfout', port: 7906 });
    const c = cluster;
    await c.upSynced();
    const secondary = await c.adm('beta', ['outdate', c.resource]);
    expect(secondary.exitCode).toBe(11);
    expect(secondary.stderr).toContain('11: State change failed: (-6) Refusing to be Outdated while Connected');
    expect(secondary.stderr).toContain("Command 'drbdsetup-84 outdate 11' terminated with exit code 11");
    const primary = await c.adm('alpha', ['outdate', c.resource]);
    expect(primary.exitCode).toBe(11);
    expect(primary.stderr).toContain('(-6) Refusing to be Outdated while Connected');
    expect(await c.query('beta', 'dstate')).toBe('UpToDate/UpToDate');
    expect(await c.query('alpha', 'dstate')).toBe('UpToDate/UpToDate');

    await c.admOk('alpha', ['disconnect', c.resource]);
    await c.waitState('beta', 'cstate', 'WFConnection');
    const lonePrimary = await c.adm('alpha', ['outdate', c.resource]);
    expect(lonePrimary.exitCode).toBe(17);
    expect(lonePrimary.stderr).toContain('10: State change failed: (-2) Need access to UpToDate data');
    expect(await c.query('alpha', 'dstate')).toBe('UpToDate/DUnknown');

    await c.admOk('beta', ['disconnect', c.resource]);
    await c.admOk('beta', ['outdate', c.resource]);
    expect(await c.query('beta', 'dstate')).toBe('Outdated/DUnknown');
    expect(c.logText('beta')).toContain('disk( UpToDate -> Outdated )');
    await c.admOk('beta', ['down', c.resource]);
    expect((await c.admOk('beta', ['dstate-offline', c.resource])).trim()).toBe('Outdated');
    const gi = spawnSync('/usr/sbin/drbdmeta', ['--force', '/dev/drbd9', 'v08', c.disks.beta, 'internal', 'get-gi'], { encoding: 'utf8' });
    // c:u:p:n:f:o:x — consistent, not was-up-to-date
    expect(gi.stdout.trim().split(':').slice(4, 6)).toEqual(['1', '0']);
  });
});

describe('up with an address it cannot listen on (regression: exit 0, retrying forever, error only in the log)', () => {
  it("a local address not on this host: 'IP 192.0.2.1 not found on this host.', exit 10, no process left", async () => {
    cluster = new Cluster({ resource: 'sfip', port: 7907 });
    const c = cluster;
    // Only printed in the config: binding fails before any packet leaves.
    fs.writeFileSync(c.configPath, fs.readFileSync(c.configPath, 'utf8').replace(`127.0.0.1:${c.port}`, `192.0.2.1:${c.port}`));
    const started = Date.now();
    const res = await c.adm('alpha', ['up', c.resource]);
    expect(res.exitCode).toBe(10);
    expect(res.stderr.trim()).toBe('IP 192.0.2.1 not found on this host.');
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(c.pid('alpha')).toBeUndefined();
    expect(fs.existsSync(c.paths('alpha').socketPath)).toBe(false);
    const ps = spawnSync('pgrep', ['-f', `--resource ${c.resource} `]);
    expect(ps.stdout.toString().trim()).toBe('');
    // The meta-data was closed clean: a second up attaches without an AL recovery and fails the same way.
    expect((await c.adm('alpha', ['up', c.resource])).exitCode).toBe(10);
  });

  it('a port already in use: names address:port and the holder, exit 10, no process left', async () => {
    cluster = new Cluster({ resource: 'sfport', port: 7908 });
    const c = cluster;
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen({ host: '127.0.0.1', port: c.port }, resolve));
    cleanups.push(() => new Promise<void>((resolve) => squatter.close(() => resolve())));
    const res = await c.adm('alpha', ['up', c.resource]);
    expect(res.exitCode).toBe(10);
    expect(res.stderr).toContain(`sfport: cannot listen on 127.0.0.1:${c.port}: the address is already in use by pid ${process.pid} (`);
    expect(res.stderr).toContain(c.configPath);
    expect(c.pid('alpha')).toBeUndefined();
    expect(spawnSync('pgrep', ['-f', `--resource ${c.resource} `]).stdout.toString().trim()).toBe('');
    // Once the port is free, up works.
    await new Promise<void>((resolve) => squatter.close(() => resolve()));
    cleanups.length = 0;
    await c.admOk('alpha', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'WFConnection');
  });
});

describe('connect on a running resource whose port was taken meanwhile', () => {
  it('answers exit 10 naming address:port and stays StandAlone instead of retrying in the background', async () => {
    cluster = new Cluster({ resource: 'sfconn', port: 7912 });
    const c = cluster;
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('alpha', ['disconnect', c.resource]);
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen({ host: '127.0.0.1', port: c.port }, resolve));
    cleanups.push(() => new Promise<void>((resolve) => squatter.close(() => resolve())));
    const res = await c.adm('alpha', ['connect', c.resource]);
    expect(res.exitCode).toBe(10);
    expect(res.stderr).toContain(`cannot listen on 127.0.0.1:${c.port}: the address is already in use by pid ${process.pid}`);
    expect(await c.query('alpha', 'cstate')).toBe('StandAlone');
    expect(c.logText('alpha')).toContain('conn( WFConnection -> Disconnecting )');
  });
});

describe('a killed resource process (regression: it read as "not up", role/cstate/dstate Unconfigured)', () => {
  it('role/cstate/status say it died (pid, log, what to run; exit 10), dstate falls back to the on-disk state, up recovers', async () => {
    cluster = new Cluster({ resource: 'sfdead', port: 7909 });
    const c = cluster;
    await c.upSynced();
    const pid = c.pid('beta')!;
    c.kill9('beta');
    await c.waitGone('beta');
    const log = c.logPath('beta');
    const died = `udrbd resource sfdead on node beta: the resource process (pid ${pid}) died without 'down'; its log is ${log}. Run 'udrbdadm up sfdead' to start it again (up applies the activity log).`;
    for (const verb of ['role', 'cstate']) {
      const res = await c.adm('beta', [verb, c.resource]);
      expect({ verb, exitCode: res.exitCode, stdout: res.stdout, stderr: res.stderr.trim() }).toEqual({ verb, exitCode: 10, stdout: '', stderr: died });
    }
    const dstate = await c.adm('beta', ['dstate', c.resource]);
    expect(dstate.exitCode).toBe(0);
    expect(dstate.stderr.trim()).toBe(died);
    // On disk: consistent and was-up-to-date (no peer-outdated flag): drbdmeta's 'Consistent'.
    expect(dstate.stdout).toBe('Consistent\n');
    const status = await c.adm('beta', ['status', c.resource]);
    expect(status.exitCode).toBe(10);
    expect(status.stdout).toContain(`sfdead: died (the resource process pid ${pid} is gone; log ${log}; run 'udrbdadm up sfdead')`);
    expect(status.stdout).not.toContain('not up');
    const json = await c.adm('beta', ['status', '--json', c.resource]);
    expect((JSON.parse(json.stdout) as unknown[])[0]).toEqual({ resource: 'sfdead', node: 'beta', cstate: 'Unconfigured', processDied: { pid, log } });
    const primary = await c.adm('beta', ['primary', c.resource]);
    expect(primary.exitCode).toBe(10);
    expect(primary.stderr).toContain(`(pid ${pid}) died`);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 30_000);
  });

  it('down after the crash reports it once, removes the stale files, and then the resource reads as not up', async () => {
    cluster = new Cluster({ resource: 'sfdead2', port: 7910 });
    const c = cluster;
    await c.admOk('alpha', ['up', c.resource]);
    const pid = c.pid('alpha')!;
    c.kill9('alpha');
    await c.waitGone('alpha');
    const down = await c.adm('alpha', ['down', c.resource]);
    expect(down.exitCode).toBe(0);
    expect(down.stderr).toContain(`the resource process (pid ${pid}) died`);
    expect(fs.existsSync(c.paths('alpha').pidPath)).toBe(false);
    expect(fs.existsSync(c.paths('alpha').socketPath)).toBe(false);
    expect(await c.query('alpha', 'role')).toBe('Unconfigured');
  });

  it('a stale socket without a pid file (crash before the pid file was written) also reads as died, exit 10', async () => {
    cluster = new Cluster({ resource: 'sfdead3', port: 7913 });
    const c = cluster;
    await c.admOk('alpha', ['up', c.resource]);
    c.kill9('alpha');
    await c.waitGone('alpha');
    fs.rmSync(c.paths('alpha').pidPath);
    expect(fs.existsSync(c.paths('alpha').socketPath)).toBe(true);
    const role = await c.adm('alpha', ['role', c.resource]);
    expect(role.exitCode).toBe(10);
    expect(role.stderr).toContain("udrbd resource sfdead3 on node alpha: the resource process died without 'down'");
    await c.admOk('alpha', ['up', c.resource]);
    expect(await c.query('alpha', 'cstate')).toBe('WFConnection');
  });
});

/** Runs the built udrbdadm as `nobody` (setpriv), with the cluster's env. */
function admAsNobody(c: Cluster, args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, UDRBDADM, '-c', c.configPath, '--node', 'alpha', ...args], {
      env: c.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ exitCode: code ?? -1, stdout, stderr }));
  });
}

describe('non-root (regression: raw EACCES/EPERM)', () => {
  it("verbs that touch /run/udrbd, disks or sockets say 'udrbdadm must run as root' (exit 20); dump, sh-*, --help and -d work", async () => {
    if (spawnSync('setpriv', ['--version']).status !== 0) throw new Error('test prerequisite missing: setpriv (util-linux)');
    cluster = new Cluster({ resource: 'sfroot', port: 7911 });
    const c = cluster;
    await c.admOk('alpha', ['up', c.resource]);
    // nobody must be able to read the config (mkdtemp makes the dir 0700); the run dir stays root-only.
    fs.chmodSync(c.dir, 0o755);
    fs.chmodSync(c.configPath, 0o644);
    for (const args of [['role', c.resource], ['status'], ['up', c.resource], ['down', c.resource], ['primary', c.resource], ['create-md', c.resource], ['get-gi', c.resource], ['dstate-offline', c.resource]]) {
      const res = await admAsNobody(c, args);
      expect({ args, exitCode: res.exitCode, stderr: res.stderr }).toEqual({ args, exitCode: 20, stderr: 'udrbdadm must run as root\n' });
    }
    expect((await admAsNobody(c, ['dump', c.resource])).stdout).toContain('resource sfroot {');
    expect(await admAsNobody(c, ['sh-dev', c.resource])).toEqual({ exitCode: 0, stdout: '/dev/drbd10\n', stderr: '' });
    expect(await admAsNobody(c, ['sh-resources'])).toEqual({ exitCode: 0, stdout: 'sfroot\n', stderr: '' });
    expect((await admAsNobody(c, ['--help'])).exitCode).toBe(0);
    expect(await admAsNobody(c, ['-d', 'down', c.resource])).toEqual({ exitCode: 0, stdout: 'drbdsetup-84 down sfroot\n', stderr: '' });
    // and the resource was left alone
    expect(await c.query('alpha', 'cstate')).toBe('WFConnection');
  });
});
