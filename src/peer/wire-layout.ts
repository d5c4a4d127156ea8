/**
 * peer/wire-layout — the byte layout of the peer link's frames: every frame
 * is a 14-byte header {magic u32, version u16, type u16, length u32,
 * volume u16} (big-endian; DRBD 8.4's p_header100 carries the volume the
 * same way; connection-wide packets send 0 there) and a body of `length` bytes laid out at fixed offsets per
 * packet type; u64 fields are UUIDs (bigint) or byte offsets (number, checked
 * to be safe integers). Owns the limits, the per-type body bounds, and the
 * encoder and decoder of one body. Variable tails (data payloads, bitmap
 * bits, auth challenges, digests) are a separate buffer on send, so a 1 MiB
 * write is never copied. With data-integrity-alg the sender's digest sits
 * between the fixed part and the payload of Data / RsDataReply (DRBD 8.4:
 * after p_data, counted in the header's length); encodeHead computes it into
 * the head buffer, decodeBody skips it (the stream decoder checks it). Knows nothing of streams (peer/frame-decoder), of
 * receive buffers (peer/receive-pool), of sockets or of what a packet means.
 */
import { assert, unreachable } from '../util/assert.js';
import type { BlockDigest } from '../util/digest.js';
import {
  PacketType,
  SetupPacketType,
  type AfterSb0,
  type AfterSb1,
  type AfterSb2,
  type WirePacket,
} from './packets.js';

/** "uDRB": deliberately not DRBD's 0x83740267, so a kernel DRBD peer is rejected at once. */
export const FRAME_MAGIC = 0x75445242;
/**
 * Wire version this build speaks; a frame with any other version is a
 * ProtocolError. 2: the header gained the u16 volume (issue 19); version 1
 * (12-byte header, no volume) is refused at the first frame's header.
 */
export const PROTOCOL_VERSION = 2;
export const PROTOCOL_VERSION_MIN = 2;
export const PROTOCOL_VERSION_MAX = 2;
/** Header field offsets: magic, version, type and length sit where version 1 had them, so a v1 frame is refused by its version. */
export const HEADER_VERSION_OFFSET = 4;
export const HEADER_TYPE_OFFSET = 6;
export const HEADER_LENGTH_OFFSET = 8;
export const HEADER_VOLUME_OFFSET = 12;
export const HEADER_BYTES = 14;
/** The largest volume number a header carries (u16; DRBD's vnr is a u16 on the wire too). */
export const VOLUME_MAX = 0xffff;
/** Largest data payload (DRBD_MAX_BIO_SIZE in 8.4 is 1 MiB). */
export const PAYLOAD_BYTES_MAX = 1024 * 1024;
/** Largest bitmap slice one Bitmap packet carries. */
export const BITMAP_CHUNK_BYTES_MAX = 1024 * 1024;
/** Auth challenge length bounds (DRBD uses 64 random bytes). */
export const AUTH_CHALLENGE_BYTES_MIN = 16;
export const AUTH_CHALLENGE_BYTES_MAX = 64;
/** HMAC output limit: sha512 is the longest digest we accept. */
export const DIGEST_BYTES_MAX = 64;
/**
 * An OvReply carries one digest per 4 KiB block of the run it answers
 * (replication/verify: VERIFY_RUN_BYTES = 256 KiB → 64 blocks); allow runs up
 * to 1 MiB of sha512 digests.
 */
export const OV_REPLY_DIGEST_BYTES_MAX = 256 * DIGEST_BYTES_MAX;
/** A CsumRsRequest carries one digest over its whole range (DRBD's read_for_csum). */
export const CSUM_DIGEST_BYTES_MAX = DIGEST_BYTES_MAX;
/** Node names are host names (≤ 64 in practice); the u8 length prefix caps them. */
export const NAME_BYTES_MAX = 255;
/** Data, acks and resync ranges are in 512-byte sectors. */
export const SECTOR_BYTES = 512;

const DATA_FIXED_BYTES = 24;
export const RS_REPLY_FIXED_BYTES = 16;
const RANGE_ID_BYTES = 20; // u64 offset, u32 length, u64 blockId
const BITMAP_FIXED_BYTES = 9;
const PROTOCOL_FIXED_BYTES = 6;
/** SyncParam: five u32 (rate, c-plan-ahead, c-delay-target, c-fill-target, c-max-rate) + two u8 name lengths. */
const SYNC_PARAM_FIXED_BYTES = 22;
/** DRBD's SHARED_SECRET_MAX: the longest digest name a SyncParam carries. */
const ALG_NAME_BYTES_MAX = 64;
const HELLO_FIXED_BYTES = 6;
/** The longest data-integrity-alg digest a Data / RsDataReply frame carries (sha512). */
export const INTEGRITY_DIGEST_BYTES_MAX = DIGEST_BYTES_MAX;
/** Largest frame on the wire: header + Data fixed part + integrity digest + 1 MiB payload. */
export const FRAME_BYTES_MAX = HEADER_BYTES + DATA_FIXED_BYTES + INTEGRITY_DIGEST_BYTES_MAX + PAYLOAD_BYTES_MAX;
/** Same limit, older name. */
export const MAX_FRAME_BYTES = FRAME_BYTES_MAX;

