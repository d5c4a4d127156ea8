/**
 * Issue 19, a resource whose one volume is numbered other than 0
 * (`volume 5 { device; disk; meta-disk; }` in both `on` sections), on a real
 * pair: it runs as DRBD 8.4 runs it — the frame header carries volume 5
 * (peer/wire-layout, DRBD's p_header100), so both nodes connect and sync,
 * writes replicate, events2 keys the device and peer-device with
 * `volume:5`, and `-d up` prints `new-minor RES MINOR 5` as drbdadm-84 does.
 * A peer whose volume is numbered differently shares no volume with this
 * one: its configuration packets are skipped with DRBD's
 * config_unknown_volume line and the two never become Connected.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { Cluster } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
const DRBDADM_84 = '/usr/lib/drbd/drbdadm-84';

let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

describe('a single volume numbered 5', () => {
  it('connects, syncs and replicates as volume 5; events2 and -d up name volume 5', async () => {
    cluster = new Cluster({ resource: 'vn5', port: 9953, minorBase: 1704, diskSizeBytes: 16 * MiB, volume: 5 });
    const c = cluster;
    expect(fs.readFileSync(c.configPath, 'utf8')).toContain('volume 5 {');
    const plan = await c.admOk('alpha', ['-d', 'up', c.resource]);
    expect(plan).toContain(`drbdsetup-84 new-minor ${c.resource} 1704 5`);
    // drbdadm-84 plans the same new-minor line for this configuration
    expect(fs.existsSync(DRBDADM_84), `${DRBDADM_84} (drbd-utils) is needed`).toBe(true);
    const theirs = await execa(DRBDADM_84, ['-c', c.configPath, '-d', 'up', c.resource], { reject: false, env: { ...process.env, __DRBD_NODE__: 'alpha' } });
    expect(theirs.stdout, theirs.stderr).toContain(`drbdsetup-84 new-minor ${c.resource} 1704 5`);

    await c.upSynced();
    const data = crypto.randomBytes(256 * 1024);
    await c.write('alpha', 4 * MiB, data);
    expect(c.readDisk('beta', 4 * MiB, data.length).equals(data)).toBe(true);
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));

    const events = await c.admOk('alpha', ['events', '--now', c.resource]);
    expect(events).toMatch(new RegExp(`exists device name:${c.resource} volume:5 minor:1704 `));
    expect(events).toMatch(new RegExp(`exists peer-device name:${c.resource} peer-node-id:0 conn-name:peer volume:5 replication:Established`));
    for (const node of ['alpha', 'beta'] as const) expect(c.logText(node)).not.toContain('which is not configured locally');
  }, 120_000);

  it('against a peer whose volume is numbered 6: its configuration packets are skipped, the pair never connects', async () => {
    cluster = new Cluster({ resource: 'vn6', port: 9955, minorBase: 1706, diskSizeBytes: 16 * MiB, volume: 5, proxy: true });
    const c = cluster;
    const betaConf = fs.readFileSync(c.configPaths.beta, 'utf8');
    fs.writeFileSync(c.configPaths.beta, betaConf.replaceAll('volume 5 {', 'volume 6 {'));
    await c.startProxies();
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitFor('alpha skipped a packet for volume 6', () => /packet received for volume 6, which is not configured locally/.test(c.logText('alpha')), 30_000);
    await new Promise((r) => setTimeout(r, 3_000)); // a few connect attempts
    expect(c.logText('beta')).toMatch(/packet received for volume 5, which is not configured locally/);
    for (const node of ['alpha', 'beta'] as const) expect(await c.query(node, 'cstate'), node).not.toBe('Connected');
  }, 120_000);
});
