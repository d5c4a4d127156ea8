/**
 * Every status screen with a resource of two volumes (docs/multi-volume.md
 * step 11): StatusSnapshot.volumes in, one block / row / line / series per
 * volume out, as DRBD 8.4 and drbd-utils print them — /proc/drbd, the init
 * script's table (checked by drbd-utils' own drbd_pretty_status, extracted
 * from the installed /etc/init.d/drbd and run over udrbd's /proc/drbd and
 * sh-status texts), sh-status, role/cstate/dstate, `status`, events2, the
 * not-up snapshot and the metrics. One-volume output is pinned by the
 * screens' own tests.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderInitStatus, renderProcDrbd } from '../../src/cli/render/proc-drbd.js';
import { renderShStatus } from '../../src/cli/render/sh-status.js';
import {
  cstateText,
  dstateText,
  perVolumeLines,
  roleText,
  statusJson,
  statusText,
  volumesOf,
  type StatusSnapshot,
} from '../../src/daemon/status.js';
import { changeEvents, downEvents, existsEvents } from '../../src/daemon/events2.js';
import { Events2Printer, type Events2PrintOptions } from '../../src/cli/events2-printer.js';
import type { ControlEvent } from '../../src/control/protocol.js';
import { notUpSnapshot } from '../../src/cli/boot/node-status.js';
import type { ResourceView, VolumeView } from '../../src/config/index.js';
import { renderNodeMetrics } from '../../src/metrics/render.js';
import type { ResourceMetricsReport } from '../../src/daemon/metrics-source.js';
import { LATENCY_BOUNDS_MS, LatencyHistogram } from '../../src/replication/latency.js';
import { ConnState, DiskState, Role } from '../../src/resource/states.js';
import { requireOracle } from '../helpers/boot-harness.js';
import { parsePrometheus, sample, hasSample } from '../helpers/prometheus.js';

function volume(over: Partial<StatusSnapshot> = {}): StatusSnapshot {
  return {
    role: Role.Primary, peer: Role.Secondary, conn: ConnState.Connected, disk: DiskState.UpToDate, pdsk: DiskState.UpToDate,
    susp: false, suspNod: false, suspFen: false, userIsp: false, peerIsp: false, aftrIsp: false,
    resource: 'mv', node: 'alpha', peerNode: 'beta', minor: 1790, volume: 0, device: '/dev/drbd1790', protocol: 'C', uuids: undefined,
    outOfSyncKiB: 0, sync: undefined, counters: { ns: 8, nr: 0, dw: 8, dr: 4, al: 1, bm: 0, lo: 0, pe: 0, ua: 0, ap: 0, ep: 1 },
    deviceSizeKiB: 65532, exposed: false, pid: 1, ...over,
  };
}

const SYNC = { totalBits: 262144, leftBits: 174763, percentDone: 33.3, speedKiBps: 40960, averageKiBps: 40960, etaSeconds: 17, bytesTransferred: 0 };

/** The runtime's reply for several volumes: the first volume's fields on top, every volume in `volumes`. */
function resource(volumes: StatusSnapshot[]): StatusSnapshot {
  return { ...volumes[0]!, volumes };
}

/** mv: volume 0 (minor 1790) in sync, volume 1 (minor 1791) SyncSource a third done. */
function syncingPair(): StatusSnapshot {
  return resource([
    volume(),
    volume({ minor: 1791, volume: 1, device: '/dev/drbd1791', conn: ConnState.SyncSource, pdsk: DiskState.Inconsistent, outOfSyncKiB: 699052, sync: SYNC }),
  ]);
}

/** idle: a two-volume resource whose process is not up (minors 1793, 1794). */
function idlePair(): StatusSnapshot {
  const view = { name: 'idle', minor: 1793, volume: 0, devicePath: '/dev/drbd1793', peer: { name: 'beta' } } as unknown as ResourceView;
  const volumes = [
    { vnr: 0, minor: 1793, devicePath: '/dev/drbd1793' },
    { vnr: 1, minor: 1794, devicePath: '/dev/drbd1794' },
  ] as unknown as VolumeView[];
  return notUpSnapshot(view, 'alpha', volumes);
}

describe('volumesOf', () => {
  it('is the snapshot itself without volumes (or with one entry), else the volumes in order', () => {
    const one = volume();
    expect(volumesOf(one)).toEqual([one]);
    expect(volumesOf({ ...one, volumes: [] })).toEqual([{ ...one, volumes: [] }]);
    const pair = syncingPair();
    expect(volumesOf(pair).map((v) => v.minor)).toEqual([1790, 1791]);
  });
});

