/**
 * disk/memory-disk — a BlockDevice held in one Buffer. For tests of layers
 * above the disk (frontends, replication) that need no file; never used for
 * real data.
 */
import { type BlockDevice, type BlockDeviceCapabilities, checkRange } from './block-device.js';

export class MemoryDisk implements BlockDevice {
  readonly capabilities: BlockDeviceCapabilities = {
    canFlush: true,
    canFua: true,
    canTrim: true,
    maxRequestBytes: 32 * 1024 * 1024,
  };
  readonly data: Buffer;
  flushCount = 0;

  constructor(readonly sizeBytes: number) {
    this.data = Buffer.alloc(sizeBytes);
  }

  async read(buffer: Buffer, offsetBytes: number): Promise<void> {
    checkRange(this, offsetBytes, buffer.length);
    this.data.copy(buffer, 0, offsetBytes, offsetBytes + buffer.length);
  }

  async write(buffer: Buffer, offsetBytes: number): Promise<void> {
    checkRange(this, offsetBytes, buffer.length);
    buffer.copy(this.data, offsetBytes);
  }

  async flush(): Promise<void> {
    this.flushCount++;
  }

  async trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    checkRange(this, offsetBytes, lengthBytes);
    this.data.fill(0, offsetBytes, offsetBytes + lengthBytes);
  }

  async close(): Promise<void> {}
}
