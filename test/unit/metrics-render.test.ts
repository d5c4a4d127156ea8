/**
 * The metrics endpoint's pure parts: the data path's fixed-bucket latency
 * histogram, the Prometheus text render (checked by a real Prometheus text
 * parser: HELP and TYPE on every family, drbd-reactor's label sets,
 * cumulative histogram buckets, label escaping, a down resource absent), the
 * 8.4 → DRBD 9 connection-state mapping, and the listen-address rule
 * (loopback only unless remote is allowed explicitly).
 */
import { describe, expect, it } from 'vitest';
import { LATENCY_BOUNDS_MS, LatencyHistogram } from '../../src/replication/latency.js';
import { Bitmap, BM_BITS_PER_PAGE } from '../../src/meta/bitmap.js';
import { MemoryDisk } from '../../src/disk/memory-disk.js';
import { connectionStateOf, metricFamilies, renderNodeMetrics } from '../../src/metrics/render.js';
import { allowRemoteFromEnv, parseListenAddress } from '../../src/metrics/listen-address.js';
import type { ResourceMetricsReport } from '../../src/daemon/metrics-source.js';
import { byName, hasSample, histogram, parsePrometheus, sample } from '../helpers/prometheus.js';

const BOUNDS_SECONDS = LATENCY_BOUNDS_MS.map((ms) => ms / 1000);

function report(overrides: Partial<ResourceMetricsReport> = {}): ResourceMetricsReport {
  const h = new LatencyHistogram();
  h.record(0.3);
  h.record(0.3);
  h.record(7);
  return {
    version: 1,
    resource: 'mt0',
    node: 'alpha',
    peerNode: 'beta',
    minor: 10,
    volume: 0,
    role: 'Primary',
    peerRole: 'Secondary',
    cstate: 'SyncSource',
    disk: 'UpToDate',
    peerDisk: 'Inconsistent',
    suspended: false,
    mayPromote: false,
    promotionScore: 1,
    sizeBytes: 64 * 1024 * 1024,
    counters: {
      sentBytes: 4096,
      receivedBytes: 512,
      diskWrittenBytes: 8192,
      diskReadBytes: 1024,
      alWrites: 3,
      bmWrites: 2,
      readsInFlight: 1,
      writesInFlight: 2,
      flushesInFlight: 1,
      lowerPending: 3,
      outOfSyncBytes: 12288,
      apInFlightBytes: 8192,
      rsInFlightBytes: 0,
      congested: true,
    },
    histograms: { diskWrite: h.snapshot(), diskFlush: new LatencyHistogram().snapshot(), peerWrite: h.snapshot(), peerFlush: new LatencyHistogram().snapshot() },
    resyncBytesPerSecond: 1048576,
    splitBrains: { detected: 2, unresolved: 1 },
    ...overrides,
  };
}

describe('LatencyHistogram', () => {
  it('puts a value equal to a bound into that bound\'s bucket (Prometheus le is inclusive), larger ones into the next, beyond the last into +Inf', () => {
    const h = new LatencyHistogram([1, 10]);
    h.record(1);
    h.record(1.0001);
    h.record(10);
    h.record(10.5);
    h.record(0);
    const s = h.snapshot();
    expect(s.boundsSeconds).toEqual([0.001, 0.01]);
    expect(s.bucketCounts).toEqual([2, 2, 1]);
    expect(s.count).toBe(5);
    expect(s.sumSeconds).toBeCloseTo((1 + 1.0001 + 10 + 10.5) / 1000, 9);
  });

  it('refuses bounds that do not ascend', () => {
    expect(() => new LatencyHistogram([1, 1])).toThrow(/must ascend/);
  });

  it('reset() empties every bucket', () => {
    const h = new LatencyHistogram();
    h.record(3);
    h.reset();
    expect(h.snapshot().bucketCounts.every((n) => n === 0)).toBe(true);
    expect(h.count).toBe(0);
  });
});

describe('Bitmap.pagesWritten (drbd_device_bmwrites_total)', () => {
  it('counts every bitmap page written: dirty runs and single pages, a clean page not again', async () => {
    const disk = new MemoryDisk(1024 * 1024);
    const bm = new Bitmap(8 * BM_BITS_PER_PAGE);
    bm.setRange(0, 2 * BM_BITS_PER_PAGE + 1); // pages 0..2
    expect(await bm.writeDirtyPages(disk, 8192)).toBe(3);
    expect(bm.pagesWritten).toBe(3);
    bm.setRange(5 * BM_BITS_PER_PAGE, 5 * BM_BITS_PER_PAGE + 1);
    expect(await bm.writePage(disk, 8192, 5)).toBe(true);
    expect(await bm.writePage(disk, 8192, 5)).toBe(false); // clean now: not written again
    expect(bm.pagesWritten).toBe(4);
  });
});

