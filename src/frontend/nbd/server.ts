/**
 * frontend/nbd/server — NbdServer: serves one BlockDevice as one NBD export
 * on a unix socket and/or a TCP loopback port. Decides what the export
 * advertises from the device's declared capabilities (flush, FUA, trim,
 * maximum request size), owns the listeners and the set of live connections,
 * and on close() stops accepting, lets every in-flight request finish, and
 * hangs up. Knows nothing of replication, roles or nbd-client.
 */
import fs from 'node:fs';
import net from 'node:net';
import type { BlockDevice } from '../../disk/block-device.js';
import type { Logger } from '../../util/log.js';
import { assert } from '../../util/assert.js';
import { UdrbdError, ExitCode } from '../../util/errors.js';
import { HANDSHAKE_TIMEOUT_MS, NbdConnection, REQUEST_STALL_TIMEOUT_MS, type ExportConfig } from './connection.js';
import { assertLoopbackHost } from './tcp-address.js';
import * as P from './protocol.js';

export interface NbdServerOptions {
  readonly device: BlockDevice;
  /** Export name clients ask for (the empty name selects it too). */
  readonly exportName: string;
  readonly logger: Logger;
  /** Requests in flight per connection before the socket is paused. Default 64. */
  readonly maxInflight?: number;
  /** Payload bytes (reads + writes) in flight per connection before pausing (one request is always admitted). Default 64 MiB. */
  readonly maxInflightBytes?: number;
  /** Export read-only (a Secondary never exposes a writable device). Default false. */
  readonly readOnly?: boolean;
  /** Human-readable NBD_INFO_DESCRIPTION. */
  readonly description?: string;
  /** Concurrent client connections accepted; more are closed at once and logged. Default 16. */
  readonly maxConnections?: number;
  /** Default HANDSHAKE_TIMEOUT_MS (30 s). */
  readonly handshakeTimeoutMs?: number;
  /** Default REQUEST_STALL_TIMEOUT_MS (30 s). */
  readonly requestStallTimeoutMs?: number;
}

const INFLIGHT_MAX_DEFAULT = 64;
/** Above this a single connection is a memory hazard; 1024 x 32 MiB would be 32 GiB. */
const INFLIGHT_MAX_LIMIT = 1024;
const INFLIGHT_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;
const CONNECTIONS_MAX_DEFAULT = 16;
/** Connections refused over the cap are logged at most this often. */
const REFUSAL_LOG_INTERVAL_MS = 1_000;

