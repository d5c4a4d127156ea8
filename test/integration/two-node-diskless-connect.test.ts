/**
 * A node without a disk connecting to a peer with one (issue 19), on a real
 * pair (test/helpers/cluster: two udrbd processes on 127.0.0.1/127.0.0.2):
 * a never-attached node (new-resource, new-minor, connect) takes the peer's
 * size, becomes Primary only while the peer is UpToDate, and its reads and
 * writes go through the peer's disk (libnbd's nbdsh on its NBD socket);
 * a detached node that went StandAlone reconnects diskless and resyncs once
 * it attaches; `up` with the disk missing does not go on to connect, as
 * drbdadm-84 does not after a failed attach (checked against drbdadm-84 with
 * a recording drbdsetup/drbdmeta). DRBD: drbd_receiver.c receive_state /
 * receive_sizes / receive_uuids, drbd_main.c drbd_send_uuids.
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { Cluster, type NodeName } from '../helpers/cluster.js';
import { NBDSH_ENV, requireTool } from '../helpers/nbd-helpers.js';

const MiB = 1024 * 1024;
const KiB = 1024;
const DRBDADM_84 = '/usr/lib/drbd/drbdadm-84';

let cluster: Cluster | undefined;

beforeAll(async () => {
  await requireTool('nbdsh');
});

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

/** A deterministic pattern of `lengthBytes` from `seed`. */
function pattern(lengthBytes: number, seed: number): Buffer {
  const b = Buffer.alloc(lengthBytes);
  for (let i = 0; i < lengthBytes; i++) b[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff;
  return b;
}

const sha256 = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

/** Runs a Python script in nbdsh against node's NBD export (the Primary's device); never throws. */
async function nbdsh(c: Cluster, node: NodeName, script: string): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const socket = path.join(c.env.UDRBD_RUN_DIR!, `${c.resource}.${node}.nbd`);
  const r = await execa('nbdsh', ['-u', `nbd+unix:///${c.resource}?socket=${socket}`, '-c', script], { reject: false, timeout: 60_000, env: NBDSH_ENV });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Writes `data` at `offsetBytes` through node's device with a flush; the export's size is printed first. */
async function writeThroughDevice(c: Cluster, node: NodeName, offsetBytes: number, data: Buffer): Promise<number> {
  const file = path.join(c.dir, `w-${offsetBytes}.bin`);
  fs.writeFileSync(file, data);
  const r = await nbdsh(c, node, `print(h.get_size())\nh.pwrite(open(${JSON.stringify(file)}, 'rb').read(), ${offsetBytes})\nh.flush()\n`);
  expect(r.stderr, r.stderr).toBe('');
  expect(r.exitCode).toBe(0);
  return Number(r.stdout.trim());
}

/** Reads through node's device; resolves with the sha256 of the bytes, or the error text. */
async function readThroughDevice(c: Cluster, node: NodeName, offsetBytes: number, lengthBytes: number): Promise<{ sha: string } | { error: string }> {
  const r = await nbdsh(c, node, `import hashlib\nprint(hashlib.sha256(h.pread(${lengthBytes}, ${offsetBytes})).hexdigest())\n`);
  return r.exitCode === 0 ? { sha: r.stdout.trim() } : { error: r.stderr };
}

/** alpha up alone and UpToDate (primary --force on a StandAlone-ish WFConnection node), then Secondary again. */
async function alphaUpToDateAlone(c: Cluster): Promise<void> {
  await c.admOk('alpha', ['up', c.resource]);
  await c.admOk('alpha', ['primary', '--force', c.resource]);
  await c.waitState('alpha', 'dstate', 'UpToDate/DUnknown');
}

/** beta without a disk: new-resource, new-minor, connect; both Connected with one disk. */
async function betaConnectsWithoutDisk(c: Cluster, alphaDisk: string): Promise<void> {
  await c.admOk('beta', ['new-resource', c.resource]);
  await c.admOk('beta', ['new-minor', c.resource]);
  expect(await c.query('beta', 'dstate')).toBe('Unconfigured'); // StandAlone Diskless Secondary, as drbdsetup shows it
  await c.admOk('beta', ['connect', c.resource]);
  await c.waitState('beta', 'cstate', 'Connected');
  await c.waitState('beta', 'dstate', `Diskless/${alphaDisk}`);
  await c.waitState('alpha', 'dstate', `${alphaDisk}/Diskless`);
}

describe('a never-attached node connects to a peer with a disk', () => {
  it("takes the peer's size, is promoted, writes land on the peer's disk and reads come from it; EIO without the peer; reconnects", async () => {
    cluster = new Cluster({ resource: 'dl1', port: 9401, minorBase: 1400 });
    const c = cluster;
    await alphaUpToDateAlone(c);
    const alphaData = pattern(128 * KiB, 1);
    await c.write('alpha', 8 * MiB, alphaData);
    await c.admOk('alpha', ['secondary', c.resource]);

    await betaConnectsWithoutDisk(c, 'UpToDate');
    expect(await c.query('alpha', 'cstate')).toBe('Connected');
    const alphaStatus = await c.statusJson('alpha');
    const betaStatus = await c.statusJson('beta');
    // receive_sizes: "I am diskless, need to accept the peer's size"
    expect(betaStatus.sizeBytes).toBe(alphaStatus.sizeBytes);
    expect(betaStatus.sizeBytes).toBe(c.dataSizeBytes('alpha'));
    expect(betaStatus.diskSizeBytes).toBeNull();
    expect(c.logText('beta')).not.toContain('drbd_sync_handshake');
    expect(c.logText('alpha')).not.toContain('drbd_sync_handshake');
    // The status screens in DRBD's words.
    expect(await c.admOk('beta', ['proc-drbd'])).toContain('1401: cs:Connected ro:Secondary/Secondary ds:Diskless/UpToDate C r-----');
    expect(await c.admOk('alpha', ['proc-drbd'])).toContain('1400: cs:Connected ro:Secondary/Secondary ds:UpToDate/Diskless C r-----');
    const sh = await c.admOk('beta', ['sh-status', c.resource]);
    expect(sh).toContain('_cstate=Connected\n');
    expect(sh).toContain('_disk=Diskless\n');
    expect(sh).toContain('_pdsk=UpToDate\n');
    const events = await c.admOk('beta', ['events', '--now', c.resource]);
    expect(events).toMatch(/exists device name:dl1 volume:0 minor:1401 disk:Diskless/);
    expect(events).toMatch(/exists peer-device name:dl1 peer-node-id:0 conn-name:peer volume:0 replication:Established peer-disk:UpToDate /);

    await c.admOk('beta', ['primary', c.resource]);
    expect(await c.query('beta', 'role')).toBe('Primary/Secondary');
    await c.waitState('alpha', 'role', 'Secondary/Primary');
    // The device is the peer's size; what alpha wrote before is read through it.
    const before = await readThroughDevice(c, 'beta', 8 * MiB, alphaData.length);
    expect(before).toEqual({ sha: sha256(alphaData) });
    const data = pattern(256 * KiB, 2);
    const exportBytes = await writeThroughDevice(c, 'beta', 20 * MiB, data);
    expect(exportBytes).toBe(alphaStatus.sizeBytes);
    expect(await readThroughDevice(c, 'beta', 20 * MiB, data.length)).toEqual({ sha: sha256(data) });
    // Protocol C and a flush: the bytes are in alpha's backing file, nowhere else.
    expect(sha256(c.readDisk('alpha', 20 * MiB, data.length))).toBe(sha256(data));
    expect(c.readDisk('beta', 20 * MiB, data.length).equals(Buffer.alloc(data.length))).toBe(true);
    // alpha holds the only copy: the writes are marked out of sync for beta's disk (receive_Data, pdsk < Inconsistent).
    expect(Number((await c.statusJson('alpha')).outOfSyncKiB)).toBeGreaterThanOrEqual(256);

    // alpha may not take the only disk away: the diskless Primary refuses (cluster-wide D_FAILED).
    const detach = await c.adm('alpha', ['detach', c.resource]);
    expect(detach.exitCode).not.toBe(0);
    expect(detach.stderr).toContain('1400: State change failed: (-10) State change was refused by peer node');
    expect(await c.query('alpha', 'dstate')).toBe('UpToDate/Diskless');
    // The link goes (alpha crashes): the diskless Primary's I/O fails with EIO; it stays Primary.
    c.kill9('alpha');
    await c.waitGone('alpha');
    await c.waitState('beta', 'cstate', 'WFConnection');
    expect(await c.query('beta', 'dstate')).toBe('Diskless/DUnknown');
    expect(await c.query('beta', 'role')).toBe('Primary/Unknown');
    const failed = await readThroughDevice(c, 'beta', 20 * MiB, 4 * KiB);
    expect('error' in failed ? failed.error : `read succeeded: ${failed.sha}`).toMatch(/Input\/output error/);
    // Without its peer the diskless Primary can still be demoted (nothing to flush), and promoted again it is refused.
    await c.admOk('beta', ['secondary', c.resource]);
    const alone = await c.adm('beta', ['primary', c.resource]);
    expect(alone.exitCode).toBe(17);
    expect(alone.stderr).toContain('(-2) Need access to UpToDate data');
    // The peer comes back with the same data: the diskless node connects again, is promoted and reads it.
    await c.admOk('alpha', ['up', c.resource]);
    await c.waitState('beta', 'dstate', 'Diskless/UpToDate');
    await c.waitState('alpha', 'dstate', 'UpToDate/Diskless');
    await c.admOk('beta', ['primary', c.resource]);
    expect(await readThroughDevice(c, 'beta', 20 * MiB, data.length)).toEqual({ sha: sha256(data) });
    await c.admOk('beta', ['secondary', c.resource]);
  });

  it('is refused as Primary while the peer is not UpToDate: (-2) Need access to UpToDate data, exit 17', async () => {
    cluster = new Cluster({ resource: 'dl2', port: 9402, minorBase: 1402 });
    const c = cluster;
    await c.admOk('alpha', ['up', c.resource]); // a fresh disk: Inconsistent
    await betaConnectsWithoutDisk(c, 'Inconsistent');
    const r = await c.adm('beta', ['primary', c.resource]);
    expect(r.exitCode).toBe(17);
    expect(r.stderr).toContain('1403: State change failed: (-2) Need access to UpToDate data');
    expect(r.stderr).toContain("Command 'drbdsetup-84 primary 1403' terminated with exit code 17");
    expect(await c.query('beta', 'role')).toBe('Secondary/Secondary');
    // --force cannot make data out of no disk either.
    const forced = await c.adm('beta', ['primary', '--force', c.resource]);
    expect(forced.exitCode).toBe(17);
    expect(forced.stderr).toContain('(-2) Need access to UpToDate data');
    // Once the peer is UpToDate the same request succeeds.
    await c.admOk('alpha', ['primary', '--force', c.resource]);
    await c.waitState('beta', 'dstate', 'Diskless/UpToDate');
    await c.admOk('alpha', ['secondary', c.resource]);
    await c.waitState('beta', 'role', 'Secondary/Secondary');
    await c.admOk('beta', ['primary', c.resource]);
    expect(await c.query('beta', 'role')).toBe('Primary/Secondary');
    await c.admOk('beta', ['secondary', c.resource]);
  });

  it('new-minor without new-resource is (158) Unknown resource; a second new-minor is (161); connect before new-minor is refused', async () => {
    cluster = new Cluster({ resource: 'dl3', port: 9403, minorBase: 1404 });
    const c = cluster;
    const unknown = await c.adm('beta', ['new-minor', c.resource]);
    expect(unknown.exitCode).toBe(10);
    expect(unknown.stderr).toContain('dl3: Failure: (158) Unknown resource');
    expect(unknown.stderr).toContain("Command 'drbdsetup-84 new-minor dl3 1405 0' terminated with exit code 10");
    await c.admOk('beta', ['new-resource', c.resource]);
    const early = await c.adm('beta', ['connect', c.resource]);
    expect(early.exitCode).toBe(10);
    expect(early.stderr).toContain("run 'udrbdadm new-minor dl3' first");
    const attach = await c.adm('beta', ['attach', c.resource]);
    expect(attach.exitCode).toBe(10);
    expect(attach.stderr).toContain('1405: Failure: (127) Device minor not allocated');
    await c.admOk('beta', ['new-minor', c.resource]);
    const again = await c.adm('beta', ['new-minor', c.resource]);
    expect(again.exitCode).toBe(10);
    expect(again.stderr).toContain('1405: Failure: (161) Minor or volume exists already (delete it first)');
    // -d prints drbdadm-84's lines for both verbs.
    expect(await c.admOk('beta', ['-d', 'new-resource', c.resource])).toBe('drbdsetup-84 new-resource dl3\n');
    expect(await c.admOk('beta', ['-d', 'new-minor', c.resource])).toBe('drbdsetup-84 new-minor dl3 1405 0\n');
    // And the volume then attaches and the resource runs as after `up`.
    await c.admOk('beta', ['attach', c.resource]);
    expect(await c.query('beta', 'dstate')).toBe('Inconsistent/DUnknown');
  });
});

describe('two nodes without a disk', () => {
  it('refuse each other: "some backing storage is needed", both StandAlone', async () => {
    cluster = new Cluster({ resource: 'dl7', port: 9407, minorBase: 1412 });
    const c = cluster;
    for (const node of ['alpha', 'beta'] as const) {
      await c.admOk(node, ['new-resource', c.resource]);
      await c.admOk(node, ['new-minor', c.resource]);
      await c.admOk(node, ['connect', c.resource]);
    }
    for (const node of ['alpha', 'beta'] as const) {
      await c.waitFor(`${node} logs the refusal`, () => c.logText(node).includes('some backing storage is needed'));
      // StandAlone, Diskless, Secondary: "Unconfigured"; the link never reached Connected.
      await c.waitState(node, 'cstate', 'Unconfigured');
      expect(c.logText(node)).not.toContain('-> Connected )');
    }
  });
});

describe('a detached node that went StandAlone reconnects diskless, then attaches', () => {
  it('Connected Diskless/UpToDate, then attach: a bitmap resync from the peer, both data areas equal', async () => {
    cluster = new Cluster({ resource: 'dl4', port: 9404, minorBase: 1406 });
    const c = cluster;
    await c.upSynced();
    await c.write('alpha', 1 * MiB, pattern(64 * KiB, 3));
    await c.admOk('beta', ['detach', c.resource]);
    await c.waitState('beta', 'dstate', 'Diskless/UpToDate');
    await c.admOk('beta', ['disconnect', c.resource]);
    // StandAlone, Diskless and Secondary: drbdsetup's "Unconfigured".
    await c.waitState('beta', 'cstate', 'Unconfigured');
    expect((await c.statusJson('beta')).disk).toBe('Diskless');
    // alpha goes on alone, then with beta connected diskless: neither reaches beta's old disk.
    await c.waitState('alpha', 'cstate', 'WFConnection');
    await c.write('alpha', 5 * MiB, pattern(512 * KiB, 4));
    await c.admOk('beta', ['connect', c.resource]);
    await c.waitState('beta', 'cstate', 'Connected');
    await c.waitState('beta', 'dstate', 'Diskless/UpToDate');
    await c.waitState('alpha', 'dstate', 'UpToDate/Diskless');
    expect((await c.statusJson('beta')).sizeBytes).toBe((await c.statusJson('alpha')).sizeBytes);
    await c.write('alpha', 30 * MiB, pattern(256 * KiB, 5));
    expect(c.hashDataArea('alpha')).not.toBe(c.hashDataArea('beta'));

    await c.admOk('beta', ['attach', c.resource]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected');
    const betaLog = c.logText('beta');
    expect(betaLog).toContain('Began resync as SyncTarget');
    // A bitmap-based resync (the old disk's UUID is alpha's bitmap UUID), not a full one.
    expect(betaLog).toMatch(/uuid_compare\(\)=-1 by rule/);
    await c.admOk('alpha', ['secondary', c.resource]);
    expect(c.hashDataArea('beta')).toBe(c.hashDataArea('alpha'));
    expect(sha256(c.readDisk('beta', 30 * MiB, 256 * KiB))).toBe(sha256(pattern(256 * KiB, 5)));
  });
});

describe('up with the backing disk missing', () => {
  it('drbdadm-84 stops after the failed attach and never runs connect (recording drbdsetup/drbdmeta)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-dl-oracle-'));
    try {
      const calls = path.join(dir, 'calls.log');
      const fake = (name: string, failVerb: string, code: number): string => {
        const file = path.join(dir, name);
        fs.writeFileSync(file, `#!/bin/sh\necho "${name} $*" >> ${calls}\ncase "$*" in *${failVerb}*) exit ${code};; esac\nexit 0\n`, { mode: 0o755 });
        return file;
      };
      const conf = path.join(dir, 'r.conf');
      fs.writeFileSync(conf, [
        'resource dl5 {',
        `  on ${os.hostname()} { device /dev/drbd1408 minor 1408; disk ${path.join(dir, 'missing.img')}; address 127.0.0.1:9405; meta-disk internal; }`,
        '  on other { device /dev/drbd1409 minor 1409; disk /dev/null; address 127.0.0.2:9405; meta-disk internal; }',
        '}',
        '',
      ].join('\n'));
      // drbdmeta's apply-al fails on a missing disk (exit 20): drbdadm stops before connect, exit 1.
      const r = spawnSync(DRBDADM_84, ['-c', conf, '-s', fake('drbdsetup', 'attach', 10), '-m', fake('drbdmeta', 'apply-al', 20), 'up', 'dl5'], { encoding: 'utf8' });
      expect(r.status).toBe(1);
      const lines = fs.readFileSync(calls, 'utf8').trim().split('\n');
      expect(lines.map((l) => l.split(' ').slice(0, 2).join(' '))).toEqual(['drbdsetup new-resource', 'drbdsetup new-minor', 'drbdmeta 1408']);
      // The same with apply-al passing and the attach failing: still no connect.
      fs.rmSync(calls);
      const r2 = spawnSync(DRBDADM_84, ['-c', conf, '-s', fake('drbdsetup', 'attach', 10), '-m', fake('drbdmeta', 'no-such-verb', 20), 'up', 'dl5'], { encoding: 'utf8' });
      expect(r2.status).toBe(1);
      const lines2 = fs.readFileSync(calls, 'utf8').trim().split('\n');
      expect(lines2.some((l) => l.startsWith('drbdsetup attach'))).toBe(true);
      expect(lines2.some((l) => l.startsWith('drbdsetup connect'))).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('udrbdadm up fails, and the node never connects: the peer stays WFConnection', async () => {
    cluster = new Cluster({ resource: 'dl6', port: 9406, minorBase: 1410 });
    const c = cluster;
    await c.admOk('alpha', ['up', c.resource]);
    fs.rmSync(c.disks.beta);
    const r = await c.adm('beta', ['up', c.resource]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain(`cannot open backing disk '${c.disks.beta}'`);
    expect(await c.query('beta', 'cstate')).toBe('Unconfigured');
    // Two connect intervals (connect-int 1) later alpha has seen nobody.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect(await c.query('alpha', 'cstate')).toBe('WFConnection');
    expect(c.logText('alpha')).not.toContain('conn( WFConnection -> WFReportParams )');
  });
});
