/**
 * disk/io-gate — a BlockDevice layer that can freeze I/O, stacked on the
 * device a frontend serves (as nbdkit stacks a filter on a plugin). While
 * frozen, new requests wait before they reach the device, and requests that
 * were already running hold their completion until the gate opens: nothing
 * is acknowledged upwards during the freeze. DRBD's suspended I/O (susp_fen
 * under `fencing resource-and-stonith`) is one user; the layer knows nothing
 * of fencing, states or peers.
 */
import type { BlockDevice, BlockDeviceCapabilities, ReadFlags, WriteFlags } from './block-device.js';

/** Open or frozen; waiters are woken all at once when it opens. */
export class IoGate {
  private frozenNow = false;
  private waiters: Array<() => void> = [];

  get frozen(): boolean {
    return this.frozenNow;
  }

  freeze(): void {
    this.frozenNow = true;
  }

  thaw(): void {
    this.frozenNow = false;
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves at once while open, else when the gate opens. */
  pass(): Promise<void> {
    if (!this.frozenNow) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Requests waiting for the gate (status, tests). */
  get waiting(): number {
    return this.waiters.length;
  }
}

/** `inner` behind `gate`: each request passes the gate before it starts and again before it completes. */
export class GatedDevice implements BlockDevice {
  constructor(
    private readonly inner: BlockDevice,
    private readonly gate: IoGate,
  ) {}

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  get capabilities(): BlockDeviceCapabilities {
    return this.inner.capabilities;
  }

  async read(buffer: Buffer, offsetBytes: number, flags?: ReadFlags): Promise<void> {
    await this.gate.pass();
    await this.inner.read(buffer, offsetBytes, flags);
    await this.gate.pass();
  }

  async write(buffer: Buffer, offsetBytes: number, flags?: WriteFlags): Promise<void> {
    await this.gate.pass();
    await this.inner.write(buffer, offsetBytes, flags);
    await this.gate.pass();
  }

  async flush(): Promise<void> {
    await this.gate.pass();
    await this.inner.flush();
    await this.gate.pass();
  }

  async trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    await this.gate.pass();
    await this.inner.trim(offsetBytes, lengthBytes);
    await this.gate.pass();
  }

  /** Closing is never frozen: the owner tears the device down. */
  close(): Promise<void> {
    return this.inner.close();
  }
}
