/**
 * test/fuzz/target-peer — fuzzes the peer frame decoder (src/peer/codec.ts):
 * mutated streams of valid frames, delivered in random pieces both as
 * pushed chunks and through a reused receive buffer with direct reads (the
 * socket path), must decode or fail with ProtocolError only; a header whose
 * length is beyond the frame limit fails as soon as the header is in, before
 * any body byte is buffered; and whatever decodes re-encodes to the same packet.
 * The same streams with data-integrity-alg crc32c on both ends (digests in
 * front of Data / RsDataReply payloads) hold the same properties: a changed
 * payload or digest byte is an IntegrityError, which is a ProtocolError.
 */
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import {
  FRAME_BYTES_MAX,
  FRAME_MAGIC,
  FrameDecoder,
  HEADER_BYTES,
  PROTOCOL_VERSION,
  ProtocolError,
  encodePacket,
  isKnownType,
} from '../../src/peer/codec.js';
import { integrityDigest, type IntegrityDigest } from '../../src/peer/integrity.js';
import { PacketType, SetupPacketType, type WirePacket } from '../../src/peer/packets.js';
import { chunkSizes, chunked, mutatedInputs, type Sample } from './mutate.js';
import { type FuzzBudget, type PropertyResult, runProperty, share, withinHangBound } from './runner.js';

