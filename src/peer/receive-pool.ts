/**
 * peer/receive-pool — the buffers large received frame bodies are assembled
 * in, and their return once the payload's consumer (a disk write) is done:
 * a per-process pool for Data bodies, and page-aligned memory for RsDataReply
 * payloads the SyncTarget writes with O_DIRECT. Knows nothing of framing
 * beyond the RsDataReply fixed part.
 */
import { assert } from '../util/assert.js';
import { BufferPool } from '../disk/buffer-pool.js';
import { DIRECT_IO_ALIGN_BYTES, alignedMemoryAvailable, directPool } from '../disk/direct-buffers.js';
import { PacketType } from './packets.js';
import { INTEGRITY_DIGEST_BYTES_MAX, RS_REPLY_FIXED_BYTES } from './wire-layout.js';

/** A body tail at least this big is read straight into its assembly buffer (directReadTarget). */
export const DIRECT_READ_BYTES_MIN = 16 * 1024;
/** Frame bodies at least this big are reassembled into pooled buffers (smaller ones come from Node's slab). */
export const POOLED_BODY_BYTES_MIN = 64 * 1024;
/**
 * Reassembly buffers kept for reuse, per process: a window of Data frames
 * (and RsDataReply bodies that are not whole pages; the others go to
 * disk/direct-buffers' aligned pool, takeAssembly), so a steady stream
 * allocates nothing (a miss costs a fresh 1 MiB: page faults, GC).
 */
const RECEIVE_POOL_MAX_BYTES = 24 * 1024 * 1024;
const receivePool = new BufferPool(RECEIVE_POOL_MAX_BYTES);

/**
 * A consumer of a received Data / RsDataReply payload is done with it (its
 * disk write completed): the reassembly buffer may be reused. Safe for any
 * buffer (payloads that were not reassembled, or given twice, are ignored).
 */
export function releaseReceivedPayload(payload: Buffer): void {
  receivePool.give(payload);
  directPool.give(payload);
}

/**
 * The buffer a large frame body is assembled in. An RsDataReply's payload
 * goes to the SyncTarget's disk with O_DIRECT (bypassCache), which takes
 * page-aligned memory only: its body is placed in aligned memory so that the
 * payload starts on a page boundary, and the disk write needs no staging copy
 * (one memcpy per resync MiB saved). Other bodies come from receivePool.
 */
assert(RS_REPLY_FIXED_BYTES + INTEGRITY_DIGEST_BYTES_MAX < DIRECT_IO_ALIGN_BYTES, 'an RsDataReply body fits its fixed fields and digest before the first page boundary');
/** `integrityBytes`: the data-integrity-alg digest between the fixed part and the payload (0 = none). */
export function takeAssembly(type: number, bodyBytes: number, integrityBytes = 0): Buffer {
  const payloadOffsetBytes = RS_REPLY_FIXED_BYTES + integrityBytes;
  const payloadBytes = bodyBytes - payloadOffsetBytes;
  if (type === PacketType.RsDataReply && alignedMemoryAvailable && payloadBytes > 0 && payloadBytes % DIRECT_IO_ALIGN_BYTES === 0) {
    const leadBytes = DIRECT_IO_ALIGN_BYTES - payloadOffsetBytes;
    return directPool.take(leadBytes + bodyBytes).subarray(leadBytes);
  }
  return receivePool.take(bodyBytes);
}