/** A peer sent bytes that are not a valid frame; the link must be dropped (cstate ProtocolError). */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

const TWO_POW_32 = 2 ** 32;
/** Highest allowed high word of a u64 carried as a JS number (2^53 - 1 >> 32). */
const U64_NUMBER_HIGH_MAX = 0x1fffff;

/** after-sb-0pri wire value for `discard-node-NAME`; NAME follows the node name in the body. */
const AFTER_SB0_DISCARD_NODE = 7;
const DISCARD_NODE_PREFIX = 'discard-node-';
const AFTER_SB0: readonly AfterSb0[] = [
  'disconnect',
  'discard-younger-primary',
  'discard-older-primary',
  'discard-zero-changes',
  'discard-least-changes',
  'discard-local',
  'discard-remote',
];
const AFTER_SB1: readonly AfterSb1[] = ['disconnect', 'consensus', 'discard-secondary', 'call-pri-lost-after-sb', 'violently-as0p'];
const AFTER_SB2: readonly AfterSb2[] = ['disconnect', 'call-pri-lost-after-sb', 'violently-as0p'];

// Body size bounds per frame type; -1 marks an unknown type.
const TYPE_SLOTS = 0x100;
export const bodyMin = new Int32Array(TYPE_SLOTS).fill(-1);
export const bodyMax = new Int32Array(TYPE_SLOTS).fill(-1);
function bounds(type: number, min: number, max: number = min): void {
  bodyMin[type] = min;
  bodyMax[type] = max;
}
bounds(SetupPacketType.Hello, HELLO_FIXED_BYTES, HELLO_FIXED_BYTES + NAME_BYTES_MAX + NAME_BYTES_MAX);
bounds(SetupPacketType.Chosen, 0);
bounds(PacketType.AuthChallenge, AUTH_CHALLENGE_BYTES_MIN, AUTH_CHALLENGE_BYTES_MAX);
bounds(PacketType.AuthResponse, 1, DIGEST_BYTES_MAX);
bounds(PacketType.AuthResult, 1);
bounds(PacketType.Protocol, PROTOCOL_FIXED_BYTES, PROTOCOL_FIXED_BYTES + NAME_BYTES_MAX + 1 + NAME_BYTES_MAX + 1 + ALG_NAME_BYTES_MAX);
bounds(PacketType.SyncParam, SYNC_PARAM_FIXED_BYTES, SYNC_PARAM_FIXED_BYTES + 2 * ALG_NAME_BYTES_MAX);
bounds(PacketType.ProtocolUpdate, PROTOCOL_FIXED_BYTES, PROTOCOL_FIXED_BYTES + NAME_BYTES_MAX + 1 + NAME_BYTES_MAX + 1 + ALG_NAME_BYTES_MAX);
bounds(PacketType.Uuids, 48);
bounds(PacketType.Sizes, 30);
bounds(PacketType.State, 4);
bounds(PacketType.SyncUuid, 8);
bounds(PacketType.StateChangeRequest, 8);
bounds(PacketType.StateChangeReply, 8);
bounds(PacketType.Data, DATA_FIXED_BYTES, DATA_FIXED_BYTES + INTEGRITY_DIGEST_BYTES_MAX + PAYLOAD_BYTES_MAX);
bounds(PacketType.RecvAck, RANGE_ID_BYTES);
bounds(PacketType.WriteAck, RANGE_ID_BYTES);
bounds(PacketType.NegAck, RANGE_ID_BYTES);
bounds(PacketType.RsWriteAck, RANGE_ID_BYTES);
bounds(PacketType.RsNegAck, RANGE_ID_BYTES);
bounds(PacketType.Barrier, 4);
bounds(PacketType.BarrierAck, 8);
bounds(PacketType.Bitmap, BITMAP_FIXED_BYTES, BITMAP_FIXED_BYTES + BITMAP_CHUNK_BYTES_MAX);
bounds(PacketType.RsDataRequest, RANGE_ID_BYTES);
bounds(PacketType.RsDataReply, RS_REPLY_FIXED_BYTES, RS_REPLY_FIXED_BYTES + INTEGRITY_DIGEST_BYTES_MAX + PAYLOAD_BYTES_MAX);
bounds(PacketType.OutOfSync, 12);
bounds(PacketType.CsumRsRequest, RANGE_ID_BYTES, RANGE_ID_BYTES + CSUM_DIGEST_BYTES_MAX);
bounds(PacketType.RsIsInSync, RANGE_ID_BYTES);
bounds(PacketType.OvRequest, RANGE_ID_BYTES);
bounds(PacketType.OvReply, RANGE_ID_BYTES, RANGE_ID_BYTES + OV_REPLY_DIGEST_BYTES_MAX);
bounds(PacketType.OvResult, 13);
bounds(PacketType.Ping, 0);
bounds(PacketType.PingAck, 0);
bounds(PacketType.Disconnect, 0);
for (let t = 0; t < TYPE_SLOTS; t++) assert(bodyMax[t]! <= FRAME_BYTES_MAX - HEADER_BYTES, 'frame bound within FRAME_BYTES_MAX');

