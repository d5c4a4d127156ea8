/**
 * Test helpers for replication/ tests: an in-memory PeerChannel pair (ordered,
 * optional latency, cut, bounded buffering, copies payloads like a wire, taps
 * every delivered packet), a disk wrapper that delays or counts, a no-op
 * activity log, and a two-node setup of ReplicationEngines on MemoryDisks.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { BlockDevice, WriteFlags } from '../../src/disk/block-device.js';
import { MemoryDisk } from '../../src/disk/memory-disk.js';
import { Bitmap } from '../../src/meta/bitmap.js';
import type { ActivityLogApi } from '../../src/meta/types.js';
import type { LinkLossReason, PeerChannel } from '../../src/peer/channel.js';
import type { Packet } from '../../src/peer/packets.js';
import { ReplicationEngine } from '../../src/replication/engine.js';
import type { ReplicationOptions } from '../../src/replication/options.js';

/** Packets queued in one direction before the test harness calls it a bug. */
const QUEUE_PACKETS_MAX = 200_000;

export interface Delivered {
  readonly atMs: number;
  readonly packet: Packet;
}

function copyPacket(packet: Packet): Packet {
  const copy = { ...packet } as Record<string, unknown>;
  for (const key of ['payload', 'bits', 'digest']) {
    const value = copy[key];
    if (Buffer.isBuffer(value)) copy[key] = Buffer.from(value);
  }
  return copy as unknown as Packet;
}

class MemoryEnd implements PeerChannel {
  other!: MemoryEnd;
  isOpen = true;
  private handler: ((p: Packet) => void) | null = null;
  private closeHandler: ((r: LinkLossReason) => void) | null = null;
  private readonly queue: Array<{ dueMs: number; packet: Packet }> = [];
  private timer: NodeJS.Timeout | null = null;
  private drainWaiters: Array<() => void> = [];
  private releasedWaiters: Array<() => void> = [];
  /** Packets this end received, in order. */
  readonly received: Delivered[] = [];
  latencyMs = 0;
  /** When true, nothing is delivered to the other end until released. */
  held = false;
  /** PeerChannel's optional push(); unset here, tests may install a probe. */
  push?: () => void;

  constructor(private readonly highWaterPackets: number) {}

  send(packet: Packet): boolean {
    if (!this.isOpen) return false;
    if (this.queue.length >= QUEUE_PACKETS_MAX) throw new Error('memory channel queue overflow');
    this.queue.push({ dueMs: Date.now() + this.latencyMs, packet: copyPacket(packet) });
    this.schedule();
    return this.queue.length < this.highWaterPackets;
  }

  drained(): Promise<void> {
    if (this.queue.length < this.highWaterPackets / 2 || !this.isOpen) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** As peer/session: resolves once this end is closed (payloads are copied at send here, but the contract is the socket's). */
  released(): Promise<void> {
    if (!this.isOpen) return Promise.resolve();
    return new Promise((resolve) => this.releasedWaiters.push(resolve));
  }

  onPacket(handler: (packet: Packet) => void): void {
    this.handler = handler;
  }

  onClose(handler: (reason: LinkLossReason) => void): void {
    this.closeHandler = handler;
  }

  close(reason: LinkLossReason): void {
    this.shut(reason);
    this.other.shut(reason);
  }

  release(): void {
    this.held = false;
    this.schedule();
  }

  private shut(reason: LinkLossReason): void {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.queue.length = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const wake of this.drainWaiters.splice(0)) wake();
    for (const wake of this.releasedWaiters.splice(0)) wake();
    this.closeHandler?.(reason);
  }

  private schedule(): void {
    if (this.timer !== null || this.held || this.queue.length === 0 || !this.isOpen) return;
    const delay = Math.max(0, this.queue[0]!.dueMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.deliver();
    }, delay);
  }

  private deliver(): void {
    const now = Date.now();
    while (this.isOpen && !this.held && this.queue.length > 0 && this.queue[0]!.dueMs <= now) {
      const { packet } = this.queue.shift()!;
      this.other.received.push({ atMs: now, packet });
      this.other.handler?.(packet);
    }
    if (this.queue.length < this.highWaterPackets / 2) for (const wake of this.drainWaiters.splice(0)) wake();
    this.schedule();
  }
}

