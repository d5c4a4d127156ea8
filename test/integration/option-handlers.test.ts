/**
 * The two handlers issue 14 implements, run exactly when DRBD 8.4 runs them,
 * with DRBD's environment (DRBD_RESOURCE, DRBD_MINOR, DRBD_VOLUME, DRBD_PEER,
 * DRBD_CONF, ...):
 *  - out-of-sync: when an online verify ends with out-of-sync blocks, on both
 *    nodes (drbd_resync_finished on VerifyS and VerifyT); not after a clean verify.
 *  - pri-on-incon-degr: when a node becomes a Primary with neither its own nor
 *    the peer's disk UpToDate (after_state_ch) — here a Primary SyncTarget
 *    losing its peer; not at the promotion itself, not on the peer.
 * Each handler writes its environment to a file named after DRBD_PEER (the
 * node that ran it is the other one) and counts its runs.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, type NodeName } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
let cluster: Cluster | undefined;
let handlerDir: string | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
  if (handlerDir) fs.rmSync(handlerDir, { recursive: true, force: true });
  handlerDir = undefined;
});

function makeHandlerDir(): string {
  handlerDir = fs.mkdtempSync('/tmp/udrbd-ophandlers-');
  return handlerDir;
}

/** A handler command: the env of each run into DIR/NAME-ranon-<node>.env, one line per run into .count. */
function recorder(dir: string, name: string): string {
  // DRBD_PEER is the other node, so the file is named after the node that ran it.
  const ranOn = '$( [ $DRBD_PEER = alpha ] && echo beta || echo alpha )';
  return `n=${ranOn}; env | sort > ${dir}/${name}-$n.env; echo run >> ${dir}/${name}-$n.count`;
}

function runs(dir: string, name: string, node: NodeName): number {
  try {
    return fs.readFileSync(path.join(dir, `${name}-${node}.count`), 'utf8').split('\n').filter((l) => l === 'run').length;
  } catch {
    return 0;
  }
}

function envOf(dir: string, name: string, node: NodeName): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of fs.readFileSync(path.join(dir, `${name}-${node}.env`), 'utf8').split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) env[line.slice(0, at)] = line.slice(at + 1);
  }
  return env;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('out-of-sync handler', () => {
  it('runs on both nodes when a verify ends having found out-of-sync blocks, not after a clean verify', async () => {
    const dir = makeHandlerDir();
    cluster = new Cluster({ resource: 'opoos', port: 7928, diskSizeBytes: 32 * MiB, net: ['verify-alg crc32c;'], handlers: { 'out-of-sync': recorder(dir, 'oos') } });
    const c = cluster;
    await c.upSynced();

    await c.admOk('alpha', ['verify', c.resource]);
    await c.waitFor('clean verify done', () => c.logText('alpha').includes('Online verify done'), 30_000);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.waitState('beta', 'cstate', 'Connected');
    await sleep(1_000);
    expect([runs(dir, 'oos', 'alpha'), runs(dir, 'oos', 'beta')]).toEqual([0, 0]);

    const fd = fs.openSync(c.disks.beta, 'r+');
    for (const block of [3, 4, 1000]) fs.writeSync(fd, crypto.randomBytes(4096), 0, 4096, block * 4096);
    fs.closeSync(fd);
    await c.admOk('alpha', ['verify', c.resource]);
    await c.waitFor('verify found the blocks', () => c.logText('alpha').includes('Online verify found 3 4k block out of sync!'), 30_000);
    await c.waitState('beta', 'cstate', 'Connected');
    await c.waitFor('out-of-sync ran on both nodes', () => runs(dir, 'oos', 'alpha') === 1 && runs(dir, 'oos', 'beta') === 1, 10_000);
    await sleep(1_000);
    expect([runs(dir, 'oos', 'alpha'), runs(dir, 'oos', 'beta')]).toEqual([1, 1]);
    for (const [node, minor, peer] of [['alpha', '10', 'beta'], ['beta', '11', 'alpha']] as const) {
      const env = envOf(dir, 'oos', node);
      expect(env.DRBD_RESOURCE).toBe('opoos');
      expect(env.DRBD_MINOR).toBe(minor);
      expect(env.DRBD_VOLUME).toBe('0');
      expect(env.DRBD_PEER).toBe(peer);
      expect(env.DRBD_CONF).toBe(c.configPath);
      expect(env.DRBD_LL_DISK).toBe(c.disks[node]);
    }
    expect(c.logText('alpha')).toContain('helper command: ');
    expect(c.logText('alpha')).toMatch(/helper command: .* out-of-sync minor-10 exit code 0/);
  });
});

describe('pri-on-incon-degr handler', () => {
  it('runs once on a Primary SyncTarget that loses its peer, not at its promotion and not on the peer', async () => {
    const dir = makeHandlerDir();
    cluster = new Cluster({
      resource: 'oppri',
      port: 7927,
      diskSizeBytes: 64 * MiB,
      disk: ['resync-rate 1M;', 'c-plan-ahead 0;'],
      handlers: { 'pri-on-incon-degr': recorder(dir, 'pri') },
    });
    const c = cluster;
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    // a fresh pair: skip the initial sync, both UpToDate
    await c.admOk('beta', ['new-current-uuid', '--clear-bitmap', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate');
    // alpha becomes SyncTarget of a full sync at 1 MiB/s (about a minute for 64 MiB)
    await c.admOk('alpha', ['invalidate', c.resource]);
    await c.waitState('alpha', 'cstate', 'SyncTarget');
    await c.admOk('alpha', ['primary', c.resource]);
    expect(await c.query('alpha', 'role')).toBe('Primary/Secondary');
    expect(await c.query('alpha', 'dstate')).toBe('Inconsistent/UpToDate');
    await sleep(1_500);
    expect([runs(dir, 'pri', 'alpha'), runs(dir, 'pri', 'beta')]).toEqual([0, 0]);

    c.kill9('beta');
    await c.waitGone('beta');
    await c.waitFor('pri-on-incon-degr ran on alpha', () => runs(dir, 'pri', 'alpha') === 1, 15_000);
    expect(await c.query('alpha', 'dstate')).toBe('Inconsistent/DUnknown');
    await sleep(1_500);
    expect([runs(dir, 'pri', 'alpha'), runs(dir, 'pri', 'beta')]).toEqual([1, 0]);
    const env = envOf(dir, 'pri', 'alpha');
    expect(env.DRBD_RESOURCE).toBe('oppri');
    expect(env.DRBD_MINOR).toBe('10');
    expect(env.DRBD_VOLUME).toBe('0');
    expect(env.DRBD_PEER).toBe('beta');
    expect(env.DRBD_CONF).toBe(c.configPath);
  });
});
