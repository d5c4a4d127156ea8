/**
 * test/fuzz/target-nbd — fuzzes the NBD server's decoders (src/frontend/nbd/):
 * the pure option/request decoders and admission rules with random fields,
 * and live connections to an NbdServer over a unix socket fed a mutated
 * handshake, or a valid handshake followed by a mutated request stream. Each
 * connection must end in bounded time and leave no connection behind; the
 * device behind the export only ever sees writes and trims that a reference
 * reading of the same bytes says a valid request asked for (nothing at all
 * for a handshake alone); the server still serves a good client afterwards.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import type { BlockDevice, ReadFlags, WriteFlags } from '../../src/disk/block-device.js';
import { MemoryDisk } from '../../src/disk/memory-disk.js';
import * as P from '../../src/frontend/nbd/protocol.js';
import { checkRequest, type ExportLimits } from '../../src/frontend/nbd/request-check.js';
import { OPTION_DATA_MAX_BYTES } from '../../src/frontend/nbd/handshake-newstyle.js';
import { NbdServer } from '../../src/frontend/nbd/server.js';
import { silentLogger } from '../../src/util/log.js';
import { mutatedInputs, type Sample } from './mutate.js';
import { type FuzzBudget, type PropertyResult, runAsyncProperty, runProperty, share, withinHangBound } from './runner.js';

const EXPORT_NAME = 'fz0';
const DEVICE_BYTES = 1024 * 1024;

interface Mutation {
  readonly kind: 'write' | 'trim';
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/** A MemoryDisk that records every call that changes it. */
class RecordingDisk implements BlockDevice {
  private readonly disk = new MemoryDisk(DEVICE_BYTES);
  readonly sizeBytes = DEVICE_BYTES;
  readonly capabilities = this.disk.capabilities;
  readonly mutations: Mutation[] = [];
  read(buffer: Buffer, offsetBytes: number, _flags?: ReadFlags): Promise<void> {
    return this.disk.read(buffer, offsetBytes);
  }
  write(buffer: Buffer, offsetBytes: number, _flags?: WriteFlags): Promise<void> {
    this.mutations.push({ kind: 'write', offsetBytes, lengthBytes: buffer.length });
    return this.disk.write(buffer, offsetBytes);
  }
  flush(): Promise<void> {
    return this.disk.flush();
  }
  trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.mutations.push({ kind: 'trim', offsetBytes, lengthBytes });
    return this.disk.trim(offsetBytes, lengthBytes);
  }
  close(): Promise<void> {
    return this.disk.close();
  }
}

function option(code: number, data: Buffer): Buffer {
  const b = Buffer.alloc(P.OPTION_HEADER_BYTES);
  b.writeUInt32BE(P.IHAVEOPT_HI, 0);
  b.writeUInt32BE(P.IHAVEOPT_LO, 4);
  b.writeUInt32BE(code, 8);
  b.writeUInt32BE(data.length, 12);
  return Buffer.concat([b, data]);
}

function infoData(name: string, infoTypes: number[]): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length + 2 + 2 * infoTypes.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infoTypes.length, 4 + n.length);
  infoTypes.forEach((t, i) => b.writeUInt16BE(t, 4 + n.length + 2 + 2 * i));
  return b;
}

const CLIENT_FLAGS = Buffer.from([0, 0, 0, P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES]);
/** The handshake a good client sends: flags, then NBD_OPT_GO for the export. */
const GOOD_HANDSHAKE = Buffer.concat([CLIENT_FLAGS, option(P.OPT_GO, infoData(EXPORT_NAME, [P.INFO_NAME]))]);

