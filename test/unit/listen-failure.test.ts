/**
 * daemon/listen-failure and daemon/port-holder: the texts `up` prints when
 * its first listen fails, and finding who holds a port from /proc.
 */
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { ListenFailedError, listenFailureError } from '../../src/daemon/listen-failure.js';
import { findPortHolder, listeningInodes } from '../../src/daemon/port-holder.js';

const target = { resource: 'sfl', host: '192.0.2.1', port: 7916, configPath: '/etc/drbd.conf' };

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`listen ${code}`), { code });
}

describe('listen failures', () => {
  it("EADDRNOTAVAIL is drbdadm's 'IP ... not found on this host.', exit 10", () => {
    const err = listenFailureError(errno('EADDRNOTAVAIL'), target);
    expect(err).toBeInstanceOf(ListenFailedError);
    expect(err.message).toBe('IP 192.0.2.1 not found on this host.');
    expect(err.exitCode).toBe(10);
  });

  it('EADDRINUSE names address:port, the holder if found, and the config file', () => {
    const err = listenFailureError(errno('EADDRINUSE'), { ...target, host: '127.0.0.1', port: 1 });
    expect(err.message).toBe('sfl: cannot listen on 127.0.0.1:1: the address is already in use; stop that process or change the address of this node in /etc/drbd.conf');
    expect(err.exitCode).toBe(10);
    expect(listenFailureError(errno('EACCES'), { ...target, host: '::1' }).message).toContain('cannot listen on [::1]:7916: listen EACCES');
  });

  it('parses LISTEN sockets on the port, on the address or a wildcard, from /proc/net/tcp', () => {
    const text = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0100007F:1ED5 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0',
      '   1: 0200007F:1ED5 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0 100 0 0 10 0',
      '   2: 00000000:1ED5 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0 100 0 0 10 0',
      '   3: 0100007F:1ED5 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 444 1 0 100 0 0 10 0',
      '   4: 0100007F:1ED6 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0 100 0 0 10 0',
    ].join('\n');
    expect(listeningInodes(text, '127.0.0.1', 0x1ed5, false)).toEqual(['111', '333']);
  });

  it('finds this process as the holder of a port it listens on', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 7917 }, resolve));
    try {
      expect(findPortHolder('127.0.0.1', 7917)).toEqual({ pid: process.pid, command: expect.any(String) as string });
      expect(findPortHolder('127.0.0.1', 7918)).toBeUndefined();
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
