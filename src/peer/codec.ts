/**
 * peer/codec — the peer link's byte format, in three parts: the frame layout
 * with its limits and the encoder/decoder of one body (peer/wire-layout), the
 * buffers received bodies are assembled in (peer/receive-pool) and the
 * stream parser (peer/frame-decoder). This file is their public face; the
 * rest of udrbd imports from here. It owns framing only: it knows nothing of
 * sockets, sessions or what a packet means to the resource state machine.
 */
export {
  AUTH_CHALLENGE_BYTES_MAX,
  AUTH_CHALLENGE_BYTES_MIN,
  BITMAP_CHUNK_BYTES_MAX,
  DIGEST_BYTES_MAX,
  FRAME_BYTES_MAX,
  FRAME_MAGIC,
  HEADER_BYTES,
  HEADER_LENGTH_OFFSET,
  HEADER_TYPE_OFFSET,
  HEADER_VERSION_OFFSET,
  HEADER_VOLUME_OFFSET,
  INTEGRITY_DIGEST_BYTES_MAX,
  MAX_FRAME_BYTES,
  NAME_BYTES_MAX,
  OV_REPLY_DIGEST_BYTES_MAX,
  PAYLOAD_BYTES_MAX,
  PROTOCOL_VERSION,
  PROTOCOL_VERSION_MAX,
  PROTOCOL_VERSION_MIN,
  ProtocolError,
  SECTOR_BYTES,
  VOLUME_MAX,
  decodeBody,
  encodeHead,
  encodePacket,
  integrityDigestOffset,
  isKnownType,
  tailOf,
} from './wire-layout.js';
export { releaseReceivedPayload } from './receive-pool.js';
export { FrameDecoder, type FrameDecoderOptions, unknownVolumeMessage } from './frame-decoder.js';
