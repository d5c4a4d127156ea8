/**
 * daemon/data-area — the usable data area of a backing disk with internal
 * meta-data: the first `dataSizeBytes` of it, as a BlockDevice, so nothing
 * above the meta-data layer can ever write into the bitmap, AL or superblock.
 */
import { type BlockDevice, type WriteFlags, checkRange } from '../disk/block-device.js';
import { assert } from '../util/assert.js';

export class DataArea implements BlockDevice {
  constructor(
    private readonly disk: BlockDevice,
    readonly sizeBytes: number,
  ) {
    assert(sizeBytes > 0 && sizeBytes <= disk.sizeBytes, 'data area lies inside the backing disk');
  }

  get capabilities(): BlockDevice['capabilities'] {
    return this.disk.capabilities;
  }

  read(buffer: Buffer, offsetBytes: number): Promise<void> {
    checkRange(this, offsetBytes, buffer.length);
    return this.disk.read(buffer, offsetBytes);
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
