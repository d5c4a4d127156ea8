/**
 * test/helpers/fault-proxy — a TCP proxy for tests that sits on the link
 * between two udrbd nodes and breaks it on demand: forward, freeze (hold all
 * bytes, or one direction's; sockets stay open), cut (close all connections and refuse new ones
 * until restore), reset (RST every connection), delay (per chunk), drop
 * (silently discard one direction), inject (raw bytes into live
 * connections) and corrupt (flip one byte inside the body of a chosen frame
 * type, e.g. a Data payload, in flight). Counts bytes each way. Loopback only.
 *
 * Placement: a node only accepts connections from its peer's configured host,
 * so a proxy in front of node B listens on B's IP (e.g. 127.0.0.2:17701) and
 * dials B from A's IP (`sourceHost: '127.0.0.1'`); node A is configured to
 * dial the proxy. Use one proxy per direction when every byte must pass one.
 * It knows the udrbd wire format only as far as `corrupt` needs: every frame
 * starts with a HEADER_BYTES (14-byte) header whose u16 at offset 6 is the type
 * and u32 at offset 8 the body length (big-endian, peer/wire-layout); a per-direction
 * FrameTracker follows those boundaries from the first byte of each
 * connection, skipping bodies unread.
 */
import net from 'node:net';
import { HEADER_BYTES } from '../../src/peer/codec.js';

export interface ProxyAddress {
  host: string;
  port: number;
}

export interface FaultProxyOptions {
  listen: ProxyAddress;
  target: ProxyAddress;
  /** Local address for the upstream connection (what the target sees as the source). */
  sourceHost?: string;
}

/** 'up' = client → target, 'down' = target → client. */
export type Direction = 'up' | 'down';

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
}

/**
 * What `corrupt` flips: the last byte of the body of the next `remaining`
 * frames of `frameType` whose body is at least `bodyBytesMin` long (for a
 * Data frame: the last payload byte, whatever digest precedes it). One plan
 * may be given to several proxies / directions; it is a shared budget, so
 * "once" holds whichever connection the nodes keep.
 */
export interface CorruptionPlan {
  frameType: number;
  bodyBytesMin: number;
  remaining: number;
  /** Frames flipped so far under this plan. */
  flipped: number;
  /** Body length of each flipped frame, in order. */
  flippedBodyBytes: number[];
}

export function corruptionPlan(frameType: number, bodyBytesMin: number, frames = 1): CorruptionPlan {
  return { frameType, bodyBytesMin, remaining: frames, flipped: 0, flippedBodyBytes: [] };
}

/** Frame boundaries of one direction of one connection (see the header). */
class FrameTracker {
  private readonly header = Buffer.alloc(HEADER_BYTES);
  private headerFilledBytes = 0;
  /** Body bytes of the current frame still to come (0 while reading a header). */
  private bodyRemainingBytes = 0;
  /** The current frame's body gets its last byte flipped. */
  private flipThisFrame = false;

  /** Follows `chunk` (about to be forwarded) and flips in place what `plan` asks for. */
  scan(chunk: Buffer, plan: CorruptionPlan | null): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.bodyRemainingBytes === 0) {
        const n = Math.min(HEADER_BYTES - this.headerFilledBytes, chunk.length - pos);
        chunk.copy(this.header, this.headerFilledBytes, pos, pos + n);
        this.headerFilledBytes += n;
        pos += n;
        if (this.headerFilledBytes < HEADER_BYTES) return;
        this.headerFilledBytes = 0;
        const type = this.header.readUInt16BE(6);
        this.bodyRemainingBytes = this.header.readUInt32BE(8);
        this.flipThisFrame = plan !== null && plan.remaining > 0 && type === plan.frameType && this.bodyRemainingBytes >= plan.bodyBytesMin && this.bodyRemainingBytes > 0;
        if (this.flipThisFrame && plan !== null) {
          plan.remaining--;
          plan.flipped++;
          plan.flippedBodyBytes.push(this.bodyRemainingBytes);
        }
        continue;
      }
      const n = Math.min(this.bodyRemainingBytes, chunk.length - pos);
      if (this.flipThisFrame && n === this.bodyRemainingBytes) {
        chunk[pos + n - 1]! ^= 0xff;
        this.flipThisFrame = false;
      }
      this.bodyRemainingBytes -= n;
      pos += n;
    }
  }
}

/** Bytes held per direction while delayed; beyond it the source socket is paused. */
const DELAY_QUEUE_BYTES_MAX = 16 * 1024 * 1024;

export class FaultProxy {
  private server: net.Server | null = null;
  private readonly pairs = new Set<Pair>();
  /** Bytes held per direction (freeze); the sockets stay open. */
  private readonly frozen: Record<Direction, boolean> = { up: false, down: false };
  private refusing = false;
  private delayMs = 0;
  private readonly dropping: Record<Direction, boolean> = { up: false, down: false };
  private readonly corrupting: Record<Direction, CorruptionPlan | null> = { up: null, down: null };
  private readonly pumps = new Set<() => void>();
  /** Bytes forwarded client → target and target → client. */
  bytesUp = 0;
  bytesDown = 0;
  /** Connections accepted (not refused) since start. */
  connectionsAccepted = 0;

  constructor(private readonly opts: FaultProxyOptions) {}

  get activeConnections(): number {
    return this.pairs.size;
  }

