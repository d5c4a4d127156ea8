/**
 * Integration tests of the peer link over loopback TCP: two PeerConnectors
 * (alpha on 127.0.0.1, beta on 127.0.0.2), optionally with fault proxies in
 * between. Every wait is bounded; every connector and proxy is stopped in
 * afterEach even when a test fails.
 */
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { PeerConnector, peerParams, type HandshakeResult, type LocalParams, type LocalVolumeParams, type PeerConnectorOptions } from '../../src/peer/index.js';
import type { RefusedInfo } from '../../src/peer/index.js';
import { FRAME_MAGIC, HEADER_BYTES, PROTOCOL_VERSION } from '../../src/peer/codec.js';
import { PacketType, type Packet } from '../../src/peer/packets.js';
import { FaultProxy } from '../helpers/fault-proxy.js';

const ALPHA_HOST = '127.0.0.1';
const BETA_HOST = '127.0.0.2';

interface Node {
  name: string;
  connector: PeerConnector;
  messages: string[];
  refused: RefusedInfo[];
  connected: HandshakeResult[];
  params: LocalParams;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function freePort(host: string): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: 0 }, () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function localVolume(volume: number, seed: bigint): LocalVolumeParams {
  const s = seed + BigInt(volume) * 16n;
  return {
    volume,
    syncParam: { resyncRateKiBps: 250, cPlanAheadDs: 20, cDelayTargetDs: 10, cFillTargetSectors: 100, cMaxRateKiBps: 102400, verifyAlg: '', csumsAlg: '' },
    uuids: { uuids: { current: 0x1000n + s, bitmap: s, historyStart: 4n, historyEnd: 0n }, bitsSet: Number(s) * 7, uuidFlags: 4 },
    sizes: { diskSizeBytes: 64 * 1024 * 1024 + Number(s) * 4096, userSizeBytes: 0, currentSizeBytes: 0, maxRequestBytes: 1024 * 1024, ddsFlags: 0 },
    state: { role: 2, disk: 4, conn: 9, userIsp: false },
  };
}

function localParams(name: string, seed: bigint, overrides: Partial<LocalParams['protocol']> = {}): LocalParams {
  return {
    protocol: {
      protocol: 'C', afterSb0pri: 'disconnect', afterSb1pri: 'disconnect', afterSb2pri: 'disconnect',
      allowTwoPrimaries: false, discardMyData: false, nodeName: name, integrityAlg: '', ...overrides,
    },
    volumes: [localVolume(0, seed)],
  };
}

/** The one volume of a one-volume node's parameters. */
function vol0(params: LocalParams): LocalVolumeParams {
  return params.volumes[0]!;
}

/** `params` with its one volume changed by `change`. */
function withVol0(params: LocalParams, change: Partial<LocalVolumeParams>): LocalParams {
  return { ...params, volumes: [{ ...vol0(params), ...change }] };
}

function makeNode(
  name: string,
  peerNodeName: string,
  localAddress: { host: string; port: number },
  peerAddress: { host: string; port: number },
  extra: Partial<PeerConnectorOptions> & { protocolOverrides?: Partial<LocalParams['protocol']> } = {},
): Node {
  const messages: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void messages.push(JSON.parse(line).msg as string) });
  const { protocolOverrides, ...connectorExtra } = extra;
  const connector = new PeerConnector({
    localAddress,
    peerAddress,
    nodeName: name,
    peerNodeName,
    connectIntervalMs: 100,
    pingIntervalMs: 2000,
    pingTimeoutMs: 1000,
    timeoutMs: 2000,
    koCount: 7,
    handshakeTimeoutMs: 3000,
    volumes: new Set([0]),
    logger,
    ...connectorExtra,
  });
  const node: Node = {
    name, connector, messages, refused: [], connected: [],
    params: localParams(name, name === 'alpha' ? 1n : 2n, protocolOverrides),
  };
  connector.on('refused', (info: RefusedInfo) => node.refused.push(info));
  connector.on('connected', (result: HandshakeResult) => node.connected.push(result));
  cleanups.push(() => connector.stop());
  return node;
}

function waitFor<T>(emitter: EventEmitter, event: string, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, onEvent);
      reject(new Error(`no '${event}' within ${timeoutMs} ms`));
    }, timeoutMs);
    const onEvent = (value: T): void => {
      clearTimeout(timer);
      resolve(value);
    };
    emitter.once(event, onEvent);
  });
}