describe('renderNodeMetrics', () => {
  const text = renderNodeMetrics({ resources: [{ name: 'mt0', report: report() }, { name: 'mt1', report: null }], kmodVersion: '8.4.11', utilsVersion: 'udrbd 0.1.0' }, BOUNDS_SECONDS);
  const families = parsePrometheus(text);

  it('parses with a real Prometheus text parser, and every family has HELP and TYPE', () => {
    expect(families.length).toBeGreaterThan(30);
    for (const f of families) {
      expect(f.help, f.name).not.toBe('');
      expect(f.type, f.name).not.toBe('UNTYPED');
    }
    const declared = new Map(metricFamilies().map((f) => [f.name, f.type.toUpperCase()]));
    for (const f of families) expect(f.type, f.name).toBe(declared.get(f.name));
  });

  it('uses drbd-reactor\'s label sets: resource name; connection name+conn_name+peer_node_id; device name+volume+minor; the enum families labelled by their own name', () => {
    const keys = (family: string): string[] => Object.keys(byName(families).get(family)!.metrics[0]!.labels ?? {}).sort();
    expect(keys('drbd_resource_role')).toEqual(['drbd_resource_role', 'name']);
    expect(keys('drbd_resource_maypromote')).toEqual(['name']);
    expect(keys('drbd_connection_state')).toEqual(['conn_name', 'drbd_connection_state', 'name', 'peer_node_id']);
    expect(keys('drbd_connection_congested')).toEqual(['conn_name', 'name', 'peer_node_id']);
    expect(keys('drbd_peerdevice_outofsync_bytes')).toEqual(['conn_name', 'name', 'peer_node_id', 'volume']);
    expect(keys('drbd_peerdevice_sent_bytes')).toEqual(['conn_name', 'name', 'peer_node_id', 'volume']);
    expect(keys('drbd_device_state')).toEqual(['drbd_device_state', 'minor', 'name', 'volume']);
    expect(keys('drbd_device_written_bytes_total')).toEqual(['minor', 'name', 'volume']);
    expect(keys('drbd_version')).toEqual(['kmod', 'utils']);
  });

  it('gives one series per state with 1 for the current one, in DRBD 9 terms (SyncSource is Connected)', () => {
    const roles = byName(families).get('drbd_resource_role')!.metrics.map((m) => [m.labels!.drbd_resource_role, m.value]);
    expect(roles).toEqual([['Unknown', '0'], ['Primary', '1'], ['Secondary', '0']]);
    expect(sample(families, 'drbd_connection_state', { drbd_connection_state: 'Connected' })).toBe(1);
    expect(byName(families).get('drbd_connection_state')!.metrics).toHaveLength(10);
    expect(sample(families, 'drbd_device_state', { drbd_device_state: 'UpToDate' })).toBe(1);
    expect(byName(families).get('drbd_device_state')!.metrics.filter((m) => m.value === '1')).toHaveLength(1);
  });

  it('exports the counters in bytes and the udrbd gauges', () => {
    expect(sample(families, 'drbd_device_written_bytes_total', { name: 'mt0' })).toBe(8192);
    expect(sample(families, 'drbd_peerdevice_sent_bytes', { name: 'mt0' })).toBe(4096);
    expect(sample(families, 'drbd_peerdevice_outofsync_bytes', { name: 'mt0' })).toBe(12288);
    expect(sample(families, 'drbd_device_upperpending', { name: 'mt0' })).toBe(4);
    expect(sample(families, 'drbd_device_lowerpending', { name: 'mt0' })).toBe(3);
    expect(sample(families, 'drbd_connection_congested', { name: 'mt0' })).toBe(1);
    expect(sample(families, 'udrbd_device_requests_inflight', { op: 'write' })).toBe(2);
    expect(sample(families, 'udrbd_peerdevice_resync_speed_bytes_per_second', { name: 'mt0' })).toBe(1048576);
    expect(sample(families, 'udrbd_connection_splitbrains_total', { name: 'mt0' })).toBe(2);
    expect(sample(families, 'udrbd_connection_splitbrains_unresolved_total', { name: 'mt0' })).toBe(1);
  });

  it('renders histograms with cumulative buckets, +Inf, _sum and _count', () => {
    const h = histogram(text, 'udrbd_disk_write_duration_seconds', { name: 'mt0', volume: '0', minor: '10' });
    expect(h.count).toBe(3);
    expect(h.sum).toBeCloseTo(0.0076, 9);
    expect(h.buckets['0.00025']).toBe(0);
    expect(h.buckets['0.0005']).toBe(2);
    expect(h.buckets['0.005']).toBe(2);
    expect(h.buckets['0.01']).toBe(3);
    expect(h.buckets['+Inf']).toBe(3);
    expect(Object.keys(h.buckets)).toHaveLength(LATENCY_BOUNDS_MS.length + 1);
  });

  it('leaves a resource that is not up out of the drbd families and says so in udrbd_resource_up', () => {
    expect(sample(families, 'drbd_resource_resources')).toBe(1);
    expect(hasSample(families, 'drbd_resource_role', { name: 'mt1' })).toBe(false);
    expect(hasSample(families, 'drbd_device_state', { name: 'mt1' })).toBe(false);
    expect(sample(families, 'udrbd_resource_up', { name: 'mt1' })).toBe(0);
    expect(sample(families, 'udrbd_resource_up', { name: 'mt0' })).toBe(1);
  });

  it('escapes quotes, backslashes and newlines in label values', () => {
    const odd = renderNodeMetrics({ resources: [], kmodVersion: 'a"b\\c\nd', utilsVersion: 'x' }, BOUNDS_SECONDS);
    expect(odd).toContain('kmod="a\\"b\\\\c\\nd"');
    expect(parsePrometheus(odd).find((f) => f.name === 'drbd_version')!.metrics[0]!.labels!.kmod).toBe('a"b\\c\nd');
  });

  it('a diskless resource still shows its device, with zero counters and empty histograms', () => {
    const t = renderNodeMetrics({ resources: [{ name: 'mt0', report: report({ disk: 'Diskless', counters: null, histograms: null, sizeBytes: null }) }], kmodVersion: '8.4.11', utilsVersion: 'u' }, BOUNDS_SECONDS);
    const f = parsePrometheus(t);
    expect(sample(f, 'drbd_device_unintentionaldiskless', { name: 'mt0' })).toBe(1);
    expect(sample(f, 'drbd_device_written_bytes_total', { name: 'mt0' })).toBe(0);
    expect(histogram(t, 'udrbd_disk_flush_duration_seconds', { name: 'mt0' }).count).toBe(0);
  });

  it('a resource without a peer has no connection families', () => {
    const f = parsePrometheus(renderNodeMetrics({ resources: [{ name: 'mt0', report: report({ peerNode: null }) }], kmodVersion: '8.4.11', utilsVersion: 'u' }, BOUNDS_SECONDS));
    expect(byName(f).has('drbd_connection_state')).toBe(false);
    expect(byName(f).has('drbd_device_state')).toBe(true);
  });
});

