/**
 * frontend/fuse/fuse-native — the one place that loads fuse-native (a
 * CommonJS optional dependency bundling libfuse 2) and extends its mount
 * option list. fuse-native builds `-o` from a fixed set of fields in
 * `Fuse#_fuseOptions()`; `big_writes`, `max_write` and `direct_io` are not among
 * them, so a subclass appends them (big writes: see the FUSE measurements in
 * docs/performance.md). Knows nothing of block devices or
 * volumes: it only types the small part of fuse-native that volume-fs uses.
 * One instance per mount; several mounts in one process work (fuse-native's
 * per-mount state is its instance, its one static, a pthread key, holds per-thread values).
 */
import { createRequire } from 'node:module';
import { UdrbdError, ExitCode } from '../../util/errors.js';

/** Completion callbacks of fuse-native: first argument is 0 or a negative errno. */
export type FuseDone = (result: number, value?: unknown) => void;
export type FuseIoDone = (bytesOrErrno: number) => void;

export interface FuseStat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  ino?: number;
  blksize?: number;
  blocks?: number;
  atime: Date;
  mtime: Date;
  ctime: Date;
}

/** The operations volume-fs implements (fuse-native's names and argument order). */
export interface FuseOperations {
  getattr(path: string, done: (errno: number, stat?: FuseStat) => void): void;
  readdir(path: string, done: (errno: number, names?: string[]) => void): void;
  open(path: string, flags: number, done: (errno: number, fd?: number) => void): void;
  release(path: string, fd: number, done: (errno: number) => void): void;
  read(path: string, fd: number, buffer: Buffer, lengthBytes: number, offsetBytes: number, done: FuseIoDone): void;
  write(path: string, fd: number, buffer: Buffer, lengthBytes: number, offsetBytes: number, done: FuseIoDone): void;
  flush(path: string, fd: number, done: (errno: number) => void): void;
  fsync(path: string, datasync: boolean | number, fd: number, done: (errno: number) => void): void;
  fsyncdir(path: string, datasync: boolean | number, fd: number, done: (errno: number) => void): void;
  statfs(path: string, done: (errno: number, statfs?: Record<string, number>) => void): void;
  truncate(path: string, sizeBytes: number, done: (errno: number) => void): void;
  ftruncate(path: string, fd: number, sizeBytes: number, done: (errno: number) => void): void;
  create(path: string, mode: number, done: (errno: number, fd?: number) => void): void;
  unlink(path: string, done: (errno: number) => void): void;
  rename(src: string, dest: string, done: (errno: number) => void): void;
  link(src: string, dest: string, done: (errno: number) => void): void;
  symlink(src: string, dest: string, done: (errno: number) => void): void;
  mkdir(path: string, mode: number, done: (errno: number) => void): void;
  rmdir(path: string, done: (errno: number) => void): void;
  mknod(path: string, mode: number, dev: number, done: (errno: number) => void): void;
  chmod(path: string, mode: number, done: (errno: number) => void): void;
  chown(path: string, uid: number, gid: number, done: (errno: number) => void): void;
  utimens(path: string, atime: number, mtime: number, done: (errno: number) => void): void;
}

/** Mount options: fuse-native's own fields plus the ones this module adds. */
export interface TunedFuseOptions {
  /** libfuse `fsname=` (first column of /proc/mounts). */
  fsname: string;
  /** libfuse `subtype=` (type shows as fuse.<subtype>). */
  subtype: string;
  /** Let the kernel send writes bigger than one page (libfuse 2 `big_writes`). */
  bigWrites: boolean;
  /** Largest write request, bytes (`max_write`). */
  maxWriteBytes: number;
  /** Largest read request, bytes (`max_read`). */
  maxReadBytes: number;
  /** Bypass the page cache of the exported file (`direct_io`). */
  directIo: boolean;
  /** Per-operation timeout in fuse-native; false = none (see volume-fs). */
  timeout: false | number;
}

export interface FuseInstance {
  readonly mnt: string;
  mount(done: (err: Error | null) => void): void;
  unmount(done: (err: Error | null) => void): void;
}

interface FuseNativeModule {
  new (mnt: string, ops: Partial<FuseOperations>, opts: Record<string, unknown>): FuseInstance & {
    opts: Record<string, unknown>;
    _fuseOptions(): string;
  };
  unmount(mnt: string, done: (err: Error | null) => void): void;
  readonly EIO: number;
  readonly EPERM: number;
  readonly ENOENT: number;
  readonly EROFS: number;
  readonly ENOSPC: number;
  readonly EINVAL: number;
  readonly EISDIR: number;
}

let loaded: FuseNativeModule | undefined;

/** fuse-native itself; a clear operator error when the optional dependency is missing. */
export function fuseNative(): FuseNativeModule {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  try {
    loaded = require('fuse-native') as FuseNativeModule;
  } catch (err) {
    throw new UdrbdError(
      `cannot load fuse-native (needed for the FUSE + loop frontend): ${(err as Error).message}; ` +
        `run 'npm install fuse-native' and 'apt-get install libfuse2'`,
      ExitCode.fatal,
    );
  }
  return loaded;
}

/** The `-o` option words this module adds to fuse-native's own list. */
export function extraMountOptions(options: TunedFuseOptions): string[] {
  const words: string[] = [];
  if (options.bigWrites) words.push('big_writes');
  words.push(`max_write=${options.maxWriteBytes}`);
  if (options.directIo) words.push('direct_io');
  return words;
}

/** Merges fuse-native's `-oa,b` string with extra words; pure, for unit tests. */
export function mergeMountOptions(base: string, extra: readonly string[]): string {
  const words = base.startsWith('-o') && base.length > 2 ? base.slice(2).split(',') : [];
  for (const word of extra) if (!words.includes(word)) words.push(word);
  return words.length > 0 ? `-o${words.join(',')}` : '';
}

/** A fuse-native instance whose mount options include the tuned ones. */
export function createTunedFuse(mountDir: string, ops: Partial<FuseOperations>, options: TunedFuseOptions): FuseInstance {
  const Base = fuseNative();
  const extra = extraMountOptions(options);
  // Subclass per call: the extra words are fixed for the life of the mount.
  class TunedFuse extends Base {
    override _fuseOptions(): string {
      return mergeMountOptions(super._fuseOptions(), extra);
    }
  }
  return new TunedFuse(mountDir, ops, {
    fsname: options.fsname,
    subtype: options.subtype,
    maxRead: options.maxReadBytes,
    timeout: options.timeout,
    mkdir: true,
    force: true,
  });
}