async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Both connected; checks the handshake results agree with what each side sent. */
async function connectPair(alpha: Node, beta: Node, timeoutMs = 5000): Promise<[HandshakeResult, HandshakeResult]> {
  const a = waitFor<HandshakeResult>(alpha.connector, 'connected', timeoutMs);
  const b = waitFor<HandshakeResult>(beta.connector, 'connected', timeoutMs);
  alpha.connector.start(() => alpha.params);
  beta.connector.start(() => beta.params);
  const [ra, rb] = await Promise.all([a, b]);
  expect(ra.connection.nodeName).toBe('beta');
  expect(rb.connection.nodeName).toBe('alpha');
  expect(peerParams(ra, 0).uuids).toEqual(vol0(beta.params).uuids?.uuids);
  expect(peerParams(rb, 0).uuids).toEqual(vol0(alpha.params).uuids?.uuids);
  expect(peerParams(ra, 0).bitsSet).toBe(vol0(beta.params).uuids?.bitsSet);
  expect(peerParams(ra, 0).sizes).toEqual(vol0(beta.params).sizes);
  expect(peerParams(rb, 0).role).toBe(vol0(alpha.params).state.role);
  expect(ra.local).toEqual(alpha.params);
  return [ra, rb];
}

/** Like connectPair, for a pair where alpha was already started. */
async function connectPairStarted(alpha: Node, beta: Node): Promise<void> {
  const a = alpha.connector.cstate === 'Connected' ? Promise.resolve() : waitFor(alpha.connector, 'connected', 5000);
  const b = waitFor(beta.connector, 'connected', 5000);
  beta.connector.start(() => beta.params);
  await Promise.all([a, b]);
}

function rawConnect(host: string, port: number, localAddress: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, localAddress });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
    cleanups.push(() => void socket.destroy());
  });
}

