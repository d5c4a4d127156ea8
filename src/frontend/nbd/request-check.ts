/**
 * frontend/nbd/request-check — the pure admission rules for one
 * transmission-phase request: which commands and flags this export accepts,
 * alignment, payload limits and export bounds, answered as the NBD error value
 * the reply must carry (NBD_OK when the request may run). Knows nothing of
 * sockets or devices: the connection feeds it the export's limits.
 */
import {
  BLOCK_SIZE_MIN_BYTES,
  CMD_FLAG_FUA,
  CMD_FLAG_NO_HOLE,
  CMD_FLUSH,
  CMD_READ,
  CMD_TRIM,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EOVERFLOW,
  NBD_EPERM,
  NBD_OK,
  TFLAG_READ_ONLY,
  TFLAG_SEND_FLUSH,
  TFLAG_SEND_FUA,
  TFLAG_SEND_TRIM,
  TFLAG_SEND_WRITE_ZEROES,
} from './protocol.js';

/** What one export accepts; derived once from the device's capabilities. */
export interface ExportLimits {
  /** Export size, a multiple of BLOCK_SIZE_MIN_BYTES. */
  readonly sizeBytes: number;
  /** Largest READ/WRITE payload (NBD_INFO_BLOCK_SIZE maximum). */
  readonly maxPayloadBytes: number;
  /** The transmission flags advertised to the client. */
  readonly transmissionFlags: number;
}

/**
 * The NBD error for a request, or NBD_OK. `offsetBytes` is -1 when the wire
 * offset does not fit a safe integer (always out of range).
 *
 * Zero-length READ/WRITE/TRIM/WRITE_ZEROES are unspecified by the protocol;
 * like nbdkit we answer NBD_EINVAL rather than guess.
 */
export function checkRequest(
  type: number,
  flags: number,
  offsetBytes: number,
  lengthBytes: number,
  limits: ExportLimits,
): number {
  const advertised = limits.transmissionFlags;
  let allowedFlags = 0;
  switch (type) {
    case CMD_READ:
      break;
    case CMD_WRITE:
      allowedFlags = CMD_FLAG_FUA;
      break;
    case CMD_FLUSH:
      if ((advertised & TFLAG_SEND_FLUSH) === 0) return NBD_EINVAL;
      // Offset and length are reserved and must be zero.
      if (flags !== 0 || offsetBytes !== 0 || lengthBytes !== 0) return NBD_EINVAL;
      return NBD_OK;
    case CMD_TRIM:
      if ((advertised & TFLAG_SEND_TRIM) === 0) return NBD_EINVAL;
      allowedFlags = CMD_FLAG_FUA;
      break;
    case CMD_WRITE_ZEROES:
      if ((advertised & TFLAG_SEND_WRITE_ZEROES) === 0) return NBD_EINVAL;
      allowedFlags = CMD_FLAG_FUA | CMD_FLAG_NO_HOLE;
      break;
    default:
      // NBD_CMD_CACHE, NBD_CMD_BLOCK_STATUS, NBD_CMD_RESIZE and anything unknown.
      return NBD_EINVAL;
  }
  if ((flags & ~allowedFlags) !== 0) return NBD_EINVAL;
  if ((flags & CMD_FLAG_FUA) !== 0 && (advertised & TFLAG_SEND_FUA) === 0) return NBD_EINVAL;

  const writes = type !== CMD_READ;
  if (writes && (advertised & TFLAG_READ_ONLY) !== 0) return NBD_EPERM;
  if (lengthBytes === 0) return NBD_EINVAL;
  if (offsetBytes >= 0 && (offsetBytes % BLOCK_SIZE_MIN_BYTES !== 0 || lengthBytes % BLOCK_SIZE_MIN_BYTES !== 0)) {
    return NBD_EINVAL;
  }
  // TRIM and WRITE_ZEROES carry no payload and may exceed the maximum payload.
  if ((type === CMD_READ || type === CMD_WRITE) && lengthBytes > limits.maxPayloadBytes) return NBD_EOVERFLOW;
  if (offsetBytes < 0 || offsetBytes + lengthBytes > limits.sizeBytes) {
    return type === CMD_WRITE || type === CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL;
  }
  return NBD_OK;
}
