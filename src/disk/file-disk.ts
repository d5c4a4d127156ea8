/**
 * disk/file-disk — a backing disk that is a regular file or a block device,
 * accessed with positional reads and writes on one file descriptor.
 * Block device sizes come from sysfs (/sys/dev/block/MAJ:MIN/size, 512-byte
 * sectors), so no native ioctl is needed. Knows nothing of metadata or roles.
 *
 * FUA writes go through a second descriptor opened O_DSYNC: the kernel then
 * syncs only that write's range (and flushes the device's cache), which is
 * what FUA means. An fdatasync instead would write back every dirty page of
 * the whole backing file — with buffered data writes, each activity-log
 * transaction (one per new 4 MiB extent) turned a sequential stream into a
 * synchronous one.
 *
 * Small operations run on the calling (main) thread. On a virtualised host a
 * hand-off to libuv's pool and back costs two thread wake-ups, which is most
 * of a 4 KiB write's or an fsync's latency; the pool only pays off when there
 * is other work to overlap. So: writes up to INLINE_WRITE_BYTES_MAX are a
 * pwrite here (a copy into the page cache: microseconds), and a flush is an
 * fdatasync here when nothing else is in flight on this disk and at most
 * INLINE_FLUSH_DIRTY_BYTES_MAX were written since the last flush — then it
 * is one device cache flush, and the event loop had nothing else to do.
 * Writes up to INLINE_LARGE_WRITE_BYTES_MAX are inline too (a 1 MiB copy is
 * ~0.1-0.3 ms, less than the two hand-offs; the FUSE frontend's requests come
 * from libfuse's threads, so the pool's parallel copy bought nothing there).
 * An inline large write slower than INLINE_WRITE_SLOW_MS (the kernel is
 * throttling dirty pages) or inline flush slower than INLINE_FLUSH_SLOW_MS
 * (a stalled device) blocked the event loop — peer pings, other requests —
 * so what was slow then goes to the pool for INLINE_BACKOFF_MS: after a slow
 * flush, flushes and large writes; after a slow large write, large writes
 * only. A throttled 1 MiB write says the page cache is full, not that a
 * flush of at most INLINE_FLUSH_DIRTY_BYTES_MAX will be slow (if it is, the
 * flush backs off by itself); before, every 4 KiB write + fsync within 10 s
 * of a sequential stream paid two pool hand-offs per flush on each node
 * (the figures, before and after: docs/performance.md).
 *
 * Streams: every writebackHintBytes written through the page cache, the
 * written range is handed to disk/writeback (sync_file_range in the
 * background), so the device writes while more data arrives and a flush
 * after a long stream waits for the tail, not for all of it. Only a hint: a
 * flush still fdatasyncs.
 */
import fs from 'node:fs';
import { type BlockDevice, type BlockDeviceCapabilities, type ReadFlags, type WriteFlags, checkRange } from './block-device.js';
import { UdrbdError, ExitCode } from '../util/errors.js';
import { assert } from '../util/assert.js';
import { type WritebackAddon, loadWriteback } from './writeback.js';
import { DIRECT_IO_ALIGN_BYTES, alignedMemoryAvailable, directPool, isDirectIoBuffer } from './direct-buffers.js';

/** Linux caps a single read/write at 0x7ffff000 bytes; stay well below. */
const MAX_REQUEST_BYTES = 32 * 1024 * 1024;
/** Writes up to this size are a pwrite on the calling thread (see the header). */
const INLINE_WRITE_BYTES_MAX = 16 * 1024;
/** Larger writes up to this size are inline too, unless backed off (see the header). */
const INLINE_LARGE_WRITE_BYTES_MAX = 1024 * 1024;
/** A large inline write slower than this means the kernel throttled it: back off. */
const INLINE_WRITE_SLOW_MS = 5;
/**
 * A flush runs on the calling thread only when at most this much was written
 * (not FUA; page cache or O_DIRECT) since the last flush and nothing is in
 * flight: its duration is then about one device cache flush, not a writeback
 * of a large dirty range.
 */
const INLINE_FLUSH_DIRTY_BYTES_MAX = 1024 * 1024;
/**
 * An inline flush that took longer than this (a slow or stalled device) blocked
 * the event loop — peer pings, other volumes' requests — for that long.
 */
