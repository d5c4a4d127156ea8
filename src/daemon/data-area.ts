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

  constructor(
    private readonly disk: BlockDevice,
    readonly maxSizeBytes: number,
  ) {
    assert(maxSizeBytes > 0 && maxSizeBytes <= disk.sizeBytes, 'data area lies inside the backing disk');
    this.agreedSizeBytes = maxSizeBytes;
  }

  /** The agreed device size: requests must end at or before it. */
  get sizeBytes(): number {
    return this.agreedSizeBytes;
  }

  resize(sizeBytes: number): void {
    assert(Number.isSafeInteger(sizeBytes) && sizeBytes > 0 && sizeBytes <= this.maxSizeBytes, `device size ${sizeBytes} lies inside the data area of ${this.maxSizeBytes} bytes`);
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
