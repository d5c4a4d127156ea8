/**
 * metrics/render — the node's metrics as Prometheus text exposition format
 * 0.0.4, from the resource processes' `metrics` reports. The drbd_* families
 * carry drbd-reactor's prometheus plugin names, types, help texts and labels
 * (resource: `name`; connection: `name`, `conn_name`, `peer_node_id`; device:
 * `name`, `volume`, `minor`; the enum families with `enums = true`, one
 * series per state with the family name as the state label), so its Grafana
 * dashboards work unchanged. DRBD 8.4 states are mapped onto the DRBD 9
 * vocabulary drbd-reactor lists (WFConnection → Connecting, SyncSource →
 * Connected). The udrbd_* families are udrbd's own. Every family has HELP
 * and TYPE; families come in a fixed order. A resource of several volumes
 * (ResourceMetricsReport.volumes) has one set of device and peer-device
 * series per volume, and one of resource and connection series. Pure: no
 * sockets, no clocks.
 */
import type { LatencySnapshot } from '../replication/latency.js';
import type { MetricsCounters, MetricsHistograms, ResourceMetricsReport } from '../daemon/metrics-source.js';

/** One configured resource of this node: its report, or null when its process is not up (or did not answer). */
export interface ResourceScrape {
  name: string;
  report: ResourceMetricsReport | null;
}

export interface NodeScrape {
  resources: ResourceScrape[];
  /** drbd_version's labels: the DRBD version udrbd speaks, and udrbd's own. */
  kmodVersion: string;
  utilsVersion: string;
}

type MetricType = 'gauge' | 'counter' | 'histogram';

/** Every family, in output order: [name, type, help]. drbd-reactor's help texts verbatim for drbd_*. */
const FAMILIES: ReadonlyArray<readonly [string, MetricType, string]> = [
  ['drbdreactor_up', 'gauge', 'Boolean indicating whether or not drbdreactor is running. Always 1'],
  ['drbd_version', 'gauge', 'Version of the loaded DRBD kernel module and DRBD utils'],
  ['drbd_resource_resources', 'gauge', 'Number of resources'],
  ['drbd_resource_role', 'gauge', 'DRBD role of the resource'],
  ['drbd_resource_suspended', 'gauge', 'Boolean whether the resource is suspended'],
  ['drbd_resource_maypromote', 'gauge', 'Boolean whether the resource may be promoted to Primary'],
  ['drbd_resource_promotionscore', 'gauge', 'The promotion score (higher is better) for the resource'],
  ['drbd_resource_forceiofailures', 'gauge', 'Boolean whether the resource is configured (could be temporarily) to force IO failures (e.g., during secondary --force)'],
  ['drbd_connection_state', 'gauge', 'DRBD connection state'],
  ['drbd_peerdevice_outofsync_bytes', 'gauge', 'Number of bytes currently out of sync with this peer, according to the bitmap that DRBD has for it'],
  ['drbd_peerdevice_sent_bytes', 'counter', 'Number of bytes currently sent to this peer'],
  ['drbd_peerdevice_received_bytes', 'counter', 'Number of bytes currently received from this peer'],
  ['drbd_connection_congested', 'gauge', 'Boolean whether the TCP send buffer of the data connection is more than 80% filled'],
  ['drbd_connection_apinflight_bytes', 'gauge', 'Number of application requests in flight (not completed)'],
  ['drbd_connection_rsinflight_bytes', 'gauge', 'Number of resync requests in flight'],
  ['drbd_device_state', 'gauge', 'DRBD device state'],
  ['drbd_device_client', 'gauge', 'Boolean whether this device is a client (i.e., intentional diskless)'],
  ['drbd_device_unintentionaldiskless', 'gauge', 'Boolean whether the devices is unintentional diskless'],
  ['drbd_device_quorum', 'gauge', 'Boolean if this device has DRBD quorum'],
  ['drbd_device_size_bytes', 'gauge', 'Device size in bytes'],
  ['drbd_device_read_bytes_total', 'counter', 'Net data read from local hard disk'],
  ['drbd_device_written_bytes_total', 'counter', 'Net data written on local disk'],
  ['drbd_device_alwrites_total', 'counter', 'Number of updates of the activity log area of the meta data'],
  ['drbd_device_bmwrites_total', 'counter', 'Number of updates of the bitmap area of the meta data'],
  ['drbd_device_upperpending', 'gauge', 'Number of block I/O requests forwarded to DRBD, but not yet answered by DRBD.'],
  ['drbd_device_lowerpending', 'gauge', 'Number of open requests to the local I/O sub-system issued by DRBD'],
  ['drbd_device_alsuspended', 'gauge', 'Boolean whether the Activity-Log is suspended'],
  ['udrbd_resource_up', 'gauge', 'Boolean whether the resource process of this configured resource is up and answered this scrape'],
  ['udrbd_device_requests_inflight', 'gauge', 'Requests of the block device frontend (NBD, FUSE) accepted by the replicated volume and not yet completed, by operation'],
  ['udrbd_disk_write_duration_seconds', 'histogram', 'Latency of writes to the local backing disk: application writes on the Primary, mirrored peer writes on the Secondary'],
  ['udrbd_disk_flush_duration_seconds', 'histogram', 'Latency of flushes (fdatasync) of the local backing disk: application flushes on the Primary, barrier flushes on the Secondary'],
  ['udrbd_peer_write_duration_seconds', 'histogram', 'Time from queueing a mirrored write to the peer until its acknowledgement (RecvAck with protocol B, WriteAck with C; protocol A waits for none)'],
  ['udrbd_peer_flush_duration_seconds', 'histogram', 'Time from an application flush sending its Barrier to the peer until the BarrierAck (the peer flushed its disk)'],
  ['udrbd_peerdevice_resync_speed_bytes_per_second', 'gauge', 'Current resynchronisation speed (the SyncTarget measures it; the SyncSource reports its average); 0 when not syncing'],
  ['udrbd_connection_splitbrains_total', 'counter', 'Split brains detected by connect-time handshakes since the resource process started'],
  ['udrbd_connection_splitbrains_unresolved_total', 'counter', 'Split brains no after-sb policy or --discard-my-data resolved (the connection went StandAlone)'],
];

