/**
 * frontend/nbd/connection — one NBD client connection (nbdkit's connections.c
 * role): its lifecycle (socket events, handshake timeout, closing and
 * linger), the transmission phase's push parser over socket chunks and the
 * replies. Option haggling is in handshake-newstyle.ts; executing a request
 * on the device is in transmission.ts. Requests run concurrently and are
 * answered out of order with simple replies, each only after the device
 * operation (and any flush it needs) resolved, so an acknowledged write is
 * never lost when the client vanishes.
 *
 * Receiving: the socket reads into buffers this connection owns (see
 * util/user-buffer-socket): headers and small payloads into one per-connection
 * buffer, and the rest of a WRITE payload straight into the pooled buffer that
 * goes to the device — no per-read allocation, no reassembly copy.
 *
 * Limits: at most `inflightMax` requests and about `inflightBytesMax` payload
 * bytes in flight; beyond that the socket is paused (back-pressure, no
 * queue). A slot is only freed once its reply has been handed to the kernel,
 * so a client that stops reading replies also stops being read. A client
 * that does not finish the handshake within handshakeTimeoutMs, or sends
 * part of a request and then nothing for requestStallTimeoutMs, is dropped.
 *
 * Knows nothing of listeners, replication or roles: it serves one device.
 */
import type { Socket } from 'node:net';
import type { BlockDevice } from '../../disk/block-device.js';
import type { Logger } from '../../util/log.js';
import { assert, unreachable } from '../../util/assert.js';
import * as P from './protocol.js';
import { checkRequest, type ExportLimits } from './request-check.js';
import { adoptAcceptedSocket } from '../../util/user-buffer-socket.js';
import { type HandshakeIo, haggleOptions } from './handshake-newstyle.js';
import { type ReplySink, type Slot, RequestExecutor, Stage, payloadPool } from './transmission.js';

/** Everything a connection needs to know about the export it serves. */
export interface ExportConfig extends ExportLimits {
  readonly device: BlockDevice;
  readonly exportName: string;
  readonly description: string;
  readonly inflightMax: number;
  readonly inflightBytesMax: number;
  /** Option haggling must finish within this time (default HANDSHAKE_TIMEOUT_MS). */
  readonly handshakeTimeoutMs: number;
  /** A request left half sent this long is a slow-loris client (default REQUEST_STALL_TIMEOUT_MS). */
  readonly requestStallTimeoutMs: number;
}

/** Option haggling must finish within this time. */
export const HANDSHAKE_TIMEOUT_MS = 30_000;
/**
 * A client that sent part of a request (header or WRITE payload) and then no
 * byte for this long is dropped: it holds a slot and a payload buffer. Idle
 * between requests is not timed (a mounted file system may be idle for days),
 * nor a request we stopped reading ourselves (back-pressure).
 */
export const REQUEST_STALL_TIMEOUT_MS = 30_000;
/** Buffered, not yet consumed handshake bytes before the socket is paused. */
const HANDSHAKE_BUFFER_MAX_BYTES = 64 * 1024;
/** A closing connection whose client does not hang up is destroyed after this. */
const CLOSE_LINGER_MS = 5_000;
/**
 * A closing connection whose replies cannot drain (the client stopped reading)
 * is destroyed after this; device operations still complete, replies are dropped.
 */
const CLOSING_DRAIN_TIMEOUT_MS = 30_000;
/**
 * A refused WRITE's payload is read and dropped so the next request can be
 * parsed; one larger than this is not worth reading (up to 4 GiB of a client
 * that is probably not speaking NBD): hang up instead, as nbdkit does
 * ("write request too large to skip").
 */
const DISCARD_PAYLOAD_BYTES_MAX = 2 * P.PROTOCOL_PAYLOAD_MAX_BYTES;
/**
 * Per-connection receive buffer for headers, handshake bytes and the first
 * part of a payload. Reads of the rest of a WRITE payload bypass it.
 */
