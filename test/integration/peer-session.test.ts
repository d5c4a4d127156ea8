/**
 * PeerSession over real loopback sockets (no connector): ordered delivery,
 * holding packets until a receiver is attached, back-pressure, ko-count send
 * timeouts, protocol errors and exactly-once onClose. Bounded in time; all
 * sockets closed in afterEach.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { FrameDecoder, PAYLOAD_BYTES_MAX } from '../../src/peer/codec.js';
import { PeerSession, type SessionOptions } from '../../src/peer/session.js';
import type { LinkLossReason } from '../../src/peer/channel.js';
import { PacketType, type Packet } from '../../src/peer/packets.js';

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function logger(messages: string[]): SessionOptions['logger'] {
  return pino({ level: 'info' }, { write: (line: string) => void messages.push(JSON.parse(line).msg as string) });
}

/** A connected pair of raw sockets on loopback. */
async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve) => client.once('connect', () => resolve()));
  const serverSide = await accepted;
  server.close();
  client.setNoDelay(true);
  serverSide.setNoDelay(true);
  cleanups.push(() => void client.destroy(), () => void serverSide.destroy());
  return [client, serverSide];
}

function session(socket: net.Socket, messages: string[], extra: Partial<SessionOptions> = {}): PeerSession {
  const s = new PeerSession(socket, new FrameDecoder(() => undefined, { volumes: new Set([0]) }), {
    pingIntervalMs: 60_000,
    pingTimeoutMs: 60_000,
    timeoutMs: 60_000,
    koCount: 7,
    logger: logger(messages),
    ...extra,
  });
  cleanups.push(() => s.close('Disconnecting'));
  return s;
}

function closeReason(s: PeerSession, timeoutMs: number): Promise<LinkLossReason | 'none'> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('none'), timeoutMs);
    s.onClose((reason) => {
      clearTimeout(timer);
      resolve(reason);
    });
  });
}

describe('peer session', () => {
  it('holds packets until a receiver is attached, then delivers them in order', async () => {
    const [a, b] = await socketPair();
    const sa = session(a, []);
    const sb = session(b, []);
    for (let i = 0; i < 500; i++) sa.send({ type: PacketType.Barrier, epoch: i });
    await new Promise((r) => setTimeout(r, 100));
    const got: Packet[] = [];
    const all = new Promise<void>((resolve) =>
      sb.onPacket((p) => {
        got.push(p);
        if (got.length === 500) resolve();
      }),
    );
    await all;
    expect(got.map((p) => (p as { epoch: number }).epoch)).toEqual(Array.from({ length: 500 }, (_, i) => i));
  });

  it('answers Ping with PingAck without bothering the receiver', async () => {
    const [a, b] = await socketPair();
    const messages: string[] = [];
    // a pings every 50 ms of silence and expects an answer within 100 ms.
    const sa = session(a, messages, { pingIntervalMs: 50, pingTimeoutMs: 100 });
    const sb = session(b, []);
    const seen: Packet[] = [];
    sa.onPacket((p) => seen.push(p));
    sb.onPacket((p) => seen.push(p));
    await new Promise((r) => setTimeout(r, 600));
    expect(sa.isOpen).toBe(true);
    expect(sb.isOpen).toBe(true);
    expect(seen).toEqual([]);
    expect(messages).not.toContain('PingAck did not arrive in time.');
  });

  it('a peer that stops reading exhausts ko-count and the link drops with Timeout', async () => {
    const [a, b] = await socketPair();
    b.pause(); // the peer's receiver is stuck: nothing it is sent gets read
    const messages: string[] = [];
    const timeoutMs = 150;
    const koCount = 3;
    const sa = session(a, messages, { timeoutMs, koCount, sendHighWaterBytes: 4 * 1024 * 1024, sendLowWaterBytes: 1024 * 1024 });
    const payload = Buffer.alloc(PAYLOAD_BYTES_MAX, 1);
    let accepted = 0;
    for (let i = 0; i < 256 && sa.send({ type: PacketType.Data, volume: 0, offsetBytes: i * payload.length, blockId: i, epoch: 1, flags: 0, payload }); i++) accepted++;
    expect(accepted).toBeLessThan(256); // back-pressure reached: send() returned false
    const drained = sa.drained();
    const startedMs = Date.now();
    const reason = await closeReason(sa, 10_000);
    expect(reason).toBe('Timeout');
    const elapsedMs = Date.now() - startedMs;
    expect(elapsedMs).toBeGreaterThanOrEqual((koCount - 1) * timeoutMs);
    expect(elapsedMs).toBeLessThan((koCount + 2) * timeoutMs + 500);
    expect(messages).toContain('sock_sendmsg time expired, ko = 2');
    expect(messages).toContain('sock_sendmsg time expired, ko = 1');
    await drained; // waiters are released when the link goes
    expect(sa.send({ type: PacketType.Ping })).toBe(false);
  });

  it('send() signals back-pressure and drained() resolves once the peer catches up', async () => {
    const [a, b] = await socketPair();
    b.pause();
    const sa = session(a, [], { sendHighWaterBytes: 2 * 1024 * 1024, sendLowWaterBytes: 512 * 1024 });
    const sb = session(b, []);
    let received = 0;
    sb.onPacket(() => received++);
    b.pause(); // session resumed it; stop reading again until we have filled the queue
    const payload = Buffer.alloc(PAYLOAD_BYTES_MAX);
    let sent = 0;
    // Fill the kernel's socket buffers and then our queue past the high-water mark.
    for (let round = 0; round < 50; round++) {
      while (sent < 512 && sa.send({ type: PacketType.Data, volume: 0, offsetBytes: 0, blockId: sent++, epoch: 1, flags: 0, payload }));
      await new Promise((r) => setTimeout(r, 20));
      if (sa.queuedBytes > 512 * 1024) break;
    }
    expect(sent).toBeLessThan(512);
    expect(sa.queuedBytes).toBeGreaterThan(512 * 1024);
    let drained = false;
    const wait = sa.drained().then(() => (drained = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(drained).toBe(false);
    b.resume();
    await wait;
    expect(sa.queuedBytes).toBeLessThanOrEqual(512 * 1024);
    const deadline = Date.now() + 5000;
    while (received < sent && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(received).toBe(sent);
  });

  it('garbage from the peer closes the link with ProtocolError, and onClose fires exactly once', async () => {
    const [a, b] = await socketPair();
    const messages: string[] = [];
    const sa = session(a, messages);
    let calls = 0;
    sa.onClose(() => calls++);
    const reason = closeReason(sa, 2000);
    b.write(Buffer.from('this is not a frame at all'));
    expect(await reason).toBe('ProtocolError');
    sa.close('NetworkFailure');
    await new Promise((r) => setTimeout(r, 20));
    expect(calls).toBe(1);
    expect(sa.isOpen).toBe(false);
    expect(messages.some((m) => m.startsWith('Protocol error from peer: bad frame magic'))).toBe(true);
  });

  it('the peer closing its end is BrokenPipe; a graceful close delivers what was queued first', async () => {
    const [a, b] = await socketPair();
    const sa = session(a, []);
    const sb = session(b, []);
    const got: Packet[] = [];
    sb.onPacket((p) => got.push(p));
    const reason = closeReason(sb, 2000);
    sa.send({ type: PacketType.Barrier, epoch: 1 });
    sa.send({ type: PacketType.Disconnect });
    sa.close('Disconnecting');
    expect(await reason).toBe('BrokenPipe');
    expect(got).toEqual([{ type: PacketType.Barrier, epoch: 1 }, { type: PacketType.Disconnect }]);
  });
});
