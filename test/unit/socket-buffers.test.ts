/**
 * peer/socket-buffers: sndbuf-size / rcvbuf-size land on a real TCP socket
 * with exactly the configured size (getsockopt through native/udrbd-io, which
 * must be built: native/udrbd-io/build.sh); 0 leaves auto-tuning alone.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { applySocketBuffers, socketBufferSizes, socketBufferSupport } from '../../src/peer/socket-buffers.js';

const sockets: net.Socket[] = [];
let server: net.Server | undefined;
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

async function connectedPair(): Promise<[net.Socket, net.Socket]> {
  const accepted = new Promise<net.Socket>((resolve) => {
    server = net.createServer((s) => resolve(s));
  });
  await new Promise<void>((resolve) => server!.listen(7921, '127.0.0.1', () => resolve()));
  const client = net.connect({ host: '127.0.0.1', port: 7921 });
  await new Promise<void>((resolve, reject) => client.once('connect', () => resolve()).once('error', reject));
  const other = await accepted;
  sockets.push(client, other);
  return [client, other];
}

describe('socket buffers', () => {
  it('the native addon is built and offers setSocketBuffer', () => {
    expect(socketBufferSupport()).toBeUndefined();
  });

  it('sets SO_SNDBUF and SO_RCVBUF to exactly the configured sizes', async () => {
    const [client] = await connectedPair();
    const got = applySocketBuffers(client, { sndbufSizeBytes: 512 * 1024, rcvbufSizeBytes: 256 * 1024 });
    expect(got).toEqual({ sndbufBytes: 524288, rcvbufBytes: 262144 });
    expect(socketBufferSizes(client)).toEqual(got);
  });

  it('0 leaves the kernel default (auto-tuning) in place', async () => {
    const [client, other] = await connectedPair();
    const before = socketBufferSizes(other);
    expect(applySocketBuffers(client, { sndbufSizeBytes: 0, rcvbufSizeBytes: 0 })).toEqual(socketBufferSizes(client));
    expect(socketBufferSizes(client)).toEqual(before);
  });

  it('refuses sizes beyond drbd_limits (10 MiB)', async () => {
    const [client] = await connectedPair();
    expect(() => applySocketBuffers(client, { sndbufSizeBytes: 11 << 20, rcvbufSizeBytes: 0 })).toThrow(/out of range/);
  });
});
