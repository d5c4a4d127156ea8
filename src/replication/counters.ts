/**
 * replication/counters — the /proc/drbd counters the data path owns (ns, nr,
 * dw, dr, pe, ua, ap, ep) kept as plain numbers; `al` comes from the activity
 * log and `oos` from the bitmap, read through callbacks; plus the latency
 * histograms and in-flight gauges the metrics endpoint exports (each recorded
 * where the request completes, see replication/latency). Knows nothing of how
 * they are rendered (cli/, metrics/).
 */
import type { DirtyBitmap } from '../meta/types.js';
import { BM_BLOCK_BYTES } from '../meta/types.js';
import { LatencyHistogram } from './latency.js';

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
  /** Requests to the local disk in flight (application and peer writes, reads, flushes). */
  lo: number;
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
  /** Local disk requests in flight (/proc/drbd `lo:`). */
  lo = 0;
  /** Application reads / flushes accepted by the volume and not completed (writes are `ap`). */
  readsInFlight = 0;
  flushesInFlight = 0;
  /** Local backing-disk write of application data (Primary) or of mirrored peer data (Secondary). */
  readonly diskWriteLatency = new LatencyHistogram();
  /** Local backing-disk flush: an application flush (Primary), a Barrier's flush (Secondary). */
  readonly diskFlushLatency = new LatencyHistogram();
  /** Data packet queued to the peer until its RecvAck (protocol B) / WriteAck (C). */
  readonly peerWriteLatency = new LatencyHistogram();
  /** An application flush's Barrier queued to the peer until its BarrierAck. */
  readonly peerFlushLatency = new LatencyHistogram();

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
      lo: this.lo,
      oos: (this.bitmap.countSet() * BM_BLOCK_BYTES) / 1024,
    };
  }

  /** Counters reset on attach, as DRBD's do. */
  reset(): void {
    this.sentBytes = this.receivedBytes = this.diskWrittenBytes = this.diskReadBytes = 0;
    this.pe = this.ua = this.ap = this.ep = this.lo = 0;
    this.readsInFlight = this.flushesInFlight = 0;
    this.diskWriteLatency.reset();
    this.diskFlushLatency.reset();
    this.peerWriteLatency.reset();
    this.peerFlushLatency.reset();
  }
}
