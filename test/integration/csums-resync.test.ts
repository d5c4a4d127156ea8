/**
 * csums-alg on a real pair: a full resync (invalidate) of an almost-identical
 * disk copies only the blocks whose checksums differ, and the data areas hash
 * equal after; nodes naming different csums-alg refuse to connect with
 * DRBD's "Different csums-alg settings" and go StandAlone.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
const BLOCK_BYTES = 4096;
let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

interface ResyncResultLine { msg: string; syncedBlocks: number; transferredBytes: number; sameCsumBlocks: number; ok: boolean }

function lastResyncResult(c: Cluster): ResyncResultLine {
  const lines = c.logText('beta').split('\n').filter((l) => l.includes('"resync result"'));
  const last = lines[lines.length - 1];
  if (last === undefined) throw new Error('beta logged no resync result');
  return JSON.parse(last) as ResyncResultLine;
}

/** Fills the first `bytes` of alpha's volume with random data (replicated to beta). */
async function fillRandom(c: Cluster, bytes: number): Promise<void> {
  for (let at = 0; at < bytes; at += MiB) await c.write('alpha', at, crypto.randomBytes(MiB));
}

/** invalidate on beta, then wait until both are UpToDate again. */
async function invalidateBeta(c: Cluster): Promise<void> {
  await c.admOk('beta', ['invalidate', c.resource]);
  await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 90_000);
  await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 90_000);
  await c.waitState('beta', 'cstate', 'Connected');
}

describe('csums-alg (checksum-based resync)', () => {
  it('a full resync of an identical disk moves ≤ 5% of the bytes; changed blocks are still copied', async () => {
    cluster = new Cluster({ resource: 'cs0', port: 8551, minorBase: 210, diskSizeBytes: 16 * MiB, net: ['csums-alg md5;'] });
    const c = cluster;
    await c.upSynced();
    await fillRandom(c, 8 * MiB);

    await invalidateBeta(c);
    const identical = lastResyncResult(c);
    expect(identical.ok).toBe(true);
    const fullBytes = identical.syncedBlocks * BLOCK_BYTES;
    expect(fullBytes).toBeGreaterThanOrEqual(15 * MiB);
    expect(identical.transferredBytes).toBeLessThanOrEqual(fullBytes * 0.05);
    expect(identical.sameCsumBlocks).toBe(identical.syncedBlocks);
    expect(c.logText('beta')).toContain('100 % had equal checksums');
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));

    // Change 5 blocks behind beta's back (beta down), then resync everything again.
    await c.admOk('beta', ['down', c.resource]);
    const fd = fs.openSync(c.disks.beta, 'r+');
    for (const block of [3, 700, 701, 2049, 4000]) fs.writeSync(fd, crypto.randomBytes(BLOCK_BYTES), 0, BLOCK_BYTES, block * BLOCK_BYTES);
    fs.closeSync(fd);
    expect(c.hashDataArea('alpha')).not.toBe(c.hashDataArea('beta'));
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('beta', 'cstate', 'Connected');
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await invalidateBeta(c);
    const few = lastResyncResult(c);
    expect(few.ok).toBe(true);
    expect(few.transferredBytes).toBeGreaterThan(0);
    expect(few.transferredBytes).toBeLessThanOrEqual(few.syncedBlocks * BLOCK_BYTES * 0.05);
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
  });

  it('without csums-alg the same resync copies every block (the baseline the 5% is measured against)', async () => {
    cluster = new Cluster({ resource: 'cs1', port: 8553, minorBase: 212, diskSizeBytes: 16 * MiB });
    const c = cluster;
    await c.upSynced();
    await invalidateBeta(c);
    const full = lastResyncResult(c);
    expect(full.ok).toBe(true);
    expect(full.transferredBytes).toBe(full.syncedBlocks * BLOCK_BYTES);
    expect(full.sameCsumBlocks).toBe(0);
  });

  it('adjust adds csums-alg on a live pair: the peer adopts it (P_SYNC_PARAM) and the next resync uses it', async () => {
    cluster = new Cluster({ resource: 'cs3', port: 8557, minorBase: 216, diskSizeBytes: 16 * MiB });
    const c = cluster;
    await c.upSynced();
    fs.writeFileSync(c.configPath, c.configText({}, ['csums-alg sha256;']));
    await c.admOk('alpha', ['adjust', c.resource]);
    await c.waitFor('beta adopted csums-alg', () => c.logText('beta').includes('csums-alg sha256'), 20_000);
    await c.waitState('beta', 'cstate', 'Connected');
    await invalidateBeta(c);
    const result = lastResyncResult(c);
    expect(result.ok).toBe(true);
    expect(result.sameCsumBlocks).toBe(result.syncedBlocks);
    expect(result.transferredBytes).toBeLessThanOrEqual(result.syncedBlocks * BLOCK_BYTES * 0.05);
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
  });

  it('nodes with different csums-alg do not connect: Different csums-alg settings, StandAlone', async () => {
    cluster = new Cluster({
      resource: 'cs2', port: 8555, minorBase: 214, diskSizeBytes: 16 * MiB, proxy: true,
      netPerNode: { alpha: ['csums-alg md5;'], beta: ['csums-alg sha1;'] },
    });
    const c = cluster;
    await c.startProxies();
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitFor('alpha refused the peer', () => c.logText('alpha').includes('Different csums-alg settings. me=\\"md5\\" peer=\\"sha1\\"'), 30_000);
    await c.waitState('alpha', 'cstate', 'StandAlone');
    await c.waitState('beta', 'cstate', 'StandAlone');
  });
});