/** The transmission flags and limits an export advertises for `device`. */
export function exportConfigFor(options: NbdServerOptions): ExportConfig {
  const { device } = options;
  const caps = device.capabilities;
  const readOnly = options.readOnly ?? false;
  const maxPayloadBytes =
    Math.floor(Math.min(caps.maxRequestBytes, P.PROTOCOL_PAYLOAD_MAX_BYTES) / P.BLOCK_SIZE_MIN_BYTES) * P.BLOCK_SIZE_MIN_BYTES;
  if (maxPayloadBytes < P.BLOCK_SIZE_PREFERRED_BYTES) {
    throw new UdrbdError(
      `cannot export a device whose maximum request (${caps.maxRequestBytes} bytes) is below ${P.BLOCK_SIZE_PREFERRED_BYTES} bytes`,
      ExitCode.fatal,
    );
  }
  let flags = P.TFLAG_HAS_FLAGS;
  if (readOnly) flags |= P.TFLAG_READ_ONLY;
  if (caps.canFlush) flags |= P.TFLAG_SEND_FLUSH;
  // FUA is passed to the device when it honours it, otherwise emulated with a
  // flush after the write (also for TRIM/WRITE_ZEROES), so it needs flush.
  if (caps.canFlush) flags |= P.TFLAG_SEND_FUA;
  if (!readOnly) {
    if (caps.canTrim) flags |= P.TFLAG_SEND_TRIM;
    flags |= P.TFLAG_SEND_WRITE_ZEROES;
  }
  // Every connection talks to the same device object with no per-connection
  // cache, and device.flush() covers all writes completed before it, so a
  // flush on one connection is visible to all: multi-conn is safe iff we can flush.
  if (caps.canFlush) flags |= P.TFLAG_CAN_MULTI_CONN;

  const inflightMax = options.maxInflight ?? INFLIGHT_MAX_DEFAULT;
  if (!Number.isSafeInteger(inflightMax) || inflightMax < 1 || inflightMax > INFLIGHT_MAX_LIMIT) {
    throw new UdrbdError(`maxInflight must be between 1 and ${INFLIGHT_MAX_LIMIT}, not ${inflightMax}`, ExitCode.usage);
  }
  // A single request is always admitted when nothing else is in flight, so the
  // budget may be smaller than one maximum payload.
  const inflightBytesMax = options.maxInflightBytes ?? INFLIGHT_BYTES_MAX_DEFAULT;
  if (!Number.isSafeInteger(inflightBytesMax) || inflightBytesMax < P.BLOCK_SIZE_MIN_BYTES) {
    throw new UdrbdError(`maxInflightBytes must be at least ${P.BLOCK_SIZE_MIN_BYTES}, not ${inflightBytesMax}`, ExitCode.usage);
  }
  const nameBytes = Buffer.byteLength(options.exportName, 'utf8');
  if (nameBytes > P.STRING_MAX_BYTES || options.exportName.includes('\0')) {
    throw new UdrbdError(`export name must be at most ${P.STRING_MAX_BYTES} bytes without NUL`, ExitCode.usage);
  }
  return {
    device,
    exportName: options.exportName,
    description: options.description ?? `udrbd volume ${options.exportName}`,
    // Requests are whole 512-byte sectors; a trailing partial sector is not exported.
    sizeBytes: Math.floor(device.sizeBytes / P.BLOCK_SIZE_MIN_BYTES) * P.BLOCK_SIZE_MIN_BYTES,
    maxPayloadBytes,
    transmissionFlags: flags,
    inflightMax,
    inflightBytesMax,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
    requestStallTimeoutMs: options.requestStallTimeoutMs ?? REQUEST_STALL_TIMEOUT_MS,
  };
}

export class NbdServer {
  /** Shared with every connection; only sizeBytes changes (resize). */
  private readonly config: Omit<ExportConfig, 'sizeBytes'> & { sizeBytes: number };
  private readonly log: Logger;
  private readonly listeners: net.Server[] = [];
  private readonly unixPaths: string[] = [];
  private readonly connections = new Set<NbdConnection>();
  private readonly connectionsMax: number;
  private closing = false;
  private lastRefusalLogMs = -Infinity;
  /** Connections closed at once because maxConnections were open. */
  refusedOverCap = 0;

  constructor(options: NbdServerOptions) {
    this.config = exportConfigFor(options);
    this.log = options.logger.child({ frontend: 'nbd', export: options.exportName });
    this.connectionsMax = options.maxConnections ?? CONNECTIONS_MAX_DEFAULT;
    assert(this.connectionsMax >= 1, 'maxConnections is at least 1');
    if (this.config.sizeBytes !== options.device.sizeBytes) {
      this.log.warn(
        { deviceBytes: options.device.sizeBytes, exportBytes: this.config.sizeBytes },
        'nbd: device size is not a multiple of 512 bytes; the trailing partial sector is not exported',
      );
    }
  }

