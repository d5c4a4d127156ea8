/**
 * Issue 19, `udrbdadm resize` as DRBD 8.4's drbd_adm_resize / receive_sizes
 * / resync_after_online_grow on a live pair: both backing files grown with
 * truncate, then one resize on the Primary moves the internal meta-data of
 * both nodes to their disks' new ends, grows the device (status, the NBD
 * export), and resyncs the new area from the Primary — or, with
 * --assume-clean, counts it in sync. The real drbdmeta reads the moved
 * meta-data (la-size-sect, offsets, the bitmap) after down, and a restart
 * keeps the size. Disconnected, a node grows only to the peer's last known
 * size unless --assume-peer-has-space; refusals keep DRBD's codes (130, 131,
 * 111). An explicit --size below the current size shrinks both nodes of a
 * connected pair (the peer takes the u_size from P_SIZES), and a Primary
 * whose disk and its peer's grew while apart grows at the connect.
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
const OLD_FILE_BYTES = 64 * MiB;
const NEW_FILE_BYTES = 96 * MiB;
const OLD_BYTES = computeLayout(OLD_FILE_BYTES).dataSizeBytes;
const NEW_BYTES = computeLayout(NEW_FILE_BYTES).dataSizeBytes;

let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

function pair(port: number, minorBase: number, extra: ClusterOptions = {}): Cluster {
  return new Cluster({ resource: `rz${port - 9200}`, port, minorBase, diskSizeBytes: OLD_FILE_BYTES, ...extra });
}

interface DumpMd {
  laSizeSectors: number;
  mdOffsetBytes: number;
  bmOffsetBytes: number;
  bitsSet: number;
}

/** The real drbdmeta's view of node's meta-data (the resource must be down). */
function dumpMd(c: Cluster, node: NodeName): DumpMd {
  const r = spawnSync(DRBDMETA, ['--force', '/dev/drbd9', 'v08', ...c.drbdmetaArgs(node), 'dump-md'], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`drbdmeta dump-md on ${node} failed (${r.status}): ${r.stderr}`);
  const num = (re: RegExp): number => {
    const m = re.exec(r.stdout);
    if (!m) throw new Error(`${re} not in drbdmeta dump-md output:\n${r.stdout.slice(0, 1200)}`);
    return Number(m[1]);
  };
  return { laSizeSectors: num(/la-size-sect (\d+);/), mdOffsetBytes: num(/# md_offset (\d+)/), bmOffsetBytes: num(/# bm_offset (\d+)/), bitsSet: num(/# bits-set (\d+);/) };
}

async function nbdSize(c: Cluster, node: NodeName): Promise<number> {
  const frontend = (await c.statusJson(node)).frontend as { nbdSocket: string };
  const info = await execa('nbdinfo', ['--size', `nbd+unix:///${c.resource}?socket=${frontend.nbdSocket}`], { reject: false, timeout: 20_000 });
  expect(info.exitCode, info.stderr).toBe(0);
  return Number(info.stdout.trim());
}

/** Writes a recognisable pattern in the old area: its first and last 64 KiB and one block in the middle. */
async function writePattern(c: Cluster): Promise<Array<[number, Buffer]>> {
  const blocks: Array<[number, Buffer]> = [[0, crypto.randomBytes(64 * 1024)], [20 * MiB, crypto.randomBytes(4096)], [OLD_BYTES - 64 * 1024, crypto.randomBytes(64 * 1024)]];
  for (const [offset, data] of blocks) await c.write('alpha', offset, data);
  return blocks;
}

function expectPattern(c: Cluster, blocks: Array<[number, Buffer]>): void {
  for (const node of ['alpha', 'beta'] as const) {
    for (const [offset, data] of blocks) expect(c.readDisk(node, offset, data.length).equals(data), `${node} at ${offset}`).toBe(true);
  }
}

function growFiles(c: Cluster, nodes: readonly NodeName[] = ['alpha', 'beta']): void {
  for (const node of nodes) fs.truncateSync(c.disks[node], NEW_FILE_BYTES);
}

describe('udrbdadm resize, connected Primary/Secondary', () => {
  it('grows both nodes, moves the meta-data to the new end, resyncs the new area from the Primary; drbdmeta and a restart agree', async () => {
    await requireTool('nbdinfo');
    // A slow fixed resync rate keeps the grow resync running long enough to try a second resize during it.
    cluster = pair(9211, 270, { disk: ['resync-rate 4M;', 'c-plan-ahead 0;'] });
    const c = cluster;
    await c.upConnected();
    // Two Secondaries: drbd_adm_resize's ERR_NO_PRIMARY.
    const noPrimary = await c.adm('alpha', ['resize', c.resource]);
    expect(noPrimary.exitCode).toBe(10);
    expect(noPrimary.stderr).toContain('270: Failure: (131) Need one Primary node to resize.');
    // Both files are fresh zeros: skip the initial sync (new-current-uuid --clear-bitmap) instead of a slow full one.
    await c.admOk('alpha', ['new-current-uuid', '--clear-bitmap', c.resource]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate');
    await c.admOk('alpha', ['primary', c.resource]);
    const blocks = await writePattern(c);

    // Not grown yet: nothing changes, and udrbd says why.
    const same = await c.adm('alpha', ['resize', c.resource]);
    expect(same.exitCode).toBe(0);
    expect(same.stderr).toContain(`270: size unchanged at ${OLD_BYTES / 512} sectors`);

    growFiles(c);
    const out = await c.adm('alpha', ['resize', c.resource]);
    expect(out.exitCode, out.stderr).toBe(0);
    expect(out.stderr).toBe('');
    for (const node of ['alpha', 'beta'] as const) {
      const s = await c.statusJson(node);
      expect(s.sizeBytes, node).toBe(NEW_BYTES);
      expect(s.diskSizeBytes, node).toBe(NEW_BYTES);
      expect(c.logText(node)).toContain(`meta-data moves to the end of the grown disk: md_offset ${computeLayout(OLD_FILE_BYTES).mdOffsetBytes} -> ${computeLayout(NEW_FILE_BYTES).mdOffsetBytes}`);
    }
    expect(await nbdSize(c, 'alpha')).toBe(NEW_BYTES);
    const grownKiB = (NEW_BYTES - OLD_BYTES) / 1024;
    await c.waitFor('resync of the new area began', () => c.logText('alpha').includes('Resync of new storage after online grow'), 20_000);
    expect(c.logText('beta')).toContain('Resync of new storage after online grow');
    await c.waitFor('SyncSource began', () => c.logText('alpha').includes(`Began resync as SyncSource (will sync ${grownKiB} KB [${grownKiB / 4} bits set]).`), 20_000);

    // drbd_adm_resize: ERR_RESIZE_RESYNC while it runs (at 4 MiB/s the 32 MiB take seconds).
    const during = await c.adm('alpha', ['resize', c.resource]);
    expect(during.exitCode).toBe(10);
    expect(during.stderr).toContain('270: Failure: (130) Resize not allowed during resync.');

    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected');
    // the end of the grown device is writable and replicated
    const tail = crypto.randomBytes(64 * 1024);
    await c.write('alpha', NEW_BYTES - tail.length, tail);
    expect(c.readDisk('beta', NEW_BYTES - tail.length, tail.length).equals(tail)).toBe(true);
    expectPattern(c, blocks);
    expect(c.hashDataArea('alpha', NEW_BYTES)).toBe(c.hashDataArea('beta', NEW_BYTES));

    await c.admOk('alpha', ['secondary', c.resource]);
    await c.admOk('alpha', ['down', c.resource]);
    await c.admOk('beta', ['down', c.resource]);
    const layout = computeLayout(NEW_FILE_BYTES);
    for (const node of ['alpha', 'beta'] as const) {
      const md = dumpMd(c, node);
      expect(md, node).toEqual({ laSizeSectors: NEW_BYTES / 512, mdOffsetBytes: layout.mdOffsetBytes, bmOffsetBytes: layout.bmOffsetBytes, bitsSet: 0 });
    }
    // a restart finds the meta-data at the new end and keeps the new size
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    for (const node of ['alpha', 'beta'] as const) expect((await c.statusJson(node)).sizeBytes, node).toBe(NEW_BYTES);
    expect(await c.query('alpha', 'dstate')).toBe('UpToDate/UpToDate');
  });

  it('run on the Secondary: both grow and the Primary still resyncs the new area to it', async () => {
    cluster = pair(9217, 284);
    const c = cluster;
    await c.upConnected();
    await c.admOk('alpha', ['new-current-uuid', '--clear-bitmap', c.resource]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate');
    await c.admOk('alpha', ['primary', c.resource]);
    const blocks = await writePattern(c);
    growFiles(c);
    await c.admOk('beta', ['resize', c.resource]);
    for (const node of ['alpha', 'beta'] as const) expect((await c.statusJson(node)).sizeBytes, node).toBe(NEW_BYTES);
    const grownKiB = (NEW_BYTES - OLD_BYTES) / 1024;
    await c.waitFor('SyncSource of the new area on the Primary', () => c.logText('alpha').includes(`Began resync as SyncSource (will sync ${grownKiB} KB`), 20_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected', 60_000);
    expect(c.logText('beta')).toContain('Began resync as SyncTarget');
    expectPattern(c, blocks);
    expect(c.hashDataArea('alpha', NEW_BYTES)).toBe(c.hashDataArea('beta', NEW_BYTES));
  });

  it('--assume-clean: the new area counts as in sync (no resync), the old data stays intact', async () => {
    cluster = pair(9212, 272);
    const c = cluster;
    await c.upSynced();
    const blocks = await writePattern(c);
    growFiles(c);
    await c.admOk('alpha', ['resize', '--assume-clean', c.resource]);
    for (const node of ['alpha', 'beta'] as const) expect((await c.statusJson(node)).sizeBytes, node).toBe(NEW_BYTES);
    await c.waitFor('resync suppressed on both', () => c.logText('alpha').includes('Resync of new storage suppressed with --assume-clean') && c.logText('beta').includes('Resync of new storage suppressed with --assume-clean'), 20_000);
    expect(await c.query('alpha', 'cstate')).toBe('Connected');
    expect(await c.query('alpha', 'dstate')).toBe('UpToDate/UpToDate');
    expect(c.logText('alpha')).not.toContain('Resync of new storage after online grow');
    expect(c.logText('alpha').match(/Began resync as SyncSource/g)?.length).toBe(1); // the initial full sync only
    expectPattern(c, blocks);
    expect(c.hashDataArea('alpha', OLD_BYTES)).toBe(c.hashDataArea('beta', OLD_BYTES));
    await c.admOk('alpha', ['secondary', c.resource]);
    await c.admOk('alpha', ['down', c.resource]);
    await c.admOk('beta', ['down', c.resource]);
    for (const node of ['alpha', 'beta'] as const) {
      const md = dumpMd(c, node);
      expect(md.laSizeSectors, node).toBe(NEW_BYTES / 512);
      expect(md.bitsSet, node).toBe(0);
    }
  });

  it('a --size above what both disks hold is refused (111); a --size in between is the new size', async () => {
    cluster = pair(9213, 274);
    const c = cluster;
    await c.upSynced();
    growFiles(c);
    const tooBig = await c.adm('alpha', ['resize', `--size=${NEW_BYTES / 512 + 8}`, c.resource]);
    expect(tooBig.exitCode, tooBig.stderr + tooBig.stdout).toBe(10);
    expect(tooBig.stderr).toContain('274: Failure: (111) Low.dev. smaller than requested DRBD-dev. size.');
    expect(tooBig.stderr).toContain(`Requested disk size is too big (${NEW_BYTES / 1024 + 4} > ${NEW_BYTES / 1024})`);
    for (const node of ['alpha', 'beta'] as const) expect((await c.statusJson(node)).sizeBytes, node).toBe(OLD_BYTES);
    const bad = await c.adm('alpha', ['resize', '--al-stripes=2', c.resource]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toContain('udrbd does not change the activity-log layout online');
    await c.admOk('alpha', ['resize', '--size=80M', '--assume-clean', c.resource]);
    for (const node of ['alpha', 'beta'] as const) expect((await c.statusJson(node)).sizeBytes, node).toBe(80 * MiB);
  });
});

describe('udrbdadm resize, disconnected', () => {
  it("grows only to the peer's last known size unless --assume-peer-has-space; a smaller peer is then refused at connect; grown too, it resyncs the new area", async () => {
    cluster = pair(9214, 276);
    const c = cluster;
    await c.upSynced();
    await c.admOk('alpha', ['disconnect', c.resource]);
    growFiles(c, ['alpha']);
    const held = await c.adm('alpha', ['resize', c.resource]);
    expect(held.exitCode).toBe(0);
    expect(held.stderr).toContain(`276: size unchanged at ${OLD_BYTES / 512} sectors: the peer's last known disk size is ${OLD_BYTES / 512}s and it is not connected`);
    expect((await c.statusJson('alpha')).sizeBytes).toBe(OLD_BYTES);

    await c.admOk('alpha', ['resize', '--assume-peer-has-space', c.resource]);
    expect(c.logText('alpha')).toContain('Resize while not connected was forced by the user!');
    expect((await c.statusJson('alpha')).sizeBytes).toBe(NEW_BYTES);
    const tail = crypto.randomBytes(4096);
    await c.write('alpha', NEW_BYTES - 4096, tail);

    // beta's disk did not grow: the Primary will not shrink for it (receive_sizes)
    await c.admOk('alpha', ['connect', c.resource]);
    await c.waitFor("alpha refused beta's smaller disk", () => c.logText('alpha').includes(`The peer's disk size is too small! (${OLD_BYTES / 512} < ${NEW_BYTES / 512} sectors)`), 30_000);
    await c.waitState('alpha', 'cstate', 'StandAlone', 30_000);

    // beta grows its file and runs resize: its meta-data moves, and the refused connect told it alpha's size
    // (receive_sizes records p_size before refusing), so it grows without --assume-peer-has-space
    growFiles(c, ['beta']);
    const betaOut = await c.adm('beta', ['resize', c.resource]);
    expect(betaOut.exitCode, betaOut.stderr).toBe(0);
    expect(betaOut.stderr).toBe('');
    expect(c.logText('beta')).not.toContain('Resize while not connected was forced by the user!');
    expect(await c.statusJson('beta')).toMatchObject({ diskSizeBytes: NEW_BYTES, sizeBytes: NEW_BYTES });
    await c.admOk('alpha', ['connect', c.resource]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected');
    expect((await c.statusJson('beta')).sizeBytes).toBe(NEW_BYTES);
    expect(c.readDisk('beta', NEW_BYTES - 4096, 4096).equals(tail)).toBe(true);
    expect(c.hashDataArea('alpha', NEW_BYTES)).toBe(c.hashDataArea('beta', NEW_BYTES));
  });
});

describe('a disk grown while its resource was down', () => {
  it('up refuses with where the meta-data is and what to do (not create-md); shrunk back, up and resize move it', async () => {
    cluster = pair(9218, 286);
    const c = cluster;
    await c.upSynced();
    await c.admOk('alpha', ['secondary', c.resource]);
    await c.admOk('beta', ['down', c.resource]);
    growFiles(c, ['beta']);
    const refused = await c.adm('beta', ['up', c.resource]);
    expect(refused.exitCode).not.toBe(0);
    const oldMdOffset = computeLayout(OLD_FILE_BYTES).mdOffsetBytes;
    expect(refused.stderr).toContain(`v08 meta-data is at byte offset ${oldMdOffset}: it was written when the disk was ${OLD_FILE_BYTES} bytes, and the disk is ${NEW_FILE_BYTES} bytes now`);
    expect(refused.stderr).toContain(`Do not run create-md: shrink the disk back (truncate -s ${OLD_FILE_BYTES} ${c.disks.beta})`);
    fs.truncateSync(c.disks.beta, OLD_FILE_BYTES);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('beta', 'cstate', 'Connected');
    await c.admOk('alpha', ['primary', c.resource]);
    growFiles(c);
    await c.admOk('alpha', ['resize', c.resource]);
    for (const node of ['alpha', 'beta'] as const) expect((await c.statusJson(node)).sizeBytes, node).toBe(NEW_BYTES);
  });
});

describe('udrbdadm resize, external meta-data', () => {
  it('flexible meta-data grows the bitmap within what its area tracks; beyond it --size is refused, drbdmeta reads the result', async () => {
    // A 68 KiB flexible meta device: 32 KiB of bitmap tracks 1 GiB of data.
    cluster = pair(9215, 278, { metaDisk: { kind: 'flexible', sizeBytes: 68 * 1024 } });
    const c = cluster;
    const trackedBytes = 1024 * MiB;
    await c.upSynced();
    const blocks = await writePattern(c);
    for (const node of ['alpha', 'beta'] as const) fs.truncateSync(c.disks[node], 2 * trackedBytes);
    const tooBig = await c.adm('alpha', ['resize', '--size=1536M', '--assume-clean', c.resource]);
    expect(tooBig.exitCode).toBe(10);
    expect(tooBig.stderr).toContain('278: Failure: (111) Low.dev. smaller than requested DRBD-dev. size.');
    await c.admOk('alpha', ['resize', '--assume-clean', c.resource]);
    for (const node of ['alpha', 'beta'] as const) {
      expect((await c.statusJson(node)).sizeBytes, node).toBe(trackedBytes);
      expect(c.logText(node)).toContain(`the meta-data tracks at most ${trackedBytes / 512} sectors`);
    }
    expect(await c.query('alpha', 'dstate')).toBe('UpToDate/UpToDate');
    expectPattern(c, blocks);
    await c.admOk('alpha', ['secondary', c.resource]);
    await c.admOk('alpha', ['down', c.resource]);
    await c.admOk('beta', ['down', c.resource]);
    for (const node of ['alpha', 'beta'] as const) expect(dumpMd(c, node).laSizeSectors, node).toBe(trackedBytes / 512);
  });
});

/** A pair named and numbered for this file's sk2 tests (ports 9701-9799, minors 1600-1649). */
function sk2Pair(name: string, port: number, minorBase: number, extra: ClusterOptions = {}): Cluster {
  return new Cluster({ resource: `sk2${name}`, port, minorBase, diskSizeBytes: OLD_FILE_BYTES, ...extra });
}

describe('online shrink: resize --size below the current size', () => {
  it('shrinks both nodes; the data below the new end stays identical, I/O past it is refused, drbdmeta and restarts agree', async () => {
    await requireTool('nbdinfo');
    const shrunkBytes = 32 * MiB;
    cluster = sk2Pair('shrink', 9701, 1600);
    const c = cluster;
    await c.upSynced();
    const blocks: Array<[number, Buffer]> = [[0, crypto.randomBytes(64 * 1024)], [20 * MiB, crypto.randomBytes(4096)], [shrunkBytes - 64 * 1024, crypto.randomBytes(64 * 1024)]];
    for (const [offset, data] of blocks) await c.write('alpha', offset, data);
    await c.write('alpha', 40 * MiB, crypto.randomBytes(4096)); // past the coming end: dropped with it

    const out = await c.adm('alpha', ['resize', '--size=32M', c.resource]);
    expect(out.exitCode, out.stderr).toBe(0);
    expect(out.stderr).toBe('');
    for (const node of ['alpha', 'beta'] as const) {
      const s = await c.statusJson(node);
      expect(s.sizeBytes, node).toBe(shrunkBytes);
      expect(c.logText(node), node).toContain('size = 32 MB (32768 KB)');
    }
    // receive_sizes on the Secondary: the Primary's u_size came with its P_SIZES
    expect(c.logText('beta')).toContain(`Peer sets u_size to ${shrunkBytes / 512} sectors`);
    expect(await nbdSize(c, 'alpha')).toBe(shrunkBytes);

    // a write at or across the new end is refused; nothing is detached, the pair stays as it was
    const client = await c.client('alpha');
    for (const offsetBytes of [shrunkBytes, shrunkBytes - 2048, 40 * MiB]) {
      const reply = await client.request('io.write', { offsetBytes, base64: crypto.randomBytes(4096).toString('base64') });
      expect(reply.ok, `write at ${offsetBytes}`).toBe(false);
    }
    expect(await c.query('alpha', 'cstate')).toBe('Connected');
    expect(await c.query('alpha', 'dstate')).toBe('UpToDate/UpToDate');
    expect(await c.query('beta', 'dstate')).toBe('UpToDate/UpToDate');
    // the last block below the end is still written and replicated
    const tail = crypto.randomBytes(4096);
    await c.write('alpha', shrunkBytes - 4096, tail);
    tail.copy(blocks[2]![1], 64 * 1024 - 4096); // the last 4 KiB of the block at the end
    expectPattern(c, blocks);
    expect(c.hashDataArea('alpha', shrunkBytes)).toBe(c.hashDataArea('beta', shrunkBytes));

    // a rolling restart: the node coming back takes the u_size from the one still up at the connect (min_not_zero)
    await c.admOk('beta', ['down', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('beta', 'cstate', 'Connected');
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    for (const node of ['alpha', 'beta'] as const) expect((await c.statusJson(node)).sizeBytes, `${node} after beta's restart`).toBe(shrunkBytes);
    expect(c.logText('beta').split(`Peer sets u_size to ${shrunkBytes / 512} sectors`).length - 1).toBe(2);

    await c.admOk('alpha', ['secondary', c.resource]);
    await c.admOk('alpha', ['down', c.resource]);
    await c.admOk('beta', ['down', c.resource]);
    for (const node of ['alpha', 'beta'] as const) {
      const md = dumpMd(c, node);
      expect(md.laSizeSectors, node).toBe(shrunkBytes / 512);
      expect(md.bitsSet, node).toBe(0);
    }
    // both down and up again: DRBD keeps no u_size on disk, so the size stays when the configuration says it
    c.options.disk = [`size ${shrunkBytes / 1024}k;`];
    fs.writeFileSync(c.configPath, c.configText());
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    for (const node of ['alpha', 'beta'] as const) expect((await c.statusJson(node)).sizeBytes, `${node} after both restarted`).toBe(shrunkBytes);
    expect(await c.query('alpha', 'dstate')).toBe('UpToDate/UpToDate');
    expectPattern(c, blocks);
  });

  it('run on the Secondary: the Primary shrinks too and refuses writes past the new end', async () => {
    const shrunkBytes = 48 * MiB;
    cluster = sk2Pair('shrinks', 9703, 1604);
    const c = cluster;
    await c.upSynced();
    const blocks = await writePattern(c);
    const kept = blocks.filter(([offset, data]) => offset + data.length <= shrunkBytes);
    await c.admOk('beta', ['resize', `--size=${shrunkBytes / 512}s`, c.resource]);
    for (const node of ['alpha', 'beta'] as const) expect((await c.statusJson(node)).sizeBytes, node).toBe(shrunkBytes);
    expect(c.logText('alpha')).toContain(`Peer sets u_size to ${shrunkBytes / 512} sectors`);
    const client = await c.client('alpha');
    const reply = await client.request('io.write', { offsetBytes: shrunkBytes, base64: Buffer.alloc(4096).toString('base64') });
    expect(reply.ok).toBe(false);
    expect(await c.query('alpha', 'dstate')).toBe('UpToDate/UpToDate');
    expectPattern(c, kept);
    expect(c.hashDataArea('alpha', shrunkBytes)).toBe(c.hashDataArea('beta', shrunkBytes));
  });
});

describe('a connect growing a Primary (receive_sizes -> drbd_determine_dev_size)', () => {
  it('both disks grew while apart: the Primary grows at the connect and resyncs the new area to its peer', async () => {
    await requireTool('nbdinfo');
    cluster = sk2Pair('cgrow', 9702, 1602);
    const c = cluster;
    await c.upSynced();
    const blocks = await writePattern(c);
    await c.admOk('alpha', ['disconnect', c.resource]);
    growFiles(c);
    // apart, each resize moves the meta-data but keeps the size: the peer's last known disk is the old one
    for (const node of ['alpha', 'beta'] as const) {
      const held = await c.adm(node, ['resize', c.resource]);
      expect(held.exitCode, held.stderr).toBe(0);
      expect(held.stderr, node).toContain(`size unchanged at ${OLD_BYTES / 512} sectors`);
      expect(await c.statusJson(node), node).toMatchObject({ sizeBytes: OLD_BYTES, diskSizeBytes: NEW_BYTES });
    }
    const apart = crypto.randomBytes(4096);
    await c.write('alpha', OLD_BYTES - 4096, apart);
    apart.copy(blocks[2]![1], 64 * 1024 - 4096); // writePattern's last block ends at the old end

    await c.admOk('alpha', ['connect', c.resource]);
    await c.waitFor('the Primary became SyncSource', () => c.logText('alpha').includes('Began resync as SyncSource'), 30_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected');
    for (const node of ['alpha', 'beta'] as const) expect((await c.statusJson(node)).sizeBytes, node).toBe(NEW_BYTES);
    expect(await c.query('alpha', 'role')).toBe('Primary/Secondary');
    expect(await nbdSize(c, 'alpha')).toBe(NEW_BYTES);
    // the grown blocks (set on both by the grow) and the one written apart
    const grownKiB = (NEW_BYTES - OLD_BYTES) / 1024;
    expect(c.logText('alpha')).toContain(`Began resync as SyncSource (will sync ${grownKiB + 4} KB [${grownKiB / 4 + 1} bits set]).`);
    const tail = crypto.randomBytes(64 * 1024);
    await c.write('alpha', NEW_BYTES - tail.length, tail);
    expect(c.readDisk('beta', NEW_BYTES - tail.length, tail.length).equals(tail)).toBe(true);
    expectPattern(c, blocks);
    expect(c.hashDataArea('alpha', NEW_BYTES)).toBe(c.hashDataArea('beta', NEW_BYTES));
  });
});
