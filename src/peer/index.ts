/**
 * peer/ — the link between the two nodes of a resource. Public API:
 *
 *   const connector = new PeerConnector({
 *     localAddress: { host: '127.0.0.1', port: 7701 },   // listen here; dial out from this host
 *     peerAddress:  { host: '127.0.0.2', port: 7701 },   // dial here; accept only from this host
 *     nodeName: 'compute1', peerNodeName: 'compute2',
 *     auth: { alg: 'sha256', secret: '...' },           // optional cram-hmac-alg + shared-secret
 *     connectIntervalMs, pingIntervalMs, pingTimeoutMs, timeoutMs, koCount,  // net section, in ms
 *     logger,
 *   });
 *   connector.on('connected', (r: HandshakeResult) => { r.session.onPacket(...); ... });
 *   connector.on('disconnected', (reason: LinkLossReason) => ...);   // a connected link was lost; retrying
 *   connector.on('incompatible', (message: string) => ...);          // "incompatible ... settings": now StandAlone
 *   connector.on('refused', (info: RefusedInfo) => ...);             // a socket was refused (logged already)
 *   connector.on('cstate', (state: ConnectorState) => ...);
 *   connector.on('listening' | 'listen-failed', (err?: NodeJS.ErrnoException) => ...); // each listen attempt
 *   connector.start(() => localParams);  // WFConnection: listen + dial every connectIntervalMs
 *   await connector.stop();              // StandAlone: close everything
 *
 * While WFConnection it listens on localAddress and dials peerAddress every
 * connectIntervalMs; sockets from any other host are closed and logged. When
 * both dials succeed at once the connection dialled by the node with the
 * lower node name stays (see peer/connection). After set-up and auth the parameters
 * are exchanged (peer/handshake) and 'connected' fires with the session
 * (peer/session, a PeerChannel) — its packets are held until the caller
 * registers onPacket. When that session closes the connector goes back to
 * WFConnection by itself. It knows nothing of disks, roles or UUID rules.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Logger } from '../util/log.js';
import { assert } from '../util/assert.js';
import { type AuthConfig, validateAuth } from './auth.js';
import type { LinkLossReason } from './channel.js';
import { SocketSetup, type SetupCallbacks, type SetupDirection, type SetupFailure } from './connection.js';
import { HandshakeFailedError, IncompatibleSettingsError, exchangeParams, type HandshakeResult, type LocalParams } from './handshake.js';
import { PeerSession } from './session.js';
import { adoptWithReceiveSwitch, dialWithReceiveSwitch } from './receive.js';
import { applySocketBuffers, type SocketBufferSizes } from './socket-buffers.js';

export type { AuthConfig } from './auth.js';
export type { LinkLossReason, PeerChannel } from './channel.js';
export type {
  HandshakeResult, LocalParams, LocalVolumeParams, PeerConnectionParams, PeerParams, PeerVolumeParams,
} from './handshake.js';
export { EXCHANGED_VOLUMES_MAX, checkCompatibility, peerParams } from './handshake.js';
export { IntegrityError, type IntegrityDigest, integrityDigest } from './integrity.js';
export { PeerSession } from './session.js';
export { ProtocolError, PROTOCOL_VERSION, FRAME_BYTES_MAX, PAYLOAD_BYTES_MAX, releaseReceivedPayload } from './codec.js';

export interface PeerAddress {
  host: string;
  port: number;
}

export interface PeerConnectorOptions {
  localAddress: PeerAddress;
  peerAddress: PeerAddress;
  nodeName: string;
  peerNodeName: string;
  auth?: AuthConfig;
  /** DRBD connect-int, in ms. */
  connectIntervalMs: number;
  /** DRBD ping-int, in ms. */
  pingIntervalMs: number;
  /** DRBD ping-timeout, in ms. */
  pingTimeoutMs: number;
  /** DRBD timeout, in ms. */
  timeoutMs: number;
  /** DRBD ko-count (0 disables). */
  koCount: number;
  /**
   * Hosts inbound connections may come from (default: peerAddress.host). Only
   * for set-ups where the dial target is not the peer itself (a test proxy).
   */
  peerAcceptHosts?: string[];
  /** Limit for socket set-up and for the parameter exchange, each, in ms (default 10 s). */
  handshakeTimeoutMs?: number;
  sendHighWaterBytes?: number;
  sendLowWaterBytes?: number;
  /** DRBD sndbuf-size / rcvbuf-size in bytes (0 or absent = kernel auto-tuning); see peer/socket-buffers. */
  socketBuffers?: SocketBufferSizes;
  /**
   * The volumes configured locally (DRBD's tconn->volumes): per-volume frames
   * for any other volume are skipped (configuration packets) or break the
   * link (data-path packets); see peer/frame-decoder.
   */
  volumes: ReadonlySet<number>;
  logger: Logger;
}

