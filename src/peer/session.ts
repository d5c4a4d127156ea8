/**
 * peer/session — one established, authenticated peer link over a TCP socket,
 * implementing PeerChannel for replication/. It owns ordered sending with a
 * bounded send queue (high/low water marks, writes batched with cork/uncork),
 * ordered dispatch of received packets, and liveness as DRBD 8.4 does it:
 * Ping after ping-int of receive silence, "PingAck did not arrive in time."
 * after ping-timeout (NetworkFailure), send timeouts counting down ko-count
 * (Timeout). Ping/PingAck never reach the packet handler. It also switches
 * data-integrity-alg (peer/integrity) per direction exactly where DRBD does:
 * the frames after a Protocol / ProtocolUpdate it sends carry the digest
 * that packet names, and the frames after one it receives are checked with
 * the peer's. It knows nothing of how the link was set up (peer/connection)
 * or what packets mean.
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { assert } from '../util/assert.js';
import type { Logger } from '../util/log.js';
import type { LinkLossReason, PeerChannel } from './channel.js';
import { FrameDecoder, ProtocolError, encodeHead, tailOf } from './codec.js';
import { receiveSwitchOf } from './receive.js';
import { PacketType, type Packet, type ProtocolPacket, type WirePacket } from './packets.js';
import { IntegrityError, type IntegrityDigest, integrityDigest } from './integrity.js';
import { UdrbdError } from '../util/errors.js';

export interface SessionOptions {
  /** Receive silence after which we send a Ping (DRBD ping-int, in ms). */
  pingIntervalMs: number;
  /** How long to wait for a PingAck (or any data) after a Ping (DRBD ping-timeout, in ms). */
  pingTimeoutMs: number;
  /** A send that makes no progress this long counts one ko (DRBD timeout, in ms). */
  timeoutMs: number;
  /** Send timeouts in a row before the link is dropped with Timeout; 0 disables (DRBD ko-count). */
  koCount: number;
  /** send() returns false at or above this many queued bytes. */
  sendHighWaterBytes?: number;
  /** drained() resolves once queued bytes fall to this. */
  sendLowWaterBytes?: number;
  /** Hard limit on queued bytes: a caller exceeding it ignored send()'s false (a bug). */
  sendQueueBytesMax?: number;
  logger: Logger;
}

export const SEND_HIGH_WATER_BYTES_DEFAULT = 8 * 1024 * 1024;
export const SEND_LOW_WATER_BYTES_DEFAULT = 2 * 1024 * 1024;
export const SEND_QUEUE_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;
/** Packets held while no handler is registered (at most one socket chunk's worth; the socket is paused). */
const PENDING_PACKETS_MAX = 16384;
/** How long a graceful close waits for queued bytes to leave before destroying the socket. */
const GRACEFUL_CLOSE_MS = 1000;

type CloseHandler = (reason: LinkLossReason) => void;

function isSetupPacket(packet: WirePacket): boolean {
  return packet.type < PacketType.Protocol; // Hello, Chosen, Auth*
}

/** The liveness timers of a link (DRBD net options ping-int, ping-timeout, timeout, ko-count), in ms. */
export interface LinkTimers {
  pingIntervalMs: number;
  pingTimeoutMs: number;
  timeoutMs: number;
  koCount: number;
}

export class PeerSession implements PeerChannel {
  private readonly socket: Socket;
  private readonly decoder: FrameDecoder;
  private readonly logger: Logger;
  private readonly opts: Required<Omit<SessionOptions, 'logger'>>;

  private handler: ((packet: Packet) => void) | null = null;
  private readonly pending: Packet[] = [];
  private drainScheduled = false;

  private readonly closeHandlers: CloseHandler[] = [];
  private socketReleased = false;
  private releasedWaiters: Array<() => void> = [];
  private closeReason: LinkLossReason | null = null;

  // send side
  /** This node's data-integrity-alg on this link (DRBD's integrity_tfm), from the last Protocol / ProtocolUpdate sent. */
  private sendIntegrity: IntegrityDigest | null = null;
  /** The name of the peer's data-integrity-alg now in force on receive (for the change log line). */
  private peerIntegrityName: string | null = null;
  private corked = false;
  private aboveHighWater = false;
  private drainWaiters: Array<() => void> = [];
  private writesIssued = 0;
  private writesDone = 0;
  private writesDoneAtLastCheck = 0;
  private koRemaining: number;
  private sendTimer: NodeJS.Timeout | null = null;

  // liveness
  private lastReceiveMs: number;
  private pingSentMs = -1;
  private pingTimer: NodeJS.Timeout | null = null;

  /** Packets handed to the handler (not counting Ping/PingAck). */
  packetsReceived = 0;
  packetsSent = 0;

