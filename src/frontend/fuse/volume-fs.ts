/**
 * frontend/fuse/volume-fs — a FUSE filesystem with exactly one file, the
 * volume: `<mountDir>/volume`, `sizeBytes` long, whose reads and writes go
 * to a BlockDevice and whose fsync/flush call device.flush(), so an fsync in
 * XFS on a loop device over this file reaches the replication layer's flush.
 * Everything that would change the namespace or the size (create, unlink,
 * truncate, rename, mkdir, chmod, ...) is refused with EPERM. Knows nothing
 * of loop devices, device links or roles.
 *
 * Backends (VolumeFsOptions.backend): 'fuse3', the project's libfuse 3
 * addon (native/udrbd-fuse3), is the default when built; 'fuse-native'
 * (libfuse 2) is the fallback. libfuse 2 can negotiate neither
 * FUSE_ASYNC_DIO nor FUSE_MAX_PAGES: the kernel then sends at most 128 KiB
 * per request and the loop worker waits for each one (one in flight), so a
 * protocol C round trip per 128 KiB bounded throughput with a peer. libfuse
 * 3 negotiates both (requests up to 1 MiB, up to 16 in flight: the addon's
 * worker count, also max_background), and each request is answered only
 * after the device resolved it. The addon's buffers are made into Buffers
 * once per mount; a request names one by index (no per-request allocation).
 *
 * Why libfuse 3, direct_io on and fixed per-worker buffers: the FUSE
 * measurements in docs/performance.md.
 *
 * fuse-native's per-operation timeout is off: on timeout it answers the
 * kernel while our device.write may still be reading the request buffer,
 * which libfuse then reuses. Latency bounds belong to the replication layer.
 */
import type { Logger } from '../../util/log.js';
import type { BlockDevice } from '../../disk/block-device.js';
import { assert } from '../../util/assert.js';
import fsp from 'node:fs/promises';
import { createTunedFuse, fuseNative, type FuseInstance, type FuseOperations, type FuseStat, type FuseIoDone } from './fuse-native.js';
import { loadFuse3, FUSE3_KIND_READ, FUSE3_KIND_WRITE, FUSE3_KIND_FLUSH, type Fuse3Addon, type Fuse3Handle } from './fuse3-native.js';

/** The kernel never sends a FUSE read or write larger than this (max_write / max_read). */
export const FUSE_REQUEST_MAX_BYTES = 1024 * 1024;
/** What the kernel sends libfuse 2 at most: it cannot negotiate FUSE_MAX_PAGES (32 pages). */
export const LIBFUSE2_REQUEST_MAX_BYTES = 128 * 1024;
/** Requests passed to the device at once; more wait in a FIFO (the libfuse 3 addon has 16 worker threads). */
export const FUSE_INFLIGHT_MAX = 64;
/** Upper bound on waiting requests: libfuse 2 starts one thread per outstanding request. */
const FUSE_WAITING_MAX = 4096;
/**
 * FUSE `direct_io` (no page cache for the volume file). With loop
 * `--direct-io=on` the loop driver opens the file O_DIRECT and bypasses that
 * cache anyway, so the option costs nothing measurable there (figures above).
 * It matters when loop falls back to buffered I/O, or anyone else reads the
 * file: cached pages of the volume would go stale when the replication layer
 * rewrites blocks underneath (resync as SyncTarget). Correctness first: on.
 */
export const DIRECT_IO_DEFAULT = true;

export const VOLUME_FILE_NAME = 'volume';
const VOLUME_PATH = `/${VOLUME_FILE_NAME}`;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const O_ACCMODE = 3;
const O_RDONLY = 0;