/** Handshakes to mutate; option length (12) and name length (16) are the extremes' targets. */
const HANDSHAKES: Sample[] = [
  { bytes: GOOD_HANDSHAKE, lengthFieldOffsets: [4 + 12, 4 + 16, 4 + 16 + 4 + EXPORT_NAME.length] },
  {
    bytes: Buffer.concat([CLIENT_FLAGS, option(P.OPT_LIST, Buffer.alloc(0)), option(P.OPT_INFO, infoData('', [P.INFO_DESCRIPTION, P.INFO_BLOCK_SIZE])), option(P.OPT_STRUCTURED_REPLY, Buffer.alloc(0)), option(P.OPT_GO, infoData(EXPORT_NAME, []))]),
    lengthFieldOffsets: [4 + 12, 4 + 16 + 12],
  },
  { bytes: Buffer.concat([Buffer.from([0, 0, 0, P.FLAG_C_FIXED_NEWSTYLE]), option(P.OPT_EXPORT_NAME, Buffer.from(EXPORT_NAME))]), lengthFieldOffsets: [4 + 12] },
  { bytes: Buffer.concat([CLIENT_FLAGS, option(P.OPT_ABORT, Buffer.alloc(0))]), lengthFieldOffsets: [4 + 12] },
];

function request(type: number, flags: number, offsetBytes: number, lengthBytes: number, handle: number): Buffer {
  const b = Buffer.alloc(P.REQUEST_HEADER_BYTES);
  b.writeUInt32BE(P.REQUEST_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeUInt32BE(handle, 12);
  P.writeUInt64BE(b, offsetBytes, 16);
  b.writeUInt32BE(lengthBytes, 24);
  return b;
}

function payload(lengthBytes: number, seed: number): Buffer {
  const b = Buffer.alloc(lengthBytes);
  for (let i = 0; i < lengthBytes; i++) b[i] = (i + seed) & 0xff;
  return b;
}

/** Request streams to mutate, with the offsets of each header's length/offset/type fields. */
function requestStreams(): Sample[] {
  const parts: Buffer[][] = [
    [request(P.CMD_READ, 0, 0, 4096, 1), request(P.CMD_WRITE, 0, 4096, 1024, 2), payload(1024, 2), request(P.CMD_FLUSH, 0, 0, 0, 3)],
    [request(P.CMD_WRITE, P.CMD_FLAG_FUA, 65536, 512, 4), payload(512, 4), request(P.CMD_TRIM, 0, 8192, 8192, 5), request(P.CMD_DISC, 0, 0, 0, 6)],
    [request(P.CMD_WRITE_ZEROES, P.CMD_FLAG_NO_HOLE, 0, 16384, 7), request(P.CMD_READ, 0, DEVICE_BYTES - 512, 512, 8), request(P.CMD_WRITE, 0, DEVICE_BYTES - 2048, 2048, 9), payload(2048, 9)],
    [request(P.CMD_CACHE, 0, 0, 4096, 10), request(P.CMD_BLOCK_STATUS, 0, 0, 4096, 11), request(P.CMD_WRITE_ZEROES, P.CMD_FLAG_FUA, 12288, 4096, 12)],
  ];
  return parts.map((list) => {
    const offsets: number[] = [];
    let at = 0;
    for (const part of list) {
      if (part.length === P.REQUEST_HEADER_BYTES && part.readUInt32BE(0) === P.REQUEST_MAGIC) offsets.push(at + 24, at + 20, at + 16, at + 6, at + 4);
      at += part.length;
    }
    return { bytes: Buffer.concat(list), lengthFieldOffsets: offsets };
  });
}

/**
 * Reads `stream` as the transmission phase must: 28-byte headers until a bad
 * magic, NBD_CMD_DISC or the end; a WRITE's payload follows its header whether
 * or not it is accepted (unless refused and too large to skip: the server hangs
 * up). Returns the ranges valid requests may change.
 */
function allowedMutations(stream: Buffer, limits: ExportLimits): Mutation[] {
  const allowed: Mutation[] = [];
  let at = 0;
  while (at + P.REQUEST_HEADER_BYTES <= stream.length) {
    const h: P.RequestHeader = { magic: 0, flags: 0, type: 0, offsetBytes: 0, lengthBytes: 0 };
    P.decodeRequestHeader(stream, at, h);
    at += P.REQUEST_HEADER_BYTES;
    if (h.magic !== P.REQUEST_MAGIC || h.type === P.CMD_DISC) break;
    const ok = checkRequest(h.type, h.flags, h.offsetBytes, h.lengthBytes, limits) === P.NBD_OK;
    if (h.type === P.CMD_WRITE) {
      if (!ok && h.lengthBytes > 2 * P.PROTOCOL_PAYLOAD_MAX_BYTES) break; // too large to skip: the server hangs up
      const complete = at + h.lengthBytes <= stream.length;
      at += h.lengthBytes;
      if (ok && complete) allowed.push({ kind: 'write', offsetBytes: h.offsetBytes, lengthBytes: h.lengthBytes });
    } else if (ok && (h.type === P.CMD_TRIM || h.type === P.CMD_WRITE_ZEROES)) {
      allowed.push({ kind: 'write', offsetBytes: h.offsetBytes, lengthBytes: h.lengthBytes });
    }
  }
  return allowed;
}

function within(m: Mutation, allowed: readonly Mutation[]): boolean {
  return allowed.some((a) => m.offsetBytes >= a.offsetBytes && m.offsetBytes + m.lengthBytes <= a.offsetBytes + a.lengthBytes);
}

/** Sends `bytes`, half-closes, reads and discards everything until the server hangs up. */
function converse(socketPath: string, bytes: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // The server may hang up before it read all we sent (a protocol violation).
      if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') reject(err);
    });
    socket.on('close', () => resolve());
    socket.on('connect', () => {
      socket.end(bytes);
      socket.resume();
    });
  });
}

