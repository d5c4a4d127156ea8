/**
 * frontend/nbd/protocol — the NBD wire format as numbers and tiny pure
 * encoders/decoders: magics, option and reply codes, transmission and command
 * flags, error values, and the fixed-size request/reply headers (fixed
 * newstyle handshake, simple replies only). Values follow the NBD protocol
 * document (NetworkBlockDevice/nbd doc/proto.md). Knows nothing of sockets,
 * devices or connections; everything here is unit-testable with Buffers.
 */
import { assert } from '../../util/assert.js';

// Handshake magics. 64-bit values are split into two 32-bit halves so no
// BigInt is needed on any path.
export const NBDMAGIC_HI = 0x4e42444d; // "NBDM"
export const NBDMAGIC_LO = 0x41474943; // "AGIC"
export const IHAVEOPT_HI = 0x49484156; // "IHAV"
export const IHAVEOPT_LO = 0x454f5054; // "EOPT"
export const OPTION_REPLY_MAGIC_HI = 0x0003e889;
export const OPTION_REPLY_MAGIC_LO = 0x045565a9;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;

// Handshake flags (server, 16 bits) and client flags (32 bits).
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;
export const CLIENT_FLAGS_KNOWN = FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES;

// Options.
export const OPT_EXPORT_NAME = 1;
export const OPT_ABORT = 2;
export const OPT_LIST = 3;
export const OPT_STARTTLS = 5;
export const OPT_INFO = 6;
export const OPT_GO = 7;
export const OPT_STRUCTURED_REPLY = 8;

// Option replies.
export const REP_ACK = 1;
export const REP_SERVER = 2;
export const REP_INFO = 3;
const REP_ERR_BIT = 0x80000000;
export const REP_ERR_UNSUP = REP_ERR_BIT + 1;
export const REP_ERR_POLICY = REP_ERR_BIT + 2;
export const REP_ERR_INVALID = REP_ERR_BIT + 3;
export const REP_ERR_UNKNOWN = REP_ERR_BIT + 6;
export const REP_ERR_SHUTDOWN = REP_ERR_BIT + 7;
export const REP_ERR_TOO_BIG = REP_ERR_BIT + 9;

// NBD_OPT_INFO / NBD_OPT_GO information types.
export const INFO_EXPORT = 0;
export const INFO_NAME = 1;
export const INFO_DESCRIPTION = 2;
export const INFO_BLOCK_SIZE = 3;

// Transmission flags (16 bits).
export const TFLAG_HAS_FLAGS = 1 << 0;
export const TFLAG_READ_ONLY = 1 << 1;
export const TFLAG_SEND_FLUSH = 1 << 2;
export const TFLAG_SEND_FUA = 1 << 3;
export const TFLAG_SEND_TRIM = 1 << 5;
export const TFLAG_SEND_WRITE_ZEROES = 1 << 6;
export const TFLAG_CAN_MULTI_CONN = 1 << 8;

// Commands and command flags.
export const CMD_READ = 0;
export const CMD_WRITE = 1;
export const CMD_DISC = 2;
export const CMD_FLUSH = 3;
export const CMD_TRIM = 4;
export const CMD_CACHE = 5;
export const CMD_WRITE_ZEROES = 6;
export const CMD_BLOCK_STATUS = 7;
export const CMD_FLAG_FUA = 1 << 0;
export const CMD_FLAG_NO_HOLE = 1 << 1;

// Error values (transmission phase).
export const NBD_OK = 0;
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

export const REQUEST_HEADER_BYTES = 28;
export const SIMPLE_REPLY_HEADER_BYTES = 16;
export const OPTION_HEADER_BYTES = 16;
export const OPTION_REPLY_HEADER_BYTES = 20;
/** Server greeting: NBDMAGIC, IHAVEOPT, 16-bit handshake flags. */
export const GREETING_BYTES = 18;
/** Strings (export names, messages) must be no longer than this (spec). */
export const STRING_MAX_BYTES = 4096;
/** Largest payload the protocol lets any client send without it being treated as abuse (2^25). */
export const PROTOCOL_PAYLOAD_MAX_BYTES = 32 * 1024 * 1024;