/**
 * Where a data-integrity-alg digest starts in the body of a frame of `type`
 * (right after the fixed part), or -1 for types that never carry one. DRBD
 * digests P_DATA, P_RS_DATA_REPLY and P_DATA_REPLY (drbd_send_dblock,
 * drbd_send_block); udrbd's RsDataReply is both of the latter.
 */
export function integrityDigestOffset(type: number): number {
  if (type === PacketType.Data) return DATA_FIXED_BYTES;
  if (type === PacketType.RsDataReply) return RS_REPLY_FIXED_BYTES;
  return -1;
}

/** True when `type` is a frame type this build knows. */
export function isKnownType(type: number): boolean {
  return type >= 0 && type < TYPE_SLOTS && bodyMax[type]! >= 0;
}

// ---------------------------------------------------------------- encoding

function writeU64Number(buf: Buffer, value: number, offset: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `u64 field is a non-negative safe integer (${value})`);
  buf.writeUInt32BE(Math.floor(value / TWO_POW_32), offset);
  buf.writeUInt32BE(value >>> 0, offset + 4);
}

function assertSectorAligned(value: number, what: string): void {
  assert(value % SECTOR_BYTES === 0, `${what} is a multiple of ${SECTOR_BYTES} (${value})`);
}

/** `volume`: the per-volume packet's volume; connection-wide packets pass 0. */
function allocFrame(type: number, fixedBytes: number, tailBytes: number, volume = 0): Buffer {
  const bodyBytes = fixedBytes + tailBytes;
  assert(bodyBytes >= bodyMin[type]! && bodyBytes <= bodyMax[type]!, `body of type 0x${type.toString(16)} within bounds (${bodyBytes})`);
  assert(Number.isInteger(volume) && volume >= 0 && volume <= VOLUME_MAX, `volume fits u16 (${volume})`);
  const buf = Buffer.allocUnsafe(HEADER_BYTES + fixedBytes);
  buf.writeUInt32BE(FRAME_MAGIC, 0);
  buf.writeUInt16BE(PROTOCOL_VERSION, HEADER_VERSION_OFFSET);
  buf.writeUInt16BE(type, HEADER_TYPE_OFFSET);
  buf.writeUInt32BE(bodyBytes, HEADER_LENGTH_OFFSET);
  buf.writeUInt16BE(volume, HEADER_VOLUME_OFFSET);
  return buf;
}

function indexOf<T>(table: readonly T[], value: T, what: string): number {
  const index = table.indexOf(value);
  assert(index >= 0, `known ${what} (${String(value)})`);
  return index;
}

function writeRangeId(buf: Buffer, offsetBytes: number, lengthBytes: number, blockId: number): void {
  assertSectorAligned(offsetBytes, 'offsetBytes');
  assertSectorAligned(lengthBytes, 'lengthBytes');
  writeU64Number(buf, offsetBytes, HEADER_BYTES);
  assert(lengthBytes >= 0 && lengthBytes <= 0xffffffff, 'lengthBytes fits u32');
  buf.writeUInt32BE(lengthBytes, HEADER_BYTES + 8);
  writeU64Number(buf, blockId, HEADER_BYTES + 12);
}

/**
 * The variable tail of a packet (payload, bitmap bits, challenge, digest) that
 * is sent as its own buffer after `encodeHead`, or null when there is none.
 */
export function tailOf(packet: WirePacket): Buffer | null {
  switch (packet.type) {
    case PacketType.Data:
    case PacketType.RsDataReply:
      return packet.payload.length > 0 ? packet.payload : null;
    case PacketType.Bitmap:
      return packet.bits.length > 0 ? packet.bits : null;
    case PacketType.AuthChallenge:
      return packet.challenge;
    case PacketType.AuthResponse:
      return packet.response;
    case PacketType.OvReply:
    case PacketType.CsumRsRequest:
      return packet.digest.length > 0 ? packet.digest : null;
    default:
      return null;
  }
}

/**
 * Header plus fixed body of `packet`; the frame is complete once
 * `tailOf(packet)` follows it. `integrity`: the sender's data-integrity-alg
 * (null = none); a Data / RsDataReply head then ends with the digest of the
 * payload.
 */
