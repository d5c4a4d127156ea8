/**
 * peer/frame-decoder — FrameDecoder, the incremental parser that turns the
 * peer link's byte stream into packets (header checks first, then the body
 * decoded by peer/wire-layout), reading large bodies into peer/receive-pool
 * buffers. Knows nothing of sockets or sessions.
 */
import { assert } from '../util/assert.js';
import type { BlockDigest } from '../util/digest.js';
import { IntegrityError } from './integrity.js';
import { PacketType, packetTypeName, volumeScope, type WirePacket } from './packets.js';
import { DIRECT_READ_BYTES_MIN, POOLED_BODY_BYTES_MIN, takeAssembly } from './receive-pool.js';
import {
  FRAME_MAGIC,
  HEADER_BYTES,
  HEADER_LENGTH_OFFSET,
  HEADER_TYPE_OFFSET,
  HEADER_VERSION_OFFSET,
  HEADER_VOLUME_OFFSET,
  INTEGRITY_DIGEST_BYTES_MAX,
  PROTOCOL_VERSION_MAX,
  PROTOCOL_VERSION_MIN,
  ProtocolError,
  bodyMax,
  bodyMin,
  decodeBody,
  fail,
  integrityDigestOffset,
  isKnownType,
} from './wire-layout.js';

const EMPTY = Buffer.alloc(0);

/** DRBD's config_unknown_volume text (also the protocol error of a data-path packet for such a volume). */
export function unknownVolumeMessage(type: number, volume: number): string {
  return `${packetTypeName(type)} packet received for volume ${volume}, which is not configured locally`;
}

export interface FrameDecoderOptions {
  /**
   * The volumes configured locally (DRBD's tconn->volumes idr). A per-volume
   * frame for any other volume is not delivered: a configuration packet
   * (packets.ts volumeScope 'config') is skipped and reported to
   * `onUnknownVolume` (DRBD's config_unknown_volume), any other is a
   * ProtocolError that ends the link (receive_Data's -EIO). Connection-wide
   * frames are delivered whatever their header's volume.
   */
  readonly volumes: ReadonlySet<number>;
  /** A configuration frame for an unconfigured volume was skipped (its body read and dropped); the owner logs it. */
  readonly onUnknownVolume?: (type: number, volume: number) => void;
}

/**
 * Incremental frame parser over a byte stream. `push` each received chunk;
 * complete frames are decoded and handed to `onPacket` synchronously, in
 * order. Headers are validated before any body byte is buffered, so a bad
 * magic, version, type or an oversized length fails at once. A frame that
 * arrived inside one chunk is decoded in place (tails are subarrays of the
 * chunk — callers must not reuse pushed chunks); a frame split across chunks
 * is assembled into one buffer of exactly its size. Memory held is at most
 * one frame (≤ FRAME_BYTES_MAX). After a ProtocolError the decoder is dead.
 *
 * Reused receive buffers (peer/receive, Node's `onread`): `received` takes
 * bytes read into a buffer the socket reuses — bodies are then always copied
 * out — or into the tail of the frame being assembled, which
 * `directReadTarget` hands out so a large payload is read from the kernel
 * straight into the buffer that goes to the disk.
 *
 * data-integrity-alg: `setPeerIntegrity` names the digest the peer puts in
 * front of every Data / RsDataReply payload from the next frame on; each is
 * recomputed before the packet is delivered, and a mismatch is an
 * IntegrityError (a ProtocolError: the packet is never delivered).
 *
 * Volumes: the header's volume is checked against `options.volumes` as soon
 * as the header is in (FrameDecoderOptions); delivered per-volume packets
 * carry it as `volume`.
 */
export class FrameDecoder {
  private readonly headerScratch = Buffer.alloc(HEADER_BYTES);
  private headerFilledBytes = 0;
  private frameType = 0;
  /** The volume in the header of the frame being read. */
  private frameVolume = 0;
  /** The frame being read is a configuration packet for an unconfigured volume: read its body, then drop it. */
  private skipFrame = false;
  /** Body length of the frame being read, or -1 while reading a header. */
  private bodyBytes = -1;
  private assembly: Buffer | null = null;
  private assembledBytes = 0;
  /** The assembly tail last handed out by directReadTarget (reads into it are counted, not copied). */
  private directTarget: Buffer | null = null;
  private halted = false;
  private failed = false;
  /** The peer's data-integrity-alg (DRBD's peer_integrity_tfm), or null. */
  private peerIntegrity: BlockDigest | null = null;
  /** Where the recomputed digest goes (DRBD's int_dig_vv): one per decoder, never per frame. */
  private readonly digestScratch = Buffer.alloc(INTEGRITY_DIGEST_BYTES_MAX);
  /** Frames decoded so far (for tests and statistics). */
  framesDecoded = 0;
  /** Configuration frames skipped for an unconfigured volume so far. */
  framesSkipped = 0;

