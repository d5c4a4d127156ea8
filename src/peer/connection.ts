/**
 * peer/connection — set-up of one TCP socket before it may become the link:
 * Hello (node name, wire versions, auth algorithm), then — when a
 * cram-hmac-alg is configured — the challenge-response both ways, then the
 * choice of which socket to keep. Both nodes dial and accept, so two sockets
 * may come up at once; the node with the lower node name decides: it sends
 * Chosen on the socket it dialled (or, failing that, on one it accepted), the
 * other node echoes it and both drop every other socket. The node that accepted the kept socket holds
 * DRBD's RESOLVE_CONFLICTS. It knows nothing of parameters or packets beyond
 * set-up (peer/handshake, peer/session) and nothing of resource state.
 */
import type { Socket } from 'node:net';
import type { Logger } from '../util/log.js';
import { assert } from '../util/assert.js';
import { type AuthConfig, newChallenge, respond, verify, digestName } from './auth.js';
import { FrameDecoder, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN, ProtocolError, encodePacket, unknownVolumeMessage } from './codec.js';
import { PacketType, SetupPacketType, type WirePacket } from './packets.js';
import { receiveSwitchOf } from './receive.js';

export type SetupFailure = 'protocol-error' | 'auth-failed' | 'wrong-node' | 'timeout' | 'closed' | 'aborted';
export type SetupDirection = 'inbound' | 'outbound';

export interface SetupCallbacks {
  /** The socket passed Hello and auth; the decider may now choose it. */
  onReady(setup: SocketSetup): void;
  /** Both sides agreed on this socket. Non-decider: return false to refuse (busy). */
  onChosen(setup: SocketSetup): boolean;
  onFailed(setup: SocketSetup, failure: SetupFailure, message: string): void;
}

export interface SetupOptions {
  nodeName: string;
  peerNodeName: string;
  auth: AuthConfig | undefined;
  /** Whole set-up must finish within this, in ms. */
  timeoutMs: number;
  /** True on the node that chooses which socket to keep. */
  decider: boolean;
  /** The volumes configured locally: the frame decoder (kept by the session) skips or refuses frames for others. */
  volumes: ReadonlySet<number>;
  logger: Logger;
}

type Phase = 'hello' | 'challenge' | 'response' | 'result' | 'ready' | 'choosing' | 'done' | 'failed';

/** How long an auth refusal may take to reach the peer before the socket is destroyed. */
const REFUSAL_LINGER_MS = 200;