describe('/proc/drbd with two volumes: one block per minor, minors in order across resources', () => {
  it('prints each volume as its own minor, with its own state, oos and progress lines', () => {
    const lone = volume({ resource: 'one', minor: 1792, volume: 0, device: '/dev/drbd1792', role: Role.Secondary, peer: Role.Primary });
    // Given out of order: the kernel walks its minors in order.
    expect(renderProcDrbd([idlePair(), lone, syncingPair()]).split('\n')).toEqual([
      'version: 8.4.11 (api:1/proto:86-101)',
      'srcversion: udrbd-userspace     ',
      '',
      '1790: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----',
      '    ns:8 nr:0 dw:8 dr:4 al:1 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0',
      '1791: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----',
      '    ns:8 nr:0 dw:8 dr:4 al:1 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:699052',
      "\t[=====>..............] sync'ed: 33.9% (699052/1048576)K",
      '\tfinish: 0:00:17 speed: 40,960 (40,960) K/sec',
      '1792: cs:Connected ro:Secondary/Primary ds:UpToDate/UpToDate C r-----',
      '    ns:8 nr:0 dw:8 dr:4 al:1 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0',
      '1793: cs:Unconfigured',
      '1794: cs:Unconfigured',
      '',
    ]);
  });
});

describe('sh-status with two volumes (drbdadm-84: the prefix once, _conf_volume= and drbdsetup\'s block per volume)', () => {
  it('prints one _minor= _volume= block per volume, and sh evaluates the hook once per volume', () => {
    const text = renderShStatus({ name: 'mv', definedAt: '/etc/drbd.conf:3', volume: 0, status: syncingPair() });
    expect(text.split('\n').slice(0, 7)).toEqual([
      '_conf_res_name=mv', '_conf_file_line=/etc/drbd.conf:3', '', '_stacked_on=', '_stacked_on_device=', '_stacked_on_minor=', '_conf_volume=0',
    ]);
    expect(text.match(/^_conf_volume=\d+$/gm)).toEqual(['_conf_volume=0', '_conf_volume=1']);
    expect(text.match(/^_minor=\d+$/gm)).toEqual(['_minor=1790', '_minor=1791']);
    expect(text.match(/^_conf_res_name=.*$/gm)).toHaveLength(1);
    const hook = '_sh_status_process() { echo "$_conf_volume $_minor $_volume $_cstate $_pdsk $_resynced_percent"; }';
    const sh = spawnSync('sh', ['-c', `${hook}; eval "$1"`, 'sh', text], { encoding: 'utf8' });
    expect(sh.status).toBe(0);
    expect(sh.stdout).toBe('0 1790 0 Connected UpToDate \n1 1791 1 SyncSource Inconsistent 33.9\n');
  });

  it('a not-up two-volume resource prints an Unconfigured block per configured volume', () => {
    const text = renderShStatus({ name: 'idle', definedAt: '/etc/drbd.conf:9', volume: 0, status: idlePair() });
    const hook = '_sh_status_process() { echo "$_conf_volume $_minor $_volume $_known $_cstate"; }';
    const sh = spawnSync('sh', ['-c', `${hook}; eval "$1"`, 'sh', text], { encoding: 'utf8' });
    expect(sh.stdout).toBe('0 1793 0 Unconfigured Unconfigured\n1 1794 1 Unconfigured Unconfigured\n');
  });
});

/**
 * drbd-utils' drbd_pretty_status (what `/etc/init.d/drbd status` prints after its first line) over a
 * /proc/drbd text, with a `drbdadm` that answers `sh-status` and `sh-dev all` with the given texts.
 */
