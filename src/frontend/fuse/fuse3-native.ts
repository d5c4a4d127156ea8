/**
 * frontend/fuse/fuse3-native — loads the project's own libfuse 3 addon
 * (native/udrbd-fuse3, built by its build.sh from Debian's libfuse3-dev) and
 * types its three calls. The addon serves a one-file filesystem and hands
 * read/write/flush/fsync to one JS callback; unlike fuse-native (libfuse 2)
 * it negotiates FUSE_ASYNC_DIO and FUSE_MAX_PAGES, so a loop device on the
 * file keeps many requests in flight, each up to 1 MiB. Knows nothing of
 * block devices or volumes: volume-fs maps requests to its operation table.
 */
import path from 'node:path';
import { type NativeAddonSpec, loadNativeAddon, nativeAddonPath } from '../../util/native-addon.js';

/** Request kinds as the addon numbers them. */
export const FUSE3_KIND_READ = 0;
export const FUSE3_KIND_WRITE = 1;
export const FUSE3_KIND_FLUSH = 2;
export const FUSE3_KIND_FSYNC = 3;

/** Opaque mounted-session handle. */
export type Fuse3Handle = { readonly __fuse3Handle: unique symbol };

/**
 * Called on the JS thread for every I/O request, from libfuse worker `worker`
 * (answer with `reply(handle, worker, ...)` exactly once). The request's bytes
 * are `buffers(handle)[bufferIndex]` from `dataOffset`, `lengthBytes` long —
 * for writes the data, for reads the place to fill; bufferIndex is -1 for
 * flush/fsync. Valid only until the reply.
 */
export type Fuse3RequestHandler = (kind: number, worker: number, bufferIndex: number, dataOffset: number, offsetBytes: number, lengthBytes: number) => void;

export interface Fuse3Addon {
  mount(mountDir: string, fsname: string, sizeBytes: number, readOnly: boolean, directIo: boolean, onRequest: Fuse3RequestHandler): Fuse3Handle;
  /** The workers' buffers, created once per mount: worker i's receive buffer at 2i, its read buffer at 2i+1. */
  buffers(handle: Fuse3Handle): Buffer[];
  /** Bytes done (read/write) or 0 (flush/fsync), or a negative errno; throws if the worker has no request waiting. */
  reply(handle: Fuse3Handle, worker: number, result: number): void;
  /**
   * The volume grew (resize): the file's size becomes `sizeBytes` and the
   * kernel's cached attributes are dropped. Only growth; absent in an addon
   * built before it (rebuild native/udrbd-fuse3).
   */
  setSize?(handle: Fuse3Handle, sizeBytes: number): void;
  /** Unmounts and joins libfuse's threads off the JS thread. */
  unmount(handle: Fuse3Handle): Promise<void>;
  readonly requestMaxBytes: number;
  /** Worker threads, i.e. requests in JavaScript at once at most. */
  readonly threadsMax: number;
}

const ADDON: NativeAddonSpec = {
  relativePath: path.join('native', 'udrbd-fuse3', 'build', 'udrbd_fuse3.node'),
  envVar: 'UDRBD_FUSE3_ADDON',
  buildHint: 'run native/udrbd-fuse3/build.sh; needs libfuse3-dev',
};

/** Where the built addon is: $UDRBD_FUSE3_ADDON, else native/udrbd-fuse3/build of this checkout (see util/native-addon). */
export function fuse3AddonPath(): string | null {
  return nativeAddonPath(ADDON);
}

/** The addon, or null with the reason it is not usable (not built, libfuse3 missing). */
export function loadFuse3(): { addon: Fuse3Addon | null; reason: string } {
  return loadNativeAddon<Fuse3Addon>(ADDON);
}
