/**
 * peer/socket-buffers — net { sndbuf-size; rcvbuf-size; } on the peer link's
 * TCP socket: SO_SNDBUF / SO_RCVBUF through native/udrbd-io (Node has no
 * setsockopt). 0 leaves the kernel's auto-tuning on, DRBD's default. The
 * socket ends up with exactly the configured size, as DRBD's in-kernel
 * assignment gives (the addon halves what it passes to setsockopt, which
 * doubles it). Without the addon the sizes cannot be set: config/support
 * refuses the options then (socketBufferSupport gives the reason).
 * Knows nothing of the link's packets or states.
 */
import type net from 'node:net';
import { loadNativeAddon } from '../util/native-addon.js';
import { UDRBD_IO_ADDON } from '../disk/writeback.js';

/** drbd_limits.h DRBD_SNDBUF_SIZE_MAX / DRBD_RCVBUF_SIZE_MAX (config/limits checks them while parsing). */
export const SOCKET_BUFFER_BYTES_MAX = 10 << 20;

const SNDBUF = 0;
const RCVBUF = 1;

interface SocketBufferAddon {
  setSocketBuffer(fd: number, kind: number, bytes: number): number;
  getSocketBuffer(fd: number, kind: number): number;
}

export interface SocketBufferSizes {
  /** 0 = kernel auto-tuning (not set). */
  sndbufSizeBytes: number;
  rcvbufSizeBytes: number;
}

export interface SocketBufferReport {
  sndbufBytes: number;
  rcvbufBytes: number;
}

function addon(): { addon: SocketBufferAddon | null; reason: string } {
  const loaded = loadNativeAddon<Partial<SocketBufferAddon>>(UDRBD_IO_ADDON);
  const a = loaded.addon;
  if (a === null) return { addon: null, reason: loaded.reason };
  if (typeof a.setSocketBuffer !== 'function' || typeof a.getSocketBuffer !== 'function') {
    return { addon: null, reason: 'native/udrbd-io was built before setSocketBuffer existed (run native/udrbd-io/build.sh)' };
  }
  return { addon: a as SocketBufferAddon, reason: 'loaded' };
}

/** Why socket buffer sizes cannot be set on this machine, or undefined when they can. */
export function socketBufferSupport(): string | undefined {
  const a = addon();
  return a.addon === null ? a.reason : undefined;
}

function fdOf(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('peer socket has no file descriptor (not connected?)');
  return fd;
}

function requireAddon(): SocketBufferAddon {
  const a = addon();
  if (a.addon === null) throw new Error(`cannot set socket buffer sizes: ${a.reason}`);
  return a.addon;
}

/** The socket's current SO_SNDBUF / SO_RCVBUF, as getsockopt reports them. */
export function socketBufferSizes(socket: net.Socket): SocketBufferReport {
  const a = requireAddon();
  const fd = fdOf(socket);
  return { sndbufBytes: a.getSocketBuffer(fd, SNDBUF), rcvbufBytes: a.getSocketBuffer(fd, RCVBUF) };
}

/**
 * Sets the configured sizes (non-zero ones) on a connected socket; returns
 * what the socket then has. Throws when the addon is missing or setsockopt fails.
 */
export function applySocketBuffers(socket: net.Socket, sizes: SocketBufferSizes): SocketBufferReport {
  for (const bytes of [sizes.sndbufSizeBytes, sizes.rcvbufSizeBytes]) {
    if (!Number.isInteger(bytes) || bytes < 0 || bytes > SOCKET_BUFFER_BYTES_MAX) {
      throw new RangeError(`socket buffer size ${bytes} out of range [0..${SOCKET_BUFFER_BYTES_MAX}]`);
    }
  }
  if (sizes.sndbufSizeBytes === 0 && sizes.rcvbufSizeBytes === 0) return socketBufferSizesOrZero(socket);
  const a = requireAddon();
  const fd = fdOf(socket);
  if (sizes.sndbufSizeBytes > 0) a.setSocketBuffer(fd, SNDBUF, sizes.sndbufSizeBytes);
  if (sizes.rcvbufSizeBytes > 0) a.setSocketBuffer(fd, RCVBUF, sizes.rcvbufSizeBytes);
  return socketBufferSizes(socket);
}

/** Auto-tuned sockets: report what the kernel has if the addon is there, zeros otherwise. */
function socketBufferSizesOrZero(socket: net.Socket): SocketBufferReport {
  return socketBufferSupport() === undefined ? socketBufferSizes(socket) : { sndbufBytes: 0, rcvbufBytes: 0 };
}