  /**
   * Takes over `socket` and the `decoder` that already consumed its set-up
   * frames (bytes it still holds belong to this session).
   */
  constructor(socket: Socket, decoder: FrameDecoder, opts: SessionOptions) {
    assert(opts.pingIntervalMs > 0 && opts.pingTimeoutMs > 0 && opts.timeoutMs > 0, 'session timers are positive');
    assert(opts.koCount >= 0, 'koCount >= 0');
    this.socket = socket;
    this.decoder = decoder;
    this.logger = opts.logger;
    this.opts = {
      pingIntervalMs: opts.pingIntervalMs,
      pingTimeoutMs: opts.pingTimeoutMs,
      timeoutMs: opts.timeoutMs,
      koCount: opts.koCount,
      sendHighWaterBytes: opts.sendHighWaterBytes ?? SEND_HIGH_WATER_BYTES_DEFAULT,
      sendLowWaterBytes: opts.sendLowWaterBytes ?? SEND_LOW_WATER_BYTES_DEFAULT,
      sendQueueBytesMax: opts.sendQueueBytesMax ?? SEND_QUEUE_BYTES_MAX_DEFAULT,
    };
    assert(this.opts.sendLowWaterBytes < this.opts.sendHighWaterBytes, 'send low water below high water');
    assert(this.opts.sendHighWaterBytes <= this.opts.sendQueueBytesMax, 'send high water within queue max');
    this.koRemaining = opts.koCount;
    this.lastReceiveMs = performance.now();

    this.onData = this.onData.bind(this);
    this.onFrame = this.onFrame.bind(this);
    this.onWriteDone = this.onWriteDone.bind(this);
    this.uncork = this.uncork.bind(this);
    this.onSocketError = this.onSocketError.bind(this);
    this.onSocketEnd = this.onSocketEnd.bind(this);
    this.onSocketClose = this.onSocketClose.bind(this);

    decoder.setHandler(this.onFrame);
    socket.on('data', this.onData); // plain sockets; a link socket reads through its switch instead
    receiveSwitchOf(socket)?.attach(decoder, (bytes, buffer) => this.onReceive(bytes, buffer));
    socket.on('error', this.onSocketError);
    socket.on('end', this.onSocketEnd);
    socket.on('close', this.onSocketClose);
    if (socket.destroyed) {
      queueMicrotask(() => this.close('BrokenPipe'));
      return;
    }
    this.schedulePingCheck(this.opts.pingIntervalMs);
    this.sendTimer = setInterval(() => this.checkSendProgress(), this.opts.timeoutMs);
    this.sendTimer.unref();
    socket.resume();
  }

  get isOpen(): boolean {
    return this.closeReason === null;
  }

  /**
   * `adjust` changed ping-int / ping-timeout / timeout / ko-count on the live
   * connection (DRBD applies net-options without reconnecting): the next ping
   * and send-progress checks use the new values.
   */
  updateTimers(timers: LinkTimers): void {
    assert(timers.pingIntervalMs > 0 && timers.pingTimeoutMs > 0 && timers.timeoutMs > 0, 'session timers are positive');
    assert(timers.koCount >= 0, 'koCount >= 0');
    const timeoutChanged = timers.timeoutMs !== this.opts.timeoutMs;
    Object.assign(this.opts, timers);
    this.koRemaining = timers.koCount;
    if (this.closeReason !== null) return;
    if (this.pingSentMs < 0) this.schedulePingCheck(this.opts.pingIntervalMs);
    if (timeoutChanged && this.sendTimer !== null) {
      clearInterval(this.sendTimer);
      this.sendTimer = setInterval(() => this.checkSendProgress(), this.opts.timeoutMs);
      this.sendTimer.unref();
    }
  }

  /** Resolves when the socket closed: no payload passed to send() is referenced any more. */
  released(): Promise<void> {
    if (this.socketReleased || this.socket.closed) return Promise.resolve();
    return new Promise((resolve) => this.releasedWaiters.push(resolve));
  }

  /** Bytes queued in the socket and not yet handed to the kernel. */
  get queuedBytes(): number {
    return this.socket.writableLength;
  }

  get bytesSent(): number {
    return this.socket.bytesWritten;
  }

  get bytesReceived(): number {
    return this.socket.bytesRead;
  }

  get remote(): string {
    return `${this.socket.remoteAddress}:${this.socket.remotePort}`;
  }

  get local(): string {
    return `${this.socket.localAddress}:${this.socket.localPort}`;
  }

  // ------------------------------------------------------------------ send

  send(packet: Packet, onReleased?: () => void): boolean {
    if (this.closeReason !== null) {
      if (onReleased !== undefined) queueMicrotask(onReleased);
      return false;
    }
    this.write(packet, onReleased);
    const queued = this.socket.writableLength;
    assert(queued <= this.opts.sendQueueBytesMax, `send queue ${queued} bytes within sendQueueBytesMax (caller ignored back-pressure)`);
    if (queued >= this.opts.sendHighWaterBytes) this.aboveHighWater = true;
    return !this.aboveHighWater;
  }