  constructor(
    private onPacket: (packet: WirePacket) => void,
    private readonly options: FrameDecoderOptions,
  ) {}

  /** Replace the receiver of decoded packets. */
  setHandler(onPacket: (packet: WirePacket) => void): void {
    this.onPacket = onPacket;
  }

  /**
   * The peer's data-integrity-alg from the next frame on (null = none): set
   * while the Protocol / ProtocolUpdate frame announcing it is delivered, so
   * the frames behind it in the same chunk are already checked with it.
   */
  setPeerIntegrity(digest: BlockDigest | null): void {
    assert(digest === null || digest.digestBytes <= INTEGRITY_DIGEST_BYTES_MAX, 'integrity digest fits a frame');
    this.peerIntegrity = digest;
  }

  /** Stop decoding: the rest of the current and all later chunks are ignored. */
  halt(): void {
    this.halted = true;
  }

  /** True while a partial frame is buffered. */
  get midFrame(): boolean {
    return this.headerFilledBytes > 0 || this.bodyBytes >= 0;
  }

  /** Feed received bytes. Throws ProtocolError on invalid input (and stays failed). */
  push(chunk: Buffer): void {
    this.guarded(chunk, chunk.length, false);
  }

  /**
   * Where the next socket read should land when the reader reuses its receive
   * buffer: the unfilled tail of a large frame body being assembled, or null
   * (read into the receive buffer).
   */
  directReadTarget(): Buffer | null {
    this.directTarget = null;
    if (this.halted || this.assembly === null || this.bodyBytes - this.assembledBytes < DIRECT_READ_BYTES_MIN) return null;
    this.directTarget = this.assembly.subarray(this.assembledBytes, this.bodyBytes);
    return this.directTarget;
  }

  /**
   * `bytes` were read into `buffer`: the target directReadTarget returned last,
   * or a receive buffer the reader will overwrite with its next read (nothing
   * delivered refers to it). Throws ProtocolError like push().
   */
  received(bytes: number, buffer: Buffer): void {
    if (buffer === this.directTarget && buffer !== null) {
      this.directTarget = null;
      if (this.halted) return;
      assert(this.assembly !== null && bytes <= this.bodyBytes - this.assembledBytes, 'a direct read stays inside the frame body being assembled');
      this.assembledBytes += bytes;
      if (this.assembledBytes === this.bodyBytes) {
        const body = this.assembly;
        this.assembly = null;
        this.guardedDeliver(body);
      }
      return;
    }
    this.guarded(buffer, bytes, true);
  }

  private guardedDeliver(body: Buffer): void {
    try {
      this.deliver(body);
    } catch (error) {
      if (error instanceof ProtocolError) {
        this.failed = true;
        this.halted = true;
      }
      throw error;
    }
  }

  private guarded(chunk: Buffer, end: number, reused: boolean): void {
    assert(!this.failed, 'FrameDecoder used after a ProtocolError');
    if (this.halted) return;
    try {
      this.consume(chunk, end, reused);
    } catch (error) {
      if (error instanceof ProtocolError) {
        this.failed = true;
        this.halted = true;
      }
      throw error;
    }
  }

