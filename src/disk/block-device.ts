/**
 * disk/block-device — the one interface every layer that stores or serves
 * bytes speaks: the backing disk (disk/file-disk), the replicated volume the
 * replication layer exposes, and what frontends (NBD, FUSE) serve. Like an
 * nbdkit plugin it is a flat table of short operations plus declared
 * capabilities; callers ask before they use an optional operation.
 *
 * Offsets and lengths are bytes. Callers keep requests inside
 * [0, sizeBytes); implementations assert it.
 */

export interface BlockDeviceCapabilities {
  /** flush() reaches stable storage (fdatasync on a file). */
  readonly canFlush: boolean;
  /** write(..., { fua: true }) is honoured (otherwise callers flush). */
  readonly canFua: boolean;
  /** trim() may deallocate; a trimmed range reads back as zeroes. */
  readonly canTrim: boolean;
  /** Largest single read/write the device accepts, bytes. */
  readonly maxRequestBytes: number;
}

export interface WriteFlags {
  /** Force unit access: the write is on stable storage when it completes. */
  readonly fua?: boolean;
  /**
   * A bulk transfer (resync) nobody reads back soon: skip the page cache where
   * the device can (O_DIRECT on a file). Durability is unchanged — the write
   * is on stable storage after the next flush, as any other.
   */
  readonly bypassCache?: boolean;
}

export interface ReadFlags {
  /** A bulk read (resync source): skip the page cache where the device can; the bytes are the same. */
  readonly bypassCache?: boolean;
}

/** The flags of a bulk transfer (resync, verify, large NBD reads): see WriteFlags/ReadFlags.bypassCache. */
export const BYPASS_CACHE: WriteFlags & ReadFlags = Object.freeze({ bypassCache: true });

export interface BlockDevice {
  readonly sizeBytes: number;
  readonly capabilities: BlockDeviceCapabilities;
  /** Fill `buffer` from `offsetBytes`. */
  read(buffer: Buffer, offsetBytes: number, flags?: ReadFlags): Promise<void>;
  /** Write all of `buffer` at `offsetBytes`. */
  write(buffer: Buffer, offsetBytes: number, flags?: WriteFlags): Promise<void>;
  /** Everything written before is on stable storage when this resolves. */
  flush(): Promise<void>;
  /** Discard a range (reads as zeroes afterwards). Only if capabilities.canTrim. */
  trim(offsetBytes: number, lengthBytes: number): Promise<void>;
  close(): Promise<void>;
}

/** Throws a RangeError unless [offsetBytes, offsetBytes+lengthBytes) lies in the device. */
export function checkRange(device: { sizeBytes: number }, offsetBytes: number, lengthBytes: number): void {
  if (
    !Number.isSafeInteger(offsetBytes) ||
    !Number.isSafeInteger(lengthBytes) ||
    offsetBytes < 0 ||
    lengthBytes < 0 ||
    offsetBytes + lengthBytes > device.sizeBytes
  ) {
    throw new RangeError(
      `request [${offsetBytes}, +${lengthBytes}) outside device of ${device.sizeBytes} bytes`,
    );
  }
}

/** An Error as Node's fs reports EIO (code 'EIO'), so every layer treats it like a real one. */
export function eioError(why: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`EIO: i/o error, ${why}`), { code: 'EIO', errno: -5 });
}