const RECEIVE_BUFFER_BYTES = 64 * 1024;

const EMPTY = Buffer.alloc(0);

const enum Phase {
  handshake,
  transmission,
  /** No more requests are read; waiting for in-flight ones, then the socket closes. */
  closing,
  closed,
}

const enum ParseState {
  header,
  /** Header parsed; waiting for a free slot / byte budget. */
  admit,
  payload,
  discard,
}


export class NbdConnection implements ReplySink {
  private phase = Phase.handshake;
  private parse = ParseState.header;
  private readonly requestHeader = Buffer.alloc(P.REQUEST_HEADER_BYTES);
  private requestHeaderFillBytes = 0;
  private readonly request: P.RequestHeader = { magic: 0, flags: 0, type: 0, offsetBytes: 0, lengthBytes: 0 };
  private current: Slot | null = null;
  private discardRemainingBytes = 0;
  /** Unconsumed bytes left in receiveBuffer when admission stalled (reading is stopped meanwhile). */
  private stalledChunk: Buffer | null = null;
  private stalledAt = 0;
  private stalledEnd = 0;
  private readonly receiveBuffer = Buffer.allocUnsafeSlow(RECEIVE_BUFFER_BYTES);
  private readonly socket: Socket;

  private readonly executor: RequestExecutor;
  private readonly slotsFree: Slot[] = [];
  private inflightCount = 0;
  private inflightBytes = 0;

  // Handshake byte queue.
  private handshakeChunks: Buffer[] = [];
  private handshakeBytes = 0;
  private pendingRead: { bytes: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private handshakeTimer: NodeJS.Timeout | null = null;
  /** Bytes read from the client so far, and at the last stall check. */
  private receivedBytes = 0;
  private receivedBytesAtCheck = 0;
  private stallTimer: NodeJS.Timeout | null = null;
  private stallChecksWithoutProgress = 0;
  private lingerTimer: NodeJS.Timeout | null = null;

  private socketClosed = false;
  private endSent = false;
  /** Replies of this event-loop turn are corked and leave in one writev at its end. */
  private repliesCorked = false;
  private readonly uncorkReplies = (): void => {
    this.repliesCorked = false;
    if (!this.socket.destroyed) this.socket.uncork();
  };
  private resolveDone!: () => void;
  /** Resolves when the socket is closed and no request is in flight. */
  readonly done: Promise<void> = new Promise((resolve) => (this.resolveDone = resolve));

  /**
   * @param accepted a socket from a listener with `pauseOnConnect: true`; it is
   *   re-wrapped to read into this connection's buffers and must not be used again.
   */
  constructor(
    accepted: Socket,
    private readonly config: ExportConfig,
    private readonly log: Logger,
  ) {
    assert(config.inflightMax >= 1, 'inflightMax is at least 1');
    assert(config.inflightBytesMax >= P.BLOCK_SIZE_MIN_BYTES, 'inflightBytesMax admits a sector');
    this.executor = new RequestExecutor(config.device, config.maxPayloadBytes, this, log);
    for (let i = 0; i < config.inflightMax; i++) this.slotsFree.push(this.executor.newSlot());
    const socket = adoptAcceptedSocket(accepted, {
      buffer: () => this.nextReceiveBuffer(),
      callback: (bytes, buffer) => this.onRead(bytes, buffer),
    });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.log.debug({ err: err.code ?? err.message }, 'nbd: connection error');
    });
    socket.on('close', () => this.onSocketClose());
    this.handshakeTimer = setTimeout(() => {
      this.log.warn({ timeoutMs: config.handshakeTimeoutMs }, 'nbd: handshake timed out; dropping client');
      socket.destroy();
    }, config.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    this.handshake().catch((err: Error) => {
      if (!this.socketClosed) this.log.warn({ reason: err.message }, 'nbd: handshake failed; dropping client');
      socket.destroy();
    });
  }

