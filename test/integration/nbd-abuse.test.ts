/**
 * The NBD server under abuse: more clients than maxConnections, and slow
 * loris clients — half a handshake, half a request header, half a WRITE
 * payload, then silence. Each is dropped (counted connections return to the
 * bound, the half write never reaches the disk), a client idle *between*
 * requests is not, and a normal client is served throughout.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryDisk } from '../../src/disk/memory-disk.js';
import * as P from '../../src/frontend/nbd/protocol.js';
import { NbdServer } from '../../src/frontend/nbd/server.js';
import { createLogger } from '../../src/util/log.js';

const EXPORT_NAME = 'fznbd';
const CONNECTIONS_MAX = 4;
const HANDSHAKE_TIMEOUT_MS = 400;
const STALL_TIMEOUT_MS = 400;

let dir: string;
let socketPath: string;
let disk: MemoryDisk;
let server: NbdServer;
let logLines: string[];
const sockets: net.Socket[] = [];

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-fz-nbd-'));
  socketPath = path.join(dir, 'nbd.sock');
  disk = new MemoryDisk(1024 * 1024);
  logLines = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(chunk.toString('utf8'));
      done();
    },
  });
  server = new NbdServer({
    device: disk,
    exportName: EXPORT_NAME,
    logger: createLogger({}, sink),
    maxConnections: CONNECTIONS_MAX,
    handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
    requestStallTimeoutMs: STALL_TIMEOUT_MS,
  });
  await server.listenUnix(socketPath);
});

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function handshake(): Buffer {
  const name = Buffer.from(EXPORT_NAME);
  const data = Buffer.alloc(4 + name.length + 2);
  data.writeUInt32BE(name.length, 0);
  name.copy(data, 4);
  const header = Buffer.alloc(P.OPTION_HEADER_BYTES);
  header.writeUInt32BE(P.IHAVEOPT_HI, 0);
  header.writeUInt32BE(P.IHAVEOPT_LO, 4);
  header.writeUInt32BE(P.OPT_GO, 8);
  header.writeUInt32BE(data.length, 12);
  return Buffer.concat([Buffer.from([0, 0, 0, P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES]), header, data]);
}

function request(type: number, offsetBytes: number, lengthBytes: number, handle: number): Buffer {
  const b = Buffer.alloc(P.REQUEST_HEADER_BYTES);
  b.writeUInt32BE(P.REQUEST_MAGIC, 0);
  b.writeUInt16BE(type, 6);
  b.writeUInt32BE(handle, 12);
  P.writeUInt64BE(b, offsetBytes, 16);
  b.writeUInt32BE(lengthBytes, 24);
  return b;
}

/** A raw client that reads (and counts) everything the server sends. */
interface RawClient {
  socket: net.Socket;
  received: () => number;
  closed: Promise<void>;
}

function connect(): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    sockets.push(socket);
    let bytes = 0;
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
    socket.once('error', reject);
    socket.once('connect', () => resolve({ socket, received: () => bytes, closed }));
  });
}

