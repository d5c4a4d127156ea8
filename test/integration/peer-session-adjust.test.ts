/**
 * Net options changed online (`adjust` → PeerSession.updateTimers): a live
 * session takes new ping-int / ping-timeout at once, without reconnecting.
 * The far end is a raw socket that never answers a Ping.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { FrameDecoder } from '../../src/peer/codec.js';
import { PeerSession } from '../../src/peer/session.js';
import type { LinkLossReason } from '../../src/peer/channel.js';

const PORT = 8029;
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

async function silentPeer(): Promise<net.Socket> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: PORT }, () => resolve()));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect({ host: '127.0.0.1', port: PORT });
  await new Promise<void>((resolve) => client.once('connect', () => resolve()));
  const far = await accepted;
  server.close();
  far.resume(); // reads and drops everything: never a PingAck
  cleanups.push(() => void client.destroy(), () => void far.destroy());
  return client;
}

function closed(s: PeerSession, timeoutMs: number): Promise<LinkLossReason | 'none'> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('none'), timeoutMs);
    s.onClose((reason) => {
      clearTimeout(timer);
      resolve(reason);
    });
  });
}

describe('peer session timers changed online', () => {
  it('a shorter ping-int / ping-timeout applies to the live session at once: the silent peer is found dead', async () => {
    const messages: string[] = [];
    const socket = await silentPeer();
    const session = new PeerSession(socket, new FrameDecoder(() => undefined, { volumes: new Set([0]) }), {
      pingIntervalMs: 60_000,
      pingTimeoutMs: 60_000,
      timeoutMs: 60_000,
      koCount: 7,
      logger: pino({ level: 'info' }, { write: (line: string) => void messages.push(JSON.parse(line).msg as string) }),
    });
    cleanups.push(() => session.close('Disconnecting'));
    expect(await closed(session, 500)).toBe('none'); // with the old timers nothing happens
    const started = Date.now();
    session.updateTimers({ pingIntervalMs: 100, pingTimeoutMs: 200, timeoutMs: 60_000, koCount: 7 });
    expect(await closed(session, 3_000)).toBe('NetworkFailure');
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(messages).toContain('PingAck did not arrive in time.');
  });
});