  /** Server shutdown: stop reading, finish in-flight requests, then close. */
  shutdown(): void {
    if (this.phase === Phase.handshake) {
      this.socket.destroy();
      return;
    }
    this.beginClosing('server shutdown');
  }

  // ---------------------------------------------------------------- handshake

  /** Greeting and option haggling (handshake-newstyle.ts), then transmission, abort or hang-up. */
  private async handshake(): Promise<void> {
    const io: HandshakeIo = {
      write: (bytes) => this.socket.write(bytes),
      cork: () => this.socket.cork(),
      uncork: () => this.socket.uncork(),
      readExact: (bytes) => this.readExact(bytes),
    };
    const outcome = await haggleOptions(io, this.config, this.log);
    switch (outcome.kind) {
      case 'transmission':
        this.enterTransmission();
        return;
      case 'abort':
        this.socket.end(outcome.lastReply);
        this.phase = Phase.closing;
        return;
      case 'hang-up':
        this.socket.destroy();
        return;
      default:
        unreachable(outcome, 'handshake outcome');
    }
  }

  private enterTransmission(): void {
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.phase = Phase.transmission;
    // Checked twice per timeout: dropped after one to one and a half timeouts without a byte.
    this.stallTimer = setInterval(() => this.checkRequestStall(), Math.max(1, Math.floor(this.config.requestStallTimeoutMs / 2)));
    this.stallTimer.unref();
    const leftover = this.handshakeBytes > 0 ? Buffer.concat(this.handshakeChunks, this.handshakeBytes) : EMPTY;
    this.handshakeChunks = [];
    this.handshakeBytes = 0;
    this.log.info({ export: this.config.exportName, sizeBytes: this.config.sizeBytes }, 'nbd: client entered transmission');
    if (leftover.length > 0) this.consume(leftover, 0, leftover.length);
    if (this.phase === Phase.transmission && this.stalledChunk === null && this.parse !== ParseState.admit) {
      this.socket.resume();
    }
  }

  /** Slow loris: part of a request arrived, then nothing, while we were reading. */
  private checkRequestStall(): void {
    const midRequest =
      (this.parse === ParseState.header && this.requestHeaderFillBytes > 0) || this.parse === ParseState.payload || this.parse === ParseState.discard;
    const progressed = this.receivedBytes !== this.receivedBytesAtCheck;
    this.receivedBytesAtCheck = this.receivedBytes;
    if (this.phase !== Phase.transmission || !midRequest || this.stalledChunk !== null || progressed) {
      this.stallChecksWithoutProgress = 0;
      return;
    }
    if (++this.stallChecksWithoutProgress < 2) return;
    this.log.warn({ timeoutMs: this.config.requestStallTimeoutMs }, 'nbd: client sent part of a request and then nothing; dropping client');
    this.socket.destroy();
  }

  private readExact(bytes: number): Promise<Buffer> {
    assert(this.pendingRead === null, 'one handshake read at a time');
    if (this.handshakeBytes >= bytes) return Promise.resolve(this.takeHandshakeBytes(bytes));
    if (this.socketClosed) return Promise.reject(new Error('client closed the connection during the handshake'));
    return new Promise((resolve, reject) => {
      this.pendingRead = { bytes, resolve, reject };
      this.socket.resume();
    });
  }

  private takeHandshakeBytes(bytes: number): Buffer {
    const all = this.handshakeChunks.length === 1 ? this.handshakeChunks[0]! : Buffer.concat(this.handshakeChunks, this.handshakeBytes);
    const out = all.subarray(0, bytes);
    const rest = all.subarray(bytes);
    this.handshakeChunks = rest.length > 0 ? [rest] : [];
    this.handshakeBytes = rest.length;
    return out;
  }

  // ---------------------------------------------------------------- socket events