async function connectionsGone(server: NbdServer): Promise<void> {
  for (let i = 0; i < 500 && server.connectionCount > 0; i++) await new Promise((r) => setTimeout(r, 2));
  if (server.connectionCount > 0) throw new Error(`${server.connectionCount} NBD connection(s) still open after the client hung up`);
}

/** Sends `bytes` and keeps the connection open; resolves when the server hangs up. */
function sendAndWaitForHangUp(socketPath: string, bytes: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') reject(err);
    });
    socket.on('close', () => resolve());
    socket.on('connect', () => {
      socket.write(bytes);
      socket.resume();
    });
  });
}

/** A good client still gets its write back after the fuzzing. */
async function stillServes(socketPath: string, server: NbdServer, disk: RecordingDisk): Promise<void> {
  await connectionsGone(server);
  const data = payload(4096, 99);
  const before = disk.mutations.length;
  await converse(socketPath, Buffer.concat([GOOD_HANDSHAKE, request(P.CMD_WRITE, 0, 0, 4096, 77), data, request(P.CMD_DISC, 0, 0, 0, 78)]));
  const read = Buffer.alloc(4096);
  await disk.read(read, 0);
  if (!read.equals(data)) {
    throw new Error(`the NBD server no longer serves a good client after the fuzzing (device calls since: ${JSON.stringify(disk.mutations.slice(before))})`);
  }
}

function fuzzPureDecoders(budget: FuzzBudget): PropertyResult[] {
  const b = share(budget, 2);
  const limits = fc.record({
    sizeBytes: fc.nat({ max: 2 ** 40 }).map((n) => n * 512),
    maxPayloadBytes: fc.integer({ min: 8, max: P.PROTOCOL_PAYLOAD_MAX_BYTES / 512 }).map((n) => n * 512),
    transmissionFlags: fc.integer({ min: 0, max: 0xffff }),
  });
  return [
    runProperty(
      'nbd: an admitted request header is aligned, inside the export and within the payload limit',
      fc.tuple(fc.uint8Array({ minLength: P.REQUEST_HEADER_BYTES, maxLength: P.REQUEST_HEADER_BYTES }), limits),
      ([bytes, lim]) => {
        const h: P.RequestHeader = { magic: 0, flags: 0, type: 0, offsetBytes: 0, lengthBytes: 0 };
        P.decodeRequestHeader(Buffer.from(bytes), 0, h);
        if (checkRequest(h.type, h.flags, h.offsetBytes, h.lengthBytes, lim) !== P.NBD_OK) return;
        const inside = h.offsetBytes >= 0 && h.offsetBytes + h.lengthBytes <= lim.sizeBytes;
        const aligned = h.offsetBytes % 512 === 0 && h.lengthBytes % 512 === 0;
        const payloadOk = (h.type !== P.CMD_READ && h.type !== P.CMD_WRITE) || h.lengthBytes <= lim.maxPayloadBytes;
        if (h.type !== P.CMD_FLUSH && !(inside && aligned && payloadOk && h.lengthBytes > 0)) throw new Error(`admitted a bad request ${JSON.stringify(h)}`);
      },
      b,
    ),
    runProperty(
      'nbd: option headers and NBD_OPT_INFO/GO data decode or are refused, never throw',
      mutatedInputs(HANDSHAKES.map((s) => ({ bytes: s.bytes.subarray(4 + P.OPTION_HEADER_BYTES), lengthFieldOffsets: [0, 4 + EXPORT_NAME.length] }))),
      (data) => {
        withinHangBound('nbd decodeInfoRequest', () => {
          const r = P.decodeInfoRequest(data);
          if (r !== null && Buffer.byteLength(r.exportName) > P.STRING_MAX_BYTES) throw new Error('export name beyond the string limit');
          if (data.length >= P.OPTION_HEADER_BYTES) P.decodeOptionHeader(data);
        });
      },
      b,
    ),
  ];
}