export function encodeHead(packet: WirePacket, integrity: BlockDigest | null = null): Buffer {
  const h = HEADER_BYTES;
  switch (packet.type) {
    case SetupPacketType.Hello: {
      const name = Buffer.from(packet.nodeName, 'utf8');
      const alg = Buffer.from(packet.authAlg, 'utf8');
      assert(name.length <= NAME_BYTES_MAX && alg.length <= NAME_BYTES_MAX, 'hello names fit u8');
      const buf = allocFrame(packet.type, HELLO_FIXED_BYTES + name.length + alg.length, 0);
      buf.writeUInt16BE(packet.versionMin, h);
      buf.writeUInt16BE(packet.versionMax, h + 2);
      buf.writeUInt8(name.length, h + 4);
      buf.writeUInt8(alg.length, h + 5);
      name.copy(buf, h + 6);
      alg.copy(buf, h + 6 + name.length);
      return buf;
    }
    case SetupPacketType.Chosen:
    case PacketType.Ping:
    case PacketType.PingAck:
    case PacketType.Disconnect:
      return allocFrame(packet.type, 0, 0);
    case PacketType.AuthChallenge:
      return allocFrame(packet.type, 0, packet.challenge.length);
    case PacketType.AuthResponse:
      return allocFrame(packet.type, 0, packet.response.length);
    case PacketType.AuthResult: {
      const buf = allocFrame(packet.type, 1, 0);
      buf.writeUInt8(packet.ok ? 1 : 0, h);
      return buf;
    }
    case PacketType.Protocol:
    case PacketType.ProtocolUpdate: {
      const name = Buffer.from(packet.nodeName, 'utf8');
      assert(name.length <= NAME_BYTES_MAX, 'node name fits u8');
      const discardNode = packet.afterSb0pri.startsWith(DISCARD_NODE_PREFIX)
        ? Buffer.from(packet.afterSb0pri.slice(DISCARD_NODE_PREFIX.length), 'utf8')
        : null;
      assert(discardNode === null || (discardNode.length > 0 && discardNode.length <= NAME_BYTES_MAX), 'discard-node name fits u8');
      // data-integrity-alg: an optional tail (u8 length, name) after everything else, absent for none.
      const integrityAlg = packet.integrityAlg === '' ? null : Buffer.from(packet.integrityAlg, 'utf8');
      assert(integrityAlg === null || integrityAlg.length <= ALG_NAME_BYTES_MAX, 'data-integrity-alg name fits Protocol');
      const discardBytes = discardNode === null ? 0 : 1 + discardNode.length;
      const extraBytes = discardBytes + (integrityAlg === null ? 0 : 1 + integrityAlg.length);
      const buf = allocFrame(packet.type, PROTOCOL_FIXED_BYTES + name.length + extraBytes, 0);
      if (integrityAlg !== null) {
        const at = h + PROTOCOL_FIXED_BYTES + name.length + discardBytes;
        buf.writeUInt8(integrityAlg.length, at);
        integrityAlg.copy(buf, at + 1);
      }
      buf.writeUInt8(packet.protocol.charCodeAt(0), h);
      buf.writeUInt8(discardNode === null ? indexOf(AFTER_SB0, packet.afterSb0pri, 'after-sb-0pri') : AFTER_SB0_DISCARD_NODE, h + 1);
      if (discardNode !== null) {
        buf.writeUInt8(discardNode.length, h + 6 + name.length);
        discardNode.copy(buf, h + 7 + name.length);
      }
      buf.writeUInt8(indexOf(AFTER_SB1, packet.afterSb1pri, 'after-sb-1pri'), h + 2);
      buf.writeUInt8(indexOf(AFTER_SB2, packet.afterSb2pri, 'after-sb-2pri'), h + 3);
      buf.writeUInt8((packet.allowTwoPrimaries ? 1 : 0) | (packet.discardMyData ? 2 : 0), h + 4);
      buf.writeUInt8(name.length, h + 5);
      name.copy(buf, h + 6);
      return buf;
    }
    case PacketType.Uuids: {
      const buf = allocFrame(packet.type, 48, 0, packet.volume);
      buf.writeBigUInt64BE(packet.uuids.current, h);
      buf.writeBigUInt64BE(packet.uuids.bitmap, h + 8);
      buf.writeBigUInt64BE(packet.uuids.historyStart, h + 16);
      buf.writeBigUInt64BE(packet.uuids.historyEnd, h + 24);
      writeU64Number(buf, packet.bitsSet, h + 32);
      writeU64Number(buf, packet.uuidFlags, h + 40);
      return buf;
    }
    case PacketType.Sizes: {
      // DRBD's p_sizes order: d_size, u_size, c_size, max_bio_size, then (udrbd: no queue_order_type) dds_flags.
      const buf = allocFrame(packet.type, 30, 0, packet.volume);
      writeU64Number(buf, packet.diskSizeBytes, h);
      writeU64Number(buf, packet.userSizeBytes, h + 8);
      writeU64Number(buf, packet.currentSizeBytes, h + 16);
      buf.writeUInt32BE(packet.maxRequestBytes, h + 24);
      buf.writeUInt16BE(packet.ddsFlags, h + 28);
      return buf;
    }
    case PacketType.State: {
      const buf = allocFrame(packet.type, 4, 0, packet.volume);
      buf.writeUInt8(packet.role, h);
      buf.writeUInt8(packet.disk, h + 1);
      buf.writeUInt8(packet.conn, h + 2);
      buf.writeUInt8(packet.userIsp ? 1 : 0, h + 3);
      return buf;
    }
    case PacketType.SyncParam: {
      const verify = Buffer.from(packet.verifyAlg, 'utf8');
      const csums = Buffer.from(packet.csumsAlg, 'utf8');
      assert(verify.length <= ALG_NAME_BYTES_MAX && csums.length <= ALG_NAME_BYTES_MAX, 'digest names fit SyncParam');
      const buf = allocFrame(packet.type, SYNC_PARAM_FIXED_BYTES + verify.length + csums.length, 0, packet.volume);
      const values = [packet.resyncRateKiBps, packet.cPlanAheadDs, packet.cDelayTargetDs, packet.cFillTargetSectors, packet.cMaxRateKiBps];
      values.forEach((v, i) => buf.writeUInt32BE(v, h + 4 * i));
      buf.writeUInt8(verify.length, h + 20);
      buf.writeUInt8(csums.length, h + 21);
      verify.copy(buf, h + SYNC_PARAM_FIXED_BYTES);
      csums.copy(buf, h + SYNC_PARAM_FIXED_BYTES + verify.length);
      return buf;
    }
    case PacketType.SyncUuid: {
      const buf = allocFrame(packet.type, 8, 0, packet.volume);
      buf.writeBigUInt64BE(packet.uuid, h);
      return buf;
    }
    case PacketType.StateChangeRequest: {
      const buf = allocFrame(packet.type, 8, 0, packet.volume);
      buf.writeUInt32BE(packet.requestId, h);
      const mask = (packet.role !== undefined ? 1 : 0) | (packet.conn !== undefined ? 2 : 0) | (packet.disk !== undefined ? 4 : 0);
      buf.writeUInt8(mask, h + 4);
      buf.writeUInt8(packet.role ?? 0, h + 5);
      buf.writeUInt8(packet.conn ?? 0, h + 6);
      buf.writeUInt8(packet.disk ?? 0, h + 7);
      return buf;
    }
    case PacketType.StateChangeReply: {
      const buf = allocFrame(packet.type, 8, 0, packet.volume);
      buf.writeUInt32BE(packet.requestId, h);
      buf.writeInt32BE(packet.result, h + 4);
      return buf;
    }
    case PacketType.Data: {
      assertSectorAligned(packet.offsetBytes, 'Data offsetBytes');
      assertSectorAligned(packet.payload.length, 'Data payload length');
      assert((packet.flags & ~DATA_FLAGS_KNOWN) === 0, `known Data flags (${packet.flags})`);
      const digestBytes = integrity === null ? 0 : integrity.digestBytes;
      const buf = allocFrame(packet.type, DATA_FIXED_BYTES + digestBytes, packet.payload.length, packet.volume);
      writeU64Number(buf, packet.offsetBytes, h);
      writeU64Number(buf, packet.blockId, h + 8);
      buf.writeUInt32BE(packet.epoch, h + 16);
      buf.writeUInt32BE(packet.flags, h + 20);
      if (integrity !== null) integrity.digestInto(packet.payload, buf, h + DATA_FIXED_BYTES);
      return buf;
    }
    case PacketType.RecvAck:
    case PacketType.WriteAck:
    case PacketType.NegAck:
    case PacketType.RsWriteAck:
    case PacketType.RsNegAck:
    case PacketType.RsIsInSync:
    case PacketType.RsDataRequest:
    case PacketType.OvRequest: {
      const buf = allocFrame(packet.type, RANGE_ID_BYTES, 0, packet.volume);
      writeRangeId(buf, packet.offsetBytes, packet.lengthBytes, packet.blockId);
      return buf;
    }
    case PacketType.OvReply:
    case PacketType.CsumRsRequest: {
      const buf = allocFrame(packet.type, RANGE_ID_BYTES, packet.digest.length, packet.volume);
      writeRangeId(buf, packet.offsetBytes, packet.lengthBytes, packet.blockId);
      return buf;
    }
    case PacketType.Barrier: {
      const buf = allocFrame(packet.type, 4, 0);
      buf.writeUInt32BE(packet.epoch, h);
      return buf;
    }
    case PacketType.BarrierAck: {
      const buf = allocFrame(packet.type, 8, 0);
      buf.writeUInt32BE(packet.epoch, h);
      buf.writeUInt32BE(packet.writes, h + 4);
      return buf;
    }
    case PacketType.Bitmap: {
      const buf = allocFrame(packet.type, BITMAP_FIXED_BYTES, packet.bits.length, packet.volume);
      writeU64Number(buf, packet.firstByte, h);
      buf.writeUInt8(packet.last ? 1 : 0, h + 8);
      return buf;
    }
    case PacketType.RsDataReply: {
      assertSectorAligned(packet.offsetBytes, 'RsDataReply offsetBytes');
      assertSectorAligned(packet.payload.length, 'RsDataReply payload length');
      const digestBytes = integrity === null ? 0 : integrity.digestBytes;
      const buf = allocFrame(packet.type, RS_REPLY_FIXED_BYTES + digestBytes, packet.payload.length, packet.volume);
      writeU64Number(buf, packet.offsetBytes, h);
      writeU64Number(buf, packet.blockId, h + 8);
      if (integrity !== null) integrity.digestInto(packet.payload, buf, h + RS_REPLY_FIXED_BYTES);
      return buf;
    }
    case PacketType.OutOfSync: {
      assertSectorAligned(packet.offsetBytes, 'OutOfSync offsetBytes');
      assertSectorAligned(packet.lengthBytes, 'OutOfSync lengthBytes');
      const buf = allocFrame(packet.type, 12, 0, packet.volume);
      writeU64Number(buf, packet.offsetBytes, h);
      buf.writeUInt32BE(packet.lengthBytes, h + 8);
      return buf;
    }
    case PacketType.OvResult: {
      assertSectorAligned(packet.offsetBytes, 'OvResult offsetBytes');
      assertSectorAligned(packet.lengthBytes, 'OvResult lengthBytes');
      const buf = allocFrame(packet.type, 13, 0, packet.volume);
      writeU64Number(buf, packet.offsetBytes, h);
      buf.writeUInt32BE(packet.lengthBytes, h + 8);
      buf.writeUInt8(packet.inSync ? 1 : 0, h + 12);
      return buf;
    }
    default:
      return unreachable(packet, 'packet type');
  }
}