  /**
   * Where the next socket read lands: the rest of the WRITE payload being
   * received, or the receive buffer. Called after every read (and once when
   * the socket is set up, before the handshake).
   */
  private nextReceiveBuffer(): Buffer {
    const slot = this.current;
    if (this.phase === Phase.transmission && this.parse === ParseState.payload && slot !== null && slot.data !== null) {
      return slot.data.subarray(slot.payloadFillBytes, slot.lengthBytes);
    }
    return this.receiveBuffer;
  }

  /** `bytes` were read into `buffer` (the receive buffer or a payload tail); false stops reading. */
  private onRead(bytes: number, buffer: Buffer): boolean {
    this.receivedBytes += bytes;
    if (buffer !== this.receiveBuffer) {
      // A payload tail handed out by nextReceiveBuffer: the state cannot have moved since
      // (only reads advance the parser, and the socket is closed before a partial slot is dropped).
      const slot = this.current;
      assert(this.parse === ParseState.payload && slot !== null && slot.data !== null && buffer.buffer === slot.data.buffer, 'a direct payload read belongs to the write being received');
      assert(bytes <= slot.lengthBytes - slot.payloadFillBytes, 'a direct payload read stays inside its payload');
      slot.payloadFillBytes += bytes;
      if (slot.payloadFillBytes === slot.lengthBytes) {
        this.current = null;
        this.parse = ParseState.header;
        this.executor.startWrite(slot);
      }
      return this.phase === Phase.transmission;
    }
    if (this.phase === Phase.transmission) {
      this.consume(buffer, 0, bytes);
      return this.stalledChunk === null && this.phase === Phase.transmission;
    }
    // Closing: bytes after DISC / a violation are dropped, but reading goes on so the client's hang-up is seen.
    if (this.phase !== Phase.handshake) return this.endSent;
    // Handshake bytes are kept across reads: copy them out of the reused receive buffer.
    const chunk = Buffer.from(buffer.subarray(0, bytes));
    this.handshakeChunks.push(chunk);
    this.handshakeBytes += chunk.length;
    if (this.handshakeBytes > HANDSHAKE_BUFFER_MAX_BYTES) this.socket.pause();
    const pending = this.pendingRead;
    if (pending && this.handshakeBytes >= pending.bytes) {
      this.pendingRead = null;
      pending.resolve(this.takeHandshakeBytes(pending.bytes));
    }
    return this.handshakeBytes <= HANDSHAKE_BUFFER_MAX_BYTES;
  }

  private onSocketClose(): void {
    this.socketClosed = true;
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    if (this.stallTimer) clearInterval(this.stallTimer);
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    const pending = this.pendingRead;
    this.pendingRead = null;
    if (pending) pending.reject(new Error('client closed the connection during the handshake'));
    this.stalledChunk = null;
    if (this.phase !== Phase.closed) {
      this.phase = Phase.closing;
      // A write whose payload was still arriving never reaches the device and is never answered:
      // give its slot back, or the connection would wait for it forever.
      const partial = this.current;
      if (partial !== null) {
        this.current = null;
        this.parse = ParseState.header;
        this.discardRemainingBytes = 0;
        this.log.info({ offset: partial.offsetBytes, length: partial.lengthBytes, receivedBytes: partial.payloadFillBytes }, 'nbd: client disconnected in the middle of a write payload; dropping that write');
        this.release(partial);
      }
      if (this.inflightCount > 0) {
        this.log.info({ inflight: this.inflightCount }, 'nbd: client disconnected with requests in flight; completing them');
      }
    }
    this.maybeDone();
  }

  private beginClosing(reason: string): void {
    if (this.phase === Phase.closing || this.phase === Phase.closed) return;
    this.log.debug({ reason }, 'nbd: closing connection');
    this.phase = Phase.closing;
    this.stalledChunk = null;
    this.socket.pause();
    if (!this.lingerTimer) {
      this.lingerTimer = setTimeout(() => this.socket.destroy(), CLOSING_DRAIN_TIMEOUT_MS);
      this.lingerTimer.unref();
    }
    this.maybeDone();
  }