/** Block size constraints we advertise with NBD_INFO_BLOCK_SIZE. */
export const BLOCK_SIZE_MIN_BYTES = 512;
export const BLOCK_SIZE_PREFERRED_BYTES = 4096;

export function encodeGreeting(): Buffer {
  const b = Buffer.alloc(GREETING_BYTES);
  b.writeUInt32BE(NBDMAGIC_HI, 0);
  b.writeUInt32BE(NBDMAGIC_LO, 4);
  b.writeUInt32BE(IHAVEOPT_HI, 8);
  b.writeUInt32BE(IHAVEOPT_LO, 12);
  b.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
  return b;
}

export interface OptionHeader {
  /** False when the 64-bit IHAVEOPT magic is wrong: the client is not speaking NBD. */
  readonly magicOk: boolean;
  readonly option: number;
  readonly lengthBytes: number;
}

export function decodeOptionHeader(b: Buffer): OptionHeader {
  assert(b.length >= OPTION_HEADER_BYTES, 'option header is 16 bytes');
  return {
    magicOk: b.readUInt32BE(0) === IHAVEOPT_HI && b.readUInt32BE(4) === IHAVEOPT_LO,
    option: b.readUInt32BE(8),
    lengthBytes: b.readUInt32BE(12),
  };
}

/** An option reply: 20-byte header plus `payload`. */
export function encodeOptionReply(option: number, replyType: number, payload?: Buffer): Buffer {
  const payloadBytes = payload ? payload.length : 0;
  const b = Buffer.alloc(OPTION_REPLY_HEADER_BYTES + payloadBytes);
  b.writeUInt32BE(OPTION_REPLY_MAGIC_HI, 0);
  b.writeUInt32BE(OPTION_REPLY_MAGIC_LO, 4);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(replyType >>> 0, 12);
  b.writeUInt32BE(payloadBytes, 16);
  if (payload) payload.copy(b, OPTION_REPLY_HEADER_BYTES);
  return b;
}

/** NBD_REP_SERVER payload for NBD_OPT_LIST. */
export function encodeServerReplyPayload(exportName: string): Buffer {
  const name = Buffer.from(exportName, 'utf8');
  const b = Buffer.alloc(4 + name.length);
  b.writeUInt32BE(name.length, 0);
  name.copy(b, 4);
  return b;
}

/** NBD_INFO_EXPORT: type, 64-bit size, 16-bit transmission flags. */
export function encodeInfoExport(sizeBytes: number, transmissionFlags: number): Buffer {
  assert(Number.isSafeInteger(sizeBytes) && sizeBytes >= 0, 'export size is a non-negative safe integer');
  const b = Buffer.alloc(12);
  b.writeUInt16BE(INFO_EXPORT, 0);
  writeUInt64BE(b, sizeBytes, 2);
  b.writeUInt16BE(transmissionFlags, 10);
  return b;
}

/** NBD_INFO_BLOCK_SIZE: type, minimum, preferred, maximum (32 bits each). */
export function encodeInfoBlockSize(minBytes: number, preferredBytes: number, maxBytes: number): Buffer {
  assert(minBytes > 0 && (minBytes & (minBytes - 1)) === 0, 'minimum block size is a power of two');
  assert(preferredBytes >= minBytes && maxBytes >= preferredBytes, 'block sizes: min <= preferred <= max');
  const b = Buffer.alloc(14);
  b.writeUInt16BE(INFO_BLOCK_SIZE, 0);
  b.writeUInt32BE(minBytes, 2);
  b.writeUInt32BE(preferredBytes, 6);
  b.writeUInt32BE(maxBytes, 10);
  return b;
}

/** NBD_INFO_NAME or NBD_INFO_DESCRIPTION: type then the string. */
export function encodeInfoString(infoType: number, text: string): Buffer {
  const s = Buffer.from(text, 'utf8');
  const b = Buffer.alloc(2 + s.length);
  b.writeUInt16BE(infoType, 0);
  s.copy(b, 2);
  return b;
}

/** Reply to NBD_OPT_EXPORT_NAME: size, transmission flags, and 124 zero bytes unless NO_ZEROES. */
export function encodeExportNameReply(sizeBytes: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 134);
  writeUInt64BE(b, sizeBytes, 0);
  b.writeUInt16BE(transmissionFlags, 8);
  return b;
}

