/**
 * The namespace-node harness itself (test/helpers/netns-node, pcmk-cluster):
 * two nodes with their own names, networks, /dev and /run, a veth between
 * them, Corosync + Pacemaker seeing both online, and nothing left after
 * destroy() — also when the previous run "crashed" and left its nodes
 * running. Root; needs corosync, pacemaker, crmsh (fails, not skips, without).
 * netns upk1/upk2, 169.254.61.1/.2.
 */
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import { execa } from 'execa';
import { NetnsPair, isAlive } from '../helpers/netns-node.js';
import { PcmkCluster } from '../helpers/pcmk-cluster.js';

const BASE = '/var/tmp/upk-harness';
let cluster: PcmkCluster | null = null;

async function netnsNames(): Promise<string[]> {
  const r = await execa('ip', ['netns', 'list'], { timeout: 30_000 });
  return r.stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => /^upk\d+$/.test(n));
}

afterAll(async () => {
  const c = cluster;
  cluster = null;
  if (c !== null) {
    const problems = await c.destroy();
    fs.rmSync(BASE, { recursive: true, force: true });
    if (problems.length > 0) throw new Error(`teardown problems: ${problems.join('; ')}`);
  }
});

describe('two Pacemaker nodes in namespaces on one machine', () => {
  it('boots two named nodes linked by a veth, both online in one Corosync membership', async () => {
    cluster = new PcmkCluster({ prefix: 'upk', subnet: '169.254.61', names: ['compute1', 'compute2'], baseDir: BASE });
    const c = cluster;
    await c.start();
    const [a, b] = c.nodes;
    expect((await a.execOk('uname', ['-n'])).trim()).toBe('compute1');
    expect((await b.execOk('uname', ['-n'])).trim()).toBe('compute2');
    // Own network: each sees only its own address; the peer answers over the veth.
    expect(await a.execOk('ip', ['-o', '-4', 'addr', 'show', 'dev', a.veth])).toContain('169.254.61.1/24');
    await a.execOk('ping', ['-c', '1', '-W', '2', b.address]);
    // Own PID namespace: PID 1 is the node's holder.
    expect((await a.execOk('cat', ['/proc/1/cmdline'])).replace(/\0/g, ' ')).toContain('while :; do sleep 1; done');
    // Private /dev and /run.
    await a.execOk('sh', ['-c', 'ln -s /dev/null /dev/upk-probe && : > /run/upk-probe']);
    expect((await b.exec('test', ['-e', '/dev/upk-probe'])).exitCode).not.toBe(0);
    expect((await b.exec('test', ['-e', '/run/upk-probe'])).exitCode).not.toBe(0);
    expect(fs.existsSync('/dev/upk-probe')).toBe(false);
    expect(await a.execOk('ls', ['/dev'])).toMatch(/\bloop-control\b[\s\S]*\bfuse\b|\bfuse\b[\s\S]*\bloop-control\b/);
    // The installed agent and wrapper are what this checkout ships.
    expect((await a.execOk('sh', ['-c', 'command -v udrbdadm'])).trim()).toBe('/usr/local/sbin/udrbdadm');
    await a.execOk('test', ['-x', '/usr/lib/ocf/resource.d/udrbd/drbd']);
    await a.execOk('test', ['-x', '/usr/lib/ocf/resource.d/heartbeat/Filesystem']);
    const mon = await c.mon(b);
    expect(mon.online.sort()).toEqual(['compute1', 'compute2']);
  }, 180_000);

  it('a new pair first removes a crashed run left running with the same prefix', async () => {
    // The first test's cluster stays up, as after a crashed test process.
    expect((await netnsNames()).sort()).toEqual(['upk1', 'upk2']);
    const holders = cluster!.nodes.map((n) => n.holderPid);
    cluster = null;
    const pair = new NetnsPair({ prefix: 'upk', subnet: '169.254.61', names: ['compute1', 'compute2'], baseDir: BASE });
    await pair.create();
    for (const pid of holders) expect(isAlive(pid)).toBe(false);
    expect((await netnsNames()).sort()).toEqual(['upk1', 'upk2']);
    expect(await pair.destroy()).toEqual([]);
    expect(await netnsNames()).toEqual([]);
    fs.rmSync(BASE, { recursive: true, force: true });
  }, 120_000);
});