  /** Malformed traffic: stop reading, let in-flight requests finish, hang up. */
  private protocolViolation(reason: string): void {
    this.log.warn({ reason }, 'nbd: protocol violation by client; closing connection');
    this.beginClosing(reason);
  }

  private maybeDone(): void {
    if (this.phase !== Phase.closing || this.inflightCount > 0) return;
    if (!this.socketClosed) {
      if (this.endSent) return;
      this.endSent = true;
      if (this.repliesCorked) this.uncorkReplies();
      // All replies are queued; end() flushes them, then the client hangs up. Reading
      // was stopped when closing began; resume it (discarding) to see that hang-up.
      this.socket.end();
      this.socket.resume();
      if (this.lingerTimer) clearTimeout(this.lingerTimer);
      this.lingerTimer = setTimeout(() => this.socket.destroy(), CLOSE_LINGER_MS);
      this.lingerTimer.unref();
      return;
    }
    this.phase = Phase.closed;
    this.resolveDone();
  }

  // ---------------------------------------------------------------- transmission parser

  /**
   * Consumes `chunk` bytes [at, end); stalls (pauses the socket, keeping the
   * rest in place) when limits are reached. `chunk` may be the reused receive
   * buffer, so nothing here keeps a reference to it beyond a stall.
   */
  private consume(chunk: Buffer, at: number, end: number): void {
    for (;;) {
      if (this.phase !== Phase.transmission) return;
      if (this.parse === ParseState.admit) {
        if (!this.admit()) {
          this.stalledChunk = chunk;
          this.stalledAt = at;
          this.stalledEnd = end;
          this.socket.pause();
          return;
        }
        continue;
      }
      if (at >= end) return;
      if (this.parse === ParseState.header) {
        const n = Math.min(P.REQUEST_HEADER_BYTES - this.requestHeaderFillBytes, end - at);
        chunk.copy(this.requestHeader, this.requestHeaderFillBytes, at, at + n);
        this.requestHeaderFillBytes += n;
        at += n;
        if (this.requestHeaderFillBytes < P.REQUEST_HEADER_BYTES) return;
        this.requestHeaderFillBytes = 0;
        P.decodeRequestHeader(this.requestHeader, 0, this.request);
        if (this.request.magic !== P.REQUEST_MAGIC) {
          this.protocolViolation(`bad request magic 0x${this.request.magic.toString(16)}`);
          return;
        }
        if (this.request.type === P.CMD_DISC) {
          this.log.debug('nbd: client sent NBD_CMD_DISC');
          this.beginClosing('NBD_CMD_DISC');
          return;
        }
        this.parse = ParseState.admit;
      } else if (this.parse === ParseState.payload) {
        // The start of a payload that shared a read with its header; the rest (if any)
        // is read straight into slot.data (nextReceiveBuffer).
        const slot = this.current!;
        const n = Math.min(slot.lengthBytes - slot.payloadFillBytes, end - at);
        chunk.copy(slot.data!, slot.payloadFillBytes, at, at + n);
        slot.payloadFillBytes += n;
        at += n;
        if (slot.payloadFillBytes < slot.lengthBytes) return;
        this.current = null;
        this.parse = ParseState.header;
        this.executor.startWrite(slot);
      } else {
        const n = Math.min(this.discardRemainingBytes, end - at);
        this.discardRemainingBytes -= n;
        at += n;
        if (this.discardRemainingBytes > 0) return;
        const slot = this.current!;
        this.current = null;
        this.parse = ParseState.header;
        this.reply(slot, slot.presetError);
      }
    }
  }

