/**
 * Issue 4 acceptance, two resource processes on one machine (alpha on
 * 127.0.0.1, beta on 127.0.0.2, file-backed disks, real kill -9, a fault
 * proxy on the link where a test cuts it). Data is written through the
 * Primary's replicated volume with the control socket's diagnostic io.write
 * (the block-device frontend is issue 5); disks are compared by hashing the
 * backing files' data areas.
 */
import crypto from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, type NodeName } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

async function connectedPair(c: Cluster): Promise<void> {
  await c.startProxies();
  await c.admOk('alpha', ['up', c.resource]);
  await c.admOk('beta', ['up', c.resource]);
  await c.waitState('alpha', 'cstate', 'Connected');
  await c.waitState('beta', 'cstate', 'Connected');
}

/** Fresh pair → primary --force on alpha → full sync finished. */
async function syncedPair(c: Cluster): Promise<void> {
  await connectedPair(c);
  await c.admOk('alpha', ['primary', '--force', c.resource]);
  await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
  await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
  await c.waitState('alpha', 'cstate', 'Connected');
}

/** Writes `mib` MiB of random data through node's volume, 1 MiB per request. */
async function writeMiB(c: Cluster, node: NodeName, offsetBytes: number, mib: number): Promise<void> {
  for (let i = 0; i < mib; i++) await c.write(node, offsetBytes + i * MiB, crypto.randomBytes(MiB));
}

describe('fresh pair', () => {
  it('create-md on both, up, primary --force on one → full sync → Connected, UpToDate/UpToDate, equal data areas', async () => {
    cluster = new Cluster({ port: 7751 });
    const c = cluster;
    await connectedPair(c);
    expect(await c.query('alpha', 'role')).toBe('Secondary/Secondary');
    expect(await c.query('alpha', 'dstate')).toBe('Inconsistent/Inconsistent');
    // data written on alpha's disk before it becomes the sync source must reach beta
    await c.admOk('alpha', ['primary', '--force', c.resource]);
    expect(await c.query('alpha', 'role')).toBe('Primary/Secondary');
    await writeMiB(c, 'alpha', 5 * MiB, 2);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate');
    expect(await c.query('alpha', 'cstate')).toBe('Connected');
    expect(await c.query('beta', 'cstate')).toBe('Connected');
    expect(await c.query('beta', 'role')).toBe('Secondary/Primary');
    const status = await c.statusJson('alpha');
    expect(status.replication).toBe('Established');
    expect(status.peerDisk).toBe('UpToDate');
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
    expect(c.logText('alpha')).toContain('uuid_compare()=2 by rule 30');
    expect(c.logText('beta')).toContain('uuid_compare()=-2 by rule 20');
    // both end with the same generation UUIDs (bit 0 = role aside)
    const a = (await c.statusJson('alpha')).uuids as Record<string, string>;
    const b = (await c.statusJson('beta')).uuids as Record<string, string>;
    expect(a.historyStart).toBe(b.historyStart);
    expect(a.current.slice(0, 15)).toBe(b.current.slice(0, 15));
  });
});

describe('protocol C', () => {
  it('every write acknowledged to the client is on the peer disk when the Primary is killed -9 right after the burst', async () => {
    cluster = new Cluster({ port: 7752, protocol: 'C' });
    const c = cluster;
    await syncedPair(c);
    const client = await c.client('alpha');
    const acked: { offsetBytes: number; data: Buffer }[] = [];
    for (let i = 0; i < 64; i++) {
      const data = crypto.randomBytes(64 * 1024);
      const offsetBytes = (i * 7 % 48) * MiB + (i % 16) * 64 * 1024;
      const reply = await client.request('io.write', { offsetBytes, base64: data.toString('base64') });
      expect(reply.ok, reply.stderr).toBe(true);
      acked.push({ offsetBytes, data });
    }
    c.kill9('alpha');
    await c.waitGone('alpha');
    // the last acked write per offset is what must be there
    const latest = new Map<number, Buffer>();
    for (const w of acked) latest.set(w.offsetBytes, w.data);
    for (const [offsetBytes, data] of latest) {
      expect(c.readDisk('beta', offsetBytes, data.length).equals(data)).toBe(true);
    }
  });
});
