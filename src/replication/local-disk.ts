/**
 * replication/local-disk — LocalDisk, the data path's one handle on the
 * node's backing disk, its bitmap and its activity log, which can be
 * detached and attached again while the data path (and its peer link) lives
 * on: DRBD's diskless mode. Every part of the data path (volume, receiver,
 * resync, verify) holds `disk`, `bitmap` and `activityLog` from here; while
 * detached the disk fails every request with EIO, the bitmap reads as all
 * clean and ignores changes, and the activity log admits every write — the
 * volume does not send requests there then (it reads and writes through the
 * peer). Detaching waits for nothing; `drained()` of the disk beneath
 * (disk/deadline-disk) says when the old disk is free to close.
 */
import { type BlockDevice, type BlockDeviceCapabilities, type ReadFlags, type WriteFlags, eioError } from '../disk/block-device.js';
import type { ActivityLogApi, DirtyBitmap } from '../meta/types.js';
import { assert } from '../util/assert.js';

export interface LocalParts {
  readonly disk: BlockDevice;
  readonly bitmap: DirtyBitmap;
  readonly activityLog: ActivityLogApi;
}

/** A node that never had a disk: the device size it took from the peer (receive_sizes), and no disk behind it. */
export interface DisklessShape {
  readonly sizeBytes: number;
  readonly capabilities: BlockDeviceCapabilities;
}

/** One bitmap bit per 4 KiB (BM_BLOCK_SHIFT 12), for the bit count a diskless view reports. */
const BYTES_PER_BIT = 4096;

export class LocalDisk {
  private parts: LocalParts | null;
  /** The agreed device size: kept while diskless, since the device stays the same size. */
  private sizeBytesWhileDiskless: number;
  private bitCountWhileDiskless: number;
  private readonly capabilitiesWhileDiskless: BlockDeviceCapabilities;
  readonly disk: BlockDevice;
  readonly bitmap: DirtyBitmap;
  readonly activityLog: ActivityLogApi;

  /** `parts`: an attached disk; a DisklessShape: a node that connects without ever having attached one. */
  constructor(parts: LocalParts | DisklessShape) {
    if ('disk' in parts) {
      this.parts = parts;
      this.sizeBytesWhileDiskless = parts.disk.sizeBytes;
      this.bitCountWhileDiskless = parts.bitmap.bitCount;
      this.capabilitiesWhileDiskless = parts.disk.capabilities;
    } else {
      this.parts = null;
      this.sizeBytesWhileDiskless = parts.sizeBytes;
      this.bitCountWhileDiskless = Math.ceil(parts.sizeBytes / BYTES_PER_BIT);
      this.capabilitiesWhileDiskless = parts.capabilities;
    }
    this.disk = this.diskView();
    this.bitmap = this.bitmapView();
    this.activityLog = {
      beginWrite: (offsetBytes, lengthBytes) => this.parts?.activityLog.beginWrite(offsetBytes, lengthBytes),
      endWrite: (offsetBytes, lengthBytes) => this.parts?.activityLog.endWrite(offsetBytes, lengthBytes),
    };
  }

  get isAttached(): boolean {
    return this.parts !== null;
  }

  /** The disk goes away (detach, on-io-error): from now on nothing reaches it. */
  detach(): void {
    if (this.parts === null) return;
    this.sizeBytesWhileDiskless = this.parts.disk.sizeBytes;
    this.parts = null;
  }

  /**
   * Diskless, the device takes the size the peer reports (drbd_receiver.c
   * receive_sizes: without a disk, drbd_set_my_capacity). Refused while a disk is attached.
   */
  setDisklessSizeBytes(sizeBytes: number): void {
    assert(this.parts === null, "the device size of an attached disk is the agreed size, not the peer's");
    this.sizeBytesWhileDiskless = sizeBytes;
    this.bitCountWhileDiskless = Math.max(this.bitCountWhileDiskless, Math.ceil(sizeBytes / BYTES_PER_BIT));
  }

  /** A disk is attached again (it must cover the same device size). */
  attach(parts: LocalParts): void {
    this.parts = parts;
  }

  private diskView(): BlockDevice {
    const diskless = (op: string): Promise<never> => Promise.reject(eioError(`${op}: the node is diskless`));
    // `self`: the getters below forward to whatever is attached now.
    const self = this;
    return {
      get sizeBytes(): number {
        return self.parts?.disk.sizeBytes ?? self.sizeBytesWhileDiskless;
      },
      get capabilities(): BlockDeviceCapabilities {
        return self.parts?.disk.capabilities ?? self.capabilitiesWhileDiskless;
      },
      read: (buffer: Buffer, offsetBytes: number, flags?: ReadFlags) => this.parts?.disk.read(buffer, offsetBytes, flags) ?? diskless('read'),
      write: (buffer: Buffer, offsetBytes: number, flags?: WriteFlags) => this.parts?.disk.write(buffer, offsetBytes, flags) ?? diskless('write'),
      flush: () => this.parts?.disk.flush() ?? diskless('flush'),
      trim: (offsetBytes: number, lengthBytes: number) => this.parts?.disk.trim(offsetBytes, lengthBytes) ?? diskless('trim'),
      close: () => Promise.resolve(),
    };
  }

  private bitmapView(): DirtyBitmap {
    // `self`: the getters below forward to whatever is attached now.
    const self = this;
    return {
      get bitCount(): number {
        return self.parts?.bitmap.bitCount ?? self.bitCountWhileDiskless;
      },
      test: (bit) => this.parts?.bitmap.test(bit) ?? false,
      setRange: (firstBit, endBit) => this.parts?.bitmap.setRange(firstBit, endBit) ?? 0,
      clearRange: (firstBit, endBit) => this.parts?.bitmap.clearRange(firstBit, endBit) ?? 0,
      setAll: () => this.parts?.bitmap.setAll(),
      countSet: () => this.parts?.bitmap.countSet() ?? 0,
      nextSet: (fromBit) => this.parts?.bitmap.nextSet(fromBit) ?? -1,
      nextClear: (fromBit) => this.parts?.bitmap.nextClear(fromBit) ?? self.bitCountWhileDiskless,
      exportBytes: (firstByte, out) => {
        if (this.parts) return this.parts.bitmap.exportBytes(firstByte, out);
        out.fill(0);
        return 0;
      },
      orBytes: (firstByte, bits) => this.parts?.bitmap.orBytes(firstByte, bits) ?? 0,
    };
  }
}