export interface VolumeFsOptions {
  device: BlockDevice;
  mountDir: string;
  /** Shown as the source in /proc/mounts, e.g. `udrbd:drbd1`. */
  fsname: string;
  /** Refuse opens for writing (a Secondary never exposes a writable device). */
  readOnly?: boolean;
  directIo?: boolean;
  /**
   * 'fuse3': the project's libfuse 3 addon (async direct I/O, 1 MiB
   * requests); 'fuse-native': libfuse 2 (one request in flight on the loop
   * path, 128 KiB). Default: fuse3 when its addon is built, else fuse-native.
   */
  backend?: FuseBackend;
  log: Logger;
}

export type FuseBackend = 'fuse3' | 'fuse-native';

/** The backend `mount` uses when none is asked for, and why. */
export function defaultFuseBackend(): { backend: FuseBackend; reason: string } {
  // Operator override (and A/B measurement): UDRBD_FUSE_BACKEND=fuse-native.
  if (process.env.UDRBD_FUSE_BACKEND === 'fuse-native') return { backend: 'fuse-native', reason: 'UDRBD_FUSE_BACKEND=fuse-native' };
  const { addon, reason } = loadFuse3();
  return addon !== null ? { backend: 'fuse3', reason } : { backend: 'fuse-native', reason };
}

export interface VolumeFsStats {
  readRequests: number;
  writeRequests: number;
  flushRequests: number;
  ioErrors: number;
  inflightHighWater: number;
  /** Largest read/write the kernel sent, bytes (shows whether big_writes/max_write took effect). */
  requestLargestBytes: number;
}

type Pending = { kind: 'read' | 'write'; buffer: Buffer; lengthBytes: number; offsetBytes: number; done: FuseIoDone };

/** One mounted FUSE volume file. Create with `mountVolumeFs`. */
export class VolumeFs {
  readonly stats: VolumeFsStats = { readRequests: 0, writeRequests: 0, flushRequests: 0, ioErrors: 0, inflightHighWater: 0, requestLargestBytes: 0 };
  private inflight = 0;
  private readonly waiting: Pending[] = [];
  private fuse: FuseInstance | null = null;
  private fuse3: { addon: Fuse3Addon; handle: Fuse3Handle } | null = null;
  private readonly stat: FuseStat;
  private readonly rootStat: FuseStat;
  private readonly errno: { EIO: number; EPERM: number; ENOENT: number; EROFS: number; ENOSPC: number; EISDIR: number };

  constructor(private readonly options: VolumeFsOptions) {
    const { device } = options;
    assert(Number.isSafeInteger(device.sizeBytes) && device.sizeBytes > 0, 'volume size is a positive integer');
    assert(device.capabilities.maxRequestBytes > 0, 'device accepts requests');
    const now = new Date();
    this.stat = {
      mode: S_IFREG | (options.readOnly ? 0o400 : 0o600),
      uid: 0, gid: 0, nlink: 1, ino: 2, blksize: 4096,
      size: device.sizeBytes,
      blocks: Math.ceil(device.sizeBytes / 512),
      atime: now, mtime: now, ctime: now,
    };
    this.rootStat = { mode: S_IFDIR | 0o700, uid: 0, gid: 0, nlink: 2, ino: 1, size: 4096, atime: now, mtime: now, ctime: now };
    const F = fuseNative();
    this.errno = { EIO: F.EIO, EPERM: F.EPERM, ENOENT: F.ENOENT, EROFS: F.EROFS, ENOSPC: F.ENOSPC, EISDIR: F.EISDIR };
  }

  get mountDir(): string {
    return this.options.mountDir;
  }

  get volumePath(): string {
    return `${this.options.mountDir}/${VOLUME_FILE_NAME}`;
  }

  /** Largest read/write the kernel sends this mount (null before mount). */
  get requestMaxBytes(): number | null {
    if (this.fuse3 !== null) return Math.min(this.fuse3.addon.requestMaxBytes, FUSE_REQUEST_MAX_BYTES);
    return this.fuse !== null ? LIBFUSE2_REQUEST_MAX_BYTES : null;
  }

  /** Which libfuse serves the mount (null before mount). */
  get backend(): FuseBackend | null {
    return this.fuse3 !== null ? 'fuse3' : this.fuse !== null ? 'fuse-native' : null;
  }