/** The whole frame as one or two buffers (tests, set-up); sessions write head and tail themselves. */
export function encodePacket(packet: WirePacket, integrity: BlockDigest | null = null): Buffer[] {
  const head = encodeHead(packet, integrity);
  const tail = tailOf(packet);
  return tail === null ? [head] : [head, tail];
}

// ---------------------------------------------------------------- decoding

const DATA_FLAGS_KNOWN = 0x1f; // DataFlag.fua | flush | ackReceive | ackWrite | ackNone
const ROLE_MAX = 2; // resource/states Role.Secondary
const DISK_MAX = 8; // DiskState.UpToDate
const CONN_MAX = 23; // ConnState.Behind

/** Throws the ProtocolError every decoding failure is. */
export function fail(message: string): never {
  throw new ProtocolError(message);
}

function readU64Number(body: Buffer, offset: number, what: string): number {
  const high = body.readUInt32BE(offset);
  if (high > U64_NUMBER_HIGH_MAX) fail(`${what} too large`);
  return high * TWO_POW_32 + body.readUInt32BE(offset + 4);
}

function readAligned(body: Buffer, offset: number, what: string): number {
  const value = readU64Number(body, offset, what);
  if (value % SECTOR_BYTES !== 0) fail(`${what} ${value} not a multiple of ${SECTOR_BYTES}`);
  return value;
}