  /**
   * The device grew or shrank (udrbd resize): clients that connect from now
   * on are told the new size, and every client's requests are checked
   * against it (past a shrunk end: NBD_ENOSPC/EINVAL). A client already in
   * transmission keeps the size it negotiated (NBD has no resize notice);
   * it reconnects to see more.
   */
  resize(): void {
    const sizeBytes = Math.floor(this.config.device.sizeBytes / P.BLOCK_SIZE_MIN_BYTES) * P.BLOCK_SIZE_MIN_BYTES;
    if (sizeBytes === this.config.sizeBytes) return;
    this.log.info({ sizeBytes, beforeBytes: this.config.sizeBytes }, sizeBytes > this.config.sizeBytes ? 'nbd: export grew' : 'nbd: export shrank');
    this.config.sizeBytes = sizeBytes;
  }

  /** Transmission flags advertised to clients (for tests and status). */
  get transmissionFlags(): number {
    return this.config.transmissionFlags;
  }

  /** Listens on a unix socket at `path` (a stale socket file there is replaced). */
  async listenUnix(path: string): Promise<void> {
    assert(!this.closing, 'listenUnix after close');
    try {
      if (fs.lstatSync(path).isSocket()) fs.unlinkSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await this.listen((server, done) => server.listen(path, done), `unix:${path}`);
    this.unixPaths.push(path);
    try {
      fs.chmodSync(path, 0o600);
    } catch (err) {
      this.log.warn({ path, err: (err as Error).message }, 'nbd: cannot restrict socket permissions');
    }
  }

  /** Listens on TCP; `host` must be a literal loopback address (127.0.0.0/8, ::1). Returns the bound port (useful with port 0). */
  async listenTcp(host: string, port: number): Promise<number> {
    assert(!this.closing, 'listenTcp after close');
    assertLoopbackHost(host, 'NBD listener');
    const server = await this.listen((s, done) => s.listen({ host, port }, done), `tcp:${host}:${port}`);
    const address = server.address();
    assert(address !== null && typeof address === 'object', 'a TCP listener has an address');
    return address.port;
  }

  private listen(start: (server: net.Server, done: () => void) => void, where: string): Promise<net.Server> {
    const server = net.createServer({ noDelay: true, pauseOnConnect: true }, (socket) => this.accept(socket));
    server.maxConnections = this.connectionsMax;
    // Node closes a connection over maxConnections before we see it; say so in the log.
    server.on('drop', () => this.refused());
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new UdrbdError(`cannot listen for NBD clients on ${where}: ${err.code ?? err.message}`, ExitCode.fatal));
      };
      server.once('error', onError);
      start(server, () => {
        server.off('error', onError);
        server.on('error', (err) => this.log.error({ err: err.message, where }, 'nbd: listener error'));
        this.listeners.push(server);
        this.log.info({ where, sizeBytes: this.config.sizeBytes, flags: this.config.transmissionFlags }, 'nbd: listening');
        resolve(server);
      });
    });
  }

  private accept(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const conn = new NbdConnection(socket, this.config, this.log);
    this.connections.add(conn);
    // conn.done only ever resolves (the connection logs its own errors); nothing waits for this cleanup.
    void conn.done.then(() => this.connections.delete(conn));
  }

  private refused(): void {
    this.refusedOverCap++;
    const nowMs = performance.now();
    if (nowMs - this.lastRefusalLogMs < REFUSAL_LOG_INTERVAL_MS) return;
    this.lastRefusalLogMs = nowMs;
    this.log.warn({ maxConnections: this.connectionsMax, refusedOverCap: this.refusedOverCap }, 'nbd: too many clients connected; refusing new ones');
  }

  /** Number of live connections (handshaking or transmitting). */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Stops listening, finishes in-flight requests on every connection, closes them. */
  async close(): Promise<void> {
    this.closing = true;
    const listenersClosed = this.listeners.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const conn of this.connections) conn.shutdown();
    await Promise.all([...listenersClosed, ...[...this.connections].map((c) => c.done)]);
    this.listeners.length = 0;
    for (const path of this.unixPaths) {
      try {
        fs.unlinkSync(path);
      } catch {
        // already gone
      }
    }
    this.unixPaths.length = 0;
    this.log.info('nbd: server closed');
  }
}
