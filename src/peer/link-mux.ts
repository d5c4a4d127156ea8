/**
 * peer/link-mux — one established connection shared by the volumes of a
 * resource (DRBD 8.4: one drbd_tconn, its devices found by the header's
 * volume, vnr_to_mdev). Each volume's data path gets a PeerChannel of its own
 * (`channel(vnr)`): what it sends goes onto the one connection; it receives
 * the per-volume packets whose header names it (peer/packets volumeScope),
 * and the connection-wide ones (Barrier, BarrierAck, ProtocolUpdate, ...) go
 * to the lowest-numbered volume that listens — every volume's engine hands
 * those to the connection's shared parts (replication/epochs), so one
 * receiver of them is enough. Closing any volume's channel closes the
 * connection, and its loss is reported to every volume (a volume cannot be
 * disconnected alone). Packets for a volume whose handler is not registered
 * yet wait, with every packet after them, within a bound. Knows nothing of what the packets mean.
 */
import type { LinkLossReason, PeerChannel } from './channel.js';
import { type Packet, volumeScope } from './packets.js';
import { assert } from '../util/assert.js';
import type { Logger } from '../util/log.js';

/** Packets held for a volume (or the connection) before its handler registers; past it the connection is dropped. */
export const MUX_HELD_PACKETS_MAX = 4096;

type Handler = (packet: Packet) => void;
type CloseHandler = (reason: LinkLossReason) => void;

class VolumeChannel implements PeerChannel {
  handler: Handler | null = null;
  readonly closeHandlers: CloseHandler[] = [];
  readonly released?: () => Promise<void>;
  readonly push?: () => void;

  constructor(
    private readonly mux: LinkMux,
    private readonly link: PeerChannel,
    readonly vnr: number,
  ) {
    if (link.released !== undefined) this.released = () => link.released!();
    if (link.push !== undefined) this.push = () => link.push!();
  }

  send(packet: Packet, onReleased?: () => void): boolean {
    return this.link.send(packet, onReleased);
  }

  drained(): Promise<void> {
    return this.link.drained();
  }

  onPacket(handler: Handler): void {
    this.handler = handler;
    this.mux.handlerRegistered();
  }

  onClose(handler: CloseHandler): void {
    const reason = this.mux.closedWith;
    if (reason !== null) {
      queueMicrotask(() => handler(reason));
      return;
    }
    this.closeHandlers.push(handler);
  }

  close(reason: LinkLossReason): void {
    this.link.close(reason);
  }

  get isOpen(): boolean {
    return this.link.isOpen;
  }
}

export class LinkMux {
  private readonly channels = new Map<number, VolumeChannel>();
  /**
   * Packets waiting, in arrival order, for their volume's handler; once one
   * waits every later packet queues behind it, so each volume and the
   * connection-wide receiver see the connection's one order (a Barrier never
   * overtakes the Data of its epoch).
   */
  private readonly held: Packet[] = [];
  closedWith: LinkLossReason | null = null;

  constructor(
    private readonly link: PeerChannel,
    volumes: Iterable<number>,
    private readonly log: Logger,
  ) {
    for (const vnr of [...volumes].sort((a, b) => a - b)) this.channels.set(vnr, new VolumeChannel(this, link, vnr));
    assert(this.channels.size > 0, 'a connection carries at least one volume');
    link.onPacket((packet) => this.route(packet));
    link.onClose((reason) => this.closed(reason));
  }

  /** Volume `vnr`'s channel on this connection. */
  channel(vnr: number): PeerChannel {
    const channel = this.channels.get(vnr);
    assert(channel !== undefined, `volume ${vnr} is on this connection`);
    return channel;
  }

  private route(packet: Packet): void {
    const target = this.held.length === 0 ? this.targetOf(packet) : undefined;
    if (target === undefined) return this.hold(packet);
    target.handler!(packet);
  }

  /** The listening channel `packet` goes to, or undefined while it has none. */
  private targetOf(packet: Packet): VolumeChannel | undefined {
    if (volumeScope(packet.type) === 'connection') {
      // The lowest-numbered volume listening receives the connection-wide packets.
      for (const channel of this.channels.values()) if (channel.handler !== null) return channel;
      return undefined;
    }
    const vnr = (packet as { volume: number }).volume;
    const channel = this.channels.get(vnr);
    // peer/frame-decoder refuses per-volume packets for volumes not configured; the mux is given the same set.
    assert(channel !== undefined, `packet type ${packet.type} for volume ${vnr}, which this connection does not carry`);
    return channel.handler !== null ? channel : undefined;
  }

  private hold(packet: Packet): void {
    if (this.held.length >= MUX_HELD_PACKETS_MAX) {
      this.log.error({ held: this.held.length }, `more than ${MUX_HELD_PACKETS_MAX} packets arrived before their volume's data path listened; dropping the connection`);
      this.link.close('ProtocolError');
      return;
    }
    this.held.push(packet);
  }

  /** A volume's handler is in place: what waited for it goes out, in order, up to a packet whose volume still has none. */
  handlerRegistered(): void {
    while (this.held.length > 0 && this.closedWith === null) {
      const target = this.targetOf(this.held[0]!);
      if (target === undefined) return;
      target.handler!(this.held.shift()!);
    }
  }

  private closed(reason: LinkLossReason): void {
    if (this.closedWith !== null) return;
    this.closedWith = reason;
    this.held.length = 0;
    for (const channel of this.channels.values()) {
      for (const handler of channel.closeHandlers.splice(0)) handler(reason);
    }
  }
}
