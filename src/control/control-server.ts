/**
 * control/control-server — the resource process's end of the control socket:
 * accepts udrbdadm connections on the root-only unix socket (mode 0600 in a
 * 0700 directory), parses line-delimited JSON requests, hands each to the
 * handler and writes the reply; `events` subscriptions receive one line per
 * state change until they disconnect. Limits, each a named constant below:
 * open connections (one more gets a reply saying so), the time to send a
 * request line (slow loris), requests waiting per connection and reply bytes
 * a client leaves unread. Knows nothing of what a verb means.
 */
import net from 'node:net';
import fs from 'node:fs';
import type { Logger } from '../util/log.js';
import {
  type ControlEvent,
  type ControlReply,
  type ControlRequest,
  LineSplitter,
  errorReply,
} from './protocol.js';

/** Concurrent control connections (udrbdadm invocations + event subscribers); one more is refused with a reply saying so. */
export const CONTROL_CONNECTIONS_MAX = 64;
/**
 * A client must send its first request line within this time of connecting,
 * and finish any line it started within this time (udrbdadm sends at once):
 * a client that connects and says nothing, or sends half a line and stops
 * (slow loris), is dropped instead of holding one of the connection slots.
 * An idle client between two complete requests is not timed (persistent
 * test harness clients, event subscribers).
 */
export const CONTROL_REQUEST_LINE_TIMEOUT_MS = 10_000;
/** Requests read from one connection and not yet answered before reading from it pauses. */
export const CONTROL_PIPELINE_MAX = 16;
/** Reply bytes a client has not read before reading its further requests pauses. */
export const CONTROL_REPLY_BACKLOG_BYTES_MAX = 16 * 1024 * 1024;
/** Refusals (over the connection cap) are logged at most this often. */
const REFUSAL_LOG_INTERVAL_MS = 1_000;
/** A subscriber that lets this much event output pile up is dropped. */
export const EVENT_BACKLOG_BYTES_MAX = 4 * 1024 * 1024;

/** How long close() lets connections drain their last reply. */
export const CLOSE_GRACE_MS = 1_000;

export type RequestHandler = (request: ControlRequest) => Promise<ControlReply>;

export interface ControlServerLimits {
  /** Default CONTROL_CONNECTIONS_MAX. */
  readonly connectionsMax?: number;
  /** Default CONTROL_REQUEST_LINE_TIMEOUT_MS. */
  readonly requestLineTimeoutMs?: number;
  /** Default CONTROL_REPLY_BACKLOG_BYTES_MAX. */
  readonly replyBacklogBytesMax?: number;
}

/** What the control server counts, for status and the abuse tests. */
export interface ControlServerCounters {
  /** Connections open now. */
  connections: number;
  /** Connections refused because CONTROL_CONNECTIONS_MAX were open. */
  refusedOverCap: number;
  /** Connections dropped for not finishing a request line in time. */
  droppedSlow: number;
}

export class ControlServer {
  private readonly server: net.Server;
  private readonly connections = new Set<net.Socket>();
  private readonly subscribers = new Map<net.Socket, number>();
  private readonly connectionsMax: number;
  private readonly requestLineTimeoutMs: number;
  private readonly replyBacklogBytesMax: number;
  private lastRefusalLogMs = -Infinity;
  readonly counters: ControlServerCounters = { connections: 0, refusedOverCap: 0, droppedSlow: 0 };

  constructor(
    private readonly socketPath: string,
    private readonly handler: RequestHandler,
    private readonly log: Logger,
    /** Called for an `events` request: initial "exists" lines for the subscriber. */
    private readonly initialEvents: () => ControlEvent[],
    limits: ControlServerLimits = {},
  ) {
    this.connectionsMax = limits.connectionsMax ?? CONTROL_CONNECTIONS_MAX;
    this.requestLineTimeoutMs = limits.requestLineTimeoutMs ?? CONTROL_REQUEST_LINE_TIMEOUT_MS;
    this.replyBacklogBytesMax = limits.replyBacklogBytesMax ?? CONTROL_REPLY_BACKLOG_BYTES_MAX;
    this.server = net.createServer((socket) => this.accept(socket));
  }