const INLINE_FLUSH_SLOW_MS = 20;
/** How long the pool takes over after a slow inline operation: flushes and large writes after a flush, large writes after a write. */
const INLINE_BACKOFF_MS = 10_000;
/**
 * Page-cache writes between two write-back hints. Large enough that random
 * small writes (rewritten often, flushed soon) rarely trigger one, small
 * enough that a stream keeps the device busy: measured with 1 MiB writes and
 * one fdatasync per 1000 MiB, 4..32 MiB all gave the same +15% end to end.
 */
export const WRITEBACK_HINT_BYTES_DEFAULT = 8 * 1024 * 1024;

export interface FileDiskOptions {
  readOnly?: boolean;
  /** Open O_EXCL on block devices so a mounted device is refused (like DRBD attach). */
  exclusive?: boolean;
  /** Bytes written through the page cache per write-back hint; 0 = no hints. Default WRITEBACK_HINT_BYTES_DEFAULT. */
  writebackHintBytes?: number;
  /** Where hints go; default the native addon (null when not built = no hints). For tests. */
  writeback?: WritebackAddon | null;
  /** Serve bypassCache transfers with O_DIRECT where possible (default true); false = always buffered. */
  directIo?: boolean;
  /** What the device is, in open errors (default 'backing disk'; e.g. 'meta-data device'). */
  role?: string;
}

/** Size in bytes of the file or block device at `path`. */
export function deviceSizeBytes(path: string): number {
  const st = fs.statSync(path);
  if (st.isFile()) return st.size;
  if (st.isBlockDevice()) return blockDeviceSizeBytes(st.rdev, path);
  throw new UdrbdError(`'${path}' is neither a regular file nor a block device`, ExitCode.configInvalid);
}

function blockDeviceSizeBytes(rdev: number, path: string): number {
  // glibc's gnu_dev_major / gnu_dev_minor encoding.
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | (Math.floor(rdev / 4096) & 0xfff00);
  const sysfs = `/sys/dev/block/${major}:${minor}/size`;
  let text: string;
  try {
    text = fs.readFileSync(sysfs, 'utf8');
  } catch (err) {
    throw new UdrbdError(`cannot read the size of block device '${path}' from ${sysfs}: ${(err as Error).message}`, ExitCode.fatal);
  }
  const sectors = Number(text.trim());
  if (!Number.isSafeInteger(sectors) || sectors < 0) {
    throw new UdrbdError(`block device '${path}': unexpected size '${text.trim()}' in ${sysfs}`, ExitCode.fatal);
  }
  return sectors * 512;
}

export class FileDisk implements BlockDevice {
  readonly capabilities: BlockDeviceCapabilities = {
    canFlush: true,
    canFua: true,
    canTrim: false,
    maxRequestBytes: MAX_REQUEST_BYTES,
  };

  private constructor(
    readonly path: string,
    private readonly fd: number,
    /** Same file opened O_DSYNC, for FUA writes; -1 when read-only. */
    private readonly dsyncFd: number,
    private currentSizeBytes: number,
    readonly isBlockDevice: boolean,
    private readonly writeback: WritebackAddon | null,
    private readonly writebackHintBytes: number,
    /** Same file opened O_DIRECT, for bypassCache transfers; -1 when not possible. */
    private readonly directFd: number,
    /** Why bypassCache transfers are buffered; null while direct I/O is in use. */
    private directOffReason: string | null,
  ) {}

