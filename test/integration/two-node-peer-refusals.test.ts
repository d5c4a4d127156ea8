/**
 * Issue 4 acceptance on a running resource process's peer port: a wrong
 * shared secret, a connection from an address not in the config, garbage
 * bytes and an oversized frame are refused and logged, change no state, and
 * do not crash the process; the real peer still connects afterwards.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { isProcessAlive } from '../../src/control/paths.js';
import { FRAME_MAGIC, HEADER_BYTES, HEADER_LENGTH_OFFSET, HEADER_TYPE_OFFSET, HEADER_VERSION_OFFSET, PROTOCOL_VERSION } from '../../src/peer/codec.js';

let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

/** Connects from `localAddress` to host:port, writes `bytes`, waits until the other side closes (bounded). */
function poke(host: string, port: number, localAddress: string, bytes: Buffer, timeoutMs = 5_000): Promise<'closed' | 'open'> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, localAddress });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('open');
    }, timeoutMs);
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
    socket.on('timeout', () => reject(new Error('timeout')));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('peer port refusals', () => {
  it('a peer with a wrong shared secret is refused and logged on both sides; nothing changes', async () => {
    cluster = new Cluster({
      port: 7781,
      proxy: true,
      netPerNode: {
        alpha: ['cram-hmac-alg sha256;', 'shared-secret "alpha-secret";'],
        beta: ['cram-hmac-alg sha256;', 'shared-secret "not-the-same";'],
      },
    });
    const c = cluster;
    await c.startProxies();
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitFor('an authentication failure on both nodes', () =>
      c.logText('alpha').includes('Authentication of peer failed') && c.logText('beta').includes('Authentication of peer failed'),
    20_000);
    await sleep(2_000);
    for (const node of ['alpha', 'beta'] as const) {
      expect(await c.query(node, 'cstate')).toBe('WFConnection');
      expect(await c.query(node, 'dstate')).toBe('Inconsistent/DUnknown');
      expect(c.logText(node)).not.toContain('conn( WFConnection -> WFReportParams )');
      expect(isProcessAlive(c.pid(node)!)).toBe(true);
    }
  });

  it('the same cram-hmac-alg and shared secret on both nodes: authenticated, Connected, the initial sync completes and the data areas are equal', async () => {
    // the wrong-secret test above with the secrets made equal: only the secret differs between the two
    cluster = new Cluster({
      port: 7804,
      proxy: true,
      netPerNode: {
        alpha: ['cram-hmac-alg sha256;', 'shared-secret "the-same-secret";'],
        beta: ['cram-hmac-alg sha256;', 'shared-secret "the-same-secret";'],
      },
    });
    const c = cluster;
    await c.startProxies();
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.waitState('beta', 'cstate', 'Connected');
    await c.admOk('alpha', ['primary', '--force', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.write('alpha', 4096, Buffer.alloc(64 * 1024, 0x5a));
    expect(c.readDisk('beta', 4096, 64 * 1024).equals(Buffer.alloc(64 * 1024, 0x5a))).toBe(true);
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
    for (const node of ['alpha', 'beta'] as const) {
      expect(c.logText(node)).toContain('conn( WFConnection -> WFReportParams )');
      expect(c.logText(node)).not.toContain('Authentication of peer failed');
    }
    // the proxied link carried the whole sync (so the authenticated connection is the one in use)
    expect(c.proxyBytes()).toBeGreaterThan(c.dataSizeBytes('alpha'));
  });

  it('unknown source address, garbage bytes and an oversized frame are dropped; the real peer connects afterwards', async () => {
    cluster = new Cluster({ port: 7782 });
    const c = cluster;
    await c.admOk('alpha', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'WFConnection');
    const pid = c.pid('alpha')!;
    // from an address that is not beta's
    expect(await poke('127.0.0.1', c.port, '127.0.0.3', Buffer.from('hello'))).toBe('closed');
    await c.waitFor('unknown address logged', () => c.logText('alpha').includes('Closing unexpected connection from 127.0.0.3'), 5_000);
    // from beta's address: garbage, then a frame header with the right magic claiming 2 GiB
    expect(await poke('127.0.0.1', c.port, '127.0.0.2', Buffer.from('GET / HTTP/1.0\r\n\r\n'.repeat(8)))).toBe('closed');
    // The whole header of this build's wire version (volume 0), so it is the length that is refused.
    const oversized = Buffer.alloc(HEADER_BYTES);
    oversized.writeUInt32BE(FRAME_MAGIC, 0);
    oversized.writeUInt16BE(PROTOCOL_VERSION, HEADER_VERSION_OFFSET);
    oversized.writeUInt16BE(0x30, HEADER_TYPE_OFFSET);
    oversized.writeUInt32BE(0x7fffffff, HEADER_LENGTH_OFFSET);
    expect(await poke('127.0.0.1', c.port, '127.0.0.2', oversized)).toBe('closed');
    await sleep(500);
    expect(isProcessAlive(pid)).toBe(true);
    expect(c.pid('alpha')).toBe(pid);
    expect(await c.query('alpha', 'cstate')).toBe('WFConnection');
    expect(await c.query('alpha', 'dstate')).toBe('Inconsistent/DUnknown');
    const log = c.logText('alpha');
    expect(log).not.toContain('conn( WFConnection -> WFReportParams )');
    // one protocol error per bad connection (the garbage one and the oversized one)
    expect(log.split('Protocol error during connection set-up from 127.0.0.2').length - 1).toBeGreaterThanOrEqual(2);
    // the real peer is still accepted
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.waitState('beta', 'cstate', 'Connected');
  });
});
