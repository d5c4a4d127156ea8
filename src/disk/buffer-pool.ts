/**
 * disk/buffer-pool — a bounded free list of I/O payload buffers in size
 * classes of a power of two plus 1/64 (4 KiB .. 32 MiB, each with room for a
 * frame's fixed fields beside a power-of-two payload: a 1 MiB Data body is
 * 1 MiB + 24 bytes and must not cost a 2 MiB buffer), so hot paths (NBD request
 * payloads and reads, peer frame bodies) reuse backing memory instead of
 * allocating — and garbage-collecting — a fresh 1 MiB buffer per request.
 * The pool never holds more than `pooledBytesMax` bytes; a buffer given back
 * beyond that is simply dropped for the GC. give() accepts any view of a
 * buffer this pool handed out (once; later gives and foreign buffers are
 * ignored), so a consumer may hand back a subarray. A caller gives a buffer
 * back only once nothing else (a socket write, a disk request) still uses it.
 * Knows nothing of who uses the buffers. Fresh backing stores come from an
 * allocator the owner may choose (disk/direct-buffers: page-aligned memory
 * for O_DIRECT).
 */
import { assert } from '../util/assert.js';

/** Smallest class: everything below is served from a 4 KiB backing store. */
const CLASS_MIN_SHIFT = 12;
/** Largest class: 32 MiB; larger requests are allocated and never pooled. */
const CLASS_MAX_SHIFT = 25;

/** Bytes of the class `shift`: 2^shift plus 1/64 of it (≥ 64 bytes) for fixed fields beside a payload. */
function classBytesOf(shift: number): number {
  return 2 ** shift + 2 ** (shift - 6);
}

function classShift(sizeBytes: number): number {
  let shift = CLASS_MIN_SHIFT;
  while (shift < CLASS_MAX_SHIFT && classBytesOf(shift) < sizeBytes) shift++;
  return shift;
}

/** The default allocator: Node memory, not zero-filled (zeroing touches every page before the first real write does). */
export function allocateUnzeroed(bytes: number): ArrayBuffer {
  const store = Buffer.allocUnsafeSlow(bytes).buffer;
  // allocUnsafeSlow never slices a shared slab: the store is exactly this buffer.
  assert(store instanceof ArrayBuffer && store.byteLength === bytes, 'allocUnsafeSlow gives a store of its own');
  return store;
}

export class BufferPool {
  /** Free backing stores per class, index = shift - CLASS_MIN_SHIFT. */
  private readonly free: ArrayBuffer[][] = [];
  private pooledBytes = 0;
  /** Backing stores handed out and not yet given back (weak: a dropped buffer is simply collected). */
  private readonly outstanding = new WeakSet<ArrayBuffer>();
  /** Pooled-class buffers handed out by take() and not (yet) given back; for tests and statistics. */
  takenCount = 0;
  /** take() calls served from the free list; for tests and statistics. */
  reuseCount = 0;

  constructor(
    readonly pooledBytesMax: number,
    /** Makes a fresh backing store of exactly the given bytes; contents may be undefined. */
    private readonly allocate: (bytes: number) => ArrayBuffer = allocateUnzeroed,
  ) {
    assert(Number.isSafeInteger(pooledBytesMax) && pooledBytesMax >= 0, 'pooledBytesMax is a byte count');
    for (let s = CLASS_MIN_SHIFT; s <= CLASS_MAX_SHIFT; s++) this.free.push([]);
  }

  /** Bytes currently kept for reuse (≤ pooledBytesMax). */
  get bytesPooled(): number {
    return this.pooledBytes;
  }

  /** A buffer of exactly `sizeBytes` (contents undefined). */
  take(sizeBytes: number): Buffer {
    assert(Number.isSafeInteger(sizeBytes) && sizeBytes >= 0, 'take() of a byte count');
    this.takenCount++;
    const shift = classShift(sizeBytes);
    const classBytes = classBytesOf(shift);
    if (sizeBytes > classBytes) {
      this.takenCount--; // never pooled: not outstanding
      return Buffer.from(this.allocate(sizeBytes), 0, sizeBytes);
    }
    const store = this.free[shift - CLASS_MIN_SHIFT]!.pop();
    if (store !== undefined) {
      this.pooledBytes -= classBytes;
      this.reuseCount++;
      this.outstanding.add(store);
      return Buffer.from(store, 0, sizeBytes);
    }
    const fresh = this.allocate(classBytes);
    assert(fresh.byteLength === classBytes, 'an allocation has its own backing store of the class size');
    this.outstanding.add(fresh);
    return Buffer.from(fresh, 0, sizeBytes);
  }

  /**
   * Returns a buffer from take() (or a view of one); nobody may touch it
   * afterwards. Buffers this pool did not hand out, or already got back, are ignored.
   */
  give(buffer: Buffer): void {
    const store = buffer.buffer;
    if (!(store instanceof ArrayBuffer) || !this.outstanding.has(store)) return;
    this.outstanding.delete(store);
    this.takenCount--;
    const classBytes = store.byteLength;
    const shift = classShift(classBytes);
    assert(classBytesOf(shift) === classBytes, 'a pooled backing store is class-sized');
    if (this.pooledBytes + classBytes > this.pooledBytesMax) return;
    this.free[shift - CLASS_MIN_SHIFT]!.push(store);
    this.pooledBytes += classBytes;
  }
}