  /**
   * The volume grew (udrbd resize): the file is `sizeBytes` long from now on
   * (reads and writes up to it are served). With libfuse 3 the kernel's
   * cached attributes are invalidated at once; fuse-native (libfuse 2) has
   * its 1 s attribute timeout, which the caller waits out. Only growth.
   */
  /** The file's size now. */
  get sizeBytes(): number {
    return this.stat.size;
  }

  setSize(sizeBytes: number): void {
    assert(Number.isSafeInteger(sizeBytes) && sizeBytes >= this.stat.size, `the volume only grows (${this.stat.size} -> ${sizeBytes} bytes)`);
    assert(sizeBytes <= this.options.device.sizeBytes, 'the volume stays within its device');
    const fuse3 = this.fuse3;
    if (fuse3 !== null) {
      if (!fuse3.addon.setSize) throw new Error('the udrbd-fuse3 addon was built before setSize(); rebuild it (native/udrbd-fuse3/build.sh) to grow a mounted volume');
      fuse3.addon.setSize(fuse3.handle, sizeBytes);
    }
    this.stat.size = sizeBytes;
    this.stat.blocks = Math.ceil(sizeBytes / 512);
    this.stat.mtime = new Date();
    this.options.log.info({ mountDir: this.options.mountDir, sizeBytes }, 'FUSE volume grew');
  }

  /** Mounts; resolves once the kernel has initialised the connection. */
  async mount(): Promise<void> {
    assert(this.fuse === null && this.fuse3 === null, 'volume fs mounted once');
    let backend = this.options.backend;
    if (backend === undefined) {
      const chosen = defaultFuseBackend();
      backend = chosen.backend;
      if (backend === 'fuse-native') this.options.log.warn({ reason: chosen.reason }, 'libfuse 3 addon unavailable, serving the volume through fuse-native (libfuse 2: one request in flight, 128 KiB)');
    }
    if (backend === 'fuse3') return this.mountFuse3();
    return this.mountFuseNative();
  }

  private async mountFuse3(): Promise<void> {
    const { addon, reason } = loadFuse3();
    if (addon === null) throw new Error(`libfuse 3 addon unavailable: ${reason}`);
    await fsp.mkdir(this.options.mountDir, { recursive: true });
    const ops = this.fuseOperations();
    // Filled right after mount(), in this same turn: requests reach this thread only after it.
    let buffers: Buffer[] = [];
    // One reply callback per worker, made once: a worker has one request in JavaScript at a time.
    const replies: Array<(result: number) => void> = [];
    const onRequest = (kind: number, worker: number, bufferIndex: number, dataOffset: number, offsetBytes: number, lengthBytes: number): void => {
      const done = replies[worker]!;
      if (kind === FUSE3_KIND_FLUSH) return ops.flush!(VOLUME_PATH, 0, done);
      if (kind !== FUSE3_KIND_READ && kind !== FUSE3_KIND_WRITE) return ops.fsync!(VOLUME_PATH, 0, 0, done);
      const buffer = buffers[bufferIndex]!.subarray(dataOffset, dataOffset + lengthBytes);
      if (kind === FUSE3_KIND_READ) ops.read!(VOLUME_PATH, 0, buffer, lengthBytes, offsetBytes, done);
      else ops.write!(VOLUME_PATH, 0, buffer, lengthBytes, offsetBytes, done);
    };
    const mounted = addon.mount(this.options.mountDir, this.options.fsname, this.options.device.sizeBytes, this.options.readOnly ?? false, this.options.directIo ?? DIRECT_IO_DEFAULT, onRequest);
    buffers = addon.buffers(mounted);
    assert(buffers.length === 2 * addon.threadsMax, 'two buffers per FUSE worker');
    for (let worker = 0; worker < addon.threadsMax; worker++) replies.push((result: number) => addon.reply(mounted, worker, result));
    this.fuse3 = { addon, handle: mounted };
    this.options.log.info({ mountDir: this.options.mountDir, sizeBytes: this.options.device.sizeBytes, backend: 'fuse3' }, 'FUSE volume mounted');
  }

