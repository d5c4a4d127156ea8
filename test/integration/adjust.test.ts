/**
 * `udrbdadm adjust` on a live pair (issue 14): editing the config file and
 * running adjust on both nodes changes resync-rate and protocol online —
 * status shows the new values, the connection stays Connected as DRBD 8.4
 * leaves it after net-options / disk-options (no reconnect, same processes),
 * and writes keep replicating under the new protocol. A bad change is
 * refused (exit 10) with the running resource untouched; the peer adopts a
 * new protocol and resync parameters at once (P_PROTOCOL_UPDATE, P_SYNC_PARAM); `-d adjust` prints
 * the plan and changes nothing; a changed address disconnects and connects
 * on the new one; adjust connects a StandAlone resource and brings up one
 * that is down; `adjust all`. The whole `-d` plan of a resource that is down
 * is checked line for line against drbdadm-84's own dry run.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, type NodeName } from '../helpers/cluster.js';

const DRBDADM_84 = '/lib/drbd/drbdadm-84';
let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

function editConfig(c: Cluster, edit: (text: string) => string): void {
  const text = fs.readFileSync(c.configPath, 'utf8');
  const edited = edit(text);
  expect(edited).not.toBe(text);
  fs.writeFileSync(c.configPath, edited);
}

/** What must not move when an adjust is refused or only previewed (read over the control socket: the config may be broken). */
async function snapshot(c: Cluster, node: NodeName): Promise<Record<string, unknown>> {
  const reply = await (await c.client(node)).request('status', { json: true });
  expect(reply.ok).toBe(true);
  const s = JSON.parse(reply.stdout) as Record<string, unknown>;
  return { pid: s.pid, role: s.role, cstate: s.cstate, disk: s.disk, peerDisk: s.peerDisk, protocol: s.protocol, resyncRateKiBps: s.resyncRateKiBps };
}

function stateLines(c: Cluster, node: NodeName): string[] {
  return c.logText(node).split('\n').filter((l) => l.includes('conn( '));
}