/** drbd-reactor's Role::iterator(). */
const ROLES = ['Unknown', 'Primary', 'Secondary'] as const;
/** drbd-reactor's ConnectionState::iterator() (DRBD 9 names). */
const CONNECTION_STATES = ['StandAlone', 'Disconnecting', 'Unconnected', 'Timeout', 'BrokenPipe', 'NetworkFailure', 'ProtocolError', 'TearDown', 'Connecting', 'Connected'] as const;
/** drbd-reactor's DiskState::iterator(). */
const DISK_STATES = ['Diskless', 'Attaching', 'Detaching', 'Failed', 'Negotiating', 'Inconsistent', 'Outdated', 'DUnknown', 'Consistent', 'UpToDate'] as const;

/** DRBD 9's connection state for a DRBD 8.4 cstate: waiting states are Connecting, every replicating state is Connected. */
export function connectionStateOf(cstate84: string): string {
  switch (cstate84) {
    case 'StandAlone':
    case 'Unconfigured':
      return 'StandAlone';
    case 'Disconnecting':
    case 'Unconnected':
    case 'Timeout':
    case 'BrokenPipe':
    case 'NetworkFailure':
    case 'ProtocolError':
    case 'TearDown':
      return cstate84;
    case 'WFConnection':
    case 'WFReportParams':
      return 'Connecting';
    default:
      return 'Connected';
  }
}

/** The label value escapes of the text format: backslash, double quote, newline. */
function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

type Labels = ReadonlyArray<readonly [string, string]>;

function labelText(labels: Labels): string {
  if (labels.length === 0) return '';
  return `{${labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',')}}`;
}

function numberText(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(value);
}

class Exposition {
  private readonly samples = new Map<string, string[]>();

  constructor() {
    for (const [name] of FAMILIES) this.samples.set(name, []);
  }

  add(family: string, labels: Labels, value: number, suffix = ''): void {
    const lines = this.samples.get(family);
    if (lines === undefined) throw new Error(`metrics/render: family '${family}' is not declared in FAMILIES`);
    lines.push(`${family}${suffix}${labelText(labels)} ${numberText(value)}`);
  }