describe('connectionStateOf (DRBD 8.4 cstate → drbd-reactor\'s ConnectionState)', () => {
  it.each([
    ['StandAlone', 'StandAlone'],
    ['Unconfigured', 'StandAlone'],
    ['Disconnecting', 'Disconnecting'],
    ['Unconnected', 'Unconnected'],
    ['NetworkFailure', 'NetworkFailure'],
    ['WFConnection', 'Connecting'],
    ['WFReportParams', 'Connecting'],
    ['Connected', 'Connected'],
    ['WFBitMapS', 'Connected'],
    ['SyncTarget', 'Connected'],
    ['PausedSyncS', 'Connected'],
    ['VerifyS', 'Connected'],
  ])('%s → %s', (cstate, expected) => {
    expect(connectionStateOf(cstate)).toBe(expected);
  });
});

describe('parseListenAddress', () => {
  it('defaults to drbd-reactor\'s port on 127.0.0.1', () => {
    expect(parseListenAddress(undefined, false)).toEqual({ host: '127.0.0.1', port: 9942 });
  });

  it('accepts loopback addresses, IPv6 in brackets and a bare port', () => {
    expect(parseListenAddress('127.0.0.2:8005', false)).toEqual({ host: '127.0.0.2', port: 8005 });
    expect(parseListenAddress('[::1]:8005', false)).toEqual({ host: '::1', port: 8005 });
    expect(parseListenAddress('8005', false)).toEqual({ host: '127.0.0.1', port: 8005 });
  });

  it('refuses a non-loopback address without explicit configuration, naming the address and the way out', () => {
    expect(() => parseListenAddress('0.0.0.0:9942', false)).toThrow(
      "udrbdadm metrics: refusing to listen on 0.0.0.0:9942: it is not a loopback address (127.0.0.0/8 or ::1), and the metrics endpoint has no authentication",
    );
    expect(() => parseListenAddress('10.0.0.11:9942', false)).toThrow(/--allow-remote \(or set UDRBD_METRICS_ALLOW_REMOTE=1\)/);
    expect(() => parseListenAddress('[::]:9942', false)).toThrow(/refusing to listen on \[::\]:9942/);
  });

  it('allows a non-loopback address when remote is allowed explicitly', () => {
    expect(parseListenAddress('0.0.0.0:9942', true)).toEqual({ host: '0.0.0.0', port: 9942 });
  });

  it('refuses names and bad ports', () => {
    expect(() => parseListenAddress('localhost:9942', true)).toThrow(/literal IP address, not the name 'localhost'/);
    expect(() => parseListenAddress('127.0.0.1:70000', false)).toThrow(/port must be 1..65535/);
    expect(() => parseListenAddress('127.0.0.1', false)).toThrow(/expects HOST:PORT/);
  });

  it('reads UDRBD_METRICS_ALLOW_REMOTE=1/yes/true as allowed, anything else as not', () => {
    expect(allowRemoteFromEnv({ UDRBD_METRICS_ALLOW_REMOTE: '1' })).toBe(true);
    expect(allowRemoteFromEnv({ UDRBD_METRICS_ALLOW_REMOTE: 'yes' })).toBe(true);
    expect(allowRemoteFromEnv({ UDRBD_METRICS_ALLOW_REMOTE: '0' })).toBe(false);
    expect(allowRemoteFromEnv({})).toBe(false);
  });
});