  async start(): Promise<void> {
    const server = net.createServer((client) => this.onClient(client));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.opts.listen.host, port: this.opts.listen.port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  /** Actual listening port (useful with port 0). */
  get port(): number {
    const address = this.server?.address();
    if (address === null || address === undefined || typeof address === 'string') throw new Error('fault proxy not listening');
    return address.port;
  }

  async stop(): Promise<void> {
    for (const pair of this.pairs) this.destroyPair(pair);
    this.pairs.clear();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Hold every byte in both directions, or in `direction` only; connections stay open. */
  freeze(direction?: Direction): void {
    for (const d of direction === undefined ? (['up', 'down'] as const) : [direction]) {
      this.frozen[d] = true;
      for (const pair of this.pairs) source(pair, d).pause();
    }
  }

  /** Release held bytes (both directions) and forward again. */
  thaw(): void {
    this.frozen.up = false;
    this.frozen.down = false;
    for (const pair of this.pairs) {
      pair.client.resume();
      pair.upstream.resume();
    }
    for (const pump of this.pumps) pump();
  }

  /** Close every connection (FIN) and refuse new ones until restore(). */
  cut(): void {
    this.refusing = true;
    for (const pair of [...this.pairs]) this.destroyPair(pair);
  }

  restore(): void {
    this.refusing = false;
  }

  /** Abort every connection with a TCP RST; new connections are still accepted. */
  reset(): void {
    for (const pair of [...this.pairs]) {
      pair.client.resetAndDestroy();
      pair.upstream.resetAndDestroy();
      this.pairs.delete(pair);
    }
  }

  /** Delay every chunk by `ms` (0 = forward at once). Order is kept. */
  setDelay(ms: number): void {
    this.delayMs = Math.max(0, ms);
  }

  /** Silently discard bytes in one direction (connections stay open). */
  drop(direction: Direction, on = true): void {
    this.dropping[direction] = on;
  }

  /**
   * Flip bytes in flight as `plan` says, in one direction of every
   * connection (present and future); null stops. Frame boundaries are
   * tracked from each connection's first byte, so arming mid-stream is fine.
   */
  corrupt(direction: Direction, plan: CorruptionPlan | null): void {
    this.corrupting[direction] = plan;
  }

  /** Write raw bytes into every live connection, toward the target ('up') or the client ('down'). */
  inject(direction: Direction, bytes: Buffer): void {
    for (const pair of this.pairs) (direction === 'up' ? pair.upstream : pair.client).write(bytes);
  }

  private onClient(client: net.Socket): void {
    client.on('error', () => undefined);
    if (this.refusing) {
      client.destroy();
      return;
    }
    this.connectionsAccepted++;
    client.setNoDelay(true);
    const upstream = net.connect({
      host: this.opts.target.host,
      port: this.opts.target.port,
      ...(this.opts.sourceHost ? { localAddress: this.opts.sourceHost } : {}),
    });
    upstream.setNoDelay(true);
    upstream.on('error', () => undefined);
    const pair: Pair = { client, upstream };
    this.pairs.add(pair);
    this.forward(pair, client, upstream, 'up');
    this.forward(pair, upstream, client, 'down');
    const close = (): void => this.destroyPair(pair);
    client.once('close', close);
    upstream.once('close', close);
    if (this.frozen.up) client.pause();
    if (this.frozen.down) upstream.pause();
  }

  private forward(pair: Pair, from: net.Socket, to: net.Socket, direction: Direction): void {
    const queue: Array<{ chunk: Buffer; dueMs: number }> = [];
    let queuedBytes = 0;
    let timer: NodeJS.Timeout | null = null;
    const frames = new FrameTracker();
    const pump = (): void => {
      timer = null;
      while (queue.length > 0 && !this.frozen[direction]) {
        const waitMs = queue[0]!.dueMs - Date.now();
        if (waitMs > 0) {
          timer = setTimeout(pump, waitMs);
          return;
        }
        const { chunk } = queue.shift()!;
        queuedBytes -= chunk.length;
        this.count(direction, chunk.length);
        to.write(chunk);
      }
      if (queuedBytes < DELAY_QUEUE_BYTES_MAX && !this.frozen[direction] && this.pairs.has(pair)) from.resume();
    };
    this.pumps.add(pump);
    from.once('close', () => {
      this.pumps.delete(pump);
      if (timer) clearTimeout(timer);
    });
    from.on('data', (chunk: Buffer) => {
      if (this.dropping[direction]) return;
      frames.scan(chunk, this.corrupting[direction]);
      if (this.delayMs === 0 && queue.length === 0 && !this.frozen[direction]) {
        this.count(direction, chunk.length);
        to.write(chunk);
        return;
      }
      queue.push({ chunk, dueMs: Date.now() + this.delayMs });
      queuedBytes += chunk.length;
      if (queuedBytes >= DELAY_QUEUE_BYTES_MAX) from.pause();
      if (timer === null && !this.frozen[direction]) pump();
    });
  }

  private count(direction: Direction, bytes: number): void {
    if (direction === 'up') this.bytesUp += bytes;
    else this.bytesDown += bytes;
  }

  private destroyPair(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    pair.client.destroy();
    pair.upstream.destroy();
  }
}

/** The socket a direction's bytes come from ('up': the client's, 'down': the target's). */
function source(pair: Pair, direction: Direction): net.Socket {
  return direction === 'up' ? pair.client : pair.upstream;
}