export interface InfoRequest {
  readonly exportName: string;
  readonly infoTypes: readonly number[];
}

/**
 * Parses NBD_OPT_INFO / NBD_OPT_GO data: 32-bit name length, name, 16-bit
 * count, that many 16-bit info types. Returns null when the lengths do not
 * add up exactly (NBD_REP_ERR_INVALID).
 */
export function decodeInfoRequest(data: Buffer): InfoRequest | null {
  if (data.length < 6) return null;
  const nameBytes = data.readUInt32BE(0);
  if (nameBytes > STRING_MAX_BYTES || 4 + nameBytes + 2 > data.length) return null;
  const count = data.readUInt16BE(4 + nameBytes);
  if (data.length !== 4 + nameBytes + 2 + 2 * count) return null;
  const infoTypes: number[] = [];
  for (let i = 0; i < count; i++) infoTypes.push(data.readUInt16BE(4 + nameBytes + 2 + 2 * i));
  return { exportName: data.toString('utf8', 4, 4 + nameBytes), infoTypes };
}

/** Parsed transmission request; `offsetBytes` is -1 when the 64-bit offset exceeds 2^53. */
export interface RequestHeader {
  magic: number;
  flags: number;
  type: number;
  offsetBytes: number;
  lengthBytes: number;
}

/** Decodes a 28-byte request header at `at` into `out` (reused, no allocation). The 8-byte handle stays in `b`. */
export function decodeRequestHeader(b: Buffer, at: number, out: RequestHeader): void {
  out.magic = b.readUInt32BE(at);
  out.flags = b.readUInt16BE(at + 4);
  out.type = b.readUInt16BE(at + 6);
  const hi = b.readUInt32BE(at + 16);
  const lo = b.readUInt32BE(at + 20);
  out.offsetBytes = hi >= 0x200000 ? -1 : hi * 0x100000000 + lo;
  out.lengthBytes = b.readUInt32BE(at + 24);
}

/** Writes a simple reply header into `b` (16 bytes) with the handle copied from a request header. */
export function encodeSimpleReplyHeader(b: Buffer, error: number, requestHeader: Buffer, requestAt: number): void {
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  requestHeader.copy(b, 8, requestAt + 8, requestAt + 16);
}

export function writeUInt64BE(b: Buffer, value: number, at: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, '64-bit field holds a non-negative safe integer');
  b.writeUInt32BE(Math.floor(value / 0x100000000), at);
  b.writeUInt32BE(value >>> 0, at + 4);
}

export function readUInt64BE(b: Buffer, at: number): number {
  return b.readUInt32BE(at) * 0x100000000 + b.readUInt32BE(at + 4);
}

/** Name of a command for logs. */
export function commandName(type: number): string {
  switch (type) {
    case CMD_READ: return 'NBD_CMD_READ';
    case CMD_WRITE: return 'NBD_CMD_WRITE';
    case CMD_DISC: return 'NBD_CMD_DISC';
    case CMD_FLUSH: return 'NBD_CMD_FLUSH';
    case CMD_TRIM: return 'NBD_CMD_TRIM';
    case CMD_CACHE: return 'NBD_CMD_CACHE';
    case CMD_WRITE_ZEROES: return 'NBD_CMD_WRITE_ZEROES';
    case CMD_BLOCK_STATUS: return 'NBD_CMD_BLOCK_STATUS';
    default: return `NBD_CMD_${type}`;
  }
}

/** Maps a device error (errno code on Node errors) to an NBD error value. */
export function nbdErrorFor(err: unknown): number {
  if (err instanceof RangeError) return NBD_EINVAL;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  switch (code) {
    case 'EPERM':
    case 'EROFS':
    case 'EACCES':
      return NBD_EPERM;
    case 'ENOMEM':
      return NBD_ENOMEM;
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EFBIG':
      return NBD_ENOSPC;
    case 'EINVAL':
      return NBD_EINVAL;
    case 'ENOTSUP':
    case 'EOPNOTSUPP':
      return NBD_ENOTSUP;
    case 'ESHUTDOWN':
      return NBD_ESHUTDOWN;
    default:
      return NBD_EIO;
  }
}