describe('adjust on a live connected pair', () => {
  it('changes resync-rate and protocol online on both nodes: status shows them, the link stays Connected, writes replicate', async () => {
    cluster = new Cluster({ resource: 'aj1', port: 8021, diskSizeBytes: 16 * 1024 * 1024, disk: ['resync-rate 10M;', 'c-plan-ahead 0;'] });
    const c = cluster;
    await c.upSynced();
    const before = { alpha: await snapshot(c, 'alpha'), beta: await snapshot(c, 'beta') };
    expect(before.alpha).toMatchObject({ protocol: 'C', resyncRateKiBps: 10240, cstate: 'Connected', role: 'Primary' });
    expect(await c.admOk('alpha', ['-v', 'status', c.resource])).toContain('peer role:Secondary protocol:C');

    // nothing changed yet: adjust has nothing to do
    expect(await c.admOk('alpha', ['-d', 'adjust', c.resource])).toBe('');

    editConfig(c, (t) => t.replace('protocol C;', 'protocol B;').replace('resync-rate 10M;', 'resync-rate 20M;'));
    const plan = await c.admOk('alpha', ['-d', 'adjust', c.resource]);
    expect(plan).toBe(
      'drbdsetup-84 disk-options 10 --set-defaults --c-plan-ahead=0 --resync-rate=20M --c-min-rate=0\n' +
        'drbdsetup-84 net-options ipv4:127.0.0.1:8021 ipv4:127.0.0.2:8021 --set-defaults --protocol=B --connect-int=1 --ping-int=2 --ping-timeout=10\n',
    );
    // -d changed nothing
    expect(await snapshot(c, 'alpha')).toEqual(before.alpha);

    const linkChangesBefore = { alpha: stateLines(c, 'alpha').length, beta: stateLines(c, 'beta').length };
    expect(await c.admOk('alpha', ['adjust', c.resource])).toBe('');
    // DRBD 8.4 sends the new protocol (P_PROTOCOL_UPDATE) and resync parameters (P_SYNC_PARAM) to the
    // peer, which adopts them at once: adjust on the peer then finds nothing left to do
    await c.waitFor('beta adopted protocol B', async () => (await snapshot(c, 'beta')).protocol === 'B', 5_000);
    await c.waitFor('beta adopted resync-rate 20M', async () => (await snapshot(c, 'beta')).resyncRateKiBps === 20480, 5_000);
    expect(await snapshot(c, 'beta')).toEqual({ ...before.beta, protocol: 'B', resyncRateKiBps: 20480 });
    expect(c.logText('beta')).toContain('peer changed the resync parameters: resync-rate 20480K');
    expect(await c.admOk('beta', ['-d', 'adjust', c.resource])).toBe('');
    expect(await c.admOk('beta', ['adjust', c.resource])).toBe('');
    for (const node of ['alpha', 'beta'] as const) {
      const after = await snapshot(c, node);
      expect(after).toEqual({ ...before[node], protocol: 'B', resyncRateKiBps: 20480 });
      expect((await c.statusJson(node)).resyncRateLimitKiBps).toBe(20480);
      // DRBD applies net-options and disk-options to the live connection: no state change at all
      expect(stateLines(c, node).length).toBe(linkChangesBefore[node]);
    }
    expect(await c.admOk('alpha', ['-v', 'status', c.resource])).toContain('peer role:Secondary protocol:B');
    expect(await c.admOk('alpha', ['-d', 'adjust', c.resource])).toBe('');

    // the data path obeys protocol B: writes complete and reach the peer's disk
    const data = crypto.randomBytes(64 * 1024);
    for (let i = 0; i < 8; i++) await c.write('alpha', i * data.length, data);
    await c.waitFor('beta has the writes', () => c.readDisk('beta', 7 * data.length, data.length).equals(data), 10_000);
    expect(c.logText('alpha')).toContain('adjust: drbdsetup-84 net-options');
  });

  it('refuses a bad change with the running resource untouched; -d shows the plan; adjust all', async () => {
    cluster = new Cluster({ resource: 'aj2', port: 8023 });
    const c = cluster;
    await c.upSynced();
    const before = await snapshot(c, 'alpha');

    // a changed backing disk on a running resource: refused, exit 10, nothing applied (not even the valid part)
    editConfig(c, (t) => t.replace('protocol C;', 'protocol A;').replace(`disk ${c.disks.alpha};`, `disk ${c.disks.alpha}.other;`));
    for (const args of [['adjust', c.resource], ['-d', 'adjust', c.resource]]) {
      const r = await c.adm('alpha', args);
      expect(r.exitCode).toBe(10);
      expect(r.stderr).toContain(`'disk' cannot change from ${c.disks.alpha} to ${c.disks.alpha}.other on a running resource`);
      expect(r.stderr).toContain("down the resource first ('udrbdadm down aj2')");
      expect(r.stdout).toBe('');
      expect(await snapshot(c, 'alpha')).toEqual(before);
    }
    // an out-of-range value: drbdadm's parse error, exit 10, nothing applied
    editConfig(c, (t) => t.replace(`disk ${c.disks.alpha}.other;`, `disk ${c.disks.alpha};`).replace('protocol A;', 'protocol A; max-buffers 8;'));
    const bad = await c.adm('alpha', ['adjust', c.resource]);
    expect(bad.exitCode).toBe(10);
    expect(bad.stderr).toContain('out of range');
    expect(await snapshot(c, 'alpha')).toEqual(before);

    // a valid change, previewed for all resources, then applied with `adjust all`
    editConfig(c, (t) => t.replace(' max-buffers 8;', ''));
    expect(await c.admOk('alpha', ['-d', 'adjust', 'all'])).toContain('drbdsetup-84 net-options ipv4:127.0.0.1:8023 ipv4:127.0.0.2:8023 --set-defaults --protocol=A');
    expect(await snapshot(c, 'alpha')).toEqual(before);
    await c.admOk('alpha', ['adjust', 'all']);
    await c.admOk('beta', ['adjust', 'all']);
    expect(await snapshot(c, 'alpha')).toEqual({ ...before, protocol: 'A' });
    expect((await c.statusJson('beta')).protocol).toBe('A');
    const data = crypto.randomBytes(4096);
    await c.write('alpha', 0, data);
    await c.waitFor('beta has the protocol A write', () => c.readDisk('beta', 0, 4096).equals(data), 10_000);
  });
});