  private mountFuseNative(): Promise<void> {
    const fuse = createTunedFuse(this.options.mountDir, this.fuseOperations(), {
      fsname: this.options.fsname,
      subtype: 'udrbd',
      bigWrites: true,
      maxWriteBytes: FUSE_REQUEST_MAX_BYTES,
      maxReadBytes: FUSE_REQUEST_MAX_BYTES,
      directIo: this.options.directIo ?? DIRECT_IO_DEFAULT,
      timeout: false,
    });
    return new Promise((resolve, reject) => {
      fuse.mount((err) => {
        if (err) return reject(err);
        this.fuse = fuse;
        this.options.log.info({ mountDir: this.options.mountDir, sizeBytes: this.options.device.sizeBytes }, 'FUSE volume mounted');
        resolve();
      });
    });
  }

  /** Unmounts (fusermount -u -z, then stops libfuse's thread). Idempotent. */
  async unmount(): Promise<void> {
    const fuse3 = this.fuse3;
    if (fuse3 !== null) {
      await fuse3.addon.unmount(fuse3.handle);
      this.fuse3 = null;
      this.options.log.info({ mountDir: this.options.mountDir }, 'FUSE volume unmounted');
      return;
    }
    const fuse = this.fuse;
    if (fuse === null) return Promise.resolve();
    return new Promise((resolve, reject) => {
      fuse.unmount((err) => {
        if (err) return reject(err);
        this.fuse = null;
        this.options.log.info({ mountDir: this.options.mountDir }, 'FUSE volume unmounted');
        resolve();
      });
    });
  }

  /** The FUSE operation table (public so unit tests can drive it without a mount). */
  fuseOperations(): Partial<FuseOperations> {
    const e = this.errno;
    const refuse = (...args: unknown[]): void => (args[args.length - 1] as (errno: number) => void)(e.EPERM);
    return {
      getattr: (path, done) => {
        if (path === '/') return done(0, this.rootStat);
        if (path === VOLUME_PATH) return done(0, this.stat);
        done(e.ENOENT);
      },
      readdir: (path, done) => {
        if (path !== '/') return done(e.ENOENT);
        done(0, [VOLUME_FILE_NAME]);
      },
      open: (path, flags, done) => {
        if (path !== VOLUME_PATH) return done(path === '/' ? e.EISDIR : e.ENOENT);
        if (this.options.readOnly && (flags & O_ACCMODE) !== O_RDONLY) return done(e.EROFS);
        done(0, 0);
      },
      release: (_path, _fd, done) => done(0),
      read: (_path, _fd, buffer, lengthBytes, offsetBytes, done) => {
        this.stats.readRequests++;
        this.submit({ kind: 'read', buffer, lengthBytes, offsetBytes, done });
      },
      write: (_path, _fd, buffer, lengthBytes, offsetBytes, done) => {
        this.stats.writeRequests++;
        if (this.options.readOnly) return done(e.EROFS);
        this.submit({ kind: 'write', buffer, lengthBytes, offsetBytes, done });
      },
      flush: (_path, _fd, done) => this.flushDevice(done),
      fsync: (_path, _datasync, _fd, done) => this.flushDevice(done),
      fsyncdir: (_path, _datasync, _fd, done) => done(0),
      statfs: (_path, done) =>
        done(0, { bsize: 4096, frsize: 4096, blocks: Math.ceil(this.stat.size / 4096), bfree: 0, bavail: 0, files: 1, ffree: 0, favail: 0, namemax: 255 }),
      truncate: (_path, sizeBytes, done) => done(sizeBytes === this.stat.size ? 0 : e.EPERM),
      ftruncate: (_path, _fd, sizeBytes, done) => done(sizeBytes === this.stat.size ? 0 : e.EPERM),
      create: refuse,
      unlink: refuse,
      rename: refuse,
      link: refuse,
      symlink: refuse,
      mkdir: refuse,
      rmdir: refuse,
      mknod: refuse,
      chmod: refuse,
      chown: refuse,
      utimens: refuse,
    };
  }

