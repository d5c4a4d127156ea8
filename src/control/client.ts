/**
 * control/client — udrbdadm's end of the control socket: connect with a
 * timeout, send one request, wait for its reply (with a timeout), or
 * subscribe to the event stream. A missing socket becomes the operator
 * message "udrbd resource RES is not up on node N (no socket at PATH): run
 * 'udrbdadm up RES'"; a dead process's leftovers (pid file, stale socket)
 * become "the resource process (pid N) died" (ResourceDiedError). Knows
 * nothing of what the verbs mean.
 */
import net from 'node:net';
import fs from 'node:fs';
import { UdrbdError, ExitCode } from '../util/errors.js';
import { type RuntimePaths, isProcessAlive, readPid } from './paths.js';
import {
  type ControlEvent,
  type ControlReply,
  type ControlEventLine,
  LineSplitter,
} from './protocol.js';

export const CONNECT_TIMEOUT_MS = 5_000;
/** Default wait for a reply; verbs that wait on the network pass their own. */
export const REPLY_TIMEOUT_MS = 30_000;

export class ResourceNotUpError extends UdrbdError {
  constructor(
    readonly paths: RuntimePaths,
    message = `udrbd resource ${paths.resource} is not up on node ${paths.node} (no socket at ${paths.socketPath}): run 'udrbdadm up ${paths.resource}'`,
    exitCode: number = ExitCode.stateChangeFailed,
  ) {
    super(message, exitCode);
  }
}

/**
 * The resource process is gone without a `down` (kill -9, crash): its pid
 * file names a dead process, or its socket is stale. Still "not up" for the
 * verbs that take over (up) or accept it (down), but the operator is told.
 * Exit 10: what drbdsetup answers for a minor that does not exist (ERR_MINOR_INVALID),
 * which is what the device is after such a crash.
 */
export class ResourceDiedError extends ResourceNotUpError {
  constructor(
    paths: RuntimePaths,
    readonly pid: number | undefined,
  ) {
    super(
      paths,
      `udrbd resource ${paths.resource} on node ${paths.node}: the resource process${pid === undefined ? '' : ` (pid ${pid})`} died without 'down'; ` +
        `its log is ${paths.logPath}. Run 'udrbdadm up ${paths.resource}' to start it again (up applies the activity log).`,
      ExitCode.configInvalid,
    );
  }
}

/** ResourceDiedError when the pid file names a dead process, or the socket file is there but refuses connections. */
export function notUpError(paths: RuntimePaths, socketRefused: boolean): ResourceNotUpError {
  const pid = readPid(paths);
  if (pid !== undefined && !isProcessAlive(pid)) return new ResourceDiedError(paths, pid);
  if (socketRefused && pid === undefined) return new ResourceDiedError(paths, undefined);
  return new ResourceNotUpError(paths);
}

export class ControlClient {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (r: ControlReply) => void; reject: (e: Error) => void }>();
  private eventHandler: ((event: ControlEvent) => void) | undefined;
  private closedError: Error | undefined;
  private closeHandler: (() => void) | undefined;

  private constructor(
    private readonly socket: net.Socket,
    readonly paths: RuntimePaths,
  ) {
    const splitter = new LineSplitter(
      (line) => this.onLine(line),
      () => this.fail(new Error('control reply too long')),
    );
    socket.on('data', (chunk: Buffer) => splitter.push(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => {
      this.fail(new Error(`udrbd resource ${paths.resource} on node ${paths.node}: control connection closed`));
      this.closeHandler?.();
    });
  }

  /** True when the resource process's socket file exists. */
  static isUp(paths: RuntimePaths): boolean {
    try {
      return fs.statSync(paths.socketPath).isSocket();
    } catch {
      return false;
    }
  }

  static connect(paths: RuntimePaths, timeoutMs: number = CONNECT_TIMEOUT_MS): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(paths.socketPath);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new UdrbdError(`udrbd resource ${paths.resource} on node ${paths.node}: no answer on ${paths.socketPath} within ${timeoutMs} ms`, ExitCode.fatal));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new ControlClient(socket, paths));
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') reject(notUpError(paths, err.code === 'ECONNREFUSED'));
        else reject(new UdrbdError(`udrbd resource ${paths.resource} on node ${paths.node}: cannot reach ${paths.socketPath}: ${err.message}`, ExitCode.fatal));
      });
    });
  }

  request(verb: string, args: Record<string, unknown> = {}, timeoutMs: number = REPLY_TIMEOUT_MS): Promise<ControlReply> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new UdrbdError(`udrbd resource ${this.paths.resource} on node ${this.paths.node}: no reply to '${verb}' within ${timeoutMs} ms`, ExitCode.fatal));
      }, timeoutMs);
      this.waiting.set(id, {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.socket.write(`${JSON.stringify({ id, verb, args })}\n`);
    });
  }

  /** Subscribes to state-change events; resolves once the subscription is active. */
  async subscribe(onEvent: (event: ControlEvent) => void, onClose?: () => void): Promise<void> {
    this.eventHandler = onEvent;
    this.closeHandler = onClose;
    const reply = await this.request('events');
    if (!reply.ok) throw new UdrbdError(reply.stderr, reply.exitCode);
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
  }

  private onLine(line: string): void {
    let message: Partial<ControlReply & ControlEventLine>;
    try {
      message = JSON.parse(line) as Partial<ControlReply & ControlEventLine>;
    } catch {
      return this.fail(new Error('malformed control reply'));
    }
    if (message.event !== undefined) {
      this.eventHandler?.(message.event);
      return;
    }
    if (message.id === -1 && message.ok === false) {
      // Not an answer to any request: the server refused this connection (too many) or a line.
      return this.fail(new UdrbdError(`udrbd resource ${this.paths.resource} on node ${this.paths.node}: ${(message.stderr ?? '').trimEnd()}`, message.exitCode ?? ExitCode.fatal));
    }
    const waiter = typeof message.id === 'number' ? this.waiting.get(message.id) : undefined;
    if (!waiter) return;
    this.waiting.delete(message.id!);
    waiter.resolve(message as ControlReply);
  }

  private fail(err: Error): void {
    if (this.closedError) return;
    this.closedError = err;
    for (const waiter of this.waiting.values()) waiter.reject(err);
    this.waiting.clear();
  }
}

/** One request on a fresh connection. */
export async function callResource(
  paths: RuntimePaths,
  verb: string,
  args: Record<string, unknown> = {},
  timeoutMs: number = REPLY_TIMEOUT_MS,
): Promise<ControlReply> {
  const client = await ControlClient.connect(paths);
  try {
    return await client.request(verb, args, timeoutMs);
  } finally {
    client.close();
  }
}
