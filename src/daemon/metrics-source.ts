/**
 * daemon/metrics-source — the resource process's side of the metrics
 * endpoint: the `metrics` control verb, which answers with one plain JSON
 * report of this resource on this node (state, byte counters, in-flight
 * gauges, latency histograms, resync speed, split-brain count), and the
 * SplitBrainCount the peer link keeps. Everything here is read when a scrape
 * asks, never on the data path. Knows nothing of Prometheus' text format or
 * of HTTP (metrics/ renders and serves); metrics/ reads the report through
 * the exported types only.
 */
import { ConnState, DiskState, Role, connName, diskName, roleName } from '../resource/states.js';
import type { HandshakeDecision } from '../resource/uuid.js';
import type { LatencySnapshot } from '../replication/latency.js';
import { BM_BLOCK_BYTES } from '../meta/types.js';
import type { ResourceView } from '../config/index.js';
import type { StateSnapshot } from './status.js';
import type { Wiring } from './wiring.js';

/** Bumped when a field changes meaning; metrics/ refuses reports of another version. */
export const METRICS_REPORT_VERSION = 1;

/** Split brains found by connect-time handshakes since the resource process started. */
export class SplitBrainCount {
  /** drbd_sync_handshake saw a split brain (DRBD runs the initial-split-brain handler then). */
  detected = 0;
  /** ... that no after-sb policy or --discard-my-data resolved: the link went StandAlone. */
  unresolved = 0;

  note(decision: HandshakeDecision): void {
    if (decision.handlers.includes('initial-split-brain')) this.detected++;
    if (decision.kind === 'split-brain-unresolved') this.unresolved++;
  }
}

export interface MetricsCounters {
  /** Bytes sent to / received from the peer (application data and resync). */
  sentBytes: number;
  receivedBytes: number;
  /** Bytes written to / read from the local backing disk. */
  diskWrittenBytes: number;
  diskReadBytes: number;
  /** Activity-log transactions and bitmap pages written since attach. */
  alWrites: number;
  bmWrites: number;
  /** Application requests accepted by the volume, not yet completed, per kind. */
  readsInFlight: number;
  writesInFlight: number;
  flushesInFlight: number;
  /** Requests to the local disk in flight (`lo:`). */
  lowerPending: number;
  outOfSyncBytes: number;
  /** Mirrored writes sent to the peer and not yet acknowledged, bytes. */
  apInFlightBytes: number;
  /** Resync requests in flight, bytes (SyncTarget side). */
  rsInFlightBytes: number;
  congested: boolean;
}

export interface MetricsHistograms {
  diskWrite: LatencySnapshot;
  diskFlush: LatencySnapshot;
  peerWrite: LatencySnapshot;
  peerFlush: LatencySnapshot;
}

/** The `metrics` verb's answer (stdout, JSON). */
export interface ResourceMetricsReport {
  version: number;
  resource: string;
  node: string;
  /** The peer's host name (drbd-reactor's conn_name); null without a peer. */
  peerNode: string | null;
  minor: number;
  volume: number;
  /** DRBD 8.4 names (Primary, WFConnection, UpToDate...). */
  role: string;
  peerRole: string;
  cstate: string;
  disk: string;
  peerDisk: string;
  suspended: boolean;
  mayPromote: boolean;
  promotionScore: number;
  /** The agreed device size; null while diskless. */
  sizeBytes: number | null;
  /** Null while diskless (no data path). */
  counters: MetricsCounters | null;
  histograms: MetricsHistograms | null;
  /** Current resync speed while syncing, else 0. */
  resyncBytesPerSecond: number;
  splitBrains: { detected: number; unresolved: number };
  /**
   * Every volume of the resource in volume-number order, each a full report
   * (its own minor, volume, disk states, replication state in `cstate`, size,
   * counters, histograms, resync speed; resource and connection fields as
   * the top level's). Absent or one entry: one volume, the top level.
   */
  volumes?: ResourceMetricsReport[];
}