  private flushDevice(done: (errno: number) => void): void {
    this.stats.flushRequests++;
    this.options.device.flush().then(
      () => done(0),
      (err: unknown) => {
        this.stats.ioErrors++;
        this.options.log.error({ err }, 'flush of the volume failed');
        done(this.errno.EIO);
      },
    );
  }

  private submit(request: Pending): void {
    if (this.inflight >= FUSE_INFLIGHT_MAX) {
      assert(this.waiting.length < FUSE_WAITING_MAX, 'FUSE waiting requests stay below FUSE_WAITING_MAX');
      this.waiting.push(request);
      return;
    }
    this.start(request);
  }

  private start(request: Pending): void {
    const { buffer, offsetBytes, done } = request;
    const sizeBytes = this.stat.size;
    assert(request.lengthBytes <= buffer.length, 'FUSE request length fits its buffer');
    assert(request.lengthBytes <= FUSE_REQUEST_MAX_BYTES, 'FUSE request below max_write/max_read');
    let lengthBytes = request.lengthBytes;
    if (lengthBytes > this.stats.requestLargestBytes) this.stats.requestLargestBytes = lengthBytes;
    if (request.kind === 'read') {
      // Reads at or past the end return short, like a regular file.
      if (offsetBytes >= sizeBytes) return done(0);
      lengthBytes = Math.min(lengthBytes, sizeBytes - offsetBytes);
    } else if (offsetBytes + lengthBytes > sizeBytes) {
      return done(this.errno.ENOSPC);
    }
    if (lengthBytes === 0) return done(0);
    this.inflight++;
    if (this.inflight > this.stats.inflightHighWater) this.stats.inflightHighWater = this.inflight;
    const view = buffer.subarray(0, lengthBytes);
    const io = request.kind === 'read' ? this.readChunks(view, offsetBytes) : this.writeChunks(view, offsetBytes);
    io.then(
      () => this.finish(done, lengthBytes),
      (err: unknown) => {
        this.stats.ioErrors++;
        this.options.log.error({ err, kind: request.kind, offsetBytes, lengthBytes }, 'volume I/O failed');
        this.finish(done, this.errno.EIO);
      },
    );
  }

  private finish(done: FuseIoDone, result: number): void {
    this.inflight--;
    assert(this.inflight >= 0, 'inflight count never negative');
    done(result);
    const next = this.waiting.shift();
    if (next) this.start(next);
  }

  /** One device.read per request unless the device's maxRequestBytes is smaller. */
  private async readChunks(view: Buffer, offsetBytes: number): Promise<void> {
    const chunkBytes = this.options.device.capabilities.maxRequestBytes;
    if (view.length <= chunkBytes) return this.options.device.read(view, offsetBytes);
    for (let done = 0; done < view.length; done += chunkBytes) {
      await this.options.device.read(view.subarray(done, Math.min(view.length, done + chunkBytes)), offsetBytes + done);
    }
  }

  private async writeChunks(view: Buffer, offsetBytes: number): Promise<void> {
    const chunkBytes = this.options.device.capabilities.maxRequestBytes;
    if (view.length <= chunkBytes) return this.options.device.write(view, offsetBytes);
    for (let done = 0; done < view.length; done += chunkBytes) {
      await this.options.device.write(view.subarray(done, Math.min(view.length, done + chunkBytes)), offsetBytes + done);
    }
  }
}

/** Mounts a volume file for `device` at `mountDir` (created if missing). */
export async function mountVolumeFs(options: VolumeFsOptions): Promise<VolumeFs> {
  const fs = new VolumeFs(options);
  await fs.mount();
  return fs;
}