  static open(path: string, options: FileDiskOptions = {}): FileDisk {
    const role = options.role ?? 'backing disk';
    let st: fs.Stats;
    try {
      st = fs.statSync(path);
    } catch (err) {
      throw new UdrbdError(`cannot open ${role} '${path}': ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, ExitCode.configInvalid);
    }
    const isBlock = st.isBlockDevice();
    if (!isBlock && !st.isFile()) {
      throw new UdrbdError(`${role} '${path}' is neither a regular file nor a block device`, ExitCode.configInvalid);
    }
    let flags = options.readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR;
    if (isBlock && options.exclusive) flags |= fs.constants.O_EXCL;
    let fd: number;
    try {
      fd = fs.openSync(path, flags);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const hint = code === 'EBUSY' ? ' (is it mounted or in use by another process?)' : '';
      throw new UdrbdError(`cannot open ${role} '${path}': ${code ?? (err as Error).message}${hint}`, ExitCode.fatal);
    }
    let dsyncFd = -1;
    if (!options.readOnly) {
      try {
        // Same inode and page cache as fd; no O_EXCL (fd already holds a block device exclusively).
        dsyncFd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_DSYNC);
      } catch (err) {
        fs.closeSync(fd);
        throw new UdrbdError(`cannot open ${role} '${path}' for synchronous writes: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, ExitCode.fatal);
      }
    }
    let size: number;
    try {
      size = isBlock ? blockDeviceSizeBytes(st.rdev, path) : st.size;
    } catch (err) {
      fs.closeSync(fd);
      if (dsyncFd >= 0) fs.closeSync(dsyncFd);
      throw err;
    }
    const hintBytes = options.writebackHintBytes ?? WRITEBACK_HINT_BYTES_DEFAULT;
    assert(Number.isSafeInteger(hintBytes) && hintBytes >= 0, `writebackHintBytes must be a non-negative integer, not ${hintBytes}`);
    const writeback = options.readOnly || hintBytes === 0 ? null : options.writeback !== undefined ? options.writeback : loadWriteback().addon;
    const direct = openDirect(path, options);
    return new FileDisk(path, fd, dsyncFd, size, isBlock, writeback, hintBytes, direct.fd, direct.offReason);
  }

  /** The size found at open, or at the last refreshSizeSync(). */
  get sizeBytes(): number {
    return this.currentSizeBytes;
  }

  /**
   * Re-reads the size of the file or block device (after the operator grew
   * it: `truncate -s`, lvextend) and returns it. Only `udrbdadm resize` calls
   * this (drbd_adm_resize re-reads the backing device's capacity too); a
   * smaller size is returned but not adopted — the caller refuses it, since
   * the meta-data and data past the new end are gone.
   */
  refreshSizeSync(): number {
    const st = fs.fstatSync(this.fd);
    const sizeBytes = this.isBlockDevice ? blockDeviceSizeBytes(st.rdev, this.path) : st.size;
    if (sizeBytes >= this.currentSizeBytes) this.currentSizeBytes = sizeBytes;
    return sizeBytes;
  }

  /** Reads, writes and flushes handed to libuv's pool and not yet completed. */
  private poolOps = 0;
  /**
   * Bytes written (not FUA) since the last flush began: through the page cache,
   * or O_DIRECT — those sit in the device's cache (a virtual disk's host page
   * cache) and a flush waits for them: ~0.4 s per GiB here, after a resync.
   */
  private dirtyBytes = 0;
  /** Large writes run inline from this time on (performance.now() ms); see backOffIfSlow. */
  private inlineWritesAllowedAtMs = 0;
  /** Flushes run inline from this time on. */
  private inlineFlushesAllowedAtMs = 0;
  /** Page-cache writes completed since the last hint or flush, and the range they span. */
  private unhintedBytes = 0;
  private unhintedFromBytes = Number.MAX_SAFE_INTEGER;
  private unhintedToBytes = 0;
  private hintsGiven = 0;
  private directReadCount = 0;
  private directWriteCount = 0;

  /** Write-back hints handed to the addon (taken or dropped there). */
  get writebackHints(): number {
    return this.hintsGiven;
  }

  /** bypassCache reads and writes that went to the disk with O_DIRECT; for tests and statistics. */
  get directTransfers(): { reads: number; writes: number; offReason: string | null } {
    return { reads: this.directReadCount, writes: this.directWriteCount, offReason: this.directOffReason };
  }

  async read(buffer: Buffer, offsetBytes: number, flags?: ReadFlags): Promise<void> {
    checkRange(this, offsetBytes, buffer.length);
    if (flags?.bypassCache === true && this.directAllowed(offsetBytes, buffer.length) && isDirectIoBuffer(buffer)) {
      if (await this.transferDirect(buffer, offsetBytes, 'read')) return;
    }
    this.poolOps++;
    try {
      await readFully(this.fd, buffer, offsetBytes);
    } finally {
      this.poolOps--;
    }
  }

  /** A bypassCache transfer of [offsetBytes, +lengthBytes) may use O_DIRECT (memory aside). */
  private directAllowed(offsetBytes: number, lengthBytes: number): boolean {
    return this.directOffReason === null && offsetBytes % DIRECT_IO_ALIGN_BYTES === 0 && lengthBytes % DIRECT_IO_ALIGN_BYTES === 0 && lengthBytes > 0;
  }

  /**
   * One O_DIRECT read or write of an aligned buffer on libuv's pool. False
   * when the file system refused it (EINVAL): direct I/O is then off for good
   * and the caller does the transfer through the page cache.
   */
  private async transferDirect(buffer: Buffer, offsetBytes: number, kind: 'read' | 'write'): Promise<boolean> {
    assert(this.directFd >= 0 && isDirectIoBuffer(buffer), 'direct transfer of aligned memory on an O_DIRECT descriptor');
    this.poolOps++;
    try {
      if (kind === 'read') {
        await readFully(this.directFd, buffer, offsetBytes);
        this.directReadCount++;
      } else {
        await writeFully(this.directFd, buffer, offsetBytes);
        this.directWriteCount++;
      }
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
      this.directOffReason = `O_DIRECT ${kind} refused by the file system (EINVAL)`;
      return false;
    } finally {
      this.poolOps--;
    }
  }

  /** A bypassCache write: straight to the device from aligned memory (copied there if need be). */
  private async writeDirect(buffer: Buffer, offsetBytes: number): Promise<boolean> {
    const staging = isDirectIoBuffer(buffer) ? buffer : directPool.take(buffer.length);
    try {
      if (staging === buffer) return await this.transferDirect(buffer, offsetBytes, 'write');
      if (!isDirectIoBuffer(staging)) return false; // no aligned memory of this size
      buffer.copy(staging);
      return await this.transferDirect(staging, offsetBytes, 'write');
    } finally {
      if (staging !== buffer) directPool.give(staging);
    }
  }

  async write(buffer: Buffer, offsetBytes: number, flags?: WriteFlags): Promise<void> {
    checkRange(this, offsetBytes, buffer.length);
    const fua = flags?.fua === true;
    assert(!fua || this.dsyncFd >= 0, `FUA write to read-only backing disk '${this.path}'`);
    if (!fua && flags?.bypassCache === true && this.directAllowed(offsetBytes, buffer.length)) {
      if (await this.writeDirect(buffer, offsetBytes)) {
        this.dirtyBytes += buffer.length;
        return;
      }
    }
    const fd = fua ? this.dsyncFd : this.fd;
    if (!fua) this.dirtyBytes += buffer.length;
    // A FUA write waits for the device anyway; keep it off the event loop.
    if (!fua) {
      const large = buffer.length > INLINE_WRITE_BYTES_MAX;
      if (!large || (buffer.length <= INLINE_LARGE_WRITE_BYTES_MAX && performance.now() >= this.inlineWritesAllowedAtMs)) {
        const startMs = large ? performance.now() : 0;
        writeSyncFully(fd, buffer, offsetBytes);
        if (large) this.backOffIfSlow(startMs, INLINE_WRITE_SLOW_MS, 'write');
        this.noteWritten(offsetBytes, buffer.length);
        return;
      }
    }
    this.poolOps++;
    try {
      await writeFully(fd, buffer, offsetBytes);
    } finally {
      this.poolOps--;
    }
    if (!fua) this.noteWritten(offsetBytes, buffer.length);
  }

  /**
   * An inline operation that started at startMs and took longer than slowMs
   * held up the event loop: it (and after a slow flush, large writes too) uses
   * the pool for a while.
   */
  private backOffIfSlow(startMs: number, slowMs: number, kind: 'write' | 'flush'): void {
    const tookMs = performance.now() - startMs;
    if (tookMs <= slowMs) return;
    const untilMs = startMs + tookMs + INLINE_BACKOFF_MS;
    this.inlineWritesAllowedAtMs = Math.max(this.inlineWritesAllowedAtMs, untilMs);
    if (kind === 'flush') this.inlineFlushesAllowedAtMs = untilMs;
  }

  /** After a page-cache write completed (its pages are dirty now): hint write-back every writebackHintBytes. */
  private noteWritten(offsetBytes: number, lengthBytes: number): void {
    if (this.writeback === null) return;
    this.unhintedBytes += lengthBytes;
    if (offsetBytes < this.unhintedFromBytes) this.unhintedFromBytes = offsetBytes;
    if (offsetBytes + lengthBytes > this.unhintedToBytes) this.unhintedToBytes = offsetBytes + lengthBytes;
    if (this.unhintedBytes < this.writebackHintBytes) return;
    assert(this.unhintedToBytes > this.unhintedFromBytes && this.unhintedToBytes <= this.sizeBytes, 'write-back hint range');
    this.writeback.start(this.fd, this.unhintedFromBytes, this.unhintedToBytes - this.unhintedFromBytes);
    this.hintsGiven++;
    this.resetUnhinted();
  }

  private resetUnhinted(): void {
    this.unhintedBytes = 0;
    this.unhintedFromBytes = Number.MAX_SAFE_INTEGER;
    this.unhintedToBytes = 0;
  }

  async flush(): Promise<void> {
    const inline = this.poolOps === 0 && this.dirtyBytes <= INLINE_FLUSH_DIRTY_BYTES_MAX && performance.now() >= this.inlineFlushesAllowedAtMs;
    // Writes from here on are not covered by this flush: count them afresh.
    this.dirtyBytes = 0;
    this.resetUnhinted();
    if (inline) {
      const startMs = performance.now();
      fs.fdatasyncSync(this.fd);
      this.backOffIfSlow(startMs, INLINE_FLUSH_SLOW_MS, 'flush');
      return;
    }
    this.poolOps++;
    try {
      await new Promise<void>((resolve, reject) => fs.fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
    } finally {
      this.poolOps--;
    }
  }

  trim(): Promise<void> {
    return Promise.reject(new Error('FileDisk does not support trim'));
  }

  /** Synchronous read, for start-up paths (metadata) only. */
  readSync(buffer: Buffer, offsetBytes: number): void {
    checkRange(this, offsetBytes, buffer.length);
    let done = 0;
    while (done < buffer.length) {
      const n = fs.readSync(this.fd, buffer, done, buffer.length - done, offsetBytes + done);
      if (n === 0) throw new Error(`short read from '${this.path}' at ${offsetBytes + done}`);
      done += n;
    }
  }

  /** Synchronous write, for start-up and shutdown paths (metadata) only. */
  writeSync(buffer: Buffer, offsetBytes: number): void {
    checkRange(this, offsetBytes, buffer.length);
    writeSyncFully(this.fd, buffer, offsetBytes);
  }

  flushSync(): void {
    fs.fdatasyncSync(this.fd);
  }

  async close(): Promise<void> {
    this.writeback?.forget(this.fd);
    if (this.directFd >= 0) await new Promise<void>((resolve, reject) => fs.close(this.directFd, (err) => (err ? reject(err) : resolve())));
    if (this.dsyncFd >= 0) await new Promise<void>((resolve, reject) => fs.close(this.dsyncFd, (err) => (err ? reject(err) : resolve())));
    await new Promise<void>((resolve, reject) => fs.close(this.fd, (err) => (err ? reject(err) : resolve())));
  }

  closeSync(): void {
    this.writeback?.forget(this.fd);
    if (this.directFd >= 0) fs.closeSync(this.directFd);
    if (this.dsyncFd >= 0) fs.closeSync(this.dsyncFd);
    fs.closeSync(this.fd);
  }
}