export class SocketSetup {
  readonly decoder: FrameDecoder;
  readonly remote: string;
  /** Agreed wire version once Hello was exchanged. */
  agreedVersion = 0;
  private phase: Phase = 'hello';
  private readonly myChallenge: Buffer | null;
  private peerVerified = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    readonly socket: Socket,
    readonly direction: SetupDirection,
    private readonly opts: SetupOptions,
    private readonly callbacks: SetupCallbacks,
  ) {
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
    const logger = opts.logger;
    this.decoder = new FrameDecoder((packet) => this.onFrame(packet), {
      volumes: opts.volumes,
      // config_unknown_volume: conn_warn(), the packet ignored, the link kept.
      onUnknownVolume: (type, volume) => logger.warn({ volume, packetType: type }, unknownVolumeMessage(type, volume)),
    });
    this.onData = this.onData.bind(this);
    this.onError = this.onError.bind(this);
    this.onSocketClose = this.onSocketClose.bind(this);
    socket.on('data', this.onData); // plain sockets; a link socket reads through its switch instead
    receiveSwitchOf(socket)?.attach(this.decoder, (bytes, buffer) => this.onReceive(bytes, buffer));
    socket.on('error', this.onError);
    socket.on('close', this.onSocketClose);
    this.timer = setTimeout(() => this.fail('timeout', 'connection set-up timed out'), opts.timeoutMs);
    this.timer.unref();

    this.myChallenge = opts.auth ? newChallenge() : null;
    this.send({
      type: SetupPacketType.Hello,
      nodeName: opts.nodeName,
      versionMin: PROTOCOL_VERSION_MIN,
      versionMax: PROTOCOL_VERSION_MAX,
      authAlg: opts.auth ? digestName(opts.auth.alg) : '',
    });
    if (this.myChallenge) this.send({ type: PacketType.AuthChallenge, challenge: this.myChallenge });
  }

  get isReady(): boolean {
    return this.phase === 'ready';
  }

  get isFinished(): boolean {
    return this.phase === 'done' || this.phase === 'failed';
  }

  /** Decider only: keep this socket. */
  choose(): void {
    assert(this.opts.decider && this.phase === 'ready', 'choose() on a ready socket of the deciding node');
    this.phase = 'choosing';
    this.send({ type: SetupPacketType.Chosen });
  }

  /** Drop this socket (another one was kept, or we are shutting down). */
  abort(message: string): void {
    this.fail('aborted', message);
  }

  /**
   * Hand the socket over (after onChosen): set-up listeners are removed; the
   * decoder keeps any bytes already received for the session.
   */
  detach(): { socket: Socket; decoder: FrameDecoder } {
    assert(this.phase === 'done', 'detach() after the socket was chosen');
    clearTimeout(this.timer);
    this.socket.off('data', this.onData);
    this.socket.off('error', this.onError);
    this.socket.off('close', this.onSocketClose);
    this.socket.pause();
    return { socket: this.socket, decoder: this.decoder };
  }

  private send(packet: WirePacket): void {
    if (this.socket.destroyed) return;
    for (const buf of encodePacket(packet)) this.socket.write(buf);
  }

  private onData(chunk: Buffer): void {
    try {
      this.decoder.push(chunk);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      this.fail('protocol-error', `Protocol error during connection set-up from ${this.remote}: ${error.message}`);
    }
  }

  private onReceive(bytes: number, buffer: Buffer): boolean {
    try {
      this.decoder.received(bytes, buffer);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      this.fail('protocol-error', `Protocol error during connection set-up from ${this.remote}: ${error.message}`);
    }
    return true;
  }

  private onFrame(packet: WirePacket): void {
    if (this.phase === 'failed') return;
    switch (this.phase) {
      case 'hello':
        if (packet.type !== SetupPacketType.Hello) throw new ProtocolError(`expected Hello packet, received type 0x${packet.type.toString(16)}`);
        this.onHello(packet.nodeName, packet.versionMin, packet.versionMax, packet.authAlg);
        return;
      case 'challenge':
        if (packet.type !== PacketType.AuthChallenge) throw new ProtocolError(`expected AuthChallenge packet, received type 0x${packet.type.toString(16)}`);
        assert(this.opts.auth && this.myChallenge, 'auth configured in challenge phase');
        if (packet.challenge.equals(this.myChallenge)) {
          this.fail('auth-failed', 'Peer presented the same challenge!');
          return;
        }
        this.send({ type: PacketType.AuthResponse, response: respond(this.opts.auth, packet.challenge) });
        this.phase = 'response';
        return;
      case 'response': {
        if (packet.type !== PacketType.AuthResponse) throw new ProtocolError(`expected AuthResponse packet, received type 0x${packet.type.toString(16)}`);
        assert(this.opts.auth && this.myChallenge, 'auth configured in response phase');
        this.peerVerified = verify(this.opts.auth, this.myChallenge, packet.response);
        this.send({ type: PacketType.AuthResult, ok: this.peerVerified });
        if (!this.peerVerified) {
          this.fail('auth-failed', 'Authentication of peer failed');
          return;
        }
        this.phase = 'result';
        return;
      }
      case 'result':
        if (packet.type !== PacketType.AuthResult) throw new ProtocolError(`expected AuthResult packet, received type 0x${packet.type.toString(16)}`);
        if (!packet.ok) {
          this.fail('auth-failed', 'Authentication of peer failed (peer refused our response)');
          return;
        }
        this.becomeReady();
        return;
      case 'ready':
      case 'choosing':
        if (packet.type !== SetupPacketType.Chosen) throw new ProtocolError(`expected Chosen packet, received type 0x${packet.type.toString(16)}`);
        this.onChosenFrame();
        return;
      case 'done':
        // Frames after the agreement belong to the session; detach() must have run synchronously.
        throw new ProtocolError('frame after set-up finished without a session');
    }
  }

  private onHello(nodeName: string, versionMin: number, versionMax: number, authAlg: string): void {
    if (nodeName !== this.opts.peerNodeName) {
      this.fail('wrong-node', `Peer presented node name ${JSON.stringify(nodeName)}, expected ${JSON.stringify(this.opts.peerNodeName)}; dropping connection from ${this.remote}`);
      return;
    }
    const agreed = Math.min(versionMax, PROTOCOL_VERSION_MAX);
    if (agreed < Math.max(versionMin, PROTOCOL_VERSION_MIN)) {
      this.fail('protocol-error', `incompatible DRBD dialects: I support ${PROTOCOL_VERSION_MIN}-${PROTOCOL_VERSION_MAX}, peer supports ${versionMin}-${versionMax}`);
      return;
    }
    this.agreedVersion = agreed;
    const myAlg = this.opts.auth ? digestName(this.opts.auth.alg) : '';
    if (authAlg !== myAlg) {
      this.fail('auth-failed', `Authentication of peer failed: peer uses cram-hmac-alg "${authAlg}", we use "${myAlg}"`);
      return;
    }
    if (this.opts.auth) this.phase = 'challenge';
    else this.becomeReady();
  }

  private becomeReady(): void {
    assert(this.opts.auth === undefined || this.peerVerified, 'peer verified before ready');
    this.phase = 'ready';
    this.callbacks.onReady(this);
  }

  private onChosenFrame(): void {
    if (this.opts.decider) {
      if (this.phase !== 'choosing') throw new ProtocolError('peer sent Chosen but it is not the deciding node');
    } else {
      this.send({ type: SetupPacketType.Chosen });
    }
    this.phase = 'done';
    if (!this.callbacks.onChosen(this)) {
      this.phase = 'ready';
      this.fail('aborted', 'peer chose a connection while we are busy');
    }
  }

  private fail(failure: SetupFailure, message: string): void {
    if (this.phase === 'failed' || this.phase === 'done') return;
    this.phase = 'failed';
    clearTimeout(this.timer);
    this.decoder.halt();
    if (failure === 'auth-failed') {
      // Let the AuthResult reach the peer, then go.
      this.socket.end();
      setTimeout(() => this.socket.destroy(), REFUSAL_LINGER_MS).unref();
    } else {
      this.socket.destroy();
    }
    this.callbacks.onFailed(this, failure, message);
  }

  private onError(error: Error): void {
    this.fail('closed', `connection to ${this.remote} failed during set-up: ${error.message}`);
  }

  private onSocketClose(): void {
    this.fail('closed', `connection to ${this.remote} closed during set-up`);
  }
}
