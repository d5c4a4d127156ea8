/**
 * disk/deadline-disk — DeadlineDisk, DRBD's `disk-timeout` as a layer on the
 * backing disk: a read, write or flush the disk has not completed within
 * timeoutMs is failed upwards with DiskTimeoutError (the daemon then detaches,
 * as DRBD 8.4's request timer does with DRBD_FORCE_DETACH). The request
 * itself goes on below — a hung device cannot be cancelled — and its late
 * result is dropped; `inFlight` counts it until it really ends, so whoever
 * closes the disk can wait for it. timeoutMs 0 turns the deadline off.
 */
import type { BlockDevice, BlockDeviceCapabilities, ReadFlags, WriteFlags } from './block-device.js';

/** The disk did not complete a request within disk-timeout. */
export class DiskTimeoutError extends Error {
  override name = 'DiskTimeoutError';
  readonly code = 'ETIMEDOUT';
  constructor(
    readonly operation: 'read' | 'write' | 'flush',
    readonly timeoutMs: number,
  ) {
    super(`Local backing device failed to meet the disk-timeout (${operation} took more than ${timeoutMs} ms)`);
  }
}

export class DeadlineDisk implements BlockDevice {
  /** Requests passed down and not yet finished there (timed-out ones included). */
  inFlight = 0;
  private readonly drainWaiters: Array<() => void> = [];

  constructor(
    private readonly inner: BlockDevice,
    private timeoutMs: number,
  ) {}

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  get capabilities(): BlockDeviceCapabilities {
    return this.inner.capabilities;
  }

  /** `adjust` changed disk-timeout: requests from now on get the new deadline. */
  setTimeoutMs(timeoutMs: number): void {
    this.timeoutMs = timeoutMs;
  }

  read(buffer: Buffer, offsetBytes: number, flags?: ReadFlags): Promise<void> {
    return this.guard('read', this.inner.read(buffer, offsetBytes, flags));
  }

  write(buffer: Buffer, offsetBytes: number, flags?: WriteFlags): Promise<void> {
    return this.guard('write', this.inner.write(buffer, offsetBytes, flags));
  }

  flush(): Promise<void> {
    return this.guard('flush', this.inner.flush());
  }

  trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.guard('write', this.inner.trim(offsetBytes, lengthBytes));
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** Resolves once no request is in flight below (a hung one keeps it waiting). */
  drained(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private guard(operation: 'read' | 'write' | 'flush', request: Promise<void>): Promise<void> {
    this.inFlight++;
    const finished = request.finally(() => {
      this.inFlight--;
      if (this.inFlight === 0) for (const wake of this.drainWaiters.splice(0)) wake();
    });
    const timeoutMs = this.timeoutMs;
    if (timeoutMs <= 0) return finished;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new DiskTimeoutError(operation, timeoutMs)), timeoutMs);
      finished.then(
        () => {
          clearTimeout(timer);
          resolve();
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }
}
