/**
 * peer/receive — the link sockets read into one reused receive buffer per
 * socket, or straight into the body of a large frame being assembled (see
 * util/user-buffer-socket and FrameDecoder.directReadTarget), instead of a
 * fresh 64 KiB buffer per read. A socket carries its ReceiveSwitch from
 * creation; set-up (peer/connection) and then the session (peer/session)
 * point it at themselves. Sockets made elsewhere (tests) have none and keep
 * Node's 'data' events.
 */
import net from 'node:net';
import type { FrameDecoder } from './codec.js';
import { adoptAcceptedSocket, connectWithUserBuffer, type UserBufferRead } from '../util/user-buffer-socket.js';

/** One socket read lands here unless a frame body is being read directly. */
const RECEIVE_BUFFER_BYTES = 64 * 1024;

export type ReceiveTarget = (bytes: number, buffer: Buffer) => boolean;

export class ReceiveSwitch {
  private readonly receiveBuffer = Buffer.allocUnsafeSlow(RECEIVE_BUFFER_BYTES);
  private decoder: FrameDecoder | null = null;
  private target: ReceiveTarget | null = null;
  readonly read: UserBufferRead = {
    buffer: () => this.decoder?.directReadTarget() ?? this.receiveBuffer,
    // No target yet (cannot happen: set-up attaches before reading starts): stop reading.
    callback: (bytes, buffer) => (this.target === null ? false : this.target(bytes, buffer)),
  };

  /** From now on reads feed `decoder` and are reported to `target` (which calls decoder.received). */
  attach(decoder: FrameDecoder, target: ReceiveTarget): void {
    this.decoder = decoder;
    this.target = target;
  }
}

const switches = new WeakMap<net.Socket, ReceiveSwitch>();

/** The switch of a link socket made by this module, or undefined (a plain socket). */
export function receiveSwitchOf(socket: net.Socket): ReceiveSwitch | undefined {
  return switches.get(socket);
}

/** An outbound link socket reading through a ReceiveSwitch. */
export function dialWithReceiveSwitch(options: net.NetConnectOpts): net.Socket {
  const sw = new ReceiveSwitch();
  const socket = connectWithUserBuffer(options, sw.read);
  switches.set(socket, sw);
  return socket;
}

/** An accepted socket (listener with pauseOnConnect) re-wrapped to read through a ReceiveSwitch. */
export function adoptWithReceiveSwitch(accepted: net.Socket): net.Socket {
  const sw = new ReceiveSwitch();
  const socket = adoptAcceptedSocket(accepted, sw.read);
  switches.set(socket, sw);
  return socket;
}