/** DRBD 8.4 may promote a Secondary with UpToDate data while the peer is not Primary (unless two primaries are allowed). */
function mayPromote(s: StateSnapshot, allowTwoPrimaries: boolean): boolean {
  return s.role !== Role.Primary && s.disk === DiskState.UpToDate && (allowTwoPrimaries || s.peer !== Role.Primary);
}

/** The metrics of every volume: the first one's on top, `volumes` with several (daemon/status's shape). */
export function metricsReport(wiring: Wiring): ResourceMetricsReport {
  const runtime = wiring.runtime;
  const first = volumeMetrics(wiring, runtime.firstVolume);
  if (runtime.volumeNumbers.length === 1) return first;
  return { ...first, volumes: runtime.volumeNumbers.map((vnr) => (vnr === runtime.firstVolume ? first : volumeMetrics(wiring, vnr))) };
}

function volumeMetrics(wiring: Wiring, vnr: number): ResourceMetricsReport {
  const runtime = wiring.runtime;
  const spec = runtime.specOf(vnr);
  const s = runtime.volumeSnapshot(vnr);
  const store = runtime.storeOf(vnr);
  const dp = wiring.volume(vnr).dataPath;
  const allowTwoPrimaries = (spec.view as ResourceView).net.allowTwoPrimaries;
  let counters: MetricsCounters | null = null;
  let histograms: MetricsHistograms | null = null;
  if (dp) {
    const c = dp.counters;
    counters = {
      sentBytes: c.sentBytes,
      receivedBytes: c.receivedBytes,
      diskWrittenBytes: c.diskWrittenBytes,
      diskReadBytes: c.diskReadBytes,
      alWrites: store?.activityLog.transactionCount ?? 0,
      bmWrites: store?.bitmapWrites ?? 0,
      readsInFlight: c.readsInFlight,
      writesInFlight: c.ap,
      flushesInFlight: c.flushesInFlight,
      lowerPending: c.lo,
      outOfSyncBytes: store ? store.bitmap.countSet() * BM_BLOCK_BYTES : 0,
      apInFlightBytes: dp.volume.peerInFlightBytes(),
      rsInFlightBytes: dp.resyncInFlightBytes(),
      congested: dp.volume.isCongested,
    };
    histograms = {
      diskWrite: c.diskWriteLatency.snapshot(),
      diskFlush: c.diskFlushLatency.snapshot(),
      peerWrite: c.peerWriteLatency.snapshot(),
      peerFlush: c.peerFlushLatency.snapshot(),
    };
  }
  const sync = wiring.volume(vnr).link.syncProgress();
  const unconfigured = s.conn === ConnState.StandAlone && s.disk === DiskState.Diskless && s.role === Role.Secondary;
  return {
    version: METRICS_REPORT_VERSION,
    resource: spec.name,
    node: spec.node,
    peerNode: spec.peer?.name ?? null,
    minor: spec.minor,
    volume: spec.volume,
    role: roleName(s.role),
    peerRole: roleName(s.peer),
    cstate: unconfigured ? 'Unconfigured' : connName(s.conn),
    disk: diskName(s.disk),
    peerDisk: diskName(s.pdsk),
    suspended: s.susp || s.suspNod || s.suspFen,
    mayPromote: mayPromote(s, allowTwoPrimaries),
    promotionScore: s.disk === DiskState.UpToDate ? 1 : 0,
    sizeBytes: store ? store.sizeBytes : null,
    counters,
    histograms,
    resyncBytesPerSecond: sync ? Math.max(0, Math.round(sync.speedKiBps * 1024)) : 0,
    splitBrains: { detected: wiring.link.splitBrains.detected, unresolved: wiring.link.splitBrains.unresolved },
  };
}

/** Registers the `metrics` control verb on the wiring's runtime. */
export function defineMetricsVerb(wiring: Wiring): void {
  wiring.runtime.defineVerb('metrics', async () => ({ exitCode: 0, stdout: `${JSON.stringify(metricsReport(wiring))}\n` }));
}