function readLength(body: Buffer, offset: number): number {
  const value = body.readUInt32BE(offset);
  if (value % SECTOR_BYTES !== 0) fail(`length ${value} not a multiple of ${SECTOR_BYTES}`);
  return value;
}

function readName(body: Buffer, start: number, length: number): string {
  if (start + length > body.length) fail('name runs past end of frame');
  return body.toString('utf8', start, start + length);
}

function pick<T>(table: readonly T[], index: number, what: string): T {
  const value = table[index];
  if (value === undefined) fail(`unknown ${what} value ${index}`);
  return value;
}

/**
 * Decode one frame body of a type already checked by the header parser.
 * Variable tails are subarrays of `body` (no copy). `integrityBytes`: the
 * length of the peer's data-integrity-alg digest (0 = none) that a Data /
 * RsDataReply body carries before its payload; it is skipped here, checked
 * by the caller (peer/frame-decoder). `volume`: the header's volume, set on
 * per-volume packets (connection-wide ones have no volume field).
 */
export function decodeBody(type: number, body: Buffer, integrityBytes = 0, volume = 0): WirePacket {
  switch (type) {
    case SetupPacketType.Hello: {
      const nameBytes = body.readUInt8(4);
      const algBytes = body.readUInt8(5);
      if (HELLO_FIXED_BYTES + nameBytes + algBytes !== body.length) fail('Hello length mismatch');
      return {
        type,
        versionMin: body.readUInt16BE(0),
        versionMax: body.readUInt16BE(2),
        nodeName: readName(body, 6, nameBytes),
        authAlg: readName(body, 6 + nameBytes, algBytes),
      };
    }
    case SetupPacketType.Chosen:
    case PacketType.Ping:
    case PacketType.PingAck:
    case PacketType.Disconnect:
      return { type };
    case PacketType.AuthChallenge:
      return { type, challenge: body };
    case PacketType.AuthResponse:
      return { type, response: body };
    case PacketType.AuthResult: {
      const ok = body.readUInt8(0);
      if (ok > 1) fail('bad AuthResult value');
      return { type, ok: ok === 1 };
    }
    case PacketType.Protocol:
    case PacketType.ProtocolUpdate: {
      const letter = String.fromCharCode(body.readUInt8(0));
      if (letter !== 'A' && letter !== 'B' && letter !== 'C') fail(`unknown protocol ${JSON.stringify(letter)}`);
      const flags = body.readUInt8(4);
      if ((flags & ~3) !== 0) fail('unknown Protocol flags');
      const nameBytes = body.readUInt8(5);
      const sb0 = body.readUInt8(1);
      let afterSb0pri: AfterSb0;
      let at = PROTOCOL_FIXED_BYTES + nameBytes;
      if (at > body.length) fail('Protocol length mismatch');
      if (sb0 === AFTER_SB0_DISCARD_NODE) {
        if (at >= body.length) fail('Protocol length mismatch');
        const targetBytes = body.readUInt8(at);
        if (targetBytes === 0 || at + 1 + targetBytes > body.length) fail('Protocol length mismatch');
        afterSb0pri = `${DISCARD_NODE_PREFIX}${readName(body, at + 1, targetBytes)}`;
        at += 1 + targetBytes;
      } else {
        afterSb0pri = pick(AFTER_SB0, sb0, 'after-sb-0pri');
      }
      let integrityAlg = '';
      if (at < body.length) {
        const algBytes = body.readUInt8(at);
        if (algBytes === 0 || algBytes > ALG_NAME_BYTES_MAX || at + 1 + algBytes !== body.length) fail('Protocol length mismatch');
        integrityAlg = readName(body, at + 1, algBytes);
      }
      return {
        type,
        protocol: letter,
        afterSb0pri,
        afterSb1pri: pick(AFTER_SB1, body.readUInt8(2), 'after-sb-1pri'),
        afterSb2pri: pick(AFTER_SB2, body.readUInt8(3), 'after-sb-2pri'),
        allowTwoPrimaries: (flags & 1) !== 0,
        discardMyData: (flags & 2) !== 0,
        nodeName: readName(body, 6, nameBytes),
        integrityAlg,
      };
    }
    case PacketType.Uuids:
      return {
        type,
        volume,
        uuids: {
          current: body.readBigUInt64BE(0),
          bitmap: body.readBigUInt64BE(8),
          historyStart: body.readBigUInt64BE(16),
          historyEnd: body.readBigUInt64BE(24),
        },
        bitsSet: readU64Number(body, 32, 'bitsSet'),
        uuidFlags: readU64Number(body, 40, 'uuidFlags'),
      };
    case PacketType.Sizes:
      // dds_flags: forced (1) and no-resync (2); any other bit is a sender this build does not know.
      if ((body.readUInt16BE(28) & ~3) !== 0) fail('Sizes flags out of range');
      return {
        type,
        volume,
        diskSizeBytes: readU64Number(body, 0, 'diskSizeBytes'),
        userSizeBytes: readU64Number(body, 8, 'userSizeBytes'),
        currentSizeBytes: readU64Number(body, 16, 'currentSizeBytes'),
        maxRequestBytes: body.readUInt32BE(24),
        ddsFlags: body.readUInt16BE(28),
      };
    case PacketType.State: {
      const role = body.readUInt8(0);
      const disk = body.readUInt8(1);
      const conn = body.readUInt8(2);
      const flags = body.readUInt8(3);
      if (role > ROLE_MAX || disk > DISK_MAX || conn > CONN_MAX || flags > 1) fail('State out of range');
      return { type, volume, role, disk, conn, userIsp: flags === 1 };
    }
    case PacketType.SyncParam: {
      const verifyBytes = body.readUInt8(20);
      const csumsBytes = body.readUInt8(21);
      if (SYNC_PARAM_FIXED_BYTES + verifyBytes + csumsBytes !== body.length) fail('SyncParam length mismatch');
      return {
        type,
        volume,
        resyncRateKiBps: body.readUInt32BE(0),
        cPlanAheadDs: body.readUInt32BE(4),
        cDelayTargetDs: body.readUInt32BE(8),
        cFillTargetSectors: body.readUInt32BE(12),
        cMaxRateKiBps: body.readUInt32BE(16),
        verifyAlg: readName(body, SYNC_PARAM_FIXED_BYTES, verifyBytes),
        csumsAlg: readName(body, SYNC_PARAM_FIXED_BYTES + verifyBytes, csumsBytes),
      };
    }
    case PacketType.SyncUuid:
      return { type, volume, uuid: body.readBigUInt64BE(0) };
    case PacketType.StateChangeRequest: {
      const mask = body.readUInt8(4);
      if ((mask & ~7) !== 0) fail('unknown StateChangeRequest mask');
      const packet: WirePacket = { type, volume, requestId: body.readUInt32BE(0) };
      if (mask & 1) packet.role = body.readUInt8(5);
      if (mask & 2) packet.conn = body.readUInt8(6);
      if (mask & 4) packet.disk = body.readUInt8(7);
      return packet;
    }
    case PacketType.StateChangeReply:
      return { type, volume, requestId: body.readUInt32BE(0), result: body.readInt32BE(4) };
    case PacketType.Data: {
      if (body.length < DATA_FIXED_BYTES + integrityBytes) fail(`Data shorter than its ${integrityBytes}-byte integrity digest`);
      const payload = body.subarray(DATA_FIXED_BYTES + integrityBytes);
      if (payload.length % SECTOR_BYTES !== 0) fail(`Data payload ${payload.length} not a multiple of ${SECTOR_BYTES}`);
      const flags = body.readUInt32BE(20);
      if ((flags & ~DATA_FLAGS_KNOWN) !== 0) fail(`unknown Data flags 0x${flags.toString(16)}`);
      return {
        type,
        volume,
        offsetBytes: readAligned(body, 0, 'offsetBytes'),
        blockId: readU64Number(body, 8, 'blockId'),
        epoch: body.readUInt32BE(16),
        flags,
        payload,
      };
    }
    case PacketType.RecvAck:
    case PacketType.WriteAck:
    case PacketType.NegAck:
    case PacketType.RsWriteAck:
    case PacketType.RsNegAck:
    case PacketType.RsIsInSync:
    case PacketType.RsDataRequest:
    case PacketType.OvRequest:
      return {
        type,
        volume,
        offsetBytes: readAligned(body, 0, 'offsetBytes'),
        lengthBytes: readLength(body, 8),
        blockId: readU64Number(body, 12, 'blockId'),
      };
    case PacketType.OvReply:
    case PacketType.CsumRsRequest:
      return {
        type,
        volume,
        offsetBytes: readAligned(body, 0, 'offsetBytes'),
        lengthBytes: readLength(body, 8),
        blockId: readU64Number(body, 12, 'blockId'),
        digest: body.subarray(RANGE_ID_BYTES),
      };
    case PacketType.Barrier:
      return { type, epoch: body.readUInt32BE(0) };
    case PacketType.BarrierAck:
      return { type, epoch: body.readUInt32BE(0), writes: body.readUInt32BE(4) };
    case PacketType.Bitmap: {
      const last = body.readUInt8(8);
      if (last > 1) fail('bad Bitmap last flag');
      return { type, volume, firstByte: readU64Number(body, 0, 'firstByte'), last: last === 1, bits: body.subarray(BITMAP_FIXED_BYTES) };
    }
    case PacketType.RsDataReply: {
      if (body.length < RS_REPLY_FIXED_BYTES + integrityBytes) fail(`RsDataReply shorter than its ${integrityBytes}-byte integrity digest`);
      const payload = body.subarray(RS_REPLY_FIXED_BYTES + integrityBytes);
      if (payload.length % SECTOR_BYTES !== 0) fail(`RsDataReply payload ${payload.length} not a multiple of ${SECTOR_BYTES}`);
      return { type, volume, offsetBytes: readAligned(body, 0, 'offsetBytes'), blockId: readU64Number(body, 8, 'blockId'), payload };
    }
    case PacketType.OutOfSync:
      return { type, volume, offsetBytes: readAligned(body, 0, 'offsetBytes'), lengthBytes: readLength(body, 8) };
    case PacketType.OvResult: {
      const inSync = body.readUInt8(12);
      if (inSync > 1) fail('bad OvResult flag');
      return { type, volume, offsetBytes: readAligned(body, 0, 'offsetBytes'), lengthBytes: readLength(body, 8), inSync: inSync === 1 };
    }
    default:
      return fail(`unknown packet type 0x${type.toString(16)}`);
  }
}
