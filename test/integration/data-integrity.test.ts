/**
 * data-integrity-alg on a real pair (DRBD 8.4's integrity_tfm): with a digest
 * configured, writes and the initial full sync replicate and both backing
 * disks hash equal; nodes naming different digests refuse each other with
 * "incompatible data-integrity-alg settings" and go StandAlone; an unknown
 * name refuses `up`'s connect; and a byte flipped inside a Data payload on
 * the way (test/helpers/fault-proxy corrupt) is caught by the receiver
 * ("Digest integrity check FAILED"), which drops the link, reconnects and
 * resyncs, so both disks end identical with every acknowledged write on
 * them (protocol C). Digests of the disks come from node:crypto.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { corruptionPlan } from '../helpers/fault-proxy.js';
import { PacketType } from '../../src/peer/packets.js';

const MiB = 1024 * 1024;
const WRITE_BYTES = 64 * 1024;
let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

function sha256(data: Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** Writes `count` random 64 KiB blocks through alpha at spread-out offsets; returns what each offset must hold. */
async function writeRandom(c: Cluster, count: number, firstOffsetBytes: number): Promise<Map<number, Buffer>> {
  const written = new Map<number, Buffer>();
  for (let i = 0; i < count; i++) {
    const offsetBytes = firstOffsetBytes + i * 3 * WRITE_BYTES;
    const data = crypto.randomBytes(WRITE_BYTES);
    await c.write('alpha', offsetBytes, data); // returns once acknowledged (protocol C)
    written.set(offsetBytes, data);
  }
  return written;
}

function expectOnDisk(c: Cluster, node: 'alpha' | 'beta', written: Map<number, Buffer>): void {
  for (const [offsetBytes, data] of written) {
    expect(sha256(c.readDisk(node, offsetBytes, data.length)), `${node} @${offsetBytes}`).toBe(sha256(data));
  }
}

