/**
 * Issue 5's real-NBD-client bullet against a replicating Primary (not a bare
 * FileDisk): fio's nbd engine with verify=crc32c at iodepth 16 on the
 * Primary's NBD socket (UDRBD_FRONTEND=none) while a protocol C peer is
 * connected; every write is mirrored, so after `secondary` the two data
 * areas hash equal.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { fioVerify, requireTool } from '../helpers/nbd-helpers.js';

const MiB = 1024 * 1024;

let cluster: Cluster | undefined;

beforeAll(async () => {
  await requireTool('fio');
});

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

describe('real NBD clients on a replicating Primary', () => {
  it('fio nbd engine verify=crc32c at iodepth 16 on a protocol C Primary: zero verify errors, peer data area equal after secondary', async () => {
    cluster = new Cluster({ port: 7812, protocol: 'C' });
    const c = cluster;
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.waitState('beta', 'cstate', 'Connected');
    await c.admOk('alpha', ['new-current-uuid', '--clear-bitmap', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate');
    await c.admOk('alpha', ['primary', c.resource]);
    const status = await c.statusJson('alpha');
    expect(status.protocol).toBe('C');
    const frontend = status.frontend as { kind: string; nbdSocket: string };
    expect(frontend.kind).toBe('none');

    const uri = `nbd+unix:///${c.resource}?socket=${frontend.nbdSocket}`;
    const r = await fioVerify(uri, 'nbd-verify-replicated', c.dir, 150_000);
    expect(r.stderr).not.toMatch(/verify: bad|crc32c: verify failed|bad magic/i);
    expect(r.exitCode).toBe(0);
    expect(r.error).toBe(0);
    expect(r.writeBytes).toBeGreaterThan(0);
    expect(r.readBytes).toBeGreaterThan(0);

    // The peer stayed connected through the run: nothing was left out of sync.
    expect(await c.query('alpha', 'cstate')).toBe('Connected');
    expect((await c.statusJson('alpha')).outOfSyncKiB).toBe(0);
    await c.admOk('alpha', ['secondary', c.resource]);
    expect(await c.query('alpha', 'dstate')).toBe('UpToDate/UpToDate');
    const hashAlpha = c.hashDataArea('alpha');
    expect(hashAlpha).toBe(c.hashDataArea('beta'));
    // fio really changed the volume (the data areas started all zeros).
    expect(c.readDisk('alpha', 0, 48 * MiB).equals(Buffer.alloc(48 * MiB))).toBe(false);
  });
});