  async listen(): Promise<void> {
    // We hold the resource lock, so a socket file left here is stale (crash).
    try {
      fs.unlinkSync(this.socketPath);
    } catch {
      /* not there */
    }
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        this.server.listen(this.socketPath, () => {
          this.server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(oldMask);
    }
    fs.chmodSync(this.socketPath, 0o600);
  }

  /** Sends an event line to every subscriber. */
  publish(event: ControlEvent): void {
    for (const [socket, id] of this.subscribers) {
      if (socket.writableLength > EVENT_BACKLOG_BYTES_MAX) {
        this.log.warn({ backlogBytes: socket.writableLength }, 'events subscriber too slow, dropping it');
        socket.destroy();
        continue;
      }
      socket.write(`${JSON.stringify({ id, event })}\n`);
    }
  }

  /** Stops listening; pending replies are flushed (graceful end), stragglers destroyed after a bound. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.connections) socket.end();
    const timer = setTimeout(() => {
      for (const socket of this.connections) socket.destroy();
    }, CLOSE_GRACE_MS);
    await closed;
    clearTimeout(timer);
    try {
      fs.unlinkSync(this.socketPath);
    } catch {
      /* gone */
    }
  }

  private accept(socket: net.Socket): void {
    socket.on('error', () => socket.destroy());
    if (this.connections.size >= this.connectionsMax) {
      this.refuse(socket);
      return;
    }
    this.connections.add(socket);
    this.counters.connections = this.connections.size;
    socket.on('close', () => {
      this.connections.delete(socket);
      this.subscribers.delete(socket);
      this.counters.connections = this.connections.size;
    });
    // One request at a time per connection, in order. Lines wait in `queue`;
    // reading pauses while CONTROL_PIPELINE_MAX wait, and the next request is
    // not started while the client leaves replyBacklogBytesMax unread.
    const queue: string[] = [];
    let serving = false;
    const pump = async (): Promise<void> => {
      if (serving) return;
      serving = true;
      try {
        while (queue.length > 0 && !socket.destroyed) {
          if (socket.writableLength > this.replyBacklogBytesMax) {
            await drainedOrClosed(socket);
            continue;
          }
          const line = queue.shift()!;
          await this.serve(socket, line);
          if (queue.length < CONTROL_PIPELINE_MAX && !socket.destroyed) socket.resume();
        }
      } finally {
        serving = false;
      }
    };
    let timer: NodeJS.Timeout | null = null;
    const armLineTimer = (): void => {
      if (timer !== null) return;
      timer = setTimeout(() => {
        this.counters.droppedSlow++;
        this.log.warn({ timeoutMs: this.requestLineTimeoutMs }, 'control client sent no complete request line in time, dropping that control connection');
        socket.destroy();
      }, this.requestLineTimeoutMs);
      timer.unref();
    };
    const disarmLineTimer = (): void => {
      if (timer !== null) clearTimeout(timer);
      timer = null;
    };
    socket.on('close', disarmLineTimer);
    const splitter = new LineSplitter(
      (line) => {
        disarmLineTimer();
        queue.push(line);
        if (queue.length >= CONTROL_PIPELINE_MAX) socket.pause();
        void pump(); // serve() answers every failure itself; pump never rejects
      },
      () => {
        this.log.warn('control request line too long, closing that control connection');
        socket.destroy();
      },
    );
    socket.on('data', (chunk: Buffer) => {
      splitter.push(chunk);
      // A line started and not yet ended must end in time.
      if (splitter.pendingBytes > 0) armLineTimer();
    });
    armLineTimer(); // the first request is timed from the connect
  }

  /** Over the connection cap: one reply line saying so, then hang up. */
  private refuse(socket: net.Socket): void {
    this.counters.refusedOverCap++;
    const nowMs = performance.now();
    if (nowMs - this.lastRefusalLogMs >= REFUSAL_LOG_INTERVAL_MS) {
      this.lastRefusalLogMs = nowMs;
      this.log.warn({ connectionsMax: this.connectionsMax, refusedOverCap: this.counters.refusedOverCap }, 'too many control connections, refusing new ones');
    }
    const message = `too many control connections to ${this.socketPath} (${this.connectionsMax} open); try again once other udrbdadm commands have finished\n`;
    socket.end(`${JSON.stringify(errorReply(-1, 20, message))}\n`);
    // Not counted in `connections`: make sure it goes even if the client never hangs up.
    setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
  }

  private async serve(socket: net.Socket, line: string): Promise<void> {
    let request: ControlRequest;
    try {
      request = parseRequest(line);
    } catch (err) {
      socket.write(`${JSON.stringify(errorReply(-1, 20, `malformed control request: ${(err as Error).message}\n`))}\n`);
      return;
    }
    if (request.verb === 'events') {
      socket.write(`${JSON.stringify({ id: request.id, ok: true, exitCode: 0, stdout: '', stderr: '' })}\n`);
      for (const event of this.initialEvents()) socket.write(`${JSON.stringify({ id: request.id, event })}\n`);
      this.subscribers.set(socket, request.id);
      return;
    }
    let reply: ControlReply;
    try {
      reply = await this.handler(request);
    } catch (err) {
      this.log.error({ err, verb: request.verb }, 'control request failed');
      reply = errorReply(request.id, 20, `${(err as Error).message}\n`);
    }
    if (!socket.destroyed) socket.write(`${JSON.stringify(reply)}\n`);
  }
}

/**
 * One request line as the handler may trust it: an integer id, a string verb
 * and args that are an object (missing or null means none). Throws naming what
 * is wrong; the JSON is never handed on half-checked.
 */
export function parseRequest(line: string): ControlRequest {
  const parsed: unknown = JSON.parse(line);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('a request is a JSON object');
  const { id, verb, args } = parsed as { id?: unknown; verb?: unknown; args?: unknown };
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || typeof verb !== 'string') throw new Error('missing id or verb');
  if (args === undefined || args === null) return { id, verb, args: {} };
  if (typeof args !== 'object' || Array.isArray(args)) throw new Error('args must be a JSON object');
  return { id, verb, args: args as Record<string, unknown> };
}

/** Resolves when `socket` has written its backlog out, or is gone. */
function drainedOrClosed(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.once('drain', done);
    socket.once('close', done);
  });
}