export async function fuzzNbd(budget: FuzzBudget): Promise<PropertyResult[]> {
  const results = fuzzPureDecoders(share(budget, 2));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-fz-nbd-'));
  const socketPath = path.join(dir, 'nbd.sock');
  const disk = new RecordingDisk();
  const server = new NbdServer({ device: disk, exportName: EXPORT_NAME, logger: silentLogger() });
  const limits: ExportLimits = { sizeBytes: DEVICE_BYTES, maxPayloadBytes: P.PROTOCOL_PAYLOAD_MAX_BYTES, transmissionFlags: server.transmissionFlags };
  const b = share(budget, 6);
  try {
    await server.listenUnix(socketPath);
    results.push(
      await runAsyncProperty(
        'nbd: a mutated handshake ends in bounded time and never reaches the device',
        mutatedInputs(HANDSHAKES, { tokens: [Buffer.from([0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54])] }),
        async (handshake) => {
          const before = disk.mutations.length;
          await converse(socketPath, handshake);
          await connectionsGone(server);
          if (disk.mutations.length !== before) throw new Error(`a handshake alone changed the device: ${JSON.stringify(disk.mutations.slice(before))}`);
        },
        b,
      ),
    );
    results.push(
      await runAsyncProperty(
        'nbd: an option length beyond the limit is refused at its header, before any of its data is waited for',
        fc.tuple(fc.integer({ min: OPTION_DATA_MAX_BYTES + 1, max: 0xffffffff }), fc.constantFrom(P.OPT_GO, P.OPT_INFO, P.OPT_EXPORT_NAME, P.OPT_LIST, 0x7fff)),
        async ([lengthBytes, code]) => {
          const header = option(code, Buffer.alloc(0));
          header.writeUInt32BE(lengthBytes, 12);
          // The client never closes: only the server's refusal ends this (ASYNC_INPUT_HANG_MS otherwise).
          await sendAndWaitForHangUp(socketPath, Buffer.concat([CLIENT_FLAGS, header, Buffer.alloc(64)]));
          await connectionsGone(server);
        },
        b,
      ),
    );
    results.push(
      await runAsyncProperty(
        'nbd: a mutated request stream changes only what its valid requests ask for',
        mutatedInputs(requestStreams(), { tokens: [request(P.CMD_WRITE, 0, 0, 512, 1), request(P.CMD_DISC, 0, 0, 0, 1)] }),
        async (stream) => {
          const before = disk.mutations.length;
          await converse(socketPath, Buffer.concat([GOOD_HANDSHAKE, stream]));
          await connectionsGone(server);
          const allowed = allowedMutations(stream, limits);
          const stray = disk.mutations.slice(before).filter((m) => !within(m, allowed));
          if (stray.length > 0) throw new Error(`device changed outside the valid requests: ${JSON.stringify(stray)} (allowed ${JSON.stringify(allowed)})`);
        },
        b,
      ),
    );
    await stillServes(socketPath, server, disk);
  } finally {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return results;
}