describe('data-integrity-alg', () => {
  for (const [alg, port, minor] of [['sha1', 9141, 250], ['crc32c', 9143, 252]] as const) {
    it(`${alg}: the initial sync and protocol C writes replicate; both disks hash equal`, async () => {
      cluster = new Cluster({ resource: `di${alg}`, port, minorBase: minor, diskSizeBytes: 16 * MiB, net: [`data-integrity-alg ${alg};`] });
      const c = cluster;
      await c.upSynced();
      const written = await writeRandom(c, 24, 0);
      expectOnDisk(c, 'beta', written);
      expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
      expect(c.logText('beta')).not.toContain('Digest integrity check FAILED');
      expect(await c.query('beta', 'cstate')).toBe('Connected');
    });
  }

  it('nodes naming different digests do not connect: incompatible data-integrity-alg settings, StandAlone', async () => {
    cluster = new Cluster({
      resource: 'dimis', port: 9145, minorBase: 254, diskSizeBytes: 16 * MiB, proxy: true,
      netPerNode: { alpha: ['data-integrity-alg sha1;'], beta: ['data-integrity-alg md5;'] },
    });
    const c = cluster;
    await c.startProxies();
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitFor('alpha refused the peer', () => c.logText('alpha').includes('incompatible data-integrity-alg settings'), 30_000);
    await c.waitFor('beta refused the peer', () => c.logText('beta').includes('incompatible data-integrity-alg settings'), 30_000);
    await c.waitState('alpha', 'cstate', 'StandAlone');
    await c.waitState('beta', 'cstate', 'StandAlone');
  });

  it('an unknown digest name refuses up (exit 10, FILE:LINE) with DRBD\'s ERR_INTEGRITY_ALG text', async () => {
    cluster = new Cluster({ resource: 'dibad', port: 9147, minorBase: 256, diskSizeBytes: 16 * MiB, net: ['data-integrity-alg crc99;'] });
    const c = cluster;
    const up = await c.adm('alpha', ['up', c.resource]);
    expect(up.exitCode, up.stderr).toBe(10);
    expect(up.stderr).toMatch(
      /udrbd\.conf:\d+: option 'data-integrity-alg crc99' \(The 'data-integrity-alg' you specified is not known\) is not supported by udrbd; use a digest such as crc32c, md5, sha1 or sha256/,
    );
    expect((await c.adm('alpha', ['role', c.resource])).stdout.trim()).toBe('Unconfigured');
  });

  for (const [alg, port, minor] of [['sha1', 9149, 258], ['crc32c', 9153, 262]] as const) {
    it(`${alg}: a payload byte flipped in flight: the receiver logs the digest failure, drops the link, reconnects and resyncs; every acknowledged write is on both disks`, async () => {
      cluster = new Cluster({ resource: `dicor${alg}`, port, minorBase: minor, diskSizeBytes: 16 * MiB, proxy: true, net: [`data-integrity-alg ${alg};`] });
      const c = cluster;
      await c.upSynced();
      const before = await writeRandom(c, 4, 0);

      // alpha → beta crosses beta's proxy upstream on alpha's connection, alpha's proxy downstream on beta's:
      // one shared plan, so exactly one Data payload is flipped on whichever link the nodes kept.
      const plan = corruptionPlan(PacketType.Data, WRITE_BYTES);
      c.proxies.beta!.corrupt('up', plan);
      c.proxies.alpha!.corrupt('down', plan);
      const during = await writeRandom(c, 8, 4 * MiB);
      expect(plan.flipped).toBe(1);

      await c.waitFor('beta caught the corruption', () => /Digest integrity check FAILED: \d+s \+65536/.test(c.logText('beta')), 30_000);
      await c.waitFor('beta dropped the link as a protocol error', () => c.logText('beta').includes('conn( Connected -> ProtocolError )'), 30_000);
      await c.waitState('beta', 'cstate', 'Connected', 60_000);
      await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
      await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
      const after = await writeRandom(c, 4, 10 * MiB);

      // The reconnect resynced the block that never reached beta's disk (a bitmap resync, not a full one).
      const betaLog = c.logText('beta');
      const afterFailure = betaLog.slice(betaLog.indexOf('Digest integrity check FAILED'));
      expect(afterFailure).toMatch(/Began resync as SyncTarget \(will sync \d+ KB/);
      expect(c.logText('alpha')).toContain('unacknowledged requests marked out of sync');
      for (const written of [before, during, after]) {
        expectOnDisk(c, 'alpha', written);
        expectOnDisk(c, 'beta', written);
      }
      expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
      expect(plan.flipped).toBe(1);
    });
  }

  it('adjust switches data-integrity-alg on a live link (ProtocolUpdate): the peer checks the new digest from the next frame on', async () => {
    cluster = new Cluster({ resource: 'diadj', port: 9151, minorBase: 260, diskSizeBytes: 16 * MiB });
    const c = cluster;
    fs.writeFileSync(c.configPath, c.configText({}, ['data-integrity-alg crc32c;']));
    await c.upSynced();
    fs.writeFileSync(c.configPath, c.configText({}, ['data-integrity-alg sha256;']));
    await c.admOk('alpha', ['adjust', c.resource]);
    await c.waitFor('beta switched to the peer\'s new digest', () => c.logText('beta').includes('peer data-integrity-alg: sha256'), 20_000);
    const written = await writeRandom(c, 8, 0);
    expectOnDisk(c, 'beta', written);
    expect(await c.query('beta', 'cstate')).toBe('Connected');
    expect(c.logText('beta')).not.toContain('Digest integrity check FAILED');
    // beta still sends crc32c until it is adjusted too; then both agree again at the next connect.
    await c.admOk('beta', ['adjust', c.resource]);
    await c.waitFor('alpha switched too', () => c.logText('alpha').includes('peer data-integrity-alg: sha256'), 20_000);
    await c.admOk('beta', ['disconnect', c.resource]);
    await c.admOk('beta', ['connect', c.resource]);
    await c.waitState('beta', 'cstate', 'Connected', 30_000);
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
  });
});