describe('adjust reconnects and brings up as drbdadm does', () => {
  it('a changed port disconnects and connects on the new one; a StandAlone resource is connected; a down one is brought up', async () => {
    cluster = new Cluster({ resource: 'aj3', port: 8025 });
    const c = cluster;
    await c.upSynced();
    const pid = c.pid('alpha');
    editConfig(c, (t) => t.replaceAll(':8025;', ':8026;'));
    expect(await c.admOk('alpha', ['-d', 'adjust', c.resource])).toBe(
      'drbdsetup-84 disconnect ipv4:127.0.0.1:8025 ipv4:127.0.0.2:8025\n' +
        'drbdsetup-84 connect aj3 ipv4:127.0.0.1:8026 ipv4:127.0.0.2:8026 --protocol=C --connect-int=1 --ping-int=2 --ping-timeout=10\n',
    );
    await c.admOk('alpha', ['adjust', c.resource]);
    await c.admOk('beta', ['adjust', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate');
    expect(c.pid('alpha')).toBe(pid);
    expect(c.logText('alpha')).toContain('conn( Connected -> Disconnecting )');
    expect(c.logText('alpha')).toContain('adjust: drbdsetup-84 connect aj3 ipv4:127.0.0.1:8026 ipv4:127.0.0.2:8026');

    // StandAlone after `disconnect`: adjust connects (drbdadm: no net config running → connect)
    await c.admOk('beta', ['disconnect', c.resource]);
    await c.waitState('beta', 'cstate', 'StandAlone');
    expect(await c.admOk('beta', ['-d', 'adjust', c.resource])).toBe(
      'drbdsetup-84 connect aj3 ipv4:127.0.0.2:8026 ipv4:127.0.0.1:8026 --protocol=C --connect-int=1 --ping-int=2 --ping-timeout=10\n',
    );
    await c.admOk('beta', ['adjust', c.resource]);
    await c.waitState('beta', 'cstate', 'Connected');

    // down: adjust runs the `up` sequence
    await c.admOk('beta', ['down', c.resource]);
    expect(await c.query('beta', 'cstate')).toBe('Unconfigured');
    const upPlan = await c.admOk('beta', ['-d', 'adjust', c.resource]);
    expect(upPlan.split('\n')[0]).toBe('drbdsetup-84 new-resource aj3');
    expect(await c.query('beta', 'cstate')).toBe('Unconfigured');
    await c.admOk('beta', ['adjust', c.resource]);
    await c.waitState('beta', 'cstate', 'Connected');
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate');
  });

  it('-d adjust of a resource that is down prints exactly what drbdadm-84 -d adjust prints', async () => {
    if (!fs.existsSync(DRBDADM_84)) throw new Error(`test prerequisite missing: drbdadm-84 from drbd-utils at ${DRBDADM_84}`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-aj4-'));
    try {
      const host = os.hostname();
      const conf = path.join(dir, 'aj4.conf');
      fs.writeFileSync(
        conf,
        [
          'common { net { max-buffers 4000; } disk { c-max-rate 80M; } }',
          'resource aj4 {',
          '  net { protocol B; ping-int 5; after-sb-0pri discard-zero-changes; shared-secret "s3 cr"; cram-hmac-alg sha1; ko-count 4; }',
          '  disk { resync-rate 10M; c-plan-ahead 0; al-extents 257; size 100M; }',
          `  on ${host} { device minor 7; disk ${dir}/a.img; meta-disk internal; address 127.0.0.1:8027; }`,
          `  on aj4peer { device minor 7; disk ${dir}/b.img; meta-disk internal; address 127.0.0.2:8027; }`,
          '}',
          '',
        ].join('\n'),
      );
      const env = { ...process.env, UDRBD_RUN_DIR: path.join(dir, 'run'), UDRBD_LOG_DIR: path.join(dir, 'log') };
      const ours = spawnSync(process.execPath, [path.resolve('dist/cli/udrbdadm.js'), '-c', conf, '--node', host, '-d', 'adjust', 'aj4'], { encoding: 'utf8', env });
      // invoked by name (as /usr/sbin/drbdadm does) it prints the helpers as `drbdsetup-84`, not by full path
      const theirs = spawnSync('drbdadm-84', ['-c', conf, '-d', 'adjust', 'aj4'], { encoding: 'utf8', env: { ...process.env, PATH: `${path.dirname(DRBDADM_84)}:${process.env.PATH ?? ''}` } });
      expect(theirs.status).toBe(0);
      expect(ours.stderr).toBe('');
      expect(ours.status).toBe(0);
      expect(ours.stdout).toBe(theirs.stdout);
      expect(ours.stdout).toContain('--shared-secret=s3\\ cr');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
