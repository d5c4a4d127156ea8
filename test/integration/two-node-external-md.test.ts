/**
 * External meta-data on a real two-node pair (resource processes on one
 * machine, file-backed data disks and meta files): `meta-disk FILE [0]`
 * created by the real drbdmeta comes up, syncs, replicates and resyncs, and
 * after `down` drbdmeta reads the meta files clean; `flexible-meta-disk FILE`
 * created by udrbdadm survives kill -9 of the Primary: the real drbdmeta
 * applies the AL udrbd left, and the pair resyncs the AL's extents. The whole
 * data disk is data (its last MiB, which internal meta-data would hold, is
 * replicated).
 */
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, DRBDMETA, type NodeName } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

function realDrbdmeta(c: Cluster, node: NodeName, ...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(DRBDMETA, ['--force', '/dev/drbd9', 'v08', ...c.drbdmetaArgs(node), ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** dump-md without its header (date, host, command line) and with the flags line normalised (drbd-utils 9.22 prints 0). */
function dumpBody(text: string): string {
  const lines = text.split('\n');
  return lines.slice(lines.indexOf('#') + 1).join('\n').replace(/^ {4}flags 0x[0-9A-F]{8};$/m, '    flags <normalised>;');
}

async function writeMiB(c: Cluster, node: NodeName, offsetBytes: number, mib: number): Promise<void> {
  for (let i = 0; i < mib; i++) await c.write(node, offsetBytes + i * MiB, crypto.randomBytes(MiB));
}

describe('external meta-data on a two-node pair', () => {
  it('meta-disk FILE [0] made by drbdmeta: full sync, replication to the last MiB, bitmap resync; drbdmeta reads it clean after down', async () => {
    cluster = new Cluster({ resource: 'xm0', port: 8250, minorBase: 140, metaDisk: { kind: 'indexed', index: 0 } });
    const c = cluster;
    const dataBytes = c.dataSizeBytes('alpha');
    expect(dataBytes).toBe(64 * MiB); // the whole data file: no meta-data at its end
    await c.upSynced();
    expect((await c.statusJson('alpha')).sizeBytes).toBe(dataBytes); // the device is the whole data disk
    expect((await c.statusJson('beta')).sizeBytes).toBe(dataBytes);
    await writeMiB(c, 'alpha', dataBytes - 2 * MiB, 2);
    await c.waitFor('beta has the last MiB', () => c.readDisk('beta', dataBytes - MiB, MiB).equals(c.readDisk('alpha', dataBytes - MiB, MiB)));
    // beta away, alpha writes 3 MiB, beta back: a bitmap-based resync of what changed
    await c.admOk('beta', ['down', c.resource]);
    await writeMiB(c, 'alpha', 10 * MiB, 3);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    expect(c.logText('beta')).toContain('uuid_compare()=-1 by rule 50');
    const began = [...c.logText('alpha').matchAll(/Began resync as SyncSource \(will sync (\d+) KB/g)].map((m) => Number(m[1]));
    expect(began.at(-1)).toBe(3 * 1024);
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
    await c.admOk('alpha', ['secondary', c.resource]);
    for (const node of ['alpha', 'beta'] as const) {
      await c.admOk(node, ['down', c.resource]);
      const real = realDrbdmeta(c, node, 'dump-md');
      expect(real.code).toBe(0);
      expect(real.stderr).not.toContain('unclean');
      expect(real.stdout).toContain(`la-size-sect ${dataBytes / 512};`);
      expect(real.stdout).toContain('# bits-set 0;');
      expect(dumpBody(await c.admOk(node, ['dump-md', c.resource]))).toBe(dumpBody(real.stdout));
      expect(await c.admOk(node, ['get-gi', c.resource])).toBe(realDrbdmeta(c, node, 'get-gi').stdout);
    }
  });

  it('flexible-meta-disk FILE made by udrbdadm: kill -9 of the Primary, drbdmeta apply-al on its meta file, up again → resync of the AL extents', async () => {
    cluster = new Cluster({ resource: 'xm1', port: 8251, minorBase: 142, metaDisk: { kind: 'flexible', sizeBytes: 1 * MiB }, skipCreateMd: true });
    const c = cluster;
    for (const node of ['alpha', 'beta'] as const) {
      const out = await c.admOk(node, ['create-md', '--force', c.resource]);
      expect(out).toContain('New drbd meta data block successfully created.');
      const real = realDrbdmeta(c, node, 'dump-md');
      expect(real.code).toBe(0);
      expect(real.stdout).toContain('# md_offset 0\n# al_offset 4096\n# bm_offset 36864\n');
    }
    await c.upSynced();
    await writeMiB(c, 'alpha', 20 * MiB, 2);
    c.kill9('alpha');
    await c.waitGone('alpha');
    await c.waitState('beta', 'cstate', /^(WFConnection|Unconnected)$/);
    // udrbd left the meta-data as the 8.4 kernel does after a crash: unclean, with an AL to apply
    const unclean = realDrbdmeta(c, 'alpha', 'dump-md');
    expect(unclean.stderr).toContain('Found meta data is "unclean", please apply-al first');
    const applied = realDrbdmeta(c, 'alpha', 'apply-al');
    expect(applied.code).toBe(0);
    const clean = realDrbdmeta(c, 'alpha', 'dump-md');
    expect(clean.code).toBe(0);
    const bitsSet = Number(/# bits-set (\d+);/.exec(clean.stdout)?.[1]);
    expect(bitsSet).toBeGreaterThanOrEqual(1024); // at least the extent of the last writes (4 MiB = 1024 bits)
    expect(bitsSet % 1024).toBe(0); // whole AL extents
    // the dead process's dstate falls back to the on-disk state of the external meta-data, as drbdmeta dstate reads it
    const fallback = await c.adm('alpha', ['dstate', c.resource]);
    expect(fallback.exitCode).toBe(0);
    expect(fallback.stdout).toBe(realDrbdmeta(c, 'alpha', 'dstate').stdout);
    expect(fallback.stdout).toMatch(/^(UpToDate|Consistent)\n$/); // a good disk, not Inconsistent
    await c.admOk('alpha', ['up', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    const began = [...c.logText('alpha').matchAll(/Began resync as SyncSource \(will sync (\d+) KB/g)].map((m) => Number(m[1]));
    expect(began.at(-1)).toBe(bitsSet * 4);
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
  });
});