/** The O_DIRECT descriptor for bypassCache transfers, or -1 and why not. */
function openDirect(path: string, options: FileDiskOptions): { fd: number; offReason: string | null } {
  if (options.directIo === false) return { fd: -1, offReason: 'direct I/O disabled by the caller' };
  if (!alignedMemoryAvailable) return { fd: -1, offReason: 'no aligned memory (native/udrbd-io not built)' };
  const access = options.readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR;
  try {
    // No O_EXCL: the main descriptor already holds a block device exclusively.
    return { fd: fs.openSync(path, access | fs.constants.O_DIRECT), offReason: null };
  } catch (err) {
    // tmpfs before Linux 6.6 and some FUSE file systems refuse O_DIRECT at open.
    return { fd: -1, offReason: `O_DIRECT open refused: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
}

function readFully(fd: number, buffer: Buffer, position: number): Promise<void> {
  if (buffer.length === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    let done = 0;
    const step = (err: NodeJS.ErrnoException | null, n: number): void => {
      if (err) return reject(err);
      if (n === 0) return reject(new Error(`short read at ${position + done}`));
      done += n;
      if (done === buffer.length) return resolve();
      fs.read(fd, buffer, done, buffer.length - done, position + done, step);
    };
    fs.read(fd, buffer, 0, buffer.length, position, step);
  });
}

function writeSyncFully(fd: number, buffer: Buffer, position: number): void {
  let done = 0;
  while (done < buffer.length) done += fs.writeSync(fd, buffer, done, buffer.length - done, position + done);
}

function writeFully(fd: number, buffer: Buffer, position: number): Promise<void> {
  if (buffer.length === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    let done = 0;
    const step = (err: NodeJS.ErrnoException | null, n: number): void => {
      if (err) return reject(err);
      done += n;
      if (done === buffer.length) return resolve();
      fs.write(fd, buffer, done, buffer.length - done, position + done, step);
    };
    fs.write(fd, buffer, 0, buffer.length, position, step);
  });
}