  drained(): Promise<void> {
    if (!this.aboveHighWater || this.closeReason !== null) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private write(packet: WirePacket, onReleased?: () => void): void {
    const head = encodeHead(packet, this.sendIntegrity);
    const tail = tailOf(packet);
    // __drbd_send_protocol: the algorithm changes between this packet and the next, in stream order.
    if (packet.type === PacketType.Protocol || packet.type === PacketType.ProtocolUpdate) this.sendIntegrity = integrityDigest(packet.integrityAlg);
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    // One completion callback per packet (on its last buffer) tracks send progress.
    if (tail === null) {
      this.socket.write(head, this.onWriteDone);
      if (onReleased !== undefined) queueMicrotask(onReleased); // encodeHead copied everything
    } else if (onReleased === undefined) {
      this.socket.write(head);
      this.socket.write(tail, this.onWriteDone);
    } else {
      this.socket.write(head);
      // Called once the tail reached the kernel, or with an error when the socket was destroyed.
      this.socket.write(tail, (error?: Error | null) => {
        this.onWriteDone(error);
        onReleased();
      });
    }
    this.writesIssued++;
    this.packetsSent++;
  }

  push(): void {
    if (this.corked) this.uncork();
  }

  private uncork(): void {
    this.corked = false;
    if (!this.socket.destroyed) this.socket.uncork();
  }

  private onWriteDone(error?: Error | null): void {
    if (error) return; // the socket 'error' event reports it
    this.writesDone++;
    if (this.aboveHighWater && this.socket.writableLength <= this.opts.sendLowWaterBytes) {
      this.aboveHighWater = false;
      this.releaseDrainWaiters();
    }
  }

  private releaseDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /** Runs every timeoutMs: a send queue that did not move is one ko. */
  private checkSendProgress(): void {
    if (this.closeReason !== null) return;
    const stuck = this.writesDone === this.writesDoneAtLastCheck && this.writesIssued > this.writesDone;
    this.writesDoneAtLastCheck = this.writesDone;
    if (!stuck) {
      this.koRemaining = this.opts.koCount;
      return;
    }
    if (this.opts.koCount === 0) return; // ko-count 0: never give up on a slow peer
    this.koRemaining--;
    this.logger.warn({ ko: this.koRemaining }, `sock_sendmsg time expired, ko = ${this.koRemaining}`);
    if (this.koRemaining <= 0) {
      this.logger.error('peer did not take data within ko-count * timeout, dropping connection');
      this.close('Timeout');
      return;
    }
    this.sendPing();
  }

  // ------------------------------------------------------------------ receive

  onPacket(handler: (packet: Packet) => void): void {
    this.handler = handler;
    if (this.pending.length > 0) this.scheduleDrainPending();
  }

  /** Stop delivering: packets are held (and the socket paused) until the next onPacket. */
  detachPacketHandler(): void {
    this.handler = null;
  }

  private onData(chunk: Buffer): void {
    this.onReceive(chunk.length, chunk, false);
  }

  private onReceive(bytes: number, buffer: Buffer, reused = true): boolean {
    this.lastReceiveMs = performance.now();
    try {
      if (reused) this.decoder.received(bytes, buffer);
      else this.decoder.push(buffer);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      if (error instanceof IntegrityError) {
        this.logger.error({ offsetBytes: error.offsetBytes, lengthBytes: error.lengthBytes }, error.message);
      } else {
        this.logger.error({ err: error.message }, `Protocol error from peer: ${error.message}`);
      }
      this.close('ProtocolError');
    }
    return true;
  }

  /**
   * receive_protocol: the peer's data-integrity-alg applies from the frame
   * after its Protocol / ProtocolUpdate. A name this node cannot compute
   * leaves the check off on a Protocol (the handshake's compatibility check
   * then refuses the link, as both names must be equal) and drops the link
   * on a ProtocolUpdate ("peer data-integrity-alg %s not supported").
   */
  private adoptPeerIntegrity(packet: ProtocolPacket): void {
    let digest: IntegrityDigest | null;
    try {
      digest = integrityDigest(packet.integrityAlg);
    } catch (error) {
      if (!(error instanceof UdrbdError)) throw error;
      this.decoder.setPeerIntegrity(null);
      if (packet.type === PacketType.ProtocolUpdate) throw new ProtocolError(`peer data-integrity-alg ${packet.integrityAlg} not supported`);
      return;
    }
    if (packet.type === PacketType.ProtocolUpdate && (digest?.name ?? '') !== (this.peerIntegrityName ?? '')) {
      this.logger.info({ integrityAlg: packet.integrityAlg || null }, `peer data-integrity-alg: ${packet.integrityAlg || '(none)'}`);
    }
    this.peerIntegrityName = digest?.name ?? null;
    this.decoder.setPeerIntegrity(digest);
  }

  private onFrame(packet: WirePacket): void {
    if (this.closeReason !== null) return;
    if (packet.type === PacketType.Ping) {
      this.write({ type: PacketType.PingAck });
      return;
    }
    if (packet.type === PacketType.PingAck) return; // lastReceiveMs already advanced
    if (isSetupPacket(packet)) throw new ProtocolError(`unexpected set-up packet 0x${packet.type.toString(16)} on an established link`);
    if (packet.type === PacketType.Protocol || packet.type === PacketType.ProtocolUpdate) this.adoptPeerIntegrity(packet);
    this.packetsReceived++;
    const handler = this.handler;
    if (handler !== null && this.pending.length === 0) {
      handler(packet as Packet);
      return;
    }
    if (this.pending.length >= PENDING_PACKETS_MAX) throw new ProtocolError('too many packets while no receiver is attached');
    this.pending.push(packet as Packet);
    this.socket.pause();
    if (handler !== null) this.scheduleDrainPending();
  }

  private scheduleDrainPending(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    setImmediate(() => {
      this.drainScheduled = false;
      while (this.pending.length > 0 && this.handler !== null && this.closeReason === null) {
        this.handler(this.pending.shift()!);
      }
      if (this.pending.length === 0 && this.closeReason === null) this.socket.resume();
    });
  }

  // ------------------------------------------------------------------ liveness

  private schedulePingCheck(delayMs: number): void {
    if (this.pingTimer !== null) clearTimeout(this.pingTimer);
    this.pingTimer = setTimeout(() => this.checkLiveness(), Math.max(1, Math.ceil(delayMs)));
    this.pingTimer.unref();
  }

  private sendPing(): void {
    if (this.pingSentMs >= 0 || this.closeReason !== null) return;
    this.pingSentMs = performance.now();
    this.write({ type: PacketType.Ping });
    this.schedulePingCheck(this.opts.pingTimeoutMs);
  }

  private checkLiveness(): void {
    this.pingTimer = null;
    if (this.closeReason !== null) return;
    const now = performance.now();
    if (this.pingSentMs >= 0) {
      if (this.lastReceiveMs >= this.pingSentMs) {
        this.pingSentMs = -1; // anything received after the Ping proves the peer alive
      } else if (now - this.pingSentMs >= this.opts.pingTimeoutMs) {
        this.logger.error('PingAck did not arrive in time.');
        this.close('NetworkFailure');
        return;
      } else {
        this.schedulePingCheck(this.pingSentMs + this.opts.pingTimeoutMs - now);
        return;
      }
    }
    const idleMs = now - this.lastReceiveMs;
    if (idleMs >= this.opts.pingIntervalMs) this.sendPing();
    else this.schedulePingCheck(this.opts.pingIntervalMs - idleMs);
  }

  // ------------------------------------------------------------------ teardown

  onClose(handler: CloseHandler): void {
    if (this.closeReason !== null) {
      const reason = this.closeReason;
      queueMicrotask(() => handler(reason));
      return;
    }
    this.closeHandlers.push(handler);
  }

  close(reason: LinkLossReason): void {
    if (this.closeReason !== null) return;
    this.closeReason = reason;
    this.decoder.halt();
    if (this.pingTimer !== null) clearTimeout(this.pingTimer);
    if (this.sendTimer !== null) clearInterval(this.sendTimer);
    this.pingTimer = null;
    this.sendTimer = null;
    this.pending.length = 0;
    if (reason === 'Disconnecting' && !this.socket.destroyed) {
      if (this.corked) this.uncork();
      this.socket.end();
      setTimeout(() => this.socket.destroy(), GRACEFUL_CLOSE_MS).unref();
    } else {
      this.socket.destroy();
    }
    this.releaseDrainWaiters();
    this.logger.info({ reason }, `peer link closed: ${reason}`);
    const handlers = this.closeHandlers.splice(0);
    for (const handler of handlers) handler(reason);
  }

  private onSocketError(error: NodeJS.ErrnoException): void {
    const code = error.code ?? '';
    const reason: LinkLossReason = code === 'ECONNRESET' || code === 'EPIPE' ? 'BrokenPipe' : 'NetworkFailure';
    if (this.closeReason === null) this.logger.warn({ code }, `peer socket error: ${error.message}`);
    this.close(reason);
  }

  private onSocketEnd(): void {
    if (this.closeReason === null) this.logger.warn('sock was shut down by peer');
    this.close('BrokenPipe');
  }

  private onSocketClose(): void {
    this.socketReleased = true;
    for (const wake of this.releasedWaiters.splice(0)) wake();
    this.close('BrokenPipe');
  }
}
