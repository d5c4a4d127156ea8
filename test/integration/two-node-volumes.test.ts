/**
 * Issue 19, several volumes in one resource (docs/multi-volume.md step 12),
 * on a real pair: `volume 0 { }` and `volume 1 { }` of resource mv2 run in
 * one resource process per node, over one connection, as DRBD 8.4 runs
 * them — each volume its own disk, meta-data, bitmap, minor and state; one
 * connection state for both. `primary --force` promotes both (udrbdadm
 * sends one request per volume, as drbdadm-84 runs drbdsetup per minor);
 * both initial syncs run; writes to each volume land on that volume's disk
 * on the peer only; after the peer is killed -9 and writes go on, its
 * restart resyncs each volume by its own bitmap; events2, status and dstate
 * show both volumes. A second pair serves each volume as its own NBD export
 * (written with libnbd's nbdsh, landing on that volume's disk on the peer
 * only), verifies volume 1 alone, detaches and re-attaches it while volume
 * 0 goes on replicating, and demotes / promotes both. (The order of writes
 * across volumes — one epoch stream per connection — is
 * test/unit/link-epochs', where barriers can be observed.)
 * Ports 9945 and 9947, minors 1710-1713 and 1720-1723.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { NBDSH_ENV, requireTool } from '../helpers/nbd-helpers.js';

const MiB = 1024 * 1024;

let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

describe('a resource with volumes 0 and 1', () => {
  it('connects once, syncs and replicates each volume to its own disk, and resyncs each by its own bitmap after a crash', async () => {
    cluster = new Cluster({ resource: 'mv2', port: 9945, minorBase: 1710, diskSizeBytes: 16 * MiB, volumes: [0, 1] });
    const c = cluster;
    const conf = fs.readFileSync(c.configPath, 'utf8');
    expect(conf).toContain('volume 0 {');
    expect(conf).toContain('volume 1 {');

    await c.upConnected();
    // One request per volume: both become Primary, both initial syncs run to UpToDate.
    await c.admOk('alpha', ['primary', '--force', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate\nUpToDate/UpToDate', 60_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate\nUpToDate/UpToDate', 60_000);
    expect(await c.query('alpha', 'role')).toBe('Primary/Secondary\nPrimary/Secondary');
    expect(await c.query('alpha', 'cstate')).toBe('Connected\nConnected');
    for (const vnr of [0, 1]) {
      expect(c.hashDataArea('alpha', c.dataSizeBytes('alpha'), vnr), `volume ${vnr} after the initial sync`).toBe(c.hashDataArea('beta', c.dataSizeBytes('beta'), vnr));
    }

    // Each volume's writes land on that volume's disk on the peer, and only there.
    const zero = crypto.randomBytes(128 * 1024);
    const one = crypto.randomBytes(128 * 1024);
    await c.write('alpha', 2 * MiB, zero, 0);
    await c.write('alpha', 2 * MiB, one, 1);
    expect(c.readDisk('beta', 2 * MiB, zero.length, 0).equals(zero)).toBe(true);
    expect(c.readDisk('beta', 2 * MiB, one.length, 1).equals(one)).toBe(true);

    // The peer dies; writes go on to both volumes; its restart resyncs each volume's written blocks.
    c.kill9('beta');
    await c.waitGone('beta');
    await c.waitState('alpha', 'cstate', /^(WFConnection|Unconnected)\n(WFConnection|Unconnected)$/);
    const later0 = crypto.randomBytes(64 * 1024);
    const later1 = crypto.randomBytes(192 * 1024);
    await c.write('alpha', 5 * MiB, later0, 0);
    await c.write('alpha', 9 * MiB, later1, 1);
    const status = await c.admOk('alpha', ['status', c.resource]);
    expect(status).toMatch(/volume:0 disk:UpToDate/);
    expect(status).toMatch(/volume:1 disk:UpToDate/);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate\nUpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected\nConnected');
    for (const vnr of [0, 1]) {
      expect(c.hashDataArea('alpha', c.dataSizeBytes('alpha'), vnr), `volume ${vnr} after the resync`).toBe(c.hashDataArea('beta', c.dataSizeBytes('beta'), vnr));
    }
    // Two initial full syncs, then one bitmap resync per volume: each of those some bits, never the whole disk.
    const fullBits = c.dataSizeBytes('alpha') / 4096;
    const began = [...c.logText('alpha').matchAll(/Began resync as SyncSource \(will sync \d+ KB \[(\d+) bits set\]\)/g)].map((m) => Number(m[1]));
    expect(began.length, `resync starts ${began.join(', ')}`).toBe(4);
    expect(began.slice(0, 2)).toEqual([fullBits, fullBits]);
    for (const bits of began.slice(2)) {
      expect(bits).toBeGreaterThan(0);
      expect(bits).toBeLessThan(fullBits);
    }

    const events = await c.admOk('alpha', ['events', '--now', c.resource]);
    expect(events).toMatch(new RegExp(`exists device name:${c.resource} volume:0 minor:1710 `));
    expect(events).toMatch(new RegExp(`exists device name:${c.resource} volume:1 minor:1712 `));
    expect(events.match(/exists connection /g)?.length).toBe(1);
    for (const node of ['alpha', 'beta'] as const) expect(c.logText(node)).not.toContain('which is not configured locally');
  }, 180_000);

  it('serves each volume as its own NBD export; one volume detaches, verifies and comes back while the other replicates', async () => {
    await requireTool('nbdsh');
    cluster = new Cluster({ resource: 'mv3', port: 9947, minorBase: 1720, diskSizeBytes: 16 * MiB, volumes: [0, 1], net: ['verify-alg crc32c;'] });
    const c = cluster;
    await c.upConnected();
    await c.admOk('alpha', ['primary', '--force', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate\nUpToDate/UpToDate', 60_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate\nUpToDate/UpToDate', 60_000);

    // The Primary serves volume 0 as export mv3 and volume 1 as export mv3/1, each on its own socket
    // (UDRBD_FRONTEND=none: the NBD server without a kernel client).
    const runDir = path.join(c.dir, 'run');
    const exports: Array<{ vnr: number; uri: string }> = [
      { vnr: 0, uri: `nbd+unix:///mv3?socket=${path.join(runDir, 'mv3.alpha.nbd')}` },
      { vnr: 1, uri: `nbd+unix:///mv3/1?socket=${path.join(runDir, 'mv3.alpha.1.nbd')}` },
    ];
    const nbdWrite = async (uri: string, offsetBytes: number, data: Buffer): Promise<void> => {
      // nbdsh: connect, pwrite with FUA, flush; the bytes come on stdin.
      const script = `import sys\nbuf = sys.stdin.buffer.read()\nh.connect_uri(${JSON.stringify(uri)})\nh.pwrite(buf, ${offsetBytes}, nbd.CMD_FLAG_FUA)\nh.flush()\nh.shutdown()\n`;
      await execa('nbdsh', ['-c', script], { input: data, timeout: 30_000, env: NBDSH_ENV });
    };
    const payloads = exports.map(() => crypto.randomBytes(256 * 1024));
    for (const [i, e] of exports.entries()) await nbdWrite(e.uri, 3 * MiB, payloads[i]!);
    for (const [i, e] of exports.entries()) {
      expect(c.readDisk('beta', 3 * MiB, payloads[i]!.length, e.vnr).equals(payloads[i]!), `export of volume ${e.vnr} on beta's disk ${e.vnr}`).toBe(true);
      expect(c.readDisk('beta', 3 * MiB, payloads[i]!.length, 1 - e.vnr).equals(payloads[i]!), `volume ${e.vnr}'s write is not on the other volume`).toBe(false);
    }

    // Online verify of volume 1 alone finds the blocks changed behind beta's back there, and only there.
    const fd = fs.openSync(c.volumeDisk('beta', 1), 'r+');
    for (const block of [7, 900]) fs.writeSync(fd, crypto.randomBytes(4096), 0, 4096, block * 4096);
    fs.closeSync(fd);
    await c.admOk('alpha', ['verify', `${c.resource}/1`]);
    await c.waitFor('verify of volume 1 finished', () => c.logText('alpha').includes('Online verify found 2 4k block out of sync!'), 30_000);
    await c.waitState('alpha', 'cstate', 'Connected\nConnected');
    expect(c.logText('alpha').match(/Online verify done/g)?.length).toBe(1);

    // Volume 1 detaches on the Primary; volume 0 stays attached and replicating.
    await c.admOk('alpha', ['detach', `${c.resource}/1`]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate\nDiskless/UpToDate');
    expect(await c.query('alpha', 'cstate')).toBe('Connected\nConnected');
    const during = crypto.randomBytes(128 * 1024);
    await nbdWrite(exports[0]!.uri, 6 * MiB, during);
    expect(c.readDisk('beta', 6 * MiB, during.length, 0).equals(during)).toBe(true);

    // It attaches again and both volumes end UpToDate on both nodes, equal; the verify's marks resynced.
    await c.admOk('alpha', ['attach', `${c.resource}/1`]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate\nUpToDate/UpToDate', 60_000);
    await c.admOk('beta', ['disconnect', c.resource]);
    await c.admOk('beta', ['connect', c.resource]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate\nUpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected\nConnected');
    for (const vnr of [0, 1]) {
      expect(c.hashDataArea('alpha', c.dataSizeBytes('alpha'), vnr), `volume ${vnr}`).toBe(c.hashDataArea('beta', c.dataSizeBytes('beta'), vnr));
    }

    // Secondary and Primary again, without --force: every volume of the resource.
    await c.admOk('alpha', ['secondary', c.resource]);
    expect(await c.query('alpha', 'role')).toBe('Secondary/Secondary\nSecondary/Secondary');
    await c.admOk('alpha', ['primary', c.resource]);
    expect(await c.query('alpha', 'role')).toBe('Primary/Secondary\nPrimary/Secondary');
  }, 180_000);
});
