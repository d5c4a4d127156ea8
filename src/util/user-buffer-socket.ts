/**
 * util/user-buffer-socket — receive into buffers we own instead of a fresh
 * 64 KiB buffer per read. By default Node allocates a new buffer for every
 * socket read; on a stream of 1 MiB writes that is 16 short-lived buffers per
 * MiB: GC work (major marking triggered by external memory), page faults on
 * newly mapped heap, and one more copy when the payload is reassembled. Node's
 * `onread` option lets the reader name the next buffer, so a payload can land
 * directly in the buffer that goes to the disk.
 *
 * `onread` is only accepted when a Socket is constructed, and net.Server does
 * not take it: `adoptAcceptedSocket` moves an accepted socket's handle into a
 * new Socket that has it. The accepted socket must not have started reading
 * (listen with `pauseOnConnect: true`). This touches three private fields of
 * net.Socket (`_handle`, `_server`, `server`); the unit test
 * test/unit/user-buffer-socket.test.ts pins the behaviour on the Node we run.
 */
import net from 'node:net';
import { assert } from './assert.js';

export interface UserBufferRead {
  /** The buffer the next read fills; called once up front and after every read. */
  buffer: () => Buffer;
  /**
   * `bytes` were read into `buffer` (the one last returned by `buffer()`).
   * Return false to stop reading (resume with socket.resume()).
   */
  callback: (bytes: number, buffer: Buffer) => boolean;
}

/** The private parts of net.Socket moved here; typed so no `any` leaks. */
interface SocketInternals {
  _handle: unknown;
  _server: net.Server | null;
  server: net.Server | null;
}

/**
 * A new Socket on `accepted`'s connection that reads through `read`. `accepted`
 * is left detached (no handle) and must not be used again; the server's
 * connection count moves to the new socket, so server.close() still waits for it.
 */
export function adoptAcceptedSocket(accepted: net.Socket, read: UserBufferRead): net.Socket {
  const old = accepted as unknown as SocketInternals;
  const handle = old._handle;
  assert(handle !== null && handle !== undefined, 'adoptAcceptedSocket: the accepted socket has a handle');
  assert(accepted.readableFlowing !== true, 'adoptAcceptedSocket: the accepted socket has not started reading (pauseOnConnect)');
  const server = old._server;
  // Detach the old wrapper first: destroying it must neither close the handle
  // nor decrement the server's connection count (the new socket will).
  old._handle = null;
  old._server = null;
  old.server = null;
  accepted.destroy();
  // `handle` (Node's internal Pipe/TCP wrap) is accepted by the constructor but not in the public type.
  const options: net.SocketConstructorOpts & { handle: unknown; onread: UserBufferRead } = { handle, readable: true, writable: true, onread: read };
  const socket = new net.Socket(options);
  const adopted = socket as unknown as SocketInternals;
  adopted._server = server;
  adopted.server = server;
  return socket;
}

/** A client connection that reads through `read` (Node supports this publicly for connect). */
export function connectWithUserBuffer(options: net.NetConnectOpts, read: UserBufferRead): net.Socket {
  return net.connect({ ...options, onread: read } as net.NetConnectOpts);
}