export type ConnectorState = 'StandAlone' | 'WFConnection' | 'WFReportParams' | 'Connected';

export interface RefusedInfo {
  reason: 'unknown-address' | 'auth-failed' | 'protocol-error' | 'wrong-node';
  remote: string;
  message: string;
}

/** Sockets in set-up at once; more are closed (a peer has at most two, one per direction). */
const SETUPS_MAX = 4;
const HANDSHAKE_TIMEOUT_MS_DEFAULT = 10_000;

function normaliseHost(host: string | undefined): string {
  if (host === undefined) return '';
  return host.startsWith('::ffff:') ? host.slice(7) : host;
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

export class PeerConnector extends EventEmitter {
  private opts: PeerConnectorOptions;
  private readonly logger: Logger;
  private readonly decider: boolean;
  private readonly handshakeTimeoutMs: number;
  private state: ConnectorState = 'StandAlone';
  private getLocalParams: (() => LocalParams | Promise<LocalParams>) | null = null;

  private server: net.Server | null = null;
  private listening = false;
  private dialing: net.Socket | null = null;
  private dialTimer: NodeJS.Timeout | null = null;
  private listenRetryTimer: NodeJS.Timeout | null = null;
  private readonly setups = new Set<SocketSetup>();
  private chosen: SocketSetup | null = null;
  private current: PeerSession | null = null;
  private readonly callbacks: SetupCallbacks;

  constructor(opts: PeerConnectorOptions) {
    super();
    assert(opts.nodeName !== opts.peerNodeName, 'node and peer have different names');
    assert(opts.connectIntervalMs > 0, 'connectIntervalMs > 0');
    if (opts.auth) validateAuth(opts.auth);
    this.opts = opts;
    this.logger = opts.logger;
    this.decider = opts.nodeName < opts.peerNodeName;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS_DEFAULT;
    this.callbacks = {
      onReady: (s) => this.onSetupReady(s),
      onChosen: (s) => this.onSetupChosen(s),
      onFailed: (s, f, m) => this.onSetupFailed(s, f, m),
    };
  }

  get cstate(): ConnectorState {
    return this.state;
  }

  /** The established session, if Connected. */
  get session(): PeerSession | null {
    return this.state === 'Connected' ? this.current : null;
  }

  /** True once the listening socket is bound. */
  get isListening(): boolean {
    return this.listening;
  }

  /**
   * `adjust` changed net options on a configured connection: the liveness
   * timers apply to the established session at once; connect-int and the
   * authentication apply from the next connection attempt (as in DRBD).
   */
  updateOptions(changes: Pick<PeerConnectorOptions, 'connectIntervalMs' | 'pingIntervalMs' | 'pingTimeoutMs' | 'timeoutMs' | 'koCount' | 'auth'>): void {
    assert(changes.connectIntervalMs > 0, 'connectIntervalMs > 0');
    if (changes.auth) validateAuth(changes.auth);
    const intervalChanged = changes.connectIntervalMs !== this.opts.connectIntervalMs;
    const { auth, ...rest } = changes;
    this.opts = { ...this.opts, ...rest };
    if (auth) this.opts.auth = auth;
    else delete this.opts.auth;
    this.current?.updateTimers({ pingIntervalMs: rest.pingIntervalMs, pingTimeoutMs: rest.pingTimeoutMs, timeoutMs: rest.timeoutMs, koCount: rest.koCount });
    if (intervalChanged && this.dialTimer !== null) {
      clearInterval(this.dialTimer);
      this.dialTimer = setInterval(() => this.dial(), this.opts.connectIntervalMs);
      this.dialTimer.unref();
    }
  }

  /** Begin WFConnection. `getLocalParams` is called for every connection attempt. */
  start(getLocalParams: () => LocalParams | Promise<LocalParams>): void {
    assert(this.state === 'StandAlone', 'start() while StandAlone');
    this.getLocalParams = getLocalParams;
    this.setState('WFConnection');
    this.listen();
    this.dial();
    this.dialTimer = setInterval(() => this.dial(), this.opts.connectIntervalMs);
    this.dialTimer.unref();
  }

  /** Go StandAlone: close the link (gracefully), all set-up sockets and the listener. */
  async stop(): Promise<void> {
    this.teardown();
    const server = this.server;
    this.server = null;
    this.listening = false;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private teardown(): void {
    this.setState('StandAlone');
    if (this.dialTimer) clearInterval(this.dialTimer);
    if (this.listenRetryTimer) clearTimeout(this.listenRetryTimer);
    this.dialTimer = null;
    this.listenRetryTimer = null;
    this.dialing?.destroy();
    this.dialing = null;
    for (const setup of [...this.setups]) setup.abort('connector stopped');
    this.setups.clear();
    this.chosen = null;
    const session = this.current;
    this.current = null;
    session?.close('Disconnecting');
  }

  private setState(next: ConnectorState): void {
    if (next === this.state) return;
    this.logger.debug({ from: this.state, to: next }, `peer link ${this.state} -> ${next}`);
    this.state = next;
    this.emit('cstate', next);
  }

  // ---------------------------------------------------------------- sockets

  private listen(): void {
    if (this.state === 'StandAlone' || this.server) return;
    // Paused until adopted by a ReceiveSwitch (reads into our buffers; peer/receive).
    const server = net.createServer({ pauseOnConnect: true });
    this.server = server;
    server.on('connection', (socket) => this.onInbound(socket));
    server.on('error', (error: NodeJS.ErrnoException) => {
      this.logger.error({ code: error.code }, `Failed to listen on ${this.opts.localAddress.host}:${this.opts.localAddress.port}: ${error.message}`);
      this.emit('listen-failed', error);
      server.close();
      if (this.server === server) this.server = null;
      this.listening = false;
      if (this.state !== 'StandAlone') {
        this.listenRetryTimer = setTimeout(() => this.listen(), this.opts.connectIntervalMs);
        this.listenRetryTimer.unref();
      }
    });
    server.listen({ host: this.opts.localAddress.host, port: this.opts.localAddress.port }, () => {
      this.listening = true;
      this.emit('listening');
    });
  }

  private onInbound(accepted: net.Socket): void {
    const socket = adoptWithReceiveSwitch(accepted);
    const host = normaliseHost(socket.remoteAddress);
    const remote = `${host}:${socket.remotePort}`;
    socket.on('error', () => undefined); // errors after refusal are irrelevant
    const allowed = this.opts.peerAcceptHosts ?? [this.opts.peerAddress.host];
    if (!allowed.some((h) => normaliseHost(h) === host)) {
      const message = `Closing unexpected connection from ${remote} (not the configured peer ${allowed.join(', ')})`;
      this.logger.warn({ remote }, message);
      socket.destroy();
      this.emit('refused', { reason: 'unknown-address', remote, message } satisfies RefusedInfo);
      return;
    }
    if (this.state !== 'WFConnection' || this.setups.size >= SETUPS_MAX) {
      this.logger.debug({ remote, state: this.state }, 'closing connection attempt: not waiting for a connection');
      socket.destroy();
      return;
    }
    this.beginSetup(socket, 'inbound');
  }

  private dial(): void {
    if (this.state !== 'WFConnection' || this.dialing !== null) return;
    const { host, port } = this.opts.peerAddress;
    const localHost = this.opts.localAddress.host;
    const socket = dialWithReceiveSwitch({ host, port, ...(isWildcard(localHost) ? {} : { localAddress: localHost }) });
    this.dialing = socket;
    socket.setTimeout(this.opts.connectIntervalMs);
    const done = (): void => {
      if (this.dialing === socket) this.dialing = null;
    };
    socket.once('timeout', () => {
      done();
      socket.destroy();
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      done();
      this.logger.debug({ code: error.code }, `connect to ${host}:${port} failed: ${error.message}`);
    });
    socket.once('connect', () => {
      done();
      socket.setTimeout(0);
      socket.removeAllListeners('timeout');
      if (this.state !== 'WFConnection' || this.setups.size >= SETUPS_MAX) {
        socket.destroy();
        return;
      }
      this.beginSetup(socket, 'outbound');
    });
  }

  private beginSetup(socket: net.Socket, direction: SetupDirection): void {
    socket.setNoDelay(true);
    if (!this.applySocketBuffers(socket)) return;
    const setup = new SocketSetup(
      socket,
      direction,
      {
        nodeName: this.opts.nodeName,
        peerNodeName: this.opts.peerNodeName,
        auth: this.opts.auth,
        timeoutMs: this.handshakeTimeoutMs,
        decider: this.decider,
        volumes: this.opts.volumes,
        logger: this.logger,
      },
      this.callbacks,
    );
    if (!setup.isFinished) this.setups.add(setup);
  }

  /** sndbuf-size / rcvbuf-size; a socket they cannot be set on is closed (config/support refuses that set-up). */
  private applySocketBuffers(socket: net.Socket): boolean {
    const sizes = this.opts.socketBuffers;
    if (!sizes || (sizes.sndbufSizeBytes === 0 && sizes.rcvbufSizeBytes === 0)) return true;
    try {
      const got = applySocketBuffers(socket, sizes);
      this.logger.debug({ ...got }, `peer socket buffers: sndbuf ${got.sndbufBytes} rcvbuf ${got.rcvbufBytes} bytes`);
      return true;
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, `cannot set sndbuf-size/rcvbuf-size on the peer socket: ${(err as Error).message}`);
      socket.destroy();
      return false;
    }
  }

  // ---------------------------------------------------------------- set-up outcome

  private onSetupReady(setup: SocketSetup): void {
    if (!this.decider) return; // wait for the peer's Chosen
    this.chooseNext();
  }

  /**
   * Decider: keep the socket this node dialled (the deterministic rule: the
   * connection initiated by the lower node name wins); take an accepted one
   * only when no dialled socket is in set-up any more.
   */
  private chooseNext(): void {
    if (this.state !== 'WFConnection' || this.chosen !== null) return;
    let inboundReady: SocketSetup | null = null;
    for (const candidate of this.setups) {
      if (candidate.direction === 'outbound') {
        if (candidate.isReady) return this.choose(candidate);
        if (!candidate.isFinished) return; // our own dial is still in set-up: wait for it
      } else if (candidate.isReady && inboundReady === null) {
        inboundReady = candidate;
      }
    }
    if (inboundReady !== null) this.choose(inboundReady);
  }

  private choose(setup: SocketSetup): void {
    this.chosen = setup;
    setup.choose();
  }

  private onSetupChosen(setup: SocketSetup): boolean {
    if (this.state !== 'WFConnection' || this.current !== null) return false;
    assert(!this.decider || this.chosen === setup, 'decider agrees only on the socket it chose');
    this.setups.delete(setup);
    this.chosen = null;
    for (const other of [...this.setups]) other.abort('simultaneous connect resolved: keeping the other connection');
    this.setups.clear();
    this.dialing?.destroy();
    this.dialing = null;

    const { socket, decoder } = setup.detach();
    const resolveConflicts = setup.direction === 'inbound';
    const session = new PeerSession(socket, decoder, {
      pingIntervalMs: this.opts.pingIntervalMs,
      pingTimeoutMs: this.opts.pingTimeoutMs,
      timeoutMs: this.opts.timeoutMs,
      koCount: this.opts.koCount,
      sendHighWaterBytes: this.opts.sendHighWaterBytes,
      sendLowWaterBytes: this.opts.sendLowWaterBytes,
      logger: this.logger,
    });
    this.current = session;
    this.setState('WFReportParams');
    this.logger.info(
      { remote: setup.remote, direction: setup.direction, resolveConflicts },
      `Handshake successful: Agreed network protocol version ${setup.agreedVersion}`,
    );
    session.onClose((reason) => this.onSessionClosed(session, reason));
    assert(this.getLocalParams !== null, 'local params callback set by start()');
    exchangeParams(session, this.getLocalParams, {
      timeoutMs: this.handshakeTimeoutMs,
      resolveConflicts,
      agreedVersion: setup.agreedVersion,
      logger: this.logger,
    }).then(
      (result) => {
        if (this.current !== session || !session.isOpen) return;
        this.setState('Connected');
        this.emit('connected', result satisfies HandshakeResult);
      },
      (error: unknown) => {
        if (this.current !== session) return;
        if (error instanceof IncompatibleSettingsError) {
          // DRBD: conn( WFReportParams -> Disconnecting ) then StandAlone, no retry.
          this.current = null;
          session.close('Disconnecting');
          this.teardown();
          this.emit('incompatible', error.message);
          return;
        }
        const message = error instanceof HandshakeFailedError ? error.message : String(error);
        this.logger.warn(`connection handshake failed: ${message}`);
        session.close('NetworkFailure');
      },
    );
    return true;
  }

  private onSetupFailed(setup: SocketSetup, failure: SetupFailure, message: string): void {
    this.setups.delete(setup);
    if (this.chosen === setup) this.chosen = null;
    if (failure === 'auth-failed' || failure === 'protocol-error' || failure === 'wrong-node') {
      this.logger.warn({ remote: setup.remote, failure }, message);
      this.emit('refused', { reason: failure, remote: setup.remote, message } satisfies RefusedInfo);
    } else {
      this.logger.debug({ remote: setup.remote, failure }, message);
    }
    if (this.decider) this.chooseNext();
  }

  private onSessionClosed(session: PeerSession, reason: LinkLossReason): void {
    if (this.current !== session) return;
    this.current = null;
    const wasConnected = this.state === 'Connected';
    this.setState('WFConnection');
    if (wasConnected) this.emit('disconnected', reason);
    setImmediate(() => this.dial());
  }
}
