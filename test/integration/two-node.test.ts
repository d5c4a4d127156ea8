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

/** Writes `mib` MiB of random data through node's volume, 1 MiB per request. */
async function writeMiB(c: Cluster, node: NodeName, offsetBytes: number, mib: number): Promise<void> {
  for (let i = 0; i < mib; i++) await c.write(node, offsetBytes + i * MiB, crypto.randomBytes(MiB));
}

describe('fresh pair', () => {
  it('create-md on both, up, primary --force on one → full sync → Connected, UpToDate/UpToDate, equal data areas', async () => {
    cluster = new Cluster({ port: 7701 }); // DRBD's conventional port, as an operator runs it
    const c = cluster;
    await c.upConnected();
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
    // both end with the same generation UUIDs (DRBD compares them with bit 0 masked)
    const masked = async (node: NodeName): Promise<string[]> => {
      const u = (await c.statusJson(node)).uuids as Record<string, string>;
      return [u.current, u.bitmap, u.historyStart, u.historyEnd].map((x) => (BigInt(`0x${x}`) & ~1n).toString(16));
    };
    expect(await masked('alpha')).toEqual(await masked('beta'));
  });
});

describe('protocol C', () => {
  it('every write acknowledged to the client is on the peer disk when the Primary is killed -9 right after the burst', async () => {
    cluster = new Cluster({ port: 7752, protocol: 'C' });
    const c = cluster;
    await c.upSynced();
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

describe('protocol A', () => {
  it('acknowledges writes the peer never received: with the link frozen, acked writes are lost on the peer when the Primary dies', async () => {
    cluster = new Cluster({ port: 7753, protocol: 'A', proxy: true });
    const c = cluster;
    await c.upSynced();
    const client = await c.client('alpha');
    const writes: { offsetBytes: number; data: Buffer }[] = [];
    for (const p of Object.values(c.proxies)) p.freeze();
    const started = Date.now();
    for (let i = 0; i < 16; i++) {
      const data = crypto.randomBytes(64 * 1024);
      const offsetBytes = 20 * MiB + i * 64 * 1024;
      const reply = await client.request('io.write', { offsetBytes, base64: data.toString('base64') }, 2_000);
      expect(reply.ok, reply.stderr).toBe(true);
      writes.push({ offsetBytes, data });
    }
    // all acknowledged while not a byte could reach the peer (well inside ping-timeout)
    expect(Date.now() - started).toBeLessThan(1_500);
    c.kill9('alpha');
    await c.waitGone('alpha');
    c.cut();
    const missing = writes.filter((w) => !c.readDisk('beta', w.offsetBytes, w.data.length).equals(w.data));
    expect(missing.length).toBe(writes.length);
    // ...and alpha's own disk has them (protocol A completes on the local write)
    for (const w of writes) expect(c.readDisk('alpha', w.offsetBytes, w.data.length).equals(w.data)).toBe(true);
  });

  it('protocol C by contrast does not acknowledge a write while the link is frozen', async () => {
    cluster = new Cluster({ port: 7754, protocol: 'C', proxy: true });
    const c = cluster;
    await c.upSynced();
    const client = await c.client('alpha');
    for (const p of Object.values(c.proxies)) p.freeze();
    const data = crypto.randomBytes(64 * 1024);
    let acked = false;
    const pending = client.request('io.write', { offsetBytes: 0, base64: data.toString('base64') }, 20_000).then((r) => {
      acked = r.ok;
      return r;
    });
    await new Promise((r) => setTimeout(r, 800));
    expect(acked).toBe(false);
    // once the dead link is detected the Primary completes alone (degraded), marking the block out of sync
    const reply = await pending;
    expect(reply.ok, reply.stderr).toBe(true);
    const status = await c.statusJson('alpha');
    expect(status.outOfSyncKiB as number).toBeGreaterThanOrEqual(64);
  });
});

describe('disconnect, write, reconnect', () => {
  it('resyncs only the blocks written while disconnected (bytes on the link within 10% of the changed bytes)', async () => {
    cluster = new Cluster({ port: 7755, proxy: true });
    const c = cluster;
    await c.upSynced();
    c.cut();
    await c.waitState('alpha', 'cstate', /^(WFConnection|Unconnected)$/);
    await c.waitState('beta', 'cstate', /^(WFConnection|Unconnected)$/);
    const changedMiB = 8;
    // 8 separate 1 MiB regions spread over the device (4 KiB aligned: 256 blocks each)
    for (let i = 0; i < changedMiB; i++) await c.write('alpha', i * 6 * MiB + 4096 * 3, crypto.randomBytes(MiB));
    const oos = (await c.statusJson('alpha')).outOfSyncKiB as number;
    expect(oos).toBe(changedMiB * 1024);
    const bytesBefore = c.proxyBytes();
    c.restore();
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected');
    const transferred = c.proxyBytes() - bytesBefore;
    const changedBytes = oos * 1024;
    expect(transferred).toBeGreaterThanOrEqual(changedBytes);
    expect(transferred).toBeLessThanOrEqual(changedBytes * 1.1);
    expect(c.logText('alpha')).toContain('uuid_compare()=1 by rule 70');
    expect(c.logText('beta')).toContain('uuid_compare()=-1 by rule 50');
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
  });
});

describe('crash of the Primary', () => {
  it('kill -9 during writes, restart: the activity log marks the hot extents and they resync; data areas equal', async () => {
    cluster = new Cluster({ port: 7756 });
    const c = cluster;
    await c.upSynced();
    const client = await c.client('alpha');
    // a stream of writes in flight over several 4 MiB extents, then kill -9 in the middle
    const inflight: Promise<unknown>[] = [];
    let acked = 0;
    let killed!: () => void;
    const killedAfterSomeAcks = new Promise<void>((resolve) => (killed = resolve));
    const extentBytes = 4 * MiB;
    const touchedExtents = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const offsetBytes = (i % 10) * extentBytes + i * 8192;
      touchedExtents.add(Math.floor(offsetBytes / extentBytes));
      touchedExtents.add(Math.floor((offsetBytes + 256 * 1024 - 1) / extentBytes));
      inflight.push(
        client
          .request('io.write', { offsetBytes, base64: crypto.randomBytes(256 * 1024).toString('base64') }, 5_000)
          .then(() => {
            if (++acked === 12) {
              c.kill9('alpha');
              killed();
            }
          })
          .catch(() => undefined),
      );
    }
    await killedAfterSomeAcks;
    await Promise.all(inflight);
    expect(acked).toBeGreaterThanOrEqual(12);
    expect(acked).toBeLessThan(40);
    await c.waitGone('alpha');
    await c.waitState('beta', 'cstate', /^(WFConnection|Unconnected)$/);
    expect(await c.query('beta', 'dstate')).toMatch(/^UpToDate\//);
    await c.admOk('alpha', ['up', c.resource]);
    const log = c.logText('alpha');
    expect(log).toMatch(/activity log|apply-al/i);
    await c.waitState('alpha', 'cstate', 'Connected', 60_000);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    const alphaLog = c.logText('alpha');
    // the restarted node was a crashed Primary: it becomes SyncSource for the extents its AL held hot
    expect(alphaLog).toMatch(/Marked additional \d+ [KMG]B as out-of-sync based on AL\./);
    const began = [...alphaLog.matchAll(/Began resync as SyncSource \(will sync (\d+) KB/g)].map((m) => Number(m[1]));
    // the last resync (after the restart) covers at least one whole 4 MiB AL extent...
    expect(began.at(-1)).toBeGreaterThanOrEqual(4096);
    // ...and at most the extents the writes touched (the only ones the AL can hold hot, and the
    // only blocks a lost write can have left out of sync): 10 × 4 MiB, not the 64 MiB device
    expect(touchedExtents.size).toBe(10);
    expect(began.at(-1)).toBeLessThanOrEqual(touchedExtents.size * (extentBytes / 1024));
    expect(touchedExtents.size * extentBytes).toBeLessThan(c.dataSizeBytes('alpha') / 1.5);
    expect(alphaLog).toContain('uuid_compare()=1 by rule 40');
    expect(c.logText('beta')).toContain('uuid_compare()=-1 by rule 40');
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
  });
});

describe('split brain', () => {
  it('cut, promote both, write on both, restore → both StandAlone with split brain logged; --discard-my-data recovery makes the victim equal the survivor', async () => {
    cluster = new Cluster({ port: 7701, proxy: true, handlers: { 'split-brain': 'echo split-brain $DRBD_RESOURCE $DRBD_MINOR >> HANDLER_LOG' } });
    const c = cluster;
    // handler output goes to a file in the test dir
    const handlerLog = `${c.dir}/handler.log`;
    const fs = await import('node:fs');
    for (const node of ['alpha', 'beta'] as const) {
      const text = fs.readFileSync(c.configPaths[node], 'utf8').replace('HANDLER_LOG', handlerLog);
      fs.writeFileSync(c.configPaths[node], text);
    }
    await c.upSynced();
    c.cut();
    await c.waitState('beta', 'cstate', /^(WFConnection|Unconnected)$/);
    await c.admOk('beta', ['primary', c.resource]);
    await writeMiB(c, 'alpha', 2 * MiB, 1);
    await writeMiB(c, 'beta', 10 * MiB, 1);
    c.restore();
    await c.waitState('alpha', 'cstate', 'StandAlone', 30_000);
    await c.waitState('beta', 'cstate', 'StandAlone', 30_000);
    expect(await c.query('alpha', 'role')).toBe('Primary/Unknown');
    expect(await c.query('beta', 'role')).toBe('Primary/Unknown');
    for (const node of ['alpha', 'beta'] as const) {
      expect(c.logText(node)).toContain('Split-Brain detected but unresolved, dropping connection!');
    }
    await c.waitFor('split-brain handler ran on both nodes', () => {
      try {
        return fs.readFileSync(handlerLog, 'utf8').split('\n').filter((l) => l.startsWith('split-brain r0')).length >= 2;
      } catch {
        return false;
      }
    }, 10_000);
    expect(c.hashDataArea('alpha')).not.toBe(c.hashDataArea('beta'));
    // recovery: victim beta
    await c.admOk('beta', ['disconnect', c.resource]);
    await c.admOk('beta', ['secondary', c.resource]);
    await c.admOk('beta', ['connect', '--discard-my-data', c.resource]);
    // survivor alpha
    await c.admOk('alpha', ['connect', c.resource]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected');
    expect(c.logText('beta')).toMatch(/Split-Brain detected, manually solved\. Sync from peer node/);
    expect(c.logText('beta')).toContain('conn( WFSyncUUID -> SyncTarget )');
    expect(await c.query('alpha', 'role')).toBe('Primary/Secondary');
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
  });
});

describe("DRBD's refusals on a connected pair", () => {
  it('a second Primary without allow-two-primaries: (-1) Multiple primaries not allowed by config, exit 11', async () => {
    cluster = new Cluster({ port: 7758 });
    const c = cluster;
    await c.upSynced();
    const r = await c.adm('beta', ['primary', c.resource]);
    expect(r.exitCode).toBe(11);
    expect(r.stderr).toContain('11: State change failed: (-1) Multiple primaries not allowed by config');
    expect(await c.query('beta', 'role')).toBe('Secondary/Primary');
    const d = await c.adm('alpha', ['connect', '--discard-my-data', c.resource]);
    expect(d.exitCode).toBe(10);
    expect(d.stderr).toContain('--discard-my-data not allowed when primary.');
  });
});

describe('observing a resource', () => {
  it('status text, status --json, events and wait-connect follow the pair through connect and initial sync', async () => {
    cluster = new Cluster({ port: 7759 });
    const c = cluster;
    const r = c.resource;
    await c.admOk('alpha', ['up', r]);
    const waitConnect = c.adm('alpha', ['wait-connect', '--wfc-timeout', '30', r], 40_000);
    const events = c.adm('alpha', ['events', '--timeout', '6', r], 20_000);
    await new Promise((res) => setTimeout(res, 300));
    await c.admOk('beta', ['up', r]);
    expect((await waitConnect).exitCode).toBe(0);
    expect(await c.query('alpha', 'cstate')).toBe('Connected');
    await c.admOk('alpha', ['primary', '--force', r]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected');
    expect(await c.admOk('alpha', ['status', r])).toBe(
      `${r} role:Primary\n  disk:UpToDate\n  peer role:Secondary\n    replication:Established peer-disk:UpToDate\n\n`,
    );
    expect(await c.admOk('beta', ['status', r])).toBe(
      `${r} role:Secondary\n  disk:UpToDate\n  peer role:Primary\n    replication:Established peer-disk:UpToDate\n\n`,
    );
    const json = await c.statusJson('alpha');
    expect(json).toMatchObject({ resource: r, node: 'alpha', role: 'Primary', peerRole: 'Secondary', cstate: 'Connected', disk: 'UpToDate', peerDisk: 'UpToDate', protocol: 'C', outOfSyncKiB: 0 });
    const ev = await events;
    expect(ev.exitCode).toBe(0);
    const lines = ev.stdout.split('\n');
    expect(lines[0]).toMatch(/^exists resource name:r0 role:Secondary/);
    // drbdsetup-84 events2: the connection is Connected from WFReportParams on, the peer's role follows when known
    expect(lines).toContainEqual(expect.stringMatching(/^change connection name:r0 peer-node-id:0 conn-name:peer connection:Connected( role:Secondary)?$/));
    expect(lines).toContainEqual(expect.stringMatching(/^change connection name:r0 peer-node-id:0 conn-name:peer (connection:Connected )?role:Secondary$/));
    expect(lines.some((l) => l.startsWith('change peer-device name:r0 peer-node-id:0 conn-name:peer volume:0') && l.includes('replication:SyncSource'))).toBe(true);
    expect(lines).toContain('change resource name:r0 role:Primary');
    // down: Unconfigured again, and the peer notices
    await c.admOk('alpha', ['down', r]);
    expect(await c.query('alpha', 'cstate')).toBe('Unconfigured');
    await c.waitState('beta', 'cstate', /^(WFConnection|Unconnected)$/);
    expect(await c.admOk('beta', ['status', r])).toBe(`${r} role:Secondary\n  disk:UpToDate\n  peer connection:Connecting\n\n`);
  });
});

describe('skip initial sync', () => {
  it('new-current-uuid --clear-bitmap on a fresh connected pair: both UpToDate/UpToDate without a resync', async () => {
    cluster = new Cluster({ port: 7748 });
    const c = cluster;
    await c.upConnected();
    await c.admOk('alpha', ['new-current-uuid', '--clear-bitmap', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate');
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate');
    expect(await c.query('alpha', 'cstate')).toBe('Connected');
    expect(c.logText('beta')).toContain('Accepted new current UUID, preparing to skip initial sync');
    for (const node of ['alpha', 'beta'] as const) expect(c.logText(node)).not.toContain('Began resync');
    const a = (await c.statusJson('alpha')).uuids as Record<string, string>;
    const b = (await c.statusJson('beta')).uuids as Record<string, string>;
    expect(a.current).toBe(b.current);
    // and a later promotion needs no --force
    await c.admOk('alpha', ['primary', c.resource]);
    expect(await c.query('alpha', 'role')).toBe('Primary/Secondary');
  });
});