  /** Takes a slot for the parsed header if the limits allow; sets the next parse state. */
  private admit(): boolean {
    const r = this.request;
    const c = this.config;
    const error = checkRequest(r.type, r.flags, r.offsetBytes, r.lengthBytes, c);
    const payloadBytes = error === P.NBD_OK && (r.type === P.CMD_READ || r.type === P.CMD_WRITE) ? r.lengthBytes : 0;
    if (r.type === P.CMD_WRITE && error !== P.NBD_OK && r.lengthBytes > DISCARD_PAYLOAD_BYTES_MAX) {
      this.parse = ParseState.header;
      this.protocolViolation(`NBD_CMD_WRITE of ${r.lengthBytes} bytes is too large to skip (limit ${DISCARD_PAYLOAD_BYTES_MAX})`);
      return true;
    }
    if (this.slotsFree.length === 0) return false;
    if (this.inflightCount > 0 && this.inflightBytes + payloadBytes > c.inflightBytesMax) return false;

    const slot = this.slotsFree.pop()!;
    this.inflightCount++;
    this.inflightBytes += payloadBytes;
    slot.type = r.type;
    slot.flags = r.flags;
    slot.offsetBytes = r.offsetBytes;
    slot.lengthBytes = r.lengthBytes;
    slot.costBytes = payloadBytes;
    slot.data = null;
    slot.pool = null;
    slot.payloadFillBytes = 0;
    slot.presetError = error;
    slot.stage = Stage.reply;
    slot.progressBytes = 0;
    this.requestHeader.copy(slot.replyHeader, 8, 8, 16);

    if (r.type === P.CMD_WRITE && r.lengthBytes > 0) {
      this.current = slot;
      if (error === P.NBD_OK) {
        slot.data = payloadPool.take(r.lengthBytes);
        slot.pool = payloadPool;
        this.parse = ParseState.payload;
      } else {
        // The payload follows the header whatever we think of it: skip it, then reply.
        this.discardRemainingBytes = r.lengthBytes;
        this.parse = ParseState.discard;
      }
      return true;
    }
    this.parse = ParseState.header;
    if (error !== P.NBD_OK) {
      this.log.debug({ cmd: P.commandName(r.type), offset: r.offsetBytes, length: r.lengthBytes, error }, 'nbd: request refused');
      this.reply(slot, error);
      return true;
    }
    this.executor.start(slot);
    return true;
  }


  // ---------------------------------------------------------------- replies

  reply(slot: Slot, error: number): void {
    if (this.socketClosed || this.socket.destroyed || !this.socket.writable) {
      this.release(slot);
      return;
    }
    slot.replyHeader.writeUInt32BE(error, 4);
    if (!this.repliesCorked) {
      // Batch: every reply completed in this turn of the event loop goes out in one syscall.
      this.repliesCorked = true;
      this.socket.cork();
      setImmediate(this.uncorkReplies);
    }
    if (error === P.NBD_OK && slot.type === P.CMD_READ) {
      this.socket.cork();
      this.socket.write(slot.replyHeader);
      this.socket.write(slot.data!, slot.onReplyWritten);
      this.socket.uncork();
    } else {
      this.socket.write(slot.replyHeader, slot.onReplyWritten);
    }
  }

  /** The reply left for the kernel (or the socket died): the slot is free again. */
  replyWritten(slot: Slot): void {
    this.release(slot);
  }

  private release(slot: Slot): void {
    // The reply is in the kernel and the device (and any peer send) is done with the payload.
    if (slot.pool !== null) slot.pool.give(slot.data!);
    slot.data = null;
    slot.pool = null;
    this.inflightCount--;
    this.inflightBytes -= slot.costBytes;
    assert(this.inflightCount >= 0 && this.inflightBytes >= 0, 'in-flight accounting never goes negative');
    this.slotsFree.push(slot);
    if (this.stalledChunk !== null || (this.parse === ParseState.admit && this.phase === Phase.transmission)) {
      const chunk = this.stalledChunk ?? EMPTY;
      const at = this.stalledAt;
      const end = this.stalledChunk === null ? 0 : this.stalledEnd;
      this.stalledChunk = null;
      this.stalledAt = 0;
      this.stalledEnd = 0;
      this.consume(chunk, at, end);
      if (this.phase === Phase.transmission && this.parse !== ParseState.admit) this.socket.resume();
    }
    this.maybeDone();
  }
}