export function channelPair(options: { latencyMs?: number; highWaterPackets?: number } = {}): [MemoryEnd, MemoryEnd] {
  const a = new MemoryEnd(options.highWaterPackets ?? 256);
  const b = new MemoryEnd(options.highWaterPackets ?? 256);
  a.other = b;
  b.other = a;
  a.latencyMs = b.latencyMs = options.latencyMs ?? 0;
  return [a, b];
}
export type { MemoryEnd };

/** Wraps a BlockDevice: optional write delay, counts flushes and remembers how many writes preceded each. */
export class ProbeDisk implements BlockDevice {
  writeDelayMs = 0;
  writesDone = 0;
  flushes: number[] = [];
  failWrites = false;
  constructor(readonly inner: MemoryDisk) {}
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  get capabilities() {
    return this.inner.capabilities;
  }
  read(buffer: Buffer, offsetBytes: number): Promise<void> {
    return this.inner.read(buffer, offsetBytes);
  }
  async write(buffer: Buffer, offsetBytes: number, _flags?: WriteFlags): Promise<void> {
    if (this.writeDelayMs > 0) await new Promise((r) => setTimeout(r, this.writeDelayMs));
    if (this.failWrites) throw new Error('EIO (injected)');
    await this.inner.write(buffer, offsetBytes);
    this.writesDone++;
  }
  async flush(): Promise<void> {
    this.flushes.push(this.writesDone);
  }
  trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.inner.trim(offsetBytes, lengthBytes);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

export const noActivityLog: ActivityLogApi = {
  beginWrite: () => undefined,
  endWrite: () => undefined,
};

/** A logger whose lines tests can read. */
export function capturingLogger(): { log: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(line);
      cb();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines };
}

export interface Node {
  readonly memory: MemoryDisk;
  readonly disk: ProbeDisk;
  readonly bitmap: Bitmap;
  readonly engine: ReplicationEngine;
  readonly lines: string[];
}

export function makeNode(sizeBytes: number, options: Partial<ReplicationOptions> = {}, activityLog: ActivityLogApi = noActivityLog, vnr = 0): Node {
  const memory = new MemoryDisk(sizeBytes);
  const disk = new ProbeDisk(memory);
  const bitmap = new Bitmap(Math.ceil(sizeBytes / 4096));
  const { log, lines } = capturingLogger();
  const engine = new ReplicationEngine({ disk, bitmap, activityLog, options, log, vnr });
  return { memory, disk, bitmap, engine, lines };
}

/** Connects two nodes over a fresh in-memory pair; `primary` mirrors its writes to `secondary`. */
export function connect(primary: Node, secondary: Node, options: { latencyMs?: number } = {}): [MemoryEnd, MemoryEnd] {
  const [a, b] = channelPair(options);
  primary.engine.attachPeer({ channel: a });
  secondary.engine.attachPeer({ channel: b });
  primary.engine.startMirroring();
  return [a, b];
}

/** Deterministic pseudo-random bytes. */
export function pattern(lengthBytes: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(lengthBytes);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < lengthBytes; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `predicate` every 5 ms, at most `pollsMax` times; throws naming `what` if it never holds. */
export async function until(what: string, predicate: () => boolean, pollsMax = 200): Promise<void> {
  for (let i = 0; i < pollsMax; i++) {
    if (predicate()) return;
    await sleep(5);
  }
  throw new Error(`not reached: ${what}`);
}

/** Set bits of a bitmap as a sorted array (small bitmaps only). */
export function setBits(bitmap: Bitmap): number[] {
  const bits: number[] = [];
  for (let b = bitmap.nextSet(0); b >= 0 && bits.length < 1_000_000; b = bitmap.nextSet(b + 1)) bits.push(b);
  return bits;
}

/** XORs `mask` into the byte at `index` (a test's injected corruption); the index must be in range. */
export function flipBits(data: Uint8Array, index: number, mask: number): void {
  const byte = data[index];
  if (byte === undefined) throw new RangeError(`flipBits: index ${index} is outside ${data.length} bytes`);
  data[index] = byte ^ mask;
}
