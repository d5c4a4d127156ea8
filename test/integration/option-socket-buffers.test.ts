/**
 * net { sndbuf-size 512k; rcvbuf-size 256k; } reach the peer link's TCP
 * sockets on both nodes: `ss -tm` shows tb524288 / rb262144 for every
 * established socket of the link (DRBD's exact size, not the kernel's
 * auto-tuned one). Needs iproute2's ss and the built native/udrbd-io.
 */
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';

let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

interface SocketMem {
  local: string;
  peer: string;
  sndbufBytes: number;
  rcvbufBytes: number;
}

/** Established TCP sockets with `port` on either end, with their skmem tb / rb. */
function linkSockets(port: number): SocketMem[] {
  const r = spawnSync('ss', ['-tmnH', 'state', 'established', `( sport = :${port} or dport = :${port} )`], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`ss (iproute2) is needed for this test: ${r.error?.message ?? r.stderr}`);
  const out: SocketMem[] = [];
  const lines = r.stdout.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const fields = lines[i]!.trim().split(/\s+/);
    if (fields.length < 4) continue;
    const mem = /skmem:\(([^)]*)\)/.exec(lines[i]!) ?? /skmem:\(([^)]*)\)/.exec(lines[i + 1] ?? '');
    if (!mem) continue;
    const value = (key: string): number => Number(new RegExp(`(?:^|,)${key}(\\d+)`).exec(mem[1]!)?.[1] ?? NaN);
    out.push({ local: fields[2]!, peer: fields[3]!, sndbufBytes: value('tb'), rcvbufBytes: value('rb') });
  }
  return out;
}

/** Both ends of the link's one established connection (waits for set-up leftovers to go). */
async function theLink(c: Cluster): Promise<SocketMem[]> {
  const ends = (): SocketMem[] => linkSockets(7929).filter((s) => /^127\.0\.0\.[12]:/.test(s.local) && /^127\.0\.0\.[12]:/.test(s.peer));
  let last: SocketMem[] = [];
  await c.waitFor('exactly one established link connection', () => (last = ends()).length === 2, 10_000).catch(() => {
    throw new Error(`expected the two ends of one connection, ss shows: ${JSON.stringify(last)}`);
  });
  return last;
}

describe('sndbuf-size / rcvbuf-size', () => {
  it('set SO_SNDBUF / SO_RCVBUF of the link sockets on both nodes to the configured sizes', async () => {
    cluster = new Cluster({ resource: 'opbuf', port: 7929, net: ['sndbuf-size 512k;', 'rcvbuf-size 256k;'] });
    const c = cluster;
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.waitState('beta', 'cstate', 'Connected');
    // the link is one connection: its two ends, one in each resource process (a socket dropped
    // in the set-up race may take a moment to leave ESTABLISHED)
    const sockets = await theLink(c);
    for (const s of sockets) expect(s, JSON.stringify(s)).toMatchObject({ sndbufBytes: 524288, rcvbufBytes: 262144 });
  });

  it('without them the kernel sizes the buffers itself (other sizes than configured above)', async () => {
    cluster = new Cluster({ resource: 'opbuf', port: 7929 });
    const c = cluster;
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    const sockets = await theLink(c);
    for (const s of sockets) {
      expect(s.sndbufBytes).not.toBe(524288);
      expect(s.rcvbufBytes).not.toBe(262144);
    }
  });
});