  /** Decodes chunk[0, end); `reused`: the chunk will be overwritten, never deliver views of it. */
  private consume(chunk: Buffer, end: number, reused: boolean): void {
    let pos = 0;
    while (pos < end && !this.halted) {
      if (this.bodyBytes < 0) {
        if (this.headerFilledBytes === 0 && end - pos >= HEADER_BYTES) {
          this.parseHeader(chunk, pos);
          pos += HEADER_BYTES;
        } else {
          const n = Math.min(HEADER_BYTES - this.headerFilledBytes, end - pos);
          chunk.copy(this.headerScratch, this.headerFilledBytes, pos, pos + n);
          this.headerFilledBytes += n;
          pos += n;
          if (this.headerFilledBytes < HEADER_BYTES) return;
          this.headerFilledBytes = 0;
          this.parseHeader(this.headerScratch, 0);
        }
        if (this.bodyBytes === 0) {
          this.deliver(EMPTY);
          continue;
        }
      }
      if (this.assembly === null) {
        if (!reused && end - pos >= this.bodyBytes) {
          const body = chunk.subarray(pos, pos + this.bodyBytes);
          pos += this.bodyBytes;
          this.deliver(body);
          continue;
        }
        this.assembly = this.bodyBytes >= POOLED_BODY_BYTES_MIN
          ? takeAssembly(this.frameType, this.bodyBytes, this.peerIntegrity?.digestBytes ?? 0)
          : Buffer.allocUnsafe(this.bodyBytes);
        this.assembledBytes = 0;
      }
      const n = Math.min(this.bodyBytes - this.assembledBytes, end - pos);
      chunk.copy(this.assembly, this.assembledBytes, pos, pos + n);
      this.assembledBytes += n;
      pos += n;
      if (this.assembledBytes === this.bodyBytes) {
        const body = this.assembly;
        this.assembly = null;
        this.deliver(body);
      }
    }
  }

  private parseHeader(buf: Buffer, at: number): void {
    const magic = buf.readUInt32BE(at);
    if (magic !== FRAME_MAGIC) fail(`bad frame magic 0x${magic.toString(16).padStart(8, '0')}`);
    const version = buf.readUInt16BE(at + HEADER_VERSION_OFFSET);
    if (version < PROTOCOL_VERSION_MIN || version > PROTOCOL_VERSION_MAX) {
      fail(`incompatible frame version ${version} (speak ${PROTOCOL_VERSION_MIN}..${PROTOCOL_VERSION_MAX})`);
    }
    const type = buf.readUInt16BE(at + HEADER_TYPE_OFFSET);
    if (!isKnownType(type)) fail(`unknown packet type 0x${type.toString(16)}`);
    const length = buf.readUInt32BE(at + HEADER_LENGTH_OFFSET);
    if (length > bodyMax[type]!) fail(`oversized frame: type 0x${type.toString(16)} length ${length} > ${bodyMax[type]}`);
    if (length < bodyMin[type]!) fail(`short frame: type 0x${type.toString(16)} length ${length} < ${bodyMin[type]}`);
    const volume = buf.readUInt16BE(at + HEADER_VOLUME_OFFSET);
    const scope = volumeScope(type);
    // decode_header → pi->vnr; receive_Data & co.: vnr_to_mdev() fails → -EIO; receive_sizes & co.: config_unknown_volume.
    this.skipFrame = scope === 'config' && !this.options.volumes.has(volume);
    if (scope === 'data' && !this.options.volumes.has(volume)) fail(unknownVolumeMessage(type, volume));
    this.frameType = type;
    this.frameVolume = scope === 'connection' ? 0 : volume;
    this.bodyBytes = length;
  }

  private deliver(body: Buffer): void {
    const type = this.frameType;
    this.bodyBytes = -1;
    if (this.skipFrame) {
      // ignore_remaining_packet: the body is consumed, never decoded or delivered.
      this.skipFrame = false;
      this.framesSkipped++;
      this.options.onUnknownVolume?.(type, this.frameVolume);
      return;
    }
    const integrity = this.peerIntegrity;
    const digestAt = integrity === null ? -1 : integrityDigestOffset(type);
    let packet: WirePacket;
    try {
      packet = decodeBody(type, body, digestAt < 0 ? 0 : integrity!.digestBytes, this.frameVolume);
    } catch (error) {
      // Buffer reads past the end surface as RangeError: the body is malformed.
      if (error instanceof RangeError) fail(`malformed frame type 0x${type.toString(16)}: ${error.message}`);
      throw error;
    }
    if (digestAt >= 0) this.checkIntegrity(integrity!, packet, body, digestAt);
    this.framesDecoded++;
    this.onPacket(packet);
  }

  /** read_in_block / recv_dless_read: recompute the payload's digest and compare it with the one sent. */
  private checkIntegrity(integrity: BlockDigest, packet: WirePacket, body: Buffer, digestAt: number): void {
    assert(packet.type === PacketType.Data || packet.type === PacketType.RsDataReply, 'only Data / RsDataReply carry an integrity digest');
    const scratch = this.digestScratch;
    integrity.digestInto(packet.payload, scratch, 0);
    for (let i = 0; i < integrity.digestBytes; i++) {
      if (scratch[i] !== body[digestAt + i]) throw new IntegrityError(packet.offsetBytes, packet.payload.length);
    }
  }
}
