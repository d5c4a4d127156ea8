/**
 * on-congestion on a real pair (protocol A, congestion-fill 1 MiB, the fault
 * proxy holding every byte beta sends, so no BarrierAck reaches alpha and
 * the bytes in flight only grow):
 *
 * - pull-ahead: alpha's writes keep completing; past 1 MiB in flight alpha
 *   goes Ahead ("Congestion-fill threshold reached", `cs:Ahead` in
 *   /proc/drbd), marks every later write and tells beta by P_OUT_OF_SYNC;
 *   beta goes Behind (Outdated, not promotable) with the same out-of-sync
 *   KiB. Once the proxy forwards again the pair resyncs (Ahead → SyncSource,
 *   Behind → SyncTarget) and is Connected UpToDate/UpToDate with identical
 *   data areas holding every write.
 * - a link lost while Ahead/Behind: beta stays Outdated (primary refused,
 *   -2); the reconnect resyncs every marked write.
 * - disconnect: past the threshold alpha drops the link and is StandAlone
 *   (as DRBD's C_DISCONNECTING); writes go on, marked; `connect` resyncs.
 * - protocol C: pull-ahead is refused at connect with DRBD's Failure (155),
 *   and by `adjust`.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import type { ControlClient } from '../../src/control/client.js';

const MiB = 1024 * 1024;
const BLOCK_BYTES = 4096;
/** congestion-fill 1M: 256 writes of 4 KiB in flight. */
const FILL_BYTES = MiB;
const WRITES = 600;
/** A write that takes longer than this is blocked, not slow (the pair is on loopback). */
const WRITE_LIVENESS_MS = 10_000;
/** Long liveness timers: the held direction must not look like a dead link while the test runs. */
const NET = ['ping-int 60;', 'ping-timeout 300;', 'ko-count 0;', 'congestion-fill 1M;'];

let cluster: Cluster | undefined;
afterEach(async () => {
  cluster?.thaw();
  await cluster?.destroy();
  cluster = undefined;
});

async function writeBlock(client: ControlClient, offsetBytes: number, data: Buffer): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const blocked = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`write at ${offsetBytes} did not complete within ${WRITE_LIVENESS_MS} ms: blocked`)), WRITE_LIVENESS_MS);
  });
  try {
    const reply = await Promise.race([client.request('io.write', { offsetBytes, base64: data.toString('base64') }), blocked]);
    if (!reply.ok) throw new Error(`io.write at ${offsetBytes} failed (${reply.exitCode}): ${reply.stderr}`);
  } finally {
    clearTimeout(timer);
  }
}

/** `WRITES` 4 KiB writes of random data, each to its own block; returns block → data. */
async function writeAll(c: Cluster, firstBlock: number): Promise<Map<number, Buffer>> {
  const client = await c.client('alpha');
  const written = new Map<number, Buffer>();
  for (let i = 0; i < WRITES; i++) {
    const block = firstBlock + i;
    const data = crypto.randomBytes(BLOCK_BYTES);
    await writeBlock(client, block * BLOCK_BYTES, data);
    written.set(block, data);
  }
  return written;
}

async function outOfSyncKiB(c: Cluster, node: 'alpha' | 'beta'): Promise<number> {
  return (await c.statusJson(node)).outOfSyncKiB as number;
}

function expectEveryWriteOn(c: Cluster, node: 'alpha' | 'beta', written: Map<number, Buffer>): void {
  let missing = 0;
  for (const [block, data] of written) if (!c.readDisk(node, block * BLOCK_BYTES, BLOCK_BYTES).equals(data)) missing++;
  expect(missing, `${node}: writes missing of ${written.size}`).toBe(0);
}

