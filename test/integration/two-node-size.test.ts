/**
 * Issue 4, "the smaller data size wins, as DRBD": two resource processes on
 * backing files of different sizes agree on the smaller usable size at
 * connect (DRBD 8.4's receive_sizes / drbd_determine_dev_size). The initial
 * full sync, online verify and the NBD export stay within it, a write past it
 * is refused, la_size_sect records it for drbdmeta, and a Primary that
 * already exposes a larger device refuses a smaller peer ("The peer's disk
 * size is too small!") instead of shrinking under its user.
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { Cluster, type ClusterOptions, DRBDMETA, type NodeName } from '../helpers/cluster.js';
import { computeLayout } from '../../src/meta/superblock.js';
import { requireTool } from '../helpers/nbd-helpers.js';

const MiB = 1024 * 1024;
const ALPHA_FILE_BYTES = 80 * MiB;
/** Not a whole number of MiB: the agreed size is whatever beta's layout leaves usable. */
const BETA_FILE_BYTES = 64 * MiB + 192 * 1024;

let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

/** A cluster whose two backing files differ in size (create-md by drbdmeta on each). */
function unequalCluster(port: number, extra: ClusterOptions = {}): Cluster {
  const c = new Cluster({ port, diskSizeBytes: ALPHA_FILE_BYTES, skipCreateMd: true, ...extra });
  fs.truncateSync(c.disks.beta, BETA_FILE_BYTES);
  c.createMd('alpha');
  c.createMd('beta');
  return c;
}

function usableBytes(fileBytes: number): number {
  return computeLayout(fileBytes).dataSizeBytes;
}

/** sha256 of the first `sizeBytes` of node's backing file. */

