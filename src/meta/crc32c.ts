/**
 * meta/crc32c — the Castagnoli CRC the 8.4 activity log stores in every
 * transaction block: reflected polynomial 0x82F63B78, table-driven, computed
 * the way Linux `crc32c(0, buf, len)` is called by DRBD — seed 0 and no final
 * inversion (not the iSCSI variant). Knows nothing of what it checksums.
 */

const CRC32C_POLY_REFLECTED = 0x82f63b78;

const TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ CRC32C_POLY_REFLECTED : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC32C of bytes [start, end) of `buf`, continuing from `seed` (DRBD uses 0). */
export function crc32c(buf: Uint8Array, seed = 0, start = 0, end = buf.length): number {
  let crc = seed >>> 0;
  for (let i = start; i < end; i++) crc = TABLE[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
  return crc >>> 0;
}
