/**
 * peer/integrity — data-integrity-alg on the peer link (DRBD 8.4's
 * integrity_tfm / peer_integrity_tfm): the digest a sender puts between the
 * fixed part and the payload of every Data and RsDataReply frame, and the
 * receiver recomputes. Each direction has its own algorithm, announced in
 * the Protocol / ProtocolUpdate packet that precedes the frames using it.
 * This file maps the DRBD name to a digest (util/digest; crc32c from
 * native/udrbd-io's SSE4.2 crc32c when that addon has it: 4-6 GB/s instead
 * of about 0.9 GB/s in JavaScript, on both nodes for every write) and holds
 * the error a mismatch raises; framing is peer/wire-layout's, switching is
 * peer/session's.
 */
import { type BlockDigest, blockDigest } from '../util/digest.js';
import { loadWriteback } from '../disk/writeback.js';
import { ExitCode, UdrbdError } from '../util/errors.js';
import { DIGEST_BYTES_MAX, ProtocolError } from './wire-layout.js';

export type IntegrityDigest = BlockDigest;

/** Resolved digests by DRBD name: the link asks once per Protocol packet, not per frame. */
const cache = new Map<string, IntegrityDigest>();
/** Names are config strings of at most SHARED_SECRET_MAX characters; a handful are ever in use. */
const CACHE_ENTRIES_MAX = 32;

/** crc32c computed by native/udrbd-io, or null when the addon (or its crc32c) is missing. */
function nativeCrc32c(): IntegrityDigest | null {
  const crc = loadWriteback().addon?.crc32c;
  if (typeof crc !== 'function') return null;
  return {
    name: 'crc32c',
    digestBytes: 4,
    // The same bytes util/digest's crc32c writes (big-endian), so either end may use either.
    digestInto: (data, out, outOffset) => {
      out.writeUInt32BE(crc(data), outOffset);
    },
  };
}

/**
 * The digest named by data-integrity-alg, or null for '' (none). An unknown
 * name, or one whose digest is longer than a frame can carry, is the
 * operator's error with DRBD's ERR_INTEGRITY_ALG text (drbd_nl.c
 * alloc_crypto; drbdsetup prints "The 'data-integrity-alg' you specified is
 * not known in the kernel").
 */
export function integrityDigest(alg: string): IntegrityDigest | null {
  if (alg === '') return null;
  const known = cache.get(alg);
  if (known !== undefined) return known;
  let digest: IntegrityDigest;
  try {
    digest = (alg.toLowerCase() === 'crc32c' ? nativeCrc32c() : null) ?? blockDigest(alg, 'data-integrity-alg');
  } catch (err) {
    if (!(err instanceof UdrbdError)) throw err;
    throw new UdrbdError(
      `data-integrity-alg '${alg}': The 'data-integrity-alg' you specified is not known (ERR_INTEGRITY_ALG); use a digest such as crc32c, md5, sha1 or sha256`,
      ExitCode.configInvalid,
    );
  }
  if (digest.digestBytes > DIGEST_BYTES_MAX) {
    throw new UdrbdError(
      `data-integrity-alg '${alg}': its ${digest.digestBytes}-byte digest is longer than the ${DIGEST_BYTES_MAX} bytes a frame carries; use a digest such as crc32c, md5, sha1 or sha256`,
      ExitCode.configInvalid,
    );
  }
  if (cache.size < CACHE_ENTRIES_MAX) cache.set(alg, digest);
  return digest;
}

/**
 * The payload of a Data / RsDataReply frame does not hash to the digest its
 * sender put in front of it (read_in_block: "Digest integrity check FAILED:
 * %llus +%u"): the block is not written, the link is dropped as a protocol
 * error (C_PROTOCOL_ERROR) and the reconnect resyncs what the sender had not
 * seen acknowledged.
 */
export class IntegrityError extends ProtocolError {
  override name = 'IntegrityError';
  constructor(readonly offsetBytes: number, readonly lengthBytes: number) {
    super(`Digest integrity check FAILED: ${offsetBytes / 512}s +${lengthBytes}`);
  }
}