function pattern(lengthBytes: number, seed: number): Buffer {
  const b = Buffer.alloc(lengthBytes);
  for (let i = 0; i < lengthBytes; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** One valid packet of each family, small enough to mutate quickly. */
const PACKETS: WirePacket[] = [
  { type: SetupPacketType.Hello, nodeName: 'alpha', versionMin: 1, versionMax: 1, authAlg: 'sha256' },
  { type: SetupPacketType.Chosen },
  { type: PacketType.AuthChallenge, challenge: pattern(32, 1) },
  { type: PacketType.AuthResponse, response: pattern(32, 2) },
  { type: PacketType.AuthResult, ok: true },
  {
    type: PacketType.Protocol, protocol: 'C', afterSb0pri: 'discard-node-beta', afterSb1pri: 'discard-secondary',
    afterSb2pri: 'disconnect', allowTwoPrimaries: false, discardMyData: true, nodeName: 'alpha', integrityAlg: 'crc32c',
  },
  { type: PacketType.SyncParam, resyncRateKiBps: 10240, cPlanAheadDs: 20, cDelayTargetDs: 10, cFillTargetSectors: 100, cMaxRateKiBps: 102400, verifyAlg: 'sha256', csumsAlg: '' },
  { type: PacketType.Uuids, uuids: { current: 0x1234n, bitmap: 0n, historyStart: 7n, historyEnd: 9n }, bitsSet: 12, uuidFlags: 1 },
  { type: PacketType.Sizes, diskSizeBytes: 1 << 30, userSizeBytes: 1 << 29, currentSizeBytes: 1 << 30, maxRequestBytes: 1 << 20, ddsFlags: 0 },
  { type: PacketType.State, role: 1, disk: 8, conn: 10, userIsp: false },
  { type: PacketType.SyncUuid, uuid: 0xabcdefn },
  { type: PacketType.StateChangeRequest, requestId: 5, role: 1, disk: 4 },
  { type: PacketType.StateChangeReply, requestId: 5, result: -2 },
  { type: PacketType.Data, offsetBytes: 8192, blockId: 3, epoch: 2, flags: 0x9, payload: pattern(1024, 3) },
  { type: PacketType.WriteAck, offsetBytes: 8192, lengthBytes: 1024, blockId: 3 },
  { type: PacketType.Barrier, epoch: 2 },
  { type: PacketType.BarrierAck, epoch: 2, writes: 1 },
  { type: PacketType.Bitmap, firstByte: 64, bits: pattern(40, 4), last: true },
  { type: PacketType.RsDataRequest, offsetBytes: 4096, lengthBytes: 4096, blockId: 8 },
  { type: PacketType.RsDataReply, offsetBytes: 4096, blockId: 8, payload: pattern(512, 5) },
  { type: PacketType.OutOfSync, offsetBytes: 4096, lengthBytes: 8192 },
  { type: PacketType.OvRequest, offsetBytes: 0, lengthBytes: 4096, blockId: 12 },
  { type: PacketType.OvReply, offsetBytes: 0, lengthBytes: 4096, blockId: 12, digest: pattern(32, 7) },
  { type: PacketType.OvResult, offsetBytes: 0, lengthBytes: 4096, inSync: true },
  { type: PacketType.Ping },
  { type: PacketType.Disconnect },
];

/** The peer's data-integrity-alg in the integrity property (4-byte digests keep frames small). */
const INTEGRITY: IntegrityDigest = integrityDigest('crc32c')!;

/** Streams of one to three frames; the frame length fields are the extremes' targets. */
function samples(integrity: IntegrityDigest | null): Sample[] {
  const FRAMES = PACKETS.map((p) => Buffer.concat(encodePacket(p, integrity)));
  const out: Sample[] = FRAMES.map((bytes) => ({ bytes, lengthFieldOffsets: [8, HEADER_BYTES + 4, HEADER_BYTES + 5, HEADER_BYTES + 20] }));
  for (let i = 0; i < FRAMES.length; i++) {
    const a = FRAMES[i]!;
    const b = FRAMES[(i * 7 + 3) % FRAMES.length]!;
    const c = FRAMES[(i * 5 + 1) % FRAMES.length]!;
    out.push({ bytes: Buffer.concat([a, b, c]), lengthFieldOffsets: [8, a.length + 8, a.length + b.length + 8] });
  }
  return out;
}

const TOKENS = [Buffer.from([0x75, 0x44, 0x42, 0x52]), Buffer.from([0, 1]), Buffer.from([0xff, 0xff, 0xff, 0xff])];

/** Feeds `pieces` to a decoder; returns the packets, or the ProtocolError that ended it. Any other error escapes. */
function decodeStream(pieces: readonly Buffer[], viaReceiveBuffer: boolean, integrity: IntegrityDigest | null = null): { packets: WirePacket[]; error: ProtocolError | null } {
  const packets: WirePacket[] = [];
  const decoder = new FrameDecoder((p) => packets.push(p));
  decoder.setPeerIntegrity(integrity);
  const scratch = Buffer.alloc(4096);
  try {
    for (const piece of pieces) {
      if (!viaReceiveBuffer) {
        decoder.push(piece);
        continue;
      }
      // As peer/receive does: read into the frame body's tail when offered, else into a reused buffer.
      let at = 0;
      while (at < piece.length) {
        const target = decoder.directReadTarget() ?? scratch;
        const n = Math.min(target.length, piece.length - at);
        piece.copy(target, 0, at, at + n);
        decoder.received(n, target);
        at += n;
        if (target === scratch) scratch.fill(0xee, 0, n); // the next read overwrites it: nothing may refer to it
      }
    }
  } catch (error) {
    if (error instanceof ProtocolError) return { packets, error };
    throw error;
  }
  return { packets, error: null };
}

/** Deep copy, so a packet that still refers to a reused buffer is caught by the comparison. */
function snapshot(packet: WirePacket): WirePacket {
  const copy: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(packet)) copy[key] = Buffer.isBuffer(value) ? Buffer.from(value) : value;
  return copy as unknown as WirePacket;
}

function roundTrips(packet: WirePacket, integrity: IntegrityDigest | null): void {
  const again = decodeStream([Buffer.concat(encodePacket(packet, integrity))], false, integrity);
  if (again.error !== null || again.packets.length !== 1 || !isDeepStrictEqual(again.packets[0], packet)) {
    throw new Error(`decoded packet does not re-encode to itself: ${JSON.stringify(packet, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))}`);
  }
}

export function fuzzPeerCodec(budget: FuzzBudget): PropertyResult[] {
  const b = share(budget, 3);
  const mutatedStreams = (name: string, integrity: IntegrityDigest | null): PropertyResult =>
    runProperty(
      name,
      fc.tuple(mutatedInputs(samples(integrity), { tokens: TOKENS }), chunkSizes(), fc.boolean()),
      ([stream, sizes, viaReceiveBuffer]) => {
        const pieces = chunked(stream, sizes);
        const result = withinHangBound('peer FrameDecoder', () => {
          const r = decodeStream(pieces, viaReceiveBuffer, integrity);
          return { ...r, packets: r.packets.map(snapshot) };
        });
        if (result.packets.length > Math.floor(stream.length / HEADER_BYTES)) throw new Error('more packets than headers in the stream');
        for (const packet of result.packets) roundTrips(packet, integrity);
      },
      b,
    );
  return [
    mutatedStreams('peer: mutated frame streams decode or fail with ProtocolError, pushed or read into a reused buffer', null),
    mutatedStreams('peer, data-integrity-alg crc32c: mutated streams decode (digests verified) or fail with ProtocolError / IntegrityError', INTEGRITY),
    runProperty(
      'peer: a length beyond the frame limit is refused once the 12-byte header is in',
      fc.tuple(fc.constantFrom(...PACKETS.map((p) => p.type)), fc.integer({ min: FRAME_BYTES_MAX - HEADER_BYTES + 1, max: 0xffffffff })),
      ([type, lengthBytes]) => {
        if (!isKnownType(type)) throw new Error(`sample type ${type} is not known to the codec`);
        const header = Buffer.alloc(HEADER_BYTES);
        header.writeUInt32BE(FRAME_MAGIC, 0);
        header.writeUInt16BE(PROTOCOL_VERSION, 4);
        header.writeUInt16BE(type, 6);
        header.writeUInt32BE(lengthBytes, 8);
        const result = decodeStream([header], false);
        if (result.error === null) throw new Error(`header with length ${lengthBytes} (limit ${FRAME_BYTES_MAX - HEADER_BYTES}) was accepted`);
      },
      b,
    ),
  ];
}
