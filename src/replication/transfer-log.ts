/**
 * replication/transfer-log — one volume's record of mirrored writes not yet
 * covered by a BarrierAck, grouped in epochs (drbd_main.c: tl_release, _tl_restart). When the
 * link is lost, every request still here is exactly what the peer may not
 * have on stable storage, so its range goes out of sync. The epoch numbers
 * are the connection's (replication/epochs SenderEpochs, shared by every
 * volume): this log is told which epoch a write is in, when an epoch closes
 * and when one is acknowledged, and keeps only its own volume's part.
 * Knows nothing of sockets or disks.
 */
import { assert } from '../util/assert.js';
import { AL_EXTENT_BYTES } from '../meta/types.js';

export interface TransferLogEntry {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly epoch: number;
  /**
   * The attach generation whose activity log this request holds a reference
   * in (released with the entry), or -1 when it holds none (diskless).
   */
  readonly alGeneration: number;
}

/** Called once for every entry a BarrierAck drops (not for clear(): its caller handles those). */
export type TransferLogRelease = (entry: TransferLogEntry) => void;

const noRelease: TransferLogRelease = () => undefined;

export class TransferLog {
  private entries: TransferLogEntry[] = [];
  private head = 0;
  /** Closed epochs this volume wrote in awaiting their BarrierAck, oldest first, with its write counts. */
  private readonly closedEpochs: Array<{ epoch: number; writes: number }> = [];
  private openWrites = 0;
  /** The open epoch this volume wrote in (valid while openWrites > 0). */
  private openEpoch = -1;
  /**
   * Bytes of the requests held: DRBD's ap_in_flight, the figure
   * `congestion-fill` is compared with (drbd_req.c: maybe_pull_ahead).
   */
  private heldBytes = 0;
  /**
   * Requests held per 4 MiB activity-log extent. DRBD keeps a request's AL
   * reference until the peer acknowledged it, so act_log->used (what
   * `congestion-extents` is compared with) counts the extents of unacknowledged
   * writes; this is that count for the mirrored writes.
   */
  private readonly extentRefs = new Map<number, number>();

  constructor(private readonly onRelease: TransferLogRelease = noRelease) {}

  /** Bytes sent and not yet barrier-acknowledged (DRBD's ap_in_flight). */
  get bytesInFlight(): number {
    return this.heldBytes;
  }

  /** Activity-log extents touched by the requests held. */
  get activeExtents(): number {
    return this.extentRefs.size;
  }

  /** Requests held (sent, not barrier-acknowledged). */
  get size(): number {
    return this.entries.length - this.head;
  }

  get writesInOpenEpoch(): number {
    return this.openWrites;
  }

  /** Epochs with writes not yet barrier-acknowledged (the /proc/drbd `ep`). */
  get epochsInFlight(): number {
    return this.closedEpochs.length + (this.openWrites > 0 ? 1 : 0);
  }

  /** Last closed epoch awaiting its ack, or -1. */
  get newestClosedEpoch(): number {
    const last = this.closedEpochs[this.closedEpochs.length - 1];
    return last ? last.epoch : -1;
  }

  /** A write sent in the connection's open epoch `epoch`. */
  add(offsetBytes: number, lengthBytes: number, epoch: number, alGeneration = -1): TransferLogEntry {
    assert(this.openWrites === 0 || epoch === this.openEpoch, `write in epoch ${epoch} while epoch ${this.openEpoch} is open`);
    this.openEpoch = epoch;
    const entry = { offsetBytes, lengthBytes, epoch, alGeneration };
    this.entries.push(entry);
    this.openWrites++;
    this.heldBytes += lengthBytes;
    const last = lastExtent(entry);
    for (let e = firstExtent(entry); e <= last; e++) this.extentRefs.set(e, (this.extentRefs.get(e) ?? 0) + 1);
    return entry;
  }

  /** The connection closed epoch `epoch` (a Barrier went out); this volume's writes in it, if any, await its ack. */
  epochClosed(epoch: number): void {
    if (this.openWrites === 0) return;
    assert(this.openEpoch === epoch, `closing epoch ${epoch}; this volume's writes are in epoch ${this.openEpoch}`);
    this.closedEpochs.push({ epoch, writes: this.openWrites });
    this.openWrites = 0;
  }

  /**
   * The peer acknowledged epoch `epoch` (the connection's oldest closed one):
   * drops this volume's requests of it; returns how many (0 when this volume
   * wrote nothing in it).
   */
  barrierAcked(epoch: number): number {
    const oldest = this.closedEpochs[0];
    if (oldest === undefined || oldest.epoch !== epoch) {
      const head = this.entries[this.head];
      assert(head === undefined || head.epoch !== epoch, `BarrierAck ${epoch} acknowledges writes of this volume that were never closed in a Barrier`);
      return 0;
    }
    this.closedEpochs.shift();
    const writes = oldest.writes;
    let dropped = 0;
    while (this.head < this.entries.length && this.entries[this.head]!.epoch === epoch) {
      const entry = this.entries[this.head]!;
      this.release(entry);
      this.onRelease(entry);
      this.head++;
      dropped++;
    }
    assert(dropped === writes, `transfer log dropped ${dropped} requests of epoch ${epoch}, expected ${writes}`);
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    return dropped;
  }

  /** Connection lost: returns every request still held and empties the log. */
  clear(): TransferLogEntry[] {
    const pending = this.entries.slice(this.head);
    this.entries = [];
    this.head = 0;
    this.closedEpochs.length = 0;
    this.openWrites = 0;
    this.heldBytes = 0;
    this.extentRefs.clear();
    return pending;
  }

  private release(entry: TransferLogEntry): void {
    this.heldBytes -= entry.lengthBytes;
    const last = lastExtent(entry);
    for (let e = firstExtent(entry); e <= last; e++) {
      const refs = this.extentRefs.get(e)! - 1;
      if (refs === 0) this.extentRefs.delete(e);
      else this.extentRefs.set(e, refs);
    }
  }
}

const firstExtent = (entry: TransferLogEntry): number => Math.floor(entry.offsetBytes / AL_EXTENT_BYTES);
const lastExtent = (entry: TransferLogEntry): number => Math.floor((entry.offsetBytes + Math.max(entry.lengthBytes, 1) - 1) / AL_EXTENT_BYTES);
