/**
 * replication/latency — LatencyHistogram, a fixed-bucket latency histogram
 * the data path records into on every completed disk write/flush and peer
 * ack. Built for the hot path: the buckets are one preallocated array, a
 * record is a short scan over fixed bounds, one increment and two additions —
 * no allocation, no closure, no clock call (the caller passes the duration it
 * measured with performance.now()). Knows nothing of Prometheus or of what
 * is being timed; `snapshot()` (called per scrape, not per request) gives the
 * plain counts that daemon/ exports and metrics/ renders.
 */

/**
 * Upper bounds of the buckets, milliseconds, ascending; a last bucket counts
 * everything above (Prometheus' +Inf). From 25 µs (a page-cache write) to
 * 10 s (a stalled disk or a peer past ko-count × timeout).
 */
export const LATENCY_BOUNDS_MS: readonly number[] = Object.freeze([
  0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
]);

/** A histogram's state as plain data (per bucket, not cumulative; the last entry is +Inf). */
export interface LatencySnapshot {
  /** Bucket upper bounds in seconds (Prometheus `le`), without +Inf. */
  boundsSeconds: number[];
  /** Observations per bucket; one more entry than boundsSeconds (the +Inf bucket). */
  bucketCounts: number[];
  count: number;
  sumSeconds: number;
}

export class LatencyHistogram {
  private readonly boundsMs: Float64Array;
  /** Per bucket (not cumulative); Float64 counts stay exact up to 2^53. */
  private readonly counts: Float64Array;
  private sumMs = 0;
  private total = 0;

  constructor(boundsMs: readonly number[] = LATENCY_BOUNDS_MS) {
    for (let i = 1; i < boundsMs.length; i++) {
      if (!(boundsMs[i]! > boundsMs[i - 1]!)) throw new Error(`latency bucket bounds must ascend: ${boundsMs.join(', ')}`);
    }
    this.boundsMs = Float64Array.from(boundsMs);
    this.counts = new Float64Array(boundsMs.length + 1);
  }

  /** Counts one observation of `durationMs` (a value ≤ a bound lands in that bound's bucket). */
  record(durationMs: number): void {
    const bounds = this.boundsMs;
    const n = bounds.length;
    let i = 0;
    while (i < n && durationMs > bounds[i]!) i++;
    this.counts[i] = this.counts[i]! + 1;
    this.sumMs += durationMs;
    this.total++;
  }

  get count(): number {
    return this.total;
  }

  snapshot(): LatencySnapshot {
    return {
      boundsSeconds: Array.from(this.boundsMs, (ms) => ms / 1000),
      bucketCounts: Array.from(this.counts),
      count: this.total,
      sumSeconds: this.sumMs / 1000,
    };
  }

  /** Counters reset on attach, as DRBD's do. */
  reset(): void {
    this.counts.fill(0);
    this.sumMs = 0;
    this.total = 0;
  }
}
