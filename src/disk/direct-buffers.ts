/**
 * disk/direct-buffers — memory for O_DIRECT transfers. Linux only accepts a
 * direct read or write whose file offset, length and memory address are all
 * multiples of the device's logical block size; Node can align the first
 * two but not the address of a Buffer, so page-aligned memory comes from
 * native/udrbd-io (posix_memalign; 1 MiB and more in huge pages, so a 1 MiB
 * transfer is one request to a virtio disk, not two). `directPool` hands out such buffers
 * (bounded like every pool here); `isDirectIoBuffer` tells disk/file-disk
 * whether a buffer may go to the disk as it is. Without the addon there is
 * no aligned memory: the pool hands out ordinary buffers and every transfer
 * goes through the page cache, as before.
 */
import { BufferPool, allocateUnzeroed } from './buffer-pool.js';
import { loadNativeAddon } from '../util/native-addon.js';
import { UDRBD_IO_ADDON } from './writeback.js';

/** Alignment asked of offsets, lengths and addresses: covers 512-byte and 4 KiB logical blocks. */
export const DIRECT_IO_ALIGN_BYTES = 4096;
/** The addon's largest aligned allocation; larger stores are ordinary memory (never direct). */
const ALIGNED_BUFFER_BYTES_MAX = 64 * 1024 * 1024;
/**
 * Aligned buffers kept for reuse, per process, counted by their length: a
 * resync window (16 runs of 1 MiB in flight) and a few more. Buffers of
 * 1 MiB and more sit in whole 2 MiB huge pages (native/udrbd-io), so the
 * memory behind a full pool is at most twice this.
 */
const DIRECT_POOL_MAX_BYTES = 24 * 1024 * 1024;

interface AlignedAddon {
  alignedBuffer(bytes: number): Buffer;
  readonly alignedBufferAlignBytes: number;
}

/** Backing stores that start on a DIRECT_IO_ALIGN_BYTES boundary (made by the addon). */
const alignedStores = new WeakSet<ArrayBuffer>();

function loadAligned(): AlignedAddon | null {
  const { addon } = loadNativeAddon<Partial<AlignedAddon>>(UDRBD_IO_ADDON);
  // An addon built before alignedBuffer existed has the other calls only.
  if (addon === null || typeof addon.alignedBuffer !== 'function') return null;
  if (addon.alignedBufferAlignBytes === undefined || addon.alignedBufferAlignBytes % DIRECT_IO_ALIGN_BYTES !== 0) return null;
  return addon as AlignedAddon;
}

const aligned = loadAligned();

/** True when this process can make aligned memory (so direct I/O is possible at all). */
export const alignedMemoryAvailable = aligned !== null;

function allocateDirect(bytes: number): ArrayBuffer {
  if (aligned === null || bytes > ALIGNED_BUFFER_BYTES_MAX) return allocateUnzeroed(bytes);
  const store = aligned.alignedBuffer(bytes).buffer;
  if (!(store instanceof ArrayBuffer)) throw new Error('udrbd-io alignedBuffer did not return an ArrayBuffer-backed Buffer');
  alignedStores.add(store);
  return store;
}

/** Buffers for direct transfers: aligned when the addon is built. */
export const directPool = new BufferPool(DIRECT_POOL_MAX_BYTES, allocateDirect);

/** May `buffer` be the memory of a direct transfer: aligned address and a length of whole blocks. */
export function isDirectIoBuffer(buffer: Buffer): boolean {
  return (
    buffer.length > 0 &&
    buffer.length % DIRECT_IO_ALIGN_BYTES === 0 &&
    buffer.byteOffset % DIRECT_IO_ALIGN_BYTES === 0 &&
    buffer.buffer instanceof ArrayBuffer &&
    alignedStores.has(buffer.buffer)
  );
}
