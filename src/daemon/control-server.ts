/**
 * daemon/control-server — the resource process's end of the control socket:
 * accepts udrbdadm connections on the root-only unix socket (mode 0600 in a
 * 0700 directory), parses line-delimited JSON requests, hands each to the
 * handler and writes the reply; `events` subscriptions receive one line per
 * state change until they disconnect. Knows nothing of what a verb means.
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

/** Concurrent control connections (udrbdadm invocations + event subscribers). */
export const CONTROL_CONNECTIONS_MAX = 64;
/** A subscriber that lets this much event output pile up is dropped. */
export const EVENT_BACKLOG_BYTES_MAX = 4 * 1024 * 1024;

/** How long close() lets connections drain their last reply. */
export const CLOSE_GRACE_MS = 1_000;

export type RequestHandler = (request: ControlRequest) => Promise<ControlReply>;

export class ControlServer {
  private readonly server: net.Server;
  private readonly connections = new Set<net.Socket>();
  private readonly subscribers = new Map<net.Socket, number>();

  constructor(
    private readonly socketPath: string,
    private readonly handler: RequestHandler,
    private readonly log: Logger,
    /** Called for an `events` request: initial "exists" lines for the subscriber. */
    private readonly initialEvents: () => ControlEvent[],
  ) {
    this.server = net.createServer((socket) => this.accept(socket));
    this.server.maxConnections = CONTROL_CONNECTIONS_MAX;
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
    this.connections.add(socket);
    socket.on('close', () => {
      this.connections.delete(socket);
      this.subscribers.delete(socket);
    });
    socket.on('error', () => socket.destroy());
    // One request at a time per connection, in order.
    let chain: Promise<void> = Promise.resolve();
    const splitter = new LineSplitter(
      (line) => {
        chain = chain.then(() => this.serve(socket, line));
      },
      () => {
        this.log.warn('control request line too long, closing that control connection');
        socket.destroy();
      },
    );
    socket.on('data', (chunk: Buffer) => splitter.push(chunk));
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