function laSizeSectors(c: Cluster, node: NodeName): number {
  const r = spawnSync(DRBDMETA, ['--force', '/dev/drbd9', 'v08', c.disks[node], 'internal', 'dump-md'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`drbdmeta dump-md on ${node} failed (${r.status}): ${r.stderr}`);
  const m = /la-size-sect (\d+);/.exec(r.stdout);
  if (!m) throw new Error(`no la-size-sect in drbdmeta dump-md output:\n${r.stdout.slice(0, 800)}`);
  return Number(m[1]);
}

describe('unequal backing disks', () => {
  it('agree on the smaller size: full sync, verify and the NBD export cover only it, a write past it is refused, la-size-sect records it', async () => {
    await requireTool('nbdinfo');
    cluster = unequalCluster(7801, { proxy: true, net: ['verify-alg crc32c;'] });
    const c = cluster;
    const agreed = usableBytes(BETA_FILE_BYTES);
    expect(agreed).toBeLessThan(usableBytes(ALPHA_FILE_BYTES));
    expect(agreed % 4096).toBe(0);
    await c.startProxies();
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.waitState('beta', 'cstate', 'Connected');
    for (const node of ['alpha', 'beta'] as const) {
      const s = await c.statusJson(node);
      expect(s.sizeBytes).toBe(agreed);
      expect(s.sizeKiB).toBe(agreed / 1024);
    }
    expect((await c.statusJson('alpha')).diskSizeBytes).toBe(usableBytes(ALPHA_FILE_BYTES));
    expect((await c.statusJson('beta')).diskSizeBytes).toBe(agreed);
    expect(c.logText('alpha')).toContain(`Considerable difference in lower level device sizes: ${agreed / 512}s vs. ${usableBytes(ALPHA_FILE_BYTES) / 512}s`);
    expect(c.logText('alpha')).toContain(`(${agreed / 1024} KB)`);

    // initial full sync from the larger node moves the agreed size, no more
    const bytesBefore = c.proxyBytes();
    await c.admOk('alpha', ['primary', '--force', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected');
    const transferred = c.proxyBytes() - bytesBefore;
    expect(transferred).toBeGreaterThanOrEqual(agreed);
    expect(transferred).toBeLessThanOrEqual(agreed * 1.1);
    expect(c.logText('alpha')).toContain(`Began resync as SyncSource (will sync ${agreed / 1024} KB [${agreed / 4096} bits set]).`);

    // writes up to the last block are replicated; one past the end is refused on the Primary
    const last = crypto.randomBytes(64 * 1024);
    await c.write('alpha', agreed - last.length, last);
    const client = await c.client('alpha');
    for (const [offsetBytes, lengthBytes] of [[agreed, 4096], [agreed - 4096, 8192], [usableBytes(ALPHA_FILE_BYTES) - 4096, 4096]] as const) {
      const reply = await client.request('io.write', { offsetBytes, base64: crypto.randomBytes(lengthBytes).toString('base64') });
      expect(reply.ok, `write of ${lengthBytes} bytes at ${offsetBytes}`).toBe(false);
      expect(reply.stderr).toContain(`outside device of ${agreed} bytes`);
    }
    expect(c.readDisk('beta', agreed - last.length, last.length).equals(last)).toBe(true);
    expect(c.readDisk('alpha', agreed, 4096).equals(Buffer.alloc(4096))).toBe(true);
    expect(await c.query('alpha', 'cstate')).toBe('Connected');

    // the Primary's NBD export is the agreed size
    const frontend = (await c.statusJson('alpha')).frontend as { nbdSocket: string };
    const info = await execa('nbdinfo', ['--size', `nbd+unix:///${c.resource}?socket=${frontend.nbdSocket}`], { reject: false, timeout: 20_000 });
    expect(info.exitCode, info.stderr).toBe(0);
    expect(Number(info.stdout.trim())).toBe(agreed);

    // online verify walks the agreed size and finds it equal
    await c.admOk('alpha', ['verify', c.resource]);
    await c.waitFor('online verify finished', () => c.logText('alpha').includes('Online verify done'), 60_000);
    await c.waitFor('verify result logged', () => c.logText('alpha').includes('"verify result"'), 10_000);
    const verifyResult = c.logText('alpha').split('\n').find((l) => l.includes('"verify result"'));
    expect(JSON.parse(verifyResult!) as { verifiedBlocks: number }).toMatchObject({ ok: true, verifiedBlocks: agreed / 4096 });
    expect(c.logText('alpha')).not.toContain('out of sync!');

    expect(c.hashDataArea('alpha', agreed)).toBe(c.hashDataArea('beta', agreed));
    // la_size_sect holds the agreed size on both disks (drbdmeta reads it once the resource is down)
    await c.admOk('alpha', ['secondary', c.resource]);
    await c.admOk('alpha', ['down', c.resource]);
    await c.admOk('beta', ['down', c.resource]);
    expect(laSizeSectors(c, 'alpha')).toBe(agreed / 512);
    expect(laSizeSectors(c, 'beta')).toBe(agreed / 512);

    // alpha alone again starts at the last agreed size, not its whole disk
    await c.admOk('alpha', ['up', c.resource]);
    expect((await c.statusJson('alpha')).sizeBytes).toBe(agreed);
  });

  it("a Primary already exposing its larger disk refuses the smaller peer: The peer's disk size is too small!, StandAlone, size unchanged", async () => {
    cluster = unequalCluster(7802);
    const c = cluster;
    const alphaBytes = usableBytes(ALPHA_FILE_BYTES);
    const betaBytes = usableBytes(BETA_FILE_BYTES);
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('alpha', ['primary', '--force', c.resource]);
    expect((await c.statusJson('alpha')).sizeBytes).toBe(alphaBytes);
    await c.write('alpha', alphaBytes - 4096, crypto.randomBytes(4096));
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'StandAlone', 30_000);
    expect(c.logText('alpha')).toContain(`The peer's disk size is too small! (${betaBytes / 512} < ${alphaBytes / 512} sectors)`);
    expect(await c.query('alpha', 'role')).toBe('Primary/Unknown');
    expect(await c.query('alpha', 'dstate')).toBe('UpToDate/DUnknown');
    expect((await c.statusJson('alpha')).sizeBytes).toBe(alphaBytes);
    // the end of the larger device is still writable on the Primary
    await c.write('alpha', alphaBytes - 4096, crypto.randomBytes(4096));
    // beta was never synced from it and keeps waiting for a peer
    await c.waitState('beta', 'cstate', /^(WFConnection|Unconnected)$/);
    expect(await c.query('beta', 'dstate')).toMatch(/^Inconsistent\//);
    expect(c.logText('beta')).not.toContain('conn( WFSyncUUID -> SyncTarget )');
  });

  it('disk { size } below both disks: both nodes agree on the configured size', async () => {
    const configured = 40 * MiB;
    cluster = unequalCluster(7803, { disk: [`size ${configured / 1024}k;`] });
    const c = cluster;
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.waitState('beta', 'cstate', 'Connected');
    await c.admOk('alpha', ['primary', '--force', c.resource]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    for (const node of ['alpha', 'beta'] as const) {
      const s = await c.statusJson(node);
      expect(s.sizeBytes).toBe(configured);
      expect(s.diskSizeBytes).toBe(configured);
    }
    expect(c.logText('alpha')).toContain(`Began resync as SyncSource (will sync ${configured / 1024} KB`);
    const client = await c.client('alpha');
    const reply = await client.request('io.write', { offsetBytes: configured, base64: Buffer.alloc(4096).toString('base64') });
    expect(reply.ok).toBe(false);
    expect(c.hashDataArea('alpha', configured)).toBe(c.hashDataArea('beta', configured));
  });
});
