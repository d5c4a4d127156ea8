/**
 * peer/channel — what the data path (replication/) needs from an established,
 * authenticated peer connection: send packets in order, receive packets in
 * order, learn when the link is gone. peer/session implements it over TCP;
 * tests may implement it in memory.
 */
import type { Packet } from './packets.js';

export type LinkLossReason = 'NetworkFailure' | 'BrokenPipe' | 'Timeout' | 'ProtocolError' | 'Disconnecting';

export interface PeerChannel {
  /**
   * Queue a packet for sending, in order. Returns false when the send buffer
   * is above its high-water mark: the caller should wait for `drained()`
   * before queueing more bulk data (acks and control packets may still go).
   * `onReleased`, if given, is called exactly once when the channel no longer
   * references the packet's payload (written to the kernel, or dropped
   * because the link is gone): the caller may reuse the buffer then.
   */
  send(packet: Packet, onReleased?: () => void): boolean;
  /**
   * Hand every packet queued so far to the kernel now instead of at the end
   * of this turn's batch: the caller is about to block the thread (an inline
   * local flush) and the peer should start on its part meanwhile. Optional.
   */
  push?(): void;
  /** Resolves when the send buffer is below its low-water mark again. */
  drained(): Promise<void>;
  /** Set the single receiver of packets (replaces any previous one). */
  onPacket(handler: (packet: Packet) => void): void;
  /** Called once when the link is lost or closed, with the DRBD cstate it maps to. */
  onClose(handler: (reason: LinkLossReason) => void): void;
  /** Close the link; onClose fires with `reason`. */
  close(reason: LinkLossReason): void;
  readonly isOpen: boolean;
  /**
   * Resolves once the transport holds no reference to any payload passed to
   * send() (the socket is closed, queued bytes written or dropped), so the
   * caller may reuse those buffers. Optional: channels that copy or never
   * keep payloads after close may omit it.
   */
  released?(): Promise<void>;
}
