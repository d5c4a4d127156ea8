/**
 * UDRBD_NBD_TCP=HOST:PORT: the Primary also serves its NBD export on TCP
 * loopback, through a real resource process. nbdinfo sees the export and its
 * size over nbd://; a client connected over TCP holds the device open like a
 * unix-socket client (secondary refused with -12); `secondary` closes the
 * listener with the unix socket. A non-loopback address is refused at `up`
 * with an error that names the setting, the reason and what to use instead.
 */
import net from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { Cluster } from '../helpers/cluster.js';
import { requireTool } from '../helpers/nbd-helpers.js';
import { parseNbdTcpAddress, isLoopbackAddress } from '../../src/frontend/nbd/index.js';

const TCP_PORT = 7813;

let cluster: Cluster | undefined;

beforeAll(async () => {
  await requireTool('nbdinfo');
});

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

/** True when something accepts a TCP connection on 127.0.0.1:port. */
function tcpAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('UDRBD_NBD_TCP address', () => {
  it('accepts 127.0.0.0/8 and [::1]; refuses other hosts, names, missing or bad ports with the setting named', () => {
    expect(parseNbdTcpAddress('127.0.0.1:10809', 'UDRBD_NBD_TCP')).toEqual({ host: '127.0.0.1', port: 10809 });
    expect(parseNbdTcpAddress(' 127.3.4.5:1 ', 'UDRBD_NBD_TCP')).toEqual({ host: '127.3.4.5', port: 1 });
    expect(parseNbdTcpAddress('[::1]:10809', 'UDRBD_NBD_TCP')).toEqual({ host: '::1', port: 10809 });
    expect(isLoopbackAddress('0:0:0:0:0:0:0:1')).toBe(true);
    for (const host of ['0.0.0.0', '10.0.0.1', '128.0.0.1', 'localhost', '127.example.com', '::', '::2']) expect(isLoopbackAddress(host)).toBe(false);
    expect(() => parseNbdTcpAddress('0.0.0.0:10809', 'UDRBD_NBD_TCP')).toThrow(/UDRBD_NBD_TCP: NBD over TCP is only served on a loopback address \(127\.0\.0\.0\/8 or ::1\), not on '0\.0\.0\.0'.*no authentication.*use e\.g\. 127\.0\.0\.1:10809/);
    expect(() => parseNbdTcpAddress('localhost:10809', 'UDRBD_NBD_TCP')).toThrow(/not on 'localhost'/);
    expect(() => parseNbdTcpAddress('127.0.0.1', 'UDRBD_NBD_TCP')).toThrow(/UDRBD_NBD_TCP: expected HOST:PORT/);
    expect(() => parseNbdTcpAddress('::1:10809', 'UDRBD_NBD_TCP')).toThrow(/expected HOST:PORT .*\[::1\]:10809/);
    expect(() => parseNbdTcpAddress('127.0.0.1:0', 'UDRBD_NBD_TCP')).toThrow(/port must be 1\.\.65535/);
    expect(() => parseNbdTcpAddress('127.0.0.1:70000', 'UDRBD_NBD_TCP')).toThrow(/port must be 1\.\.65535/);
  });
});

describe('NBD over TCP loopback from a resource process', () => {
  it('the Primary serves the export on UDRBD_NBD_TCP (nbdinfo sees the size), a TCP client holds it open, gone after secondary', async () => {
    cluster = new Cluster({ port: 7814 });
    const c = cluster;
    c.env.UDRBD_NBD_TCP = `127.0.0.1:${TCP_PORT}`;
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    expect(await tcpAccepts(TCP_PORT)).toBe(false); // a Secondary serves nothing
    await c.admOk('alpha', ['primary', '--force', c.resource]);
    const frontend = (await c.statusJson('alpha')).frontend as Record<string, unknown>;
    expect(frontend).toMatchObject({ kind: 'none', nbdTcp: `127.0.0.1:${TCP_PORT}` });

    const size = await execa('nbdinfo', ['--size', `nbd://127.0.0.1:${TCP_PORT}/${c.resource}`]);
    expect(Number(size.stdout.trim())).toBe(c.dataSizeBytes('alpha'));

    // A connected TCP client is a user of the volume, like one on the unix socket.
    const client = net.createConnection({ host: '127.0.0.1', port: TCP_PORT });
    client.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    try {
      const refused = await c.adm('alpha', ['secondary', c.resource]);
      expect(refused.exitCode).toBe(11);
      expect(refused.stderr).toContain('State change failed: (-12) Device is held open by someone');
      expect(await c.query('alpha', 'role')).toBe('Primary/Secondary');
    } finally {
      client.destroy();
    }

    await c.waitFor('secondary once the TCP client left', async () => (await c.adm('alpha', ['secondary', c.resource])).exitCode === 0, 10_000);
    expect(await c.query('alpha', 'role')).toBe('Secondary/Secondary');
    expect(await tcpAccepts(TCP_PORT)).toBe(false);
    expect((await c.statusJson('alpha')).frontend).toBeNull();
    const gone = await execa('nbdinfo', ['--size', `nbd://127.0.0.1:${TCP_PORT}/${c.resource}`], { reject: false });
    expect(gone.exitCode).not.toBe(0);
  });

  it('a non-loopback UDRBD_NBD_TCP is refused at up with the setting, the reason and what to do', async () => {
    cluster = new Cluster({ port: 7815 });
    const c = cluster;
    c.env.UDRBD_NBD_TCP = '0.0.0.0:7816';
    const r = await c.adm('alpha', ['up', c.resource]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain("UDRBD_NBD_TCP: NBD over TCP is only served on a loopback address (127.0.0.0/8 or ::1), not on '0.0.0.0'");
    expect(r.stderr).toContain('use e.g. 127.0.0.1:10809');
    expect(await tcpAccepts(7816)).toBe(false);
  });
});
