/**
 * disk/writeback — early write-back hints for a backing file (native/udrbd-io:
 * sync_file_range SYNC_FILE_RANGE_WRITE on a thread of the addon's own).
 * FileDisk hands over each range of a few MiB it wrote through the page
 * cache, so the device is already writing while more data arrives and the
 * next flush's fdatasync waits for the tail only. A hint is never needed for
 * durability (a flush still fdatasyncs everything) and is simply not given
 * when the addon is not built.
 */
import path from 'node:path';
import { type NativeAddonSpec, loadNativeAddon } from '../util/native-addon.js';

export interface WritebackStats {
  /** Hints accepted (coalesced ones included). */
  queued: number;
  /** sync_file_range calls that returned 0. */
  completed: number;
  /** Hints not taken because the addon's bounded queue was full. */
  dropped: number;
  /** sync_file_range calls that failed (lastErrno says why). */
  failed: number;
  lastErrno: number;
}

export interface WritebackAddon {
  /** Queue write-back of [offsetBytes, offsetBytes + lengthBytes) of fd; false when the queue is full. */
  start(fd: number, offsetBytes: number, lengthBytes: number): boolean;
  /** Drop fd's queued hints and wait until none runs on it; call before closing fd. */
  forget(fd: number): void;
  stats(): WritebackStats;
  readonly queueMax: number;
  /**
   * CRC32C (init and final xor ~0) of `data`, SSE4.2 where the CPU has it
   * (peer/integrity, data-integrity-alg crc32c). Absent in addons built
   * before it was added: callers fall back to util/digest.
   */
  readonly crc32c?: (data: Uint8Array) => number;
}

/** native/udrbd-io, shared with disk/direct-buffers (one module, loaded once). */
export const UDRBD_IO_ADDON: NativeAddonSpec = {
  relativePath: path.join('native', 'udrbd-io', 'build', 'udrbd_io.node'),
  envVar: 'UDRBD_IO_ADDON',
  buildHint: 'run native/udrbd-io/build.sh',
};

/** The addon, or null with the reason it is not usable. Loaded once per process. */
export function loadWriteback(): { addon: WritebackAddon | null; reason: string } {
  return loadNativeAddon<WritebackAddon>(UDRBD_IO_ADDON);
}