async function within(promise: Promise<void>, ms: number, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_r, reject) => (timer = setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms)));
  try {
    await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A good client writes 4 KiB at `offsetBytes` and disconnects; the disk has it. */
async function goodClientWrites(offsetBytes: number, fill: number): Promise<void> {
  const c = await connect();
  const data = Buffer.alloc(4096, fill);
  c.socket.end(Buffer.concat([handshake(), request(P.CMD_WRITE, offsetBytes, 4096, 1), data, request(P.CMD_DISC, 0, 0, 2)]));
  await within(c.closed, 5_000, 'a good client finishing');
  expect(disk.data.subarray(offsetBytes, offsetBytes + 4096).equals(data)).toBe(true);
}

describe('NBD server limits', () => {
  it('clients over maxConnections are closed at once and logged; the connected ones keep working and a new one works once they leave', async () => {
    const held: RawClient[] = [];
    for (let i = 0; i < CONNECTIONS_MAX; i++) {
      const c = await connect();
      c.socket.write(handshake());
      held.push(c);
    }
    await until(() => server.connectionCount === CONNECTIONS_MAX, 5_000, 'the first clients to be accepted');
    const extra = await Promise.all(Array.from({ length: 12 }, () => connect()));
    await within(Promise.all(extra.map((c) => c.closed)).then(() => undefined), 5_000, 'the refused clients to be closed');
    expect(extra.every((c) => c.received() === 0)).toBe(true); // not even a greeting
    expect(server.connectionCount).toBe(CONNECTIONS_MAX);
    expect(server.refusedOverCap).toBe(12);
    expect(logLines.some((l) => l.includes('nbd: too many clients connected; refusing new ones') && l.includes('"maxConnections":4'))).toBe(true);
    // The held clients finished their handshake (greeting + GO replies) and can still do I/O.
    for (const [i, c] of held.entries()) {
      c.socket.write(Buffer.concat([request(P.CMD_WRITE, i * 4096, 4096, 10 + i), Buffer.alloc(4096, 0x40 + i)]));
    }
    await until(() => held.every((_c, i) => disk.data[i * 4096] === 0x40 + i), 5_000, 'the held clients\' writes');
    for (const c of held) c.socket.end(request(P.CMD_DISC, 0, 0, 99));
    await within(Promise.all(held.map((c) => c.closed)).then(() => undefined), 5_000, 'the held clients to leave');
    await until(() => server.connectionCount === 0, 5_000, 'the server to forget them');
    await goodClientWrites(65536, 0x55);
  });

  it('slow loris clients (half a handshake, half a request header, half a WRITE payload) are dropped; the half write never reaches the disk', async () => {
    const halfHandshake = await connect();
    halfHandshake.socket.write(handshake().subarray(0, 10));
    const halfHeader = await connect();
    halfHeader.socket.write(Buffer.concat([handshake(), request(P.CMD_READ, 0, 4096, 1).subarray(0, 13)]));
    const halfPayload = await connect();
    halfPayload.socket.write(Buffer.concat([handshake(), request(P.CMD_WRITE, 131072, 8192, 1), Buffer.alloc(3000, 0x77)]));
    await goodClientWrites(0, 0x11); // served while the three hang
    await within(Promise.all([halfHandshake.closed, halfHeader.closed, halfPayload.closed]).then(() => undefined), 10 * STALL_TIMEOUT_MS, 'the slow clients to be dropped');
    await until(() => server.connectionCount === 0, 5_000, 'no connection left');
    expect(disk.data.subarray(131072, 131072 + 8192).every((b) => b === 0)).toBe(true);
    expect(logLines.some((l) => l.includes('nbd: handshake timed out; dropping client'))).toBe(true);
    expect(logLines.filter((l) => l.includes('nbd: client sent part of a request and then nothing; dropping client'))).toHaveLength(2);
  });

  it('a WRITE header announcing a payload too large to skip (4 GiB) is hung up on at once instead of read for hours', async () => {
    const c = await connect();
    c.socket.write(Buffer.concat([handshake(), request(P.CMD_WRITE, 0, 0xffffffff, 1), Buffer.alloc(4096, 0x33)]));
    await within(c.closed, 5_000, 'the hang-up');
    expect(logLines.some((l) => l.includes('NBD_CMD_WRITE of 4294967295 bytes is too large to skip (limit 67108864)'))).toBe(true);
    expect(disk.data.subarray(0, 4096).every((b) => b === 0)).toBe(true);
    await goodClientWrites(0, 0x44);
  });

  it('a client idle between complete requests is not dropped', async () => {
    const c = await connect();
    c.socket.write(Buffer.concat([handshake(), request(P.CMD_WRITE, 8192, 4096, 1), Buffer.alloc(4096, 0x22)]));
    await until(() => disk.data[8192] === 0x22, 5_000, 'the write');
    await new Promise((r) => setTimeout(r, 4 * STALL_TIMEOUT_MS));
    expect(c.socket.destroyed).toBe(false);
    expect(server.connectionCount).toBe(1);
    const before = c.received();
    c.socket.write(request(P.CMD_READ, 8192, 4096, 2));
    await until(() => c.received() >= before + P.SIMPLE_REPLY_HEADER_BYTES + 4096, 5_000, 'the read reply');
  });
});