function closedWithin(socket: net.Socket, timeoutMs: number): Promise<boolean> {
  if (socket.destroyed || socket.readableEnded) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    socket.on('error', () => undefined);
    socket.resume(); // discard what the node sent (its Hello) so 'close' can fire
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function directPair(extraA: Parameters<typeof makeNode>[4] = {}, extraB: Parameters<typeof makeNode>[4] = {}): Promise<[Node, Node]> {
  const portA = await freePort(ALPHA_HOST);
  const portB = await freePort(BETA_HOST);
  const alpha = makeNode('alpha', 'beta', { host: ALPHA_HOST, port: portA }, { host: BETA_HOST, port: portB }, extraA);
  const beta = makeNode('beta', 'alpha', { host: BETA_HOST, port: portB }, { host: ALPHA_HOST, port: portA }, extraB);
  return [alpha, beta];
}

/** alpha → proxyToBeta → beta and beta → proxyToAlpha → alpha: every byte passes a proxy. */
async function proxiedPair(extra: Parameters<typeof makeNode>[4] = {}): Promise<{ alpha: Node; beta: Node; proxies: FaultProxy[] }> {
  const portA = await freePort(ALPHA_HOST);
  const portB = await freePort(BETA_HOST);
  const toBeta = new FaultProxy({ listen: { host: BETA_HOST, port: 0 }, target: { host: BETA_HOST, port: portB }, sourceHost: ALPHA_HOST });
  const toAlpha = new FaultProxy({ listen: { host: ALPHA_HOST, port: 0 }, target: { host: ALPHA_HOST, port: portA }, sourceHost: BETA_HOST });
  await toBeta.start();
  await toAlpha.start();
  cleanups.push(() => toBeta.stop(), () => toAlpha.stop());
  const alpha = makeNode('alpha', 'beta', { host: ALPHA_HOST, port: portA }, { host: BETA_HOST, port: toBeta.port }, extra);
  const beta = makeNode('beta', 'alpha', { host: BETA_HOST, port: portB }, { host: ALPHA_HOST, port: toAlpha.port }, extra);
  return { alpha, beta, proxies: [toBeta, toAlpha] };
}

describe('peer link', () => {
  it('connects directly and exchanges data both ways over the one kept connection', async () => {
    const [alpha, beta] = await directPair();
    const [ra, rb] = await connectPair(alpha, beta);
    // The same TCP connection on both sides.
    expect(ra.session.local).toBe(rb.session.remote);
    expect(ra.session.remote).toBe(rb.session.local);
    // RESOLVE_CONFLICTS on exactly one node.
    expect(ra.resolveConflicts).not.toBe(rb.resolveConflicts);
    expect(alpha.connector.cstate).toBe('Connected');
    expect(beta.connector.cstate).toBe('Connected');

    const payload = Buffer.alloc(1024 * 1024, 7);
    const gotData = new Promise<Packet>((resolve) => rb.session.onPacket(resolve));
    const gotAck = new Promise<Packet>((resolve) => ra.session.onPacket(resolve));
    ra.session.send({ type: PacketType.Data, volume: 0, offsetBytes: 8192, blockId: 1, epoch: 1, flags: 0, payload });
    const data = await gotData;
    expect(data.type).toBe(PacketType.Data);
    expect((data as { payload: Buffer }).payload.equals(payload)).toBe(true);
    rb.session.send({ type: PacketType.WriteAck, volume: 0, offsetBytes: 8192, lengthBytes: payload.length, blockId: 1 });
    expect(await gotAck).toEqual({ type: PacketType.WriteAck, volume: 0, offsetBytes: 8192, lengthBytes: payload.length, blockId: 1 });
  });

  it('a node without a disk sends no Uuids (drbd_send_uuids): the peer connects and reads its UUIDs as not known', async () => {
    const [alpha, beta] = await directPair();
    const b0 = vol0(beta.params);
    beta.params = withVol0(beta.params, { uuids: undefined, sizes: { ...b0.sizes, diskSizeBytes: 0 }, state: { ...b0.state, disk: 0 } });
    const a = waitFor<HandshakeResult>(alpha.connector, 'connected', 5000);
    const b = waitFor<HandshakeResult>(beta.connector, 'connected', 5000);
    alpha.connector.start(() => alpha.params);
    beta.connector.start(() => beta.params);
    const [ra, rb] = await Promise.all([a, b]);
    const pa = peerParams(ra, 0);
    expect(pa.uuidsKnown).toBe(false);
    expect(pa.uuids).toEqual({ current: 0n, bitmap: 0n, historyStart: 0n, historyEnd: 0n });
    expect(pa.bitsSet).toBe(0);
    expect(pa.sizes.diskSizeBytes).toBe(0);
    expect(pa.disk).toBe(0);
    // The diskless side hears the disk side's UUIDs as usual.
    expect(peerParams(rb, 0).uuidsKnown).toBe(true);
    expect(peerParams(rb, 0).uuids).toEqual(vol0(alpha.params).uuids?.uuids);
  });

  it('dials out from its own configured address, so the peer accepts it (127.0.0.2 -> 127.0.0.1)', async () => {
    // alpha dials once at start (beta is not up yet) and then not for a minute: only beta's dial can connect.
    const [alpha, beta] = await directPair({ connectIntervalMs: 60_000 });
    alpha.connector.start(() => alpha.params);
    await until(() => alpha.connector.isListening, 2000, 'alpha listening');
    await sleep(50);
    const a = waitFor<HandshakeResult>(alpha.connector, 'connected', 5000);
    beta.connector.start(() => beta.params);
    const ra = await a;
    expect(ra.session.remote.startsWith(`${BETA_HOST}:`)).toBe(true);
    expect(ra.resolveConflicts).toBe(true); // alpha accepted the kept socket
    expect(alpha.refused).toEqual([]);
  });

  it('resolves a true simultaneous connect (both dials up before any byte flows) to one shared link, 20 times over', async () => {
    for (let round = 0; round < 20; round++) {
      const { alpha, beta, proxies } = await proxiedPair();
      // Hold every byte until both directions have a TCP connection: both
      // nodes then hold one inbound and one outbound socket at once.
      for (const proxy of proxies) proxy.freeze();
      alpha.connector.start(() => alpha.params);
      beta.connector.start(() => beta.params);
      await until(() => proxies.every((p) => p.activeConnections === 1), 3000, 'both dials connected');
      const a = waitFor<HandshakeResult>(alpha.connector, 'connected', 5000);
      const b = waitFor<HandshakeResult>(beta.connector, 'connected', 5000);
      for (const proxy of proxies) proxy.thaw();
      const [ra, rb] = await Promise.all([a, b]);

      // Same TCP connection on both sides (each side's view through its proxy).
      await until(() => proxies.reduce((n, p) => n + p.activeConnections, 0) === 1, 2000, 'the duplicate connection closed');
      // Exactly one node holds RESOLVE_CONFLICTS: the one that accepted the kept socket.
      expect(ra.resolveConflicts).not.toBe(rb.resolveConflicts);
      const keptProxy = proxies.find((p) => p.activeConnections === 1)!;
      // proxies[0] carries alpha's dial (beta accepts), proxies[1] carries beta's dial (alpha accepts).
      // Deterministic rule: the connection dialled by the lower node name (alpha) is kept,
      // so beta accepted it and beta holds RESOLVE_CONFLICTS.
      expect(keptProxy).toBe(proxies[0]);
      expect(rb.resolveConflicts).toBe(true);
      expect(ra.resolveConflicts).toBe(false);

      const gotData = new Promise<Packet>((resolve) => rb.session.onPacket(resolve));
      ra.session.send({ type: PacketType.Data, volume: 0, offsetBytes: 0, blockId: round, epoch: 1, flags: 0, payload: Buffer.alloc(512, round) });
      expect(((await gotData) as { payload: Buffer }).payload.equals(Buffer.alloc(512, round))).toBe(true);
      await sleep(20);
      expect(alpha.connected).toHaveLength(1);
      expect(beta.connected).toHaveLength(1);
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    }
  });

  it('a matching cram-hmac-alg and shared-secret connects', async () => {
    const auth = { alg: 'sha256', secret: 'Phah9eeL' };
    const [alpha, beta] = await directPair({ auth }, { auth });
    await connectPair(alpha, beta);
  });

  it('a wrong shared secret is refused on both sides, logged, and never connects', async () => {
    const [alpha, beta] = await directPair({ auth: { alg: 'sha256', secret: 'right-secret' } }, { auth: { alg: 'sha256', secret: 'wrong-secret' } });
    alpha.connector.start(() => alpha.params);
    beta.connector.start(() => beta.params);
    await until(() => alpha.refused.length >= 2 && beta.refused.length >= 2, 5000, 'repeated auth refusals on both sides');
    expect(alpha.connected).toHaveLength(0);
    expect(beta.connected).toHaveLength(0);
    for (const node of [alpha, beta]) {
      expect(node.refused.every((r) => r.reason === 'auth-failed')).toBe(true);
      expect(node.messages.some((m) => m.startsWith('Authentication of peer failed'))).toBe(true);
      expect(node.connector.cstate).toBe('WFConnection');
    }
  });

  it('auth configured on one side only is refused', async () => {
    const [alpha, beta] = await directPair({ auth: { alg: 'sha1', secret: 's' } }, {});
    alpha.connector.start(() => alpha.params);
    beta.connector.start(() => beta.params);
    await until(() => alpha.refused.length >= 1 && beta.refused.length >= 1, 5000, 'auth refusals');
    await sleep(300);
    expect(alpha.connected.length + beta.connected.length).toBe(0);
  });

  it('refuses and logs a connection from an address other than the peer, then accepts the real peer', async () => {
    const [alpha, beta] = await directPair();
    alpha.connector.start(() => alpha.params);
    await until(() => alpha.connector.isListening, 2000, 'alpha listening');
    const port = alpha.connector['opts'].localAddress.port;
    const stranger = await rawConnect(ALPHA_HOST, port, '127.0.0.3');
    expect(await closedWithin(stranger, 2000)).toBe(true);
    expect(alpha.refused).toEqual([expect.objectContaining({ reason: 'unknown-address' })]);
    expect(alpha.refused[0]!.remote.startsWith('127.0.0.3:')).toBe(true);
    expect(alpha.messages.some((m) => m.startsWith('Closing unexpected connection from 127.0.0.3'))).toBe(true);
    expect(alpha.connector.cstate).toBe('WFConnection');

    const connected = waitFor<HandshakeResult>(alpha.connector, 'connected', 5000);
    beta.connector.start(() => beta.params);
    await connected;
  });

  it('drops garbage bytes and an oversized frame header from the peer address without crashing, then accepts the real peer', async () => {
    const [alpha, beta] = await directPair();
    alpha.connector.start(() => alpha.params);
    await until(() => alpha.connector.isListening, 2000, 'alpha listening');
    const port = alpha.connector['opts'].localAddress.port;

    const garbage = await rawConnect(ALPHA_HOST, port, BETA_HOST);
    garbage.write(Buffer.from('GET / HTTP/1.0\r\n\r\n\x00\x01\x02 definitely not a udrbd frame'));
    expect(await closedWithin(garbage, 2000)).toBe(true);

    const oversized = await rawConnect(ALPHA_HOST, port, BETA_HOST);
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt32BE(FRAME_MAGIC, 0);
    header.writeUInt16BE(PROTOCOL_VERSION, 4);
    header.writeUInt16BE(0x01, 6); // Hello
    header.writeUInt32BE(0xfffffff0, 8);
    oversized.write(header);
    expect(await closedWithin(oversized, 2000)).toBe(true);

    expect(alpha.refused.map((r) => r.reason)).toEqual(['protocol-error', 'protocol-error']);
    expect(alpha.messages.some((m) => /bad frame magic/.test(m))).toBe(true);
    expect(alpha.messages.some((m) => /oversized frame/.test(m))).toBe(true);
    expect(alpha.connected).toHaveLength(0);
    expect(alpha.connector.cstate).toBe('WFConnection');

    const connected = waitFor<HandshakeResult>(alpha.connector, 'connected', 5000);
    beta.connector.start(() => beta.params);
    await connected;
  });

  it('a configuration packet for a volume not configured locally is skipped with config_unknown_volume\'s warning; the link stays up', async () => {
    const [alpha, beta] = await directPair();
    const [ra, rb] = await connectPair(alpha, beta);
    const got: Packet[] = [];
    rb.session.onPacket((p) => got.push(p));
    ra.session.send({ type: PacketType.Sizes, volume: 5, diskSizeBytes: 4096, userSizeBytes: 0, currentSizeBytes: 4096, maxRequestBytes: 4096, ddsFlags: 0 });
    ra.session.send({ type: PacketType.State, volume: 1, role: 1, disk: 8, conn: 10, userIsp: false });
    ra.session.send({ type: PacketType.WriteAck, volume: 0, offsetBytes: 0, lengthBytes: 512, blockId: 9 });
    await until(() => got.length >= 1, 2000, 'the volume-0 packet behind the skipped ones');
    await sleep(50);
    expect(got).toEqual([{ type: PacketType.WriteAck, volume: 0, offsetBytes: 0, lengthBytes: 512, blockId: 9 }]);
    expect(beta.messages).toContain('Sizes packet received for volume 5, which is not configured locally');
    expect(beta.messages).toContain('State packet received for volume 1, which is not configured locally');
    expect(rb.session.isOpen).toBe(true);
    expect(beta.connector.cstate).toBe('Connected');
  });

  it('a data packet for a volume not configured locally breaks the connection with a protocol error', async () => {
    const [alpha, beta] = await directPair();
    const [ra, rb] = await connectPair(alpha, beta);
    const got: Packet[] = [];
    rb.session.onPacket((p) => got.push(p));
    const closed = new Promise<string>((resolve) => rb.session.onClose(resolve));
    ra.session.send({ type: PacketType.Data, volume: 2, offsetBytes: 0, blockId: 1, epoch: 1, flags: 0, payload: Buffer.alloc(4096, 1) });
    expect(await closed).toBe('ProtocolError');
    expect(got).toEqual([]);
    expect(beta.messages).toContain('Protocol error from peer: Data packet received for volume 2, which is not configured locally');
  });

  it('refuses a handshake whose per-volume packets name a configured volume other than the one exchanged', async () => {
    // beta has volumes 0 and 1 configured but exchanges volume 0; alpha sends its SyncParam/Uuids/Sizes/State for volume 1.
    const [alpha, beta] = await directPair({ volumes: new Set([0, 1]) }, { volumes: new Set([0, 1]) });
    alpha.params = { ...alpha.params, volumes: [{ ...vol0(alpha.params), volume: 1 }] };
    alpha.connector.start(() => alpha.params);
    beta.connector.start(() => beta.params);
    // Whichever side has the other's four first refuses: alpha hears volume 0, beta hears volume 1.
    const alphaRefusal = 'SyncParam packet for volume 0 during the exchange of volume 1';
    const betaRefusal = 'SyncParam packet for volume 1 during the exchange of volume 0';
    await until(() => alpha.messages.includes(alphaRefusal) || beta.messages.includes(betaRefusal), 5000, 'a side refusing the other volume\'s parameters');
    await sleep(300);
    expect(alpha.connected.length + beta.connected.length).toBe(0);
  });

  it('exchanges every volume of a two-volume resource: each side hears the other\'s per-volume values', async () => {
    const [alpha, beta] = await directPair({ volumes: new Set([0, 1]) }, { volumes: new Set([0, 1]) });
    const a1 = localVolume(1, 1n);
    // alpha's volume 1 has no disk: no Uuids on the wire.
    alpha.params = { ...alpha.params, volumes: [vol0(alpha.params), { ...a1, uuids: undefined, sizes: { ...a1.sizes, diskSizeBytes: 0 }, state: { ...a1.state, disk: 0 } }] };
    const b1 = localVolume(1, 2n);
    beta.params = { ...beta.params, volumes: [vol0(beta.params), { ...b1, state: { ...b1.state, role: 1 } }] };
    const [ra, rb] = await connectPair(alpha, beta);
    for (const [result, sender] of [[ra, beta], [rb, alpha]] as const) {
      expect([...result.volumes.keys()]).toEqual([0, 1]);
      for (const sent of sender.params.volumes) {
        const heard = peerParams(result, sent.volume);
        expect(heard.nodeName).toBe(sender.name);
        expect(heard.sizes).toEqual(sent.sizes);
        expect(heard.role).toBe(sent.state.role);
        expect(heard.disk).toBe(sent.state.disk);
        expect(heard.uuidsKnown).toBe(sent.uuids !== undefined);
        expect(heard.uuids).toEqual(sent.uuids?.uuids ?? { current: 0n, bitmap: 0n, historyStart: 0n, historyEnd: 0n });
      }
    }
    // The volumes' values differ, so a mix-up would show.
    expect(peerParams(ra, 1).role).toBe(1);
    expect(peerParams(ra, 0).role).toBe(2);
    expect(peerParams(rb, 1).uuidsKnown).toBe(false);
    expect(peerParams(rb, 0).uuidsKnown).toBe(true);
    expect(peerParams(ra, 1).uuids.current).not.toBe(peerParams(ra, 0).uuids.current);
    expect(() => peerParams(ra, 2)).toThrow(/volume 2 was exchanged/);
  });

  it('a csums-alg that differs on volume 1 only drops both sides to StandAlone (Different csums-alg settings)', async () => {
    const [alpha, beta] = await directPair({ volumes: new Set([0, 1]) }, { volumes: new Set([0, 1]) });
    const a1 = localVolume(1, 1n);
    alpha.params = { ...alpha.params, volumes: [vol0(alpha.params), { ...a1, syncParam: { ...a1.syncParam, csumsAlg: 'md5' } }] };
    beta.params = { ...beta.params, volumes: [vol0(beta.params), localVolume(1, 2n)] };
    const ia = waitFor<string>(alpha.connector, 'incompatible', 5000);
    const ib = waitFor<string>(beta.connector, 'incompatible', 5000);
    alpha.connector.start(() => alpha.params);
    beta.connector.start(() => beta.params);
    expect(await ia).toBe('Different csums-alg settings. me="md5" peer=""');
    expect(await ib).toBe('Different csums-alg settings. me="" peer="md5"');
    expect(alpha.messages).toContain('Different csums-alg settings. me="md5" peer=""');
    expect(alpha.connector.cstate).toBe('StandAlone');
    expect(beta.connector.cstate).toBe('StandAlone');
    expect(alpha.connected.length + beta.connected.length).toBe(0);
  });

  it('a peer without one of our volumes never completes the exchange: it times out and retries', async () => {
    // alpha has volumes 0 and 1; beta only 0 (its decoder skips alpha's volume-1 packets).
    const [alpha, beta] = await directPair({ volumes: new Set([0, 1]), handshakeTimeoutMs: 400 }, { handshakeTimeoutMs: 400 });
    alpha.params = { ...alpha.params, volumes: [vol0(alpha.params), localVolume(1, 1n)] };
    alpha.connector.start(() => alpha.params);
    beta.connector.start(() => beta.params);
    const timedOut = 'connection handshake failed: timed out waiting for the peer\'s parameters';
    // Two timeouts on alpha: the exchange is retried after the first.
    await until(() => alpha.messages.filter((m) => m === timedOut).length >= 2, 5000, 'alpha timing out twice');
    expect(alpha.connected).toHaveLength(0);
    expect(alpha.connector.cstate).not.toBe('Connected');
    expect(alpha.connector.cstate).not.toBe('StandAlone');
    expect(beta.messages).toContain('SyncParam packet received for volume 1, which is not configured locally');
  });

  it('refuses a version-1 peer (12-byte header without a volume) at its Hello with the version mismatch', async () => {
    const [alpha] = await directPair();
    alpha.connector.start(() => alpha.params);
    await until(() => alpha.connector.isListening, 2000, 'alpha listening');
    const port = alpha.connector['opts'].localAddress.port;
    const v1 = await rawConnect(ALPHA_HOST, port, BETA_HOST);
    const name = Buffer.from('beta');
    const body = Buffer.concat([Buffer.from([0, 1, 0, 1, name.length, 0]), name]); // Hello: versions 1..1, no auth
    const header = Buffer.alloc(12);
    header.writeUInt32BE(FRAME_MAGIC, 0);
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(0x01, 6); // Hello
    header.writeUInt32BE(body.length, 8);
    v1.write(Buffer.concat([header, body]));
    expect(await closedWithin(v1, 2000)).toBe(true);
    expect(alpha.refused.map((r) => r.reason)).toEqual(['protocol-error']);
    expect(alpha.messages.some((m) => /incompatible frame version 1 \(speak 2\.\.2\)/.test(m))).toBe(true);
    expect(alpha.connected).toHaveLength(0);
  });

  it('incompatible after-sb-0pri settings drop both sides to StandAlone; discard-local vs discard-remote is compatible', async () => {
    const [alpha, beta] = await directPair({ protocolOverrides: { afterSb0pri: 'discard-zero-changes' } }, {});
    const ia = waitFor<string>(alpha.connector, 'incompatible', 5000);
    const ib = waitFor<string>(beta.connector, 'incompatible', 5000);
    alpha.connector.start(() => alpha.params);
    beta.connector.start(() => beta.params);
    expect(await ia).toBe('incompatible after-sb-0pri settings');
    expect(await ib).toBe('incompatible after-sb-0pri settings');
    expect(alpha.connector.cstate).toBe('StandAlone');
    expect(beta.connector.cstate).toBe('StandAlone');
    expect(alpha.connected.length + beta.connected.length).toBe(0);
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();

    const [a2, b2] = await directPair({ protocolOverrides: { afterSb0pri: 'discard-local' } }, { protocolOverrides: { afterSb0pri: 'discard-remote' } });
    await connectPair(a2, b2);
  });

  it('a frozen link is detected by the missing PingAck within ping-int + ping-timeout (NetworkFailure)', async () => {
    const pingIntervalMs = 400;
    const pingTimeoutMs = 300;
    const { alpha, beta, proxies } = await proxiedPair({ pingIntervalMs, pingTimeoutMs, timeoutMs: 5000 });
    await connectPair(alpha, beta);
    await sleep(pingIntervalMs * 2); // pings flow while the link is healthy
    expect(alpha.connector.cstate).toBe('Connected');

    const lostA = waitFor<string>(alpha.connector, 'disconnected', 5000);
    const lostB = waitFor<string>(beta.connector, 'disconnected', 5000);
    const frozenAt = Date.now();
    for (const proxy of proxies) proxy.freeze();
    const [reasonA, reasonB] = await Promise.all([lostA, lostB]);
    const elapsedMs = Date.now() - frozenAt;
    expect(reasonA).toBe('NetworkFailure');
    expect(reasonB).toBe('NetworkFailure');
    expect(elapsedMs).toBeGreaterThanOrEqual(pingTimeoutMs - 20);
    expect(elapsedMs).toBeLessThan(pingIntervalMs + pingTimeoutMs + 400);
    expect(alpha.messages).toContain('PingAck did not arrive in time.');
    expect(beta.messages).toContain('PingAck did not arrive in time.');
    expect(alpha.connector.cstate).toBe('WFConnection');
  });

  it('reconnects after the proxy cuts the link and lets it through again', async () => {
    const { alpha, beta, proxies } = await proxiedPair();
    await connectPair(alpha, beta);
    const lostA = waitFor<string>(alpha.connector, 'disconnected', 5000);
    const lostB = waitFor<string>(beta.connector, 'disconnected', 5000);
    for (const proxy of proxies) proxy.cut();
    expect(await lostA).toBe('BrokenPipe');
    expect(await lostB).toBe('BrokenPipe');
    await sleep(300); // several connect-int periods refused
    expect(alpha.connector.cstate).toBe('WFConnection');
    expect(beta.connector.cstate).toBe('WFConnection');

    const againA = waitFor<HandshakeResult>(alpha.connector, 'connected', 5000);
    const againB = waitFor<HandshakeResult>(beta.connector, 'connected', 5000);
    for (const proxy of proxies) proxy.restore();
    const [ra, rb] = await Promise.all([againA, againB]);
    expect(ra.resolveConflicts).not.toBe(rb.resolveConflicts);
    const got = new Promise<Packet>((resolve) => rb.session.onPacket(resolve));
    ra.session.send({ type: PacketType.Barrier, epoch: 42 });
    expect(await got).toEqual({ type: PacketType.Barrier, epoch: 42 });
    expect(alpha.connected).toHaveLength(2);
  });
  it('garbage injected into a live link is a ProtocolError for the receiver; the pair reconnects', async () => {
    const { alpha, beta, proxies } = await proxiedPair();
    const [, rb] = await connectPair(alpha, beta);
    const keptToBeta = proxies[0]!; // alpha dialled through it (the kept connection)
    expect(keptToBeta.activeConnections).toBe(1);
    const closedB = new Promise<string>((resolve) => rb.session.onClose(resolve));
    const againA = waitFor<HandshakeResult>(alpha.connector, 'connected', 5000);
    keptToBeta.inject('up', Buffer.from('\xde\xad\xbe\xef garbage on a live link'));
    expect(await closedB).toBe('ProtocolError');
    expect(beta.messages.some((m) => m.startsWith('Protocol error from peer'))).toBe(true);
    await againA;
  });

  it('a TCP reset on the link is a lost connection on both sides, followed by a reconnect', async () => {
    const { alpha, beta, proxies } = await proxiedPair();
    await connectPair(alpha, beta);
    const lostA = waitFor<string>(alpha.connector, 'disconnected', 5000);
    const lostB = waitFor<string>(beta.connector, 'disconnected', 5000);
    for (const proxy of proxies) proxy.reset();
    expect(['BrokenPipe', 'NetworkFailure']).toContain(await lostA);
    expect(['BrokenPipe', 'NetworkFailure']).toContain(await lostB);
    await waitFor<HandshakeResult>(alpha.connector, 'connected', 5000);
  });

  it('a delayed link stays up and keeps packet order', async () => {
    const { alpha, beta, proxies } = await proxiedPair({ pingIntervalMs: 300, pingTimeoutMs: 500 });
    const [ra, rb] = await connectPair(alpha, beta);
    for (const proxy of proxies) proxy.setDelay(100);
    const got: number[] = [];
    const all = new Promise<void>((resolve) => rb.session.onPacket((p) => {
      got.push((p as { blockId: number }).blockId);
      if (got.length === 50) resolve();
    }));
    for (let i = 0; i < 50; i++) {
      ra.session.send({ type: PacketType.Data, volume: 0, offsetBytes: i * 4096, blockId: i, epoch: 1, flags: 0, payload: Buffer.alloc(4096, i) });
      if (i % 10 === 0) await sleep(30);
    }
    await all;
    expect(got).toEqual(Array.from({ length: 50 }, (_, i) => i));
    await sleep(700); // more than ping-int: pings answered within ping-timeout despite the delay
    expect(alpha.connector.cstate).toBe('Connected');
    expect(beta.connector.cstate).toBe('Connected');
  });

  it('a link that silently drops one direction is detected by ping timeout', async () => {
    const { alpha, beta, proxies } = await proxiedPair({ pingIntervalMs: 300, pingTimeoutMs: 300 });
    await connectPair(alpha, beta);
    const lostB = waitFor<string>(beta.connector, 'disconnected', 5000);
    proxies[0]!.drop('up'); // nothing alpha sends reaches beta any more
    expect(await lostB).toBe('NetworkFailure');
    expect(beta.messages).toContain('PingAck did not arrive in time.');
  });
  it('keeps retrying to listen while its port is taken, and stop() frees the port for a restart', async () => {
    const [alpha, beta] = await directPair();
    const port = alpha.connector['opts'].localAddress.port;
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen({ host: ALPHA_HOST, port }, () => resolve()));
    try {
      alpha.connector.start(() => alpha.params);
      await until(() => alpha.messages.some((m) => m.startsWith(`Failed to listen on ${ALPHA_HOST}:${port}`)), 2000, 'listen failure logged');
      expect(alpha.connector.isListening).toBe(false);
    } finally {
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
    await until(() => alpha.connector.isListening, 2000, 'alpha listening after the port was freed');
    await connectPairStarted(alpha, beta);

    await alpha.connector.stop();
    await beta.connector.stop();
    expect(alpha.connector.cstate).toBe('StandAlone');
    await connectPair(alpha, beta); // same ports again
  });
});
