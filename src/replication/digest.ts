/**
 * replication/digest — block digests for online verify (verify-alg) and
 * checksum-based resync (csums-alg):
 * any node:crypto hash (sha1, md5, sha256, ...) plus crc32c and crc32, which
 * OpenSSL does not offer as hashes. Pure functions over Buffers.
 */
import crypto from 'node:crypto';
import { UdrbdError, ExitCode } from '../util/errors.js';

export interface BlockDigest {
  readonly name: string;
  readonly digestBytes: number;
  /** Writes the digest of `data` into `out` at `outOffset`. */
  digestInto(data: Buffer, out: Buffer, outOffset: number): void;
}

function crcTable(polynomialReflected: number): Uint32Array {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ polynomialReflected : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
}

const CRC32C_TABLE = crcTable(0x82f63b78);
const CRC32_TABLE = crcTable(0xedb88320);

/** Standard reflected CRC with ~0 init and final xor (crc32c: Castagnoli, "check" 0xE3069283). */
export function crc32Generic(table: Uint32Array, data: Buffer): number {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

export function crc32c(data: Buffer): number {
  return crc32Generic(CRC32C_TABLE, data);
}

/** `option` names the setting in the error an unknown name raises (verify-alg, csums-alg). */
export function blockDigest(alg: string, option = 'verify-alg'): BlockDigest {
  const name = alg.toLowerCase();
  if (name === 'crc32c' || name === 'crc32') {
    const table = name === 'crc32c' ? CRC32C_TABLE : CRC32_TABLE;
    return {
      name,
      digestBytes: 4,
      digestInto: (data, out, outOffset) => {
        out.writeUInt32BE(crc32Generic(table, data), outOffset);
      },
    };
  }
  if (!crypto.getHashes().includes(name)) {
    throw new UdrbdError(`${option} '${alg}' is not a known digest (try sha1, md5, sha256 or crc32c)`, ExitCode.configInvalid);
  }
  const digestBytes = crypto.createHash(name).digest().length;
  return {
    name,
    digestBytes,
    digestInto: (data, out, outOffset) => {
      crypto.createHash(name).update(data).digest().copy(out, outOffset);
    },
  };
}