describe('on-congestion pull-ahead: Ahead/Behind and back', () => {
  it('writes keep completing while the link is congested; Ahead/Behind with the same oos; resync to identical data', async () => {
    cluster = new Cluster({ resource: 'ah0', port: 9301, minorBase: 290, diskSizeBytes: 16 * MiB, protocol: 'A', proxy: true, net: ['on-congestion pull-ahead;', ...NET] });
    const c = cluster;
    await c.upSynced();
    c.freezeFrom('beta');
    const written = await writeAll(c, 16);

    // Every write completed. The first 256 were mirrored (1 MiB in flight); the rest are only marked.
    await c.waitState('alpha', 'cstate', 'Ahead');
    const aheadKiB = await outOfSyncKiB(c, 'alpha');
    expect(aheadKiB).toBe((WRITES - FILL_BYTES / BLOCK_BYTES) * 4);
    const alphaLog = c.logText('alpha');
    expect(alphaLog).toContain('Congestion-fill threshold reached');
    expect(alphaLog).toContain('conn( Connected -> Ahead ) pdsk( UpToDate -> Consistent )');
    const proc = await c.admOk('alpha', ['proc-drbd']);
    expect(proc).toMatch(/290: cs:Ahead ro:Primary\/Secondary ds:UpToDate\/Consistent A /);
    expect(proc).toContain(`oos:${aheadKiB}`);
    // events2 (what LINBIT's ahead-behind test waits for): the peer device's replication state.
    expect(await c.admOk('alpha', ['events', '--now', c.resource])).toMatch(/exists peer-device name:ah0 .*replication:Ahead/);

    // beta got the mirrored writes, alpha's P_STATE and a P_OUT_OF_SYNC for every marked write.
    await c.waitState('beta', 'cstate', 'Behind');
    expect(await c.query('beta', 'dstate')).toBe('Outdated/UpToDate');
    expect(await c.admOk('beta', ['events', '--now', c.resource])).toMatch(/exists peer-device name:ah0 .*replication:Behind/);
    await c.waitFor('beta marked what alpha marked', async () => (await outOfSyncKiB(c, 'beta')) === aheadKiB);
    expect(c.logText('beta')).toContain('conn( Connected -> Behind ) disk( UpToDate -> Outdated )');
    const promote = await c.adm('beta', ['primary', c.resource]);
    expect(promote.exitCode).not.toBe(0);
    expect(await c.query('beta', 'role')).toBe('Secondary/Primary');

    const thawedMs = Date.now();
    c.thaw();
    await c.waitState('alpha', 'cstate', 'Connected', 60_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    const resyncedMs = Date.now() - thawedMs;
    expect(c.logText('alpha')).toContain('conn( Ahead -> SyncSource )');
    expect(c.logText('beta')).toContain('conn( Behind -> SyncTarget ) disk( Outdated -> Inconsistent )');
    expect(await outOfSyncKiB(c, 'alpha')).toBe(0);
    expect(await outOfSyncKiB(c, 'beta')).toBe(0);
    expectEveryWriteOn(c, 'beta', written);
    expect(c.hashDataArea('beta')).toBe(c.hashDataArea('alpha'));
    console.log(`ahead-behind: ${WRITES} writes, oos at Ahead ${aheadKiB} KiB, thaw to Connected UpToDate/UpToDate ${resyncedMs} ms`);
  });
});

describe('a link lost while Ahead/Behind', () => {
  it('Behind stays Outdated and is not promoted; the reconnect resyncs every marked write', async () => {
    cluster = new Cluster({ resource: 'ah3', port: 9307, minorBase: 296, diskSizeBytes: 16 * MiB, protocol: 'A', proxy: true, net: ['on-congestion pull-ahead;', ...NET] });
    const c = cluster;
    await c.upSynced();
    c.freezeFrom('beta');
    const written = await writeAll(c, 16);
    await c.waitState('alpha', 'cstate', 'Ahead');
    await c.waitState('beta', 'cstate', 'Behind');
    c.cut();
    await c.waitState('beta', 'cstate', 'WFConnection');
    expect(await c.query('beta', 'dstate')).toBe('Outdated/DUnknown');
    const promote = await c.adm('beta', ['primary', c.resource]);
    expect(promote.exitCode).toBe(17);
    expect(promote.stderr).toContain('State change failed: (-2) Need access to UpToDate data');
    // alpha writes on alone meanwhile; then the link comes back.
    const client = await c.client('alpha');
    for (let i = 0; i < 64; i++) {
      const data = crypto.randomBytes(BLOCK_BYTES);
      await writeBlock(client, (1024 + i) * BLOCK_BYTES, data);
      written.set(1024 + i, data);
    }
    c.thaw();
    c.restore();
    await c.waitState('alpha', 'cstate', 'Connected', 60_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    expectEveryWriteOn(c, 'beta', written);
    expect(c.hashDataArea('beta')).toBe(c.hashDataArea('alpha'));
  });
});

describe('on-congestion disconnect', () => {
  it('past the threshold the Primary drops the link (StandAlone), writes go on marked, connect resyncs', async () => {
    cluster = new Cluster({ resource: 'ah1', port: 9303, minorBase: 292, diskSizeBytes: 16 * MiB, protocol: 'A', proxy: true, net: ['on-congestion disconnect;', ...NET] });
    const c = cluster;
    await c.upSynced();
    c.freezeFrom('beta');
    const written = await writeAll(c, 16);
    await c.waitState('alpha', 'cstate', 'StandAlone');
    const log = c.logText('alpha');
    expect(log).toContain('Congestion-fill threshold reached');
    expect(log).toContain('conn( Connected -> Disconnecting )');
    // The 256 unacknowledged writes and the rest: every write is out of sync for beta.
    expect(await outOfSyncKiB(c, 'alpha')).toBe(WRITES * 4);
    c.thaw();
    await c.admOk('alpha', ['connect', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected', 60_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    expectEveryWriteOn(c, 'beta', written);
    expect(c.hashDataArea('beta')).toBe(c.hashDataArea('alpha'));
  });
});

describe('on-congestion needs protocol A (drbd_nl.c ERR_CONG_NOT_PROTO_A)', () => {
  it('up with protocol C and pull-ahead: Failure (155), exit 10, nothing left up; adjust refuses it too', async () => {
    cluster = new Cluster({ resource: 'ah2', port: 9305, minorBase: 294, diskSizeBytes: 16 * MiB, protocol: 'C', net: ['on-congestion pull-ahead;'] });
    const c = cluster;
    const up = await c.adm('alpha', ['up', c.resource]);
    expect(up.exitCode, up.stderr).toBe(10);
    expect(up.stderr).toContain('294: Failure: (155) on-congestion policy pull-ahead only with prot A allowed');
    expect(await c.query('alpha', 'cstate')).toBe('Unconfigured');

    // With block it goes up; switching to pull-ahead under protocol C is refused and changes nothing.
    fs.writeFileSync(c.configPath, c.configText().replace('on-congestion pull-ahead;', 'on-congestion block;'));
    await c.admOk('alpha', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'WFConnection');
    fs.writeFileSync(c.configPath, c.configText());
    const adjust = await c.adm('alpha', ['adjust', c.resource]);
    expect(adjust.exitCode, adjust.stderr).toBe(10);
    expect(adjust.stderr).toContain('Failure: (155) on-congestion policy pull-ahead only with prot A allowed');
    expect(await c.query('alpha', 'cstate')).toBe('WFConnection');
  });
});
