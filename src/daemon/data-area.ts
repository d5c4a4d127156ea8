/**
 * daemon/data-area — the usable data area of a backing disk with internal
 * meta-data: the first `dataSizeBytes` of it, as a BlockDevice, so nothing
 * above the meta-data layer can ever write into the bitmap, AL or superblock.
 * Its `sizeBytes` is the agreed device size (daemon/device-size), at most
 * `maxSizeBytes`: a request beyond it is refused (RangeError), never written.
 */
import { type BlockDevice, type ReadFlags, type WriteFlags, checkRange } from '../disk/block-device.js';
import { assert } from '../util/assert.js';

export class DataArea implements BlockDevice {
  private agreedSizeBytes: number;
  private limitBytes: number;

  constructor(
    private readonly disk: BlockDevice,
    maxSizeBytes: number,
  ) {
    assert(maxSizeBytes > 0 && maxSizeBytes <= disk.sizeBytes, 'data area lies inside the backing disk');
    this.limitBytes = maxSizeBytes;
    this.agreedSizeBytes = maxSizeBytes;
  }

  /** What the data area can hold (the backing disk's data area, or a smaller `disk { size }`). */
  get maxSizeBytes(): number {
    return this.limitBytes;
  }

  /**
   * A new limit after `resize` (the backing disk grew, or --size changed).
   * The agreed size is not touched: it changes only with resize() (and never
   * beyond the new limit).
   */
  setMaxSize(maxSizeBytes: number): void {
    assert(Number.isSafeInteger(maxSizeBytes) && maxSizeBytes >= this.agreedSizeBytes && maxSizeBytes <= this.disk.sizeBytes, `data area limit ${maxSizeBytes} covers the agreed ${this.agreedSizeBytes} bytes and lies inside the backing disk of ${this.disk.sizeBytes}`);
    this.limitBytes = maxSizeBytes;
  }

  /** The agreed device size: requests must end at or before it. */
  get sizeBytes(): number {
    return this.agreedSizeBytes;
  }

  resize(sizeBytes: number): void {
    assert(Number.isSafeInteger(sizeBytes) && sizeBytes > 0 && sizeBytes <= this.limitBytes, `device size ${sizeBytes} lies inside the data area of ${this.limitBytes} bytes`);
    this.agreedSizeBytes = sizeBytes;
  }

  get capabilities(): BlockDevice['capabilities'] {
    return this.disk.capabilities;
  }

  read(buffer: Buffer, offsetBytes: number, flags?: ReadFlags): Promise<void> {
    checkRange(this, offsetBytes, buffer.length);
    return this.disk.read(buffer, offsetBytes, flags);
  }

  write(buffer: Buffer, offsetBytes: number, flags?: WriteFlags): Promise<void> {
    checkRange(this, offsetBytes, buffer.length);
    return this.disk.write(buffer, offsetBytes, flags);
  }

  flush(): Promise<void> {
    return this.disk.flush();
  }

  trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    checkRange(this, offsetBytes, lengthBytes);
    return this.disk.trim(offsetBytes, lengthBytes);
  }

  /** The backing disk is closed by the meta-data store, not through this view. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
