/**
 * replication/counters — the /proc/drbd counters the data path owns (ns, nr,
 * dw, dr, pe, ua, ap, ep) kept as plain numbers; `al` comes from the activity
 * log and `oos` from the bitmap, read through callbacks. Knows nothing of how
 * they are rendered (cli/).
 */
import type { DirtyBitmap } from '../meta/types.js';
import { BM_BLOCK_BYTES } from '../meta/types.js';

export interface CounterSnapshot {
  /** KiB sent to the peer (application data and resync replies). */
  ns: number;
  /** KiB received from the peer. */
  nr: number;
  /** KiB written to the local backing disk. */
  dw: number;
  /** KiB read from the local backing disk. */
  dr: number;
  /** Activity-log transactions written. */
  al: number;
  /** Requests sent to the peer awaiting an answer (application + resync). */
  pe: number;
  /** Peer requests received but not yet answered. */
  ua: number;
  /** Application requests accepted but not completed. */
  ap: number;
  /** Epochs in flight (not yet barrier-acknowledged), normally 1. */
  ep: number;
  /** Out-of-sync KiB (set bitmap bits × 4). */
  oos: number;
}

export class ReplicationCounters {
  /** Byte totals; the snapshot converts to KiB like the kernel's >>10. */
  sentBytes = 0;
  receivedBytes = 0;
  diskWrittenBytes = 0;
  diskReadBytes = 0;
  pe = 0;
  ua = 0;
  ap = 0;
  ep = 0;

  constructor(
    private readonly bitmap: DirtyBitmap,
    private readonly alTransactions: () => number = () => 0,
  ) {}

  snapshot(): CounterSnapshot {
    return {
      ns: Math.floor(this.sentBytes / 1024),
      nr: Math.floor(this.receivedBytes / 1024),
      dw: Math.floor(this.diskWrittenBytes / 1024),
      dr: Math.floor(this.diskReadBytes / 1024),
      al: this.alTransactions(),
      pe: this.pe,
      ua: this.ua,
      ap: this.ap,
      ep: this.ep,
      oos: (this.bitmap.countSet() * BM_BLOCK_BYTES) / 1024,
    };
  }

  /** Counters reset on attach, as DRBD's do. */
  reset(): void {
    this.sentBytes = this.receivedBytes = this.diskWrittenBytes = this.diskReadBytes = 0;
    this.pe = this.ua = this.ap = this.ep = 0;
  }
}