  bool(family: string, labels: Labels, value: boolean): void {
    this.add(family, labels, value ? 1 : 0);
  }

  /** One series per state, 1 for the current one (drbd-reactor's `enums`). */
  enumeration(family: string, labels: Labels, states: readonly string[], current: string): void {
    for (const state of states) this.add(family, [...labels, [family, state]], state === current ? 1 : 0);
  }

  histogram(family: string, labels: Labels, h: LatencySnapshot): void {
    let cumulative = 0;
    h.boundsSeconds.forEach((le, i) => {
      cumulative += h.bucketCounts[i] ?? 0;
      this.add(family, [...labels, ['le', numberText(le)]], cumulative, '_bucket');
    });
    this.add(family, [...labels, ['le', '+Inf']], h.count, '_bucket');
    this.add(family, labels, h.sumSeconds, '_sum');
    this.add(family, labels, h.count, '_count');
  }

  /** Families without samples are left out (as drbd-reactor does). */
  text(): string {
    const out: string[] = [];
    for (const [name, type, help] of FAMILIES) {
      const lines = this.samples.get(name)!;
      if (lines.length === 0) continue;
      out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`, ...lines);
    }
    return out.length === 0 ? '' : `${out.join('\n')}\n`;
  }
}

const ZERO_COUNTERS: MetricsCounters = Object.freeze({
  sentBytes: 0,
  receivedBytes: 0,
  diskWrittenBytes: 0,
  diskReadBytes: 0,
  alWrites: 0,
  bmWrites: 0,
  readsInFlight: 0,
  writesInFlight: 0,
  flushesInFlight: 0,
  lowerPending: 0,
  outOfSyncBytes: 0,
  apInFlightBytes: 0,
  rsInFlightBytes: 0,
  congested: false,
});

function emptyHistograms(boundsSeconds: number[]): MetricsHistograms {
  const empty = (): LatencySnapshot => ({ boundsSeconds, bucketCounts: new Array<number>(boundsSeconds.length + 1).fill(0), count: 0, sumSeconds: 0 });
  return { diskWrite: empty(), diskFlush: empty(), peerWrite: empty(), peerFlush: empty() };
}

/** The reports of every volume of a resource, in volume order (one: the report itself). */
export function metricsVolumesOf(r: ResourceMetricsReport): ResourceMetricsReport[] {
  return r.volumes !== undefined && r.volumes.length > 0 ? r.volumes : [r];
}

/** conn_highest_role over role names: Primary over Secondary over Unknown. */
function highestRoleName(roles: readonly string[]): string {
  if (roles.includes('Primary')) return 'Primary';
  if (roles.includes('Secondary')) return 'Secondary';
  return 'Unknown';
}

function renderResource(x: Exposition, r: ResourceMetricsReport, boundsSeconds: number[]): void {
  const volumes = metricsVolumesOf(r);
  const resource: Labels = [['name', r.resource]];
  // The resource is Primary when any volume is (DRBD 8.4's conn_highest_role); it promotes all its
  // volumes at once, so it may promote when every volume may, with its weakest volume's score.
  x.enumeration('drbd_resource_role', resource, ROLES, highestRoleName(volumes.map((v) => v.role)));
  x.bool('drbd_resource_suspended', resource, r.suspended);
  x.bool('drbd_resource_maypromote', resource, volumes.every((v) => v.mayPromote));
  x.add('drbd_resource_promotionscore', resource, Math.min(...volumes.map((v) => v.promotionScore)));
  x.bool('drbd_resource_forceiofailures', resource, false);

  const countersOf = (v: ResourceMetricsReport): MetricsCounters => v.counters ?? ZERO_COUNTERS;
  if (r.peerNode !== null) {
    // 8.4 has no node ids: the peer is node 1, as `udrbdadm events` prints it.
    const connection: Labels = [['name', r.resource], ['conn_name', r.peerNode], ['peer_node_id', '1']];
    x.enumeration('drbd_connection_state', connection, CONNECTION_STATES, connectionStateOf(r.cstate));
    for (const v of volumes) {
      const c = countersOf(v);
      const h = v.histograms ?? emptyHistograms(boundsSeconds);
      const peerDevice: Labels = [...connection, ['volume', String(v.volume)]];
      x.add('drbd_peerdevice_outofsync_bytes', peerDevice, c.outOfSyncBytes);
      x.add('drbd_peerdevice_sent_bytes', peerDevice, c.sentBytes);
      x.add('drbd_peerdevice_received_bytes', peerDevice, c.receivedBytes);
      x.histogram('udrbd_peer_write_duration_seconds', peerDevice, h.peerWrite);
      x.histogram('udrbd_peer_flush_duration_seconds', peerDevice, h.peerFlush);
      x.add('udrbd_peerdevice_resync_speed_bytes_per_second', peerDevice, v.resyncBytesPerSecond);
    }
    // The connection carries every volume's requests: congested when any volume's send path is, in-flight bytes summed.
    x.bool('drbd_connection_congested', connection, volumes.some((v) => countersOf(v).congested));
    x.add('drbd_connection_apinflight_bytes', connection, volumes.reduce((sum, v) => sum + countersOf(v).apInFlightBytes, 0));
    x.add('drbd_connection_rsinflight_bytes', connection, volumes.reduce((sum, v) => sum + countersOf(v).rsInFlightBytes, 0));
    x.add('udrbd_connection_splitbrains_total', connection, r.splitBrains.detected);
    x.add('udrbd_connection_splitbrains_unresolved_total', connection, r.splitBrains.unresolved);
  }

  for (const v of volumes) {
    const c = countersOf(v);
    const h = v.histograms ?? emptyHistograms(boundsSeconds);
    const device: Labels = [['name', r.resource], ['volume', String(v.volume)], ['minor', String(v.minor)]];
    x.enumeration('drbd_device_state', device, DISK_STATES, v.disk);
    x.bool('drbd_device_client', device, false);
    x.bool('drbd_device_unintentionaldiskless', device, v.disk === 'Diskless');
    // DRBD 9 reports quorum:yes when no quorum is configured; 8.4 has none.
    x.bool('drbd_device_quorum', device, true);
    x.add('drbd_device_size_bytes', device, v.sizeBytes ?? 0);
    x.add('drbd_device_read_bytes_total', device, c.diskReadBytes);
    x.add('drbd_device_written_bytes_total', device, c.diskWrittenBytes);
    x.add('drbd_device_alwrites_total', device, c.alWrites);
    x.add('drbd_device_bmwrites_total', device, c.bmWrites);
    x.add('drbd_device_upperpending', device, c.readsInFlight + c.writesInFlight + c.flushesInFlight);
    x.add('drbd_device_lowerpending', device, c.lowerPending);
    x.bool('drbd_device_alsuspended', device, false);
    x.add('udrbd_device_requests_inflight', [...device, ['op', 'read']], c.readsInFlight);
    x.add('udrbd_device_requests_inflight', [...device, ['op', 'write']], c.writesInFlight);
    x.add('udrbd_device_requests_inflight', [...device, ['op', 'flush']], c.flushesInFlight);
    x.histogram('udrbd_disk_write_duration_seconds', device, h.diskWrite);
    x.histogram('udrbd_disk_flush_duration_seconds', device, h.diskFlush);
  }
}

/** The whole node's exposition text. `boundsSeconds` fills the histograms of a diskless resource. */
export function renderNodeMetrics(scrape: NodeScrape, boundsSeconds: number[]): string {
  const x = new Exposition();
  x.add('drbdreactor_up', [], 1);
  x.add('drbd_version', [['kmod', scrape.kmodVersion], ['utils', scrape.utilsVersion]], 1);
  const up = scrape.resources.filter((r) => r.report !== null);
  x.add('drbd_resource_resources', [], up.length);
  for (const r of scrape.resources) {
    x.bool('udrbd_resource_up', [['name', r.name]], r.report !== null);
    if (r.report !== null) renderResource(x, r.report, boundsSeconds);
  }
  return x.text();
}

/** The family names and types this module can emit (docs, tests). */
export function metricFamilies(): ReadonlyArray<{ name: string; type: MetricType; help: string }> {
  return FAMILIES.map(([name, type, help]) => ({ name, type, help }));
}