function prettyStatus(procText: string, shStatus: string, devices: readonly string[]): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-pretty-'));
  try {
    fs.mkdirSync(path.join(dir, 'bin'));
    fs.writeFileSync(path.join(dir, 'pretty.sh'), requireOracle());
    fs.writeFileSync(path.join(dir, 'proc-drbd'), procText);
    fs.writeFileSync(path.join(dir, 'sh-status'), shStatus);
    fs.writeFileSync(path.join(dir, 'sh-dev'), devices.map((d) => `${d}\n`).join(''));
    // drbdadm -S sh-dev all has nothing stacked: a warning and exit 1, as drbdadm-84 says.
    const drbdadm = ['#!/bin/sh', 'case "$*" in', `  "sh-status") cat "${dir}/sh-status" ;;`, `  "sh-dev all") cat "${dir}/sh-dev" ;;`, '  *) exit 1 ;;', 'esac', ''];
    fs.writeFileSync(path.join(dir, 'bin', 'drbdadm'), drbdadm.join('\n'), { mode: 0o755 });
    const script = `. "$1/pretty.sh"; echo "drbd driver loaded OK; device status:"; drbd_pretty_status "$1/proc-drbd" 2>/dev/null`;
    const r = spawnSync('bash', ['-c', script, 'oracle', dir], { encoding: 'utf8', env: { ...process.env, PATH: `${dir}/bin:${process.env.PATH ?? '/usr/bin:/bin'}` } });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('/etc/init.d/drbd status with two volumes', () => {
  it('drbd-utils\' drbd_pretty_status renders both minors of each resource from udrbd\'s texts, as renderInitStatus does', () => {
    const mv = syncingPair();
    const idle = idlePair();
    const procText = renderProcDrbd([mv, idle]);
    const shStatus = renderShStatus({ name: 'mv', definedAt: '/etc/drbd.conf:3', volume: 0, status: mv }) + renderShStatus({ name: 'idle', definedAt: '/etc/drbd.conf:9', volume: 0, status: idle });
    const oracle = prettyStatus(procText, shStatus, ['/dev/drbd1790', '/dev/drbd1791', '/dev/drbd1793', '/dev/drbd1794']);
    const ours = renderInitStatus([mv, idle], new Map());
    expect(ours).toBe(oracle);
    expect(ours.split('\n').slice(3)).toEqual([
      'm:res      cs            ro                 ds                     p  mounted  fstype',
      "...        sync'ed:      33.9%              (699052/1048576)K" + ' '.repeat(18),
      '1790:mv    Connected     Primary/Secondary  UpToDate/UpToDate      C' + ' '.repeat(11),
      '1791:mv    SyncSource    Primary/Secondary  UpToDate/Inconsistent  C' + ' '.repeat(11),
      '1793:idle  Unconfigured' + ' '.repeat(56),
      '1794:idle  Unconfigured' + ' '.repeat(56),
      '',
    ]);
  });
});

describe('role / cstate / dstate with two volumes (drbdadm-84 runs drbdsetup once per minor)', () => {
  it('prints one line per volume in volume order, or the one volume RES/VNR names', () => {
    const s = resource([volume(), volume({ minor: 1791, volume: 1, role: Role.Secondary, conn: ConnState.PausedSyncS, pdsk: DiskState.Inconsistent, userIsp: true })]);
    expect(perVolumeLines(s, roleText)).toBe('Primary/Secondary\nSecondary/Secondary\n');
    expect(perVolumeLines(s, cstateText)).toBe('Connected\nPausedSyncS\n');
    expect(perVolumeLines(s, dstateText)).toBe('UpToDate/UpToDate\nUpToDate/Inconsistent\n');
    expect(perVolumeLines(s, dstateText, 1)).toBe('UpToDate/Inconsistent\n');
    expect(perVolumeLines(idlePair(), dstateText)).toBe('Unconfigured\nUnconfigured\n');
    // One volume: the line drbdadm printed before volumes existed.
    expect(perVolumeLines(volume(), roleText)).toBe('Primary/Secondary\n');
  });
});

describe('status with two volumes (drbdsetup status: a volume:N line per device and per peer-device)', () => {
  it('prints the device lines, then the peer line and a replication line per volume; the roles are the highest', () => {
    const s = resource([
      volume({ role: Role.Secondary, peer: Role.Secondary }),
      volume({ minor: 1791, volume: 1, conn: ConnState.SyncSource, pdsk: DiskState.Inconsistent, sync: SYNC, aftrIsp: true }),
    ]);
    expect(statusText(s)).toBe([
      'mv role:Primary',
      '  volume:0 disk:UpToDate',
      '  volume:1 disk:UpToDate',
      '  peer role:Secondary',
      '    volume:0 replication:Established peer-disk:UpToDate',
      '    volume:1 replication:SyncSource peer-disk:Inconsistent done:33.30 resync-suspended:dependency',
      '',
      '',
    ].join('\n'));
  });

  it('without a connection: the device lines, then one connection line', () => {
    const s = resource([
      volume({ conn: ConnState.WFConnection, peer: Role.Unknown, pdsk: DiskState.DUnknown }),
      volume({ minor: 1791, volume: 1, conn: ConnState.WFConnection, peer: Role.Unknown, pdsk: DiskState.DUnknown, disk: DiskState.Outdated }),
    ]);
    expect(statusText(s, true)).toBe('mv role:Primary\n  volume:0 disk:UpToDate\n  volume:1 disk:Outdated\n  peer connection:Connecting protocol:C\n\n');
  });

  it('--json keeps the first volume on top and adds every volume\'s fields in `volumes`', () => {
    const json = statusJson(syncingPair());
    expect(json).toMatchObject({ minor: 1790, replication: 'Established' });
    expect((json.volumes as Record<string, unknown>[]).map((v) => [v.minor, v.replication, v.peerDisk, v.outOfSyncKiB])).toEqual([
      [1790, 'Established', 'UpToDate', 0],
      [1791, 'SyncSource', 'Inconsistent', 699052],
    ]);
    expect(statusJson(volume())).not.toHaveProperty('volumes');
  });
});

const plain: Events2PrintOptions = { statistics: false, timestamps: false, now: false };

function lines(events: ControlEvent[], printer: Events2Printer): string[] {
  return events.map((e) => printer.format(e)).filter((l): l is string => l !== undefined);
}

describe('events2 with two volumes: a device and a peer-device per volume, resource and connection once', () => {
  it('the initial dump lists resource, connection, the devices, the peer-devices, in one batch', () => {
    const events = existsEvents(syncingPair());
    expect(lines(events, new Events2Printer(plain))).toEqual([
      'exists resource name:mv role:Primary suspended:no',
      'exists connection name:mv peer-node-id:0 conn-name:peer connection:Connected role:Secondary',
      'exists device name:mv volume:0 minor:1790 disk:UpToDate',
      'exists device name:mv volume:1 minor:1791 disk:UpToDate',
      'exists peer-device name:mv peer-node-id:0 conn-name:peer volume:0 replication:Established peer-disk:UpToDate resync-suspended:no',
      'exists peer-device name:mv peer-node-id:0 conn-name:peer volume:1 replication:SyncSource peer-disk:Inconsistent resync-suspended:no',
      'exists -',
    ]);
    expect(events.map((e) => e.continues === true)).toEqual([true, true, true, true, true, false, false]);
  });

  it('the resource role is the highest of the volumes\' (conn_highest_role), the connection role the highest peer role', () => {
    const s = resource([volume({ role: Role.Secondary, peer: Role.Unknown }), volume({ minor: 1791, volume: 1, role: Role.Primary, peer: Role.Secondary })]);
    const out = lines(existsEvents(s), new Events2Printer(plain));
    expect(out[0]).toBe('exists resource name:mv role:Primary suspended:no');
    expect(out[1]).toBe('exists connection name:mv peer-node-id:0 conn-name:peer connection:Connected role:Secondary');
  });

  it('a change of one volume is that volume\'s peer-device line only; a demoted volume leaves the resource Primary while another is', () => {
    const printer = new Events2Printer(plain);
    const s0 = syncingPair();
    lines(existsEvents(s0), printer);
    const [v0, v1] = volumesOf(s0) as [StatusSnapshot, StatusSnapshot];
    const synced = { ...v1, conn: ConnState.Connected, pdsk: DiskState.UpToDate, outOfSyncKiB: 0, sync: undefined };
    expect(lines(changeEvents(new Map([[1, v1]]), resource([v0, synced])), printer)).toEqual([
      'change peer-device name:mv peer-node-id:0 conn-name:peer volume:1 replication:Established peer-disk:UpToDate',
    ]);
    const demoted = { ...synced, role: Role.Secondary };
    expect(lines(changeEvents(new Map([[1, synced]]), resource([v0, demoted])), printer)).toEqual([]);
    const bothSecondary = { ...v0, role: Role.Secondary };
    expect(lines(changeEvents(new Map([[0, v0]]), resource([bothSecondary, demoted])), printer)).toEqual(['change resource name:mv role:Secondary']);
  });

  it('a lost connection: the connection once, then each volume\'s peer-device, one batch', () => {
    const printer = new Events2Printer(plain);
    const s0 = resource([volume(), volume({ minor: 1791, volume: 1 })]);
    lines(existsEvents(s0), printer);
    const lost = { conn: ConnState.NetworkFailure, peer: Role.Unknown, pdsk: DiskState.DUnknown };
    const s1 = resource(volumesOf(s0).map((v) => ({ ...v, ...lost })));
    const events = changeEvents(new Map(volumesOf(s0).map((v) => [v.volume, v])), s1);
    expect(lines(events, printer)).toEqual([
      'change connection name:mv peer-node-id:0 conn-name:peer connection:NetworkFailure role:Unknown',
      'change peer-device name:mv peer-node-id:0 conn-name:peer volume:0 replication:NetworkFailure peer-disk:DUnknown',
      'change peer-device name:mv peer-node-id:0 conn-name:peer volume:1 replication:NetworkFailure peer-disk:DUnknown',
    ]);
    expect(events.map((e) => e.continues === true)).toEqual([true, true, false]);
  });

  it('connect from StandAlone creates the connection and a peer-device per volume; disconnect and down destroy them per volume', () => {
    const printer = new Events2Printer(plain);
    const standAlone = { role: Role.Secondary, peer: Role.Unknown, conn: ConnState.StandAlone, pdsk: DiskState.DUnknown };
    const s0 = resource([volume(standAlone), volume({ ...standAlone, minor: 1791, volume: 1 })]);
    lines(existsEvents(s0), printer);
    const s1 = resource(volumesOf(s0).map((v) => ({ ...v, conn: ConnState.Unconnected })));
    const all = (s: StatusSnapshot): Map<number, StatusSnapshot> => new Map(volumesOf(s).map((v) => [v.volume, v]));
    expect(lines(changeEvents(all(s0), s1), printer)).toEqual([
      'create connection name:mv peer-node-id:0 conn-name:peer connection:StandAlone role:Unknown',
      'create peer-device name:mv peer-node-id:0 conn-name:peer volume:0 replication:StandAlone peer-disk:DUnknown resync-suspended:no',
      'create peer-device name:mv peer-node-id:0 conn-name:peer volume:1 replication:StandAlone peer-disk:DUnknown resync-suspended:no',
      'change connection name:mv peer-node-id:0 conn-name:peer connection:Unconnected',
      'change peer-device name:mv peer-node-id:0 conn-name:peer volume:0 replication:Unconnected',
      'change peer-device name:mv peer-node-id:0 conn-name:peer volume:1 replication:Unconnected',
    ]);
    const s2 = resource(volumesOf(s1).map((v) => ({ ...v, conn: ConnState.StandAlone })));
    expect(lines(changeEvents(all(s1), s2), printer)).toEqual([
      'change connection name:mv peer-node-id:0 conn-name:peer connection:StandAlone',
      'change peer-device name:mv peer-node-id:0 conn-name:peer volume:0 replication:StandAlone',
      'change peer-device name:mv peer-node-id:0 conn-name:peer volume:1 replication:StandAlone',
      'destroy peer-device name:mv peer-node-id:0 conn-name:peer volume:0',
      'destroy peer-device name:mv peer-node-id:0 conn-name:peer volume:1',
      'destroy connection name:mv peer-node-id:0 conn-name:peer',
    ]);
    expect(lines(downEvents(s1), new Events2Printer(plain))).toEqual([
      'destroy peer-device name:mv peer-node-id:0 conn-name:peer volume:0',
      'destroy peer-device name:mv peer-node-id:0 conn-name:peer volume:1',
      'destroy connection name:mv peer-node-id:0 conn-name:peer',
      'destroy device name:mv volume:0 minor:1790',
      'destroy device name:mv volume:1 minor:1791',
      'destroy resource name:mv',
    ]);
  });

  it('refuses a lone before-state for a resource of two volumes, and a before-state of a volume it does not have', () => {
    const s = syncingPair();
    expect(() => changeEvents(volume(), s)).toThrow(/2 volumes; pass them by volume number/);
    expect(() => changeEvents(new Map([[7, volume()]]), s)).toThrow(/volume 7 changed, but mv has no such volume/);
  });
});

describe('a two-volume resource that is not up', () => {
  it('is an unconfigured minor per configured volume, the first on top', () => {
    const s = idlePair();
    expect(s.minor).toBe(1793);
    expect(volumesOf(s).map((v) => [v.minor, v.volume, v.device, v.conn, v.disk, v.role])).toEqual([
      [1793, 0, '/dev/drbd1793', ConnState.StandAlone, DiskState.Diskless, Role.Secondary],
      [1794, 1, '/dev/drbd1794', ConnState.StandAlone, DiskState.Diskless, Role.Secondary],
    ]);
  });
});

function metricsVolume(over: Partial<ResourceMetricsReport>): ResourceMetricsReport {
  const h = new LatencyHistogram();
  h.record(0.3);
  return {
    version: 1, resource: 'mv', node: 'alpha', peerNode: 'beta', minor: 1790, volume: 0,
    role: 'Secondary', peerRole: 'Secondary', cstate: 'Connected', disk: 'UpToDate', peerDisk: 'UpToDate',
    suspended: false, mayPromote: true, promotionScore: 1, sizeBytes: 64 * 1024 * 1024,
    counters: {
      sentBytes: 4096, receivedBytes: 512, diskWrittenBytes: 8192, diskReadBytes: 1024, alWrites: 3, bmWrites: 2,
      readsInFlight: 0, writesInFlight: 1, flushesInFlight: 0, lowerPending: 0, outOfSyncBytes: 0, apInFlightBytes: 4096, rsInFlightBytes: 0, congested: false,
    },
    histograms: { diskWrite: h.snapshot(), diskFlush: h.snapshot(), peerWrite: h.snapshot(), peerFlush: h.snapshot() },
    resyncBytesPerSecond: 0, splitBrains: { detected: 1, unresolved: 0 },
    ...over,
  };
}

describe('metrics with two volumes: device and peer-device series per volume, resource and connection series once', () => {
  it('labels each volume\'s series with its volume and minor, and sums the connection\'s in-flight bytes', () => {
    const v0 = metricsVolume({});
    const v1 = metricsVolume({
      minor: 1791, volume: 1, role: 'Primary', cstate: 'SyncSource', peerDisk: 'Inconsistent', disk: 'UpToDate', mayPromote: false, promotionScore: 1,
      sizeBytes: 32 * 1024 * 1024, resyncBytesPerSecond: 2048,
      counters: { ...v0.counters!, outOfSyncBytes: 12288, apInFlightBytes: 8192, rsInFlightBytes: 1024, congested: true },
    });
    const text = renderNodeMetrics({ resources: [{ name: 'mv', report: { ...v0, volumes: [v0, v1] } }], kmodVersion: '8.4.11', utilsVersion: 'udrbd' }, LATENCY_BOUNDS_MS.map((ms) => ms / 1000));
    const f = parsePrometheus(text);
    const dev = (vnr: string, minor: string): Record<string, string> => ({ name: 'mv', volume: vnr, minor });
    const peer = (vnr: string): Record<string, string> => ({ name: 'mv', conn_name: 'beta', peer_node_id: '1', volume: vnr });
    expect(sample(f, 'drbd_device_size_bytes', dev('0', '1790'))).toBe(64 * 1024 * 1024);
    expect(sample(f, 'drbd_device_size_bytes', dev('1', '1791'))).toBe(32 * 1024 * 1024);
    expect(sample(f, 'drbd_device_state', { ...dev('1', '1791'), drbd_device_state: 'UpToDate' })).toBe(1);
    expect(sample(f, 'drbd_peerdevice_outofsync_bytes', peer('0'))).toBe(0);
    expect(sample(f, 'drbd_peerdevice_outofsync_bytes', peer('1'))).toBe(12288);
    expect(sample(f, 'udrbd_peerdevice_resync_speed_bytes_per_second', peer('1'))).toBe(2048);
    // once per resource / connection
    expect(sample(f, 'drbd_resource_role', { name: 'mv', drbd_resource_role: 'Primary' })).toBe(1);
    expect(sample(f, 'drbd_resource_maypromote', { name: 'mv' })).toBe(0);
    expect(sample(f, 'drbd_connection_state', { name: 'mv', drbd_connection_state: 'Connected' })).toBe(1);
    expect(sample(f, 'drbd_connection_apinflight_bytes', { name: 'mv' })).toBe(4096 + 8192);
    expect(sample(f, 'drbd_connection_rsinflight_bytes', { name: 'mv' })).toBe(1024);
    expect(sample(f, 'drbd_connection_congested', { name: 'mv' })).toBe(1);
    expect(sample(f, 'udrbd_connection_splitbrains_total', { name: 'mv' })).toBe(1);
    expect(hasSample(f, 'drbd_device_size_bytes', { name: 'mv', volume: '2' })).toBe(false);
    expect(text.match(/^drbd_device_size_bytes\{/gm)).toHaveLength(2);
    expect(text.match(/^drbd_connection_apinflight_bytes\{/gm)).toHaveLength(1);
  });
});
