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
 * The header's volume (the decoder runs with volumes 0 and 1 configured):
 * any volume on any frame is delivered with that volume when configured, and
 * otherwise ignored (connection-wide frames), skipped and reported
 * (configuration packets) or a ProtocolError at the header (data-path
 * packets), never anything else.
 */
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import {
  FRAME_BYTES_MAX,
  FRAME_MAGIC,
  FrameDecoder,
  HEADER_BYTES,
  HEADER_LENGTH_OFFSET,
  HEADER_VOLUME_OFFSET,
  PROTOCOL_VERSION,
  ProtocolError,
  VOLUME_MAX,
  encodePacket,
  isKnownType,
  unknownVolumeMessage,
} from '../../src/peer/codec.js';
import { integrityDigest, type IntegrityDigest } from '../../src/peer/integrity.js';
import { PacketType, SetupPacketType, volumeScope, type WirePacket } from '../../src/peer/packets.js';
import { chunkSizes, chunked, mutatedInputs, type Sample } from './mutate.js';
import { type FuzzBudget, type PropertyResult, runProperty, share, withinHangBound } from './runner.js';

function pattern(lengthBytes: number, seed: number): Buffer {
  const b = Buffer.alloc(lengthBytes);
  for (let i = 0; i < lengthBytes; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** The volumes the fuzzed decoders have configured; PACKETS address both. */
const VOLUMES: ReadonlySet<number> = new Set([0, 1]);

/** One valid packet of each family, small enough to mutate quickly. */
const PACKETS: WirePacket[] = [
  { type: SetupPacketType.Hello, nodeName: 'alpha', versionMin: PROTOCOL_VERSION, versionMax: PROTOCOL_VERSION, authAlg: 'sha256' },
  { type: SetupPacketType.Chosen },
  { type: PacketType.AuthChallenge, challenge: pattern(32, 1) },
  { type: PacketType.AuthResponse, response: pattern(32, 2) },
  { type: PacketType.AuthResult, ok: true },
  {
    type: PacketType.Protocol, protocol: 'C', afterSb0pri: 'discard-node-beta', afterSb1pri: 'discard-secondary',
    afterSb2pri: 'disconnect', allowTwoPrimaries: false, discardMyData: true, nodeName: 'alpha', integrityAlg: 'crc32c',
  },
  { type: PacketType.SyncParam, volume: 0, resyncRateKiBps: 10240, cPlanAheadDs: 20, cDelayTargetDs: 10, cFillTargetSectors: 100, cMaxRateKiBps: 102400, verifyAlg: 'sha256', csumsAlg: '' },
  { type: PacketType.Uuids, volume: 1, uuids: { current: 0x1234n, bitmap: 0n, historyStart: 7n, historyEnd: 9n }, bitsSet: 12, uuidFlags: 1 },
  { type: PacketType.Sizes, volume: 0, diskSizeBytes: 1 << 30, userSizeBytes: 0, currentSizeBytes: 1 << 30, maxRequestBytes: 1 << 20, ddsFlags: 0 },
  { type: PacketType.State, volume: 1, role: 1, disk: 8, conn: 10, userIsp: false },
  { type: PacketType.SyncUuid, volume: 0, uuid: 0xabcdefn },
  { type: PacketType.StateChangeRequest, volume: 1, requestId: 5, role: 1, disk: 4 },
  { type: PacketType.StateChangeReply, volume: 0, requestId: 5, result: -2 },
  { type: PacketType.Data, volume: 1, offsetBytes: 8192, blockId: 3, epoch: 2, flags: 0x9, payload: pattern(1024, 3) },
  { type: PacketType.WriteAck, volume: 0, offsetBytes: 8192, lengthBytes: 1024, blockId: 3 },
  { type: PacketType.Barrier, epoch: 2 },
  { type: PacketType.BarrierAck, epoch: 2, writes: 1 },
  { type: PacketType.Bitmap, volume: 1, firstByte: 64, bits: pattern(40, 4), last: true },
  { type: PacketType.RsDataRequest, volume: 0, offsetBytes: 4096, lengthBytes: 4096, blockId: 8 },
  { type: PacketType.RsDataReply, volume: 1, offsetBytes: 4096, blockId: 8, payload: pattern(512, 5) },
  { type: PacketType.OutOfSync, volume: 0, offsetBytes: 4096, lengthBytes: 8192 },
  { type: PacketType.OvRequest, volume: 1, offsetBytes: 0, lengthBytes: 4096, blockId: 12 },
  { type: PacketType.OvReply, volume: 0, offsetBytes: 0, lengthBytes: 4096, blockId: 12, digest: pattern(32, 7) },
  { type: PacketType.OvResult, volume: 1, offsetBytes: 0, lengthBytes: 4096, inSync: true },
  { type: PacketType.Ping },
  { type: PacketType.Disconnect },
];

/** The peer's data-integrity-alg in the integrity property (4-byte digests keep frames small). */
const INTEGRITY: IntegrityDigest = integrityDigest('crc32c')!;

/** Streams of one to three frames; the frame length fields are the extremes' targets. */
function samples(integrity: IntegrityDigest | null): Sample[] {
  const FRAMES = PACKETS.map((p) => Buffer.concat(encodePacket(p, integrity)));
  const L = HEADER_LENGTH_OFFSET;
  const V = HEADER_VOLUME_OFFSET;
  const out: Sample[] = FRAMES.map((bytes) => ({ bytes, lengthFieldOffsets: [L, V, HEADER_BYTES + 4, HEADER_BYTES + 5, HEADER_BYTES + 20] }));
  for (let i = 0; i < FRAMES.length; i++) {
    const a = FRAMES[i]!;
    const b = FRAMES[(i * 7 + 3) % FRAMES.length]!;
    const c = FRAMES[(i * 5 + 1) % FRAMES.length]!;
    out.push({ bytes: Buffer.concat([a, b, c]), lengthFieldOffsets: [L, a.length + L, a.length + V, a.length + b.length + L, a.length + b.length + V] });
  }
  return out;
}

const TOKENS = [Buffer.from([0x75, 0x44, 0x42, 0x52]), Buffer.from([0, 1]), Buffer.from([0xff, 0xff, 0xff, 0xff])];

interface Decoded {
  packets: WirePacket[];
  /** Configuration frames skipped for an unconfigured volume, as [type, volume]. */
  skipped: Array<[number, number]>;
  error: ProtocolError | null;
}

/** Feeds `pieces` to a decoder; returns the packets, or the ProtocolError that ended it. Any other error escapes. */
function decodeStream(pieces: readonly Buffer[], viaReceiveBuffer: boolean, integrity: IntegrityDigest | null = null): Decoded {
  const packets: WirePacket[] = [];
  const skipped: Array<[number, number]> = [];
  const decoder = new FrameDecoder((p) => packets.push(p), { volumes: VOLUMES, onUnknownVolume: (type, volume) => skipped.push([type, volume]) });
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
    if (error instanceof ProtocolError) return { packets, skipped, error };
    throw error;
  }
  return { packets, skipped, error: null };
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
  const b = share(budget, 4);
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
        if (result.packets.length + result.skipped.length > Math.floor(stream.length / HEADER_BYTES)) throw new Error('more packets than headers in the stream');
        for (const packet of result.packets) {
          if ('volume' in packet && !VOLUMES.has(packet.volume)) throw new Error(`delivered a packet for unconfigured volume ${packet.volume}`);
          roundTrips(packet, integrity);
        }
        for (const [type, volume] of result.skipped) {
          if (volumeScope(type) !== 'config' || VOLUMES.has(volume)) throw new Error(`skipped type 0x${type.toString(16)} volume ${volume}`);
        }
      },
      b,
    );
  return [
    mutatedStreams('peer: mutated frame streams decode or fail with ProtocolError, pushed or read into a reused buffer', null),
    mutatedStreams('peer, data-integrity-alg crc32c: mutated streams decode (digests verified) or fail with ProtocolError / IntegrityError', INTEGRITY),
    runProperty(
      `peer: a length beyond the frame limit is refused once the ${HEADER_BYTES}-byte header is in`,
      fc.tuple(fc.constantFrom(...PACKETS.map((p) => p.type)), fc.integer({ min: FRAME_BYTES_MAX - HEADER_BYTES + 1, max: 0xffffffff })),
      ([type, lengthBytes]) => {
        if (!isKnownType(type)) throw new Error(`sample type ${type} is not known to the codec`);
        const header = Buffer.alloc(HEADER_BYTES);
        header.writeUInt32BE(FRAME_MAGIC, 0);
        header.writeUInt16BE(PROTOCOL_VERSION, 4);
        header.writeUInt16BE(type, 6);
        header.writeUInt32BE(lengthBytes, HEADER_LENGTH_OFFSET);
        const result = decodeStream([header], false);
        if (result.error === null) throw new Error(`header with length ${lengthBytes} (limit ${FRAME_BYTES_MAX - HEADER_BYTES}) was accepted`);
      },
      b,
    ),
    runProperty(
      'peer: any volume in a valid frame\'s header is delivered (configured or connection-wide), skipped (configuration packet) or refused at the header (data-path packet)',
      fc.tuple(fc.constantFrom(...PACKETS), fc.integer({ min: 0, max: VOLUME_MAX }), fc.boolean()),
      ([packet, volume, cutAtHeader]) => {
        const frame = Buffer.concat(encodePacket(packet));
        // A frame with a body, fed up to its header only: nothing may be delivered yet (nor refused unless data-path).
        const headerOnly = cutAtHeader && frame.length > HEADER_BYTES;
        frame.writeUInt16BE(volume, HEADER_VOLUME_OFFSET);
        const scope = volumeScope(packet.type);
        const known = scope === 'connection' || VOLUMES.has(volume);
        const result = decodeStream([headerOnly ? frame.subarray(0, HEADER_BYTES) : frame], false);
        if (scope === 'data' && !known) {
          if (result.error?.message !== unknownVolumeMessage(packet.type, volume)) throw new Error(`data-path frame for volume ${volume}: ${result.error?.message ?? 'accepted'}`);
          return;
        }
        if (result.error !== null) throw new Error(`frame for volume ${volume} refused: ${result.error.message}`);
        if (headerOnly) {
          if (result.packets.length + result.skipped.length !== 0) throw new Error('a frame was delivered before its body');
          return;
        }
        if (!known) {
          if (result.packets.length !== 0 || !isDeepStrictEqual(result.skipped, [[packet.type, volume]])) throw new Error(`configuration frame for volume ${volume} not skipped`);
          return;
        }
        const expected = scope === 'connection' ? packet : { ...packet, volume };
        if (result.skipped.length !== 0 || result.packets.length !== 1 || !isDeepStrictEqual(snapshot(result.packets[0]!), expected)) {
          throw new Error(`frame for volume ${volume} decoded as ${String(result.packets.length)} packets`);
        }
      },
      b,
    ),
  ];
}
