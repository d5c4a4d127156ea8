/**
 * daemon/status — a resource process's observable state as one plain
 * snapshot, and the texts drbdadm prints for it: `role` (Primary/Secondary),
 * `cstate` (Connected), `dstate` (UpToDate/UpToDate), DRBD-9-style `status`
 * (events2 lines: daemon/events2). A resource of several volumes reports one
 * snapshot per volume in `volumes` (the top-level fields are the first
 * volume's); every screen reads them through `volumesOf`. Pure: no sockets,
 * no disks.
 */
import {
  ConnState,
  DiskState,
  Role,
  connName,
  diskName,
  roleName,
} from '../resource/states.js';
import { type ResourceState, formatStateChange } from '../resource/state.js';
import { resyncSuspendedText } from './events2.js';

export interface SyncProgress {
  totalBits: number;
  leftBits: number;
  /** 0…100 with two decimals, as `done:` in status. */
  percentDone: number;
  speedKiBps: number;
  averageKiBps: number;
  etaSeconds: number | undefined;
  bytesTransferred: number;
  /** SyncTarget only: /proc/drbd's `want:` (c_sync_rate: resync-rate, or the dynamic controller's last step), KiB/s. */
  wantKiBps?: number | undefined;
}

/** The resource state as resource/ defines it (role, peer, conn, disk, pdsk, susp*, *isp). */
export type StateSnapshot = ResourceState;

export interface StatusSnapshot extends StateSnapshot {
  resource: string;
  node: string;
  peerNode: string | undefined;
  minor: number;
  /** The volume number (`volume N { }`; 0 without a volume block): events2's `volume:`. */
  volume: number;
  device: string;
  protocol: 'A' | 'B' | 'C' | undefined;
  /** disk { resync-rate } as configured now (changes with `adjust`), KiB/s. */
  resyncRateKiBps?: number | undefined;
  /** The rate limit the data path applies to resync now (resync-rate, or c-max-rate with c-plan-ahead > 0), KiB/s. */
  resyncRateLimitKiBps?: number | undefined;
  uuids: { current: string; bitmap: string; historyStart: string; historyEnd: string } | undefined;
  outOfSyncKiB: number;
  sync: SyncProgress | undefined;
  counters: Record<string, number>;
  /** The device size as the kernel reports it (0 while diskless); events2 `size:`. */
  deviceSizeKiB?: number;
  exposed: boolean;
  /** The block device the Primary's volume is exposed as (daemon/frontend); absent/null when not exposed. */
  frontend?: FrontendStatusView | null;
  pid: number;
  /**
   * Every volume of the resource in volume-number order, each a full snapshot
   * (same resource, node and connection; its own minor, device, role/peer,
   * disk/pdsk, replication state in `conn`, uuids, sync, counters). Absent or
   * one entry: the resource has one volume, the top-level fields.
   */
  volumes?: StatusSnapshot[];
}

/** daemon/frontend's exposure as status shows it. */
export interface FrontendStatusView {
  kind: 'nbd' | 'fuse' | 'none';
  nbdSocket: string;
  /** `HOST:PORT` of the NBD export on TCP loopback (UDRBD_NBD_TCP); absent when not configured. */
  nbdTcp?: string;
  kernelDevice: string | null;
  devicePath: string | null;
}

export const UNCONFIGURED = 'Unconfigured';

/** The snapshots of every volume of the resource, in volume-number order (one: the snapshot itself). */
export function volumesOf(s: StatusSnapshot): StatusSnapshot[] {
  return s.volumes !== undefined && s.volumes.length > 0 ? s.volumes : [s];
}

/** DRBD's max_role: Primary over Secondary over Unknown (the enum's numbers are not in that order). */
export function highestRole(roles: readonly Role[]): Role {
  if (roles.includes(Role.Primary)) return Role.Primary;
  if (roles.includes(Role.Secondary)) return Role.Secondary;
  return Role.Unknown;
}

/** The resource's role as 8.4 reports it for several volumes (conn_highest_role): the highest of its volumes'. */
export function resourceRole(s: StatusSnapshot): Role {
  return highestRole(volumesOf(s).map((v) => v.role));
}

/** The peer's role as 8.4 reports it for the connection (conn_highest_peer). */
export function resourcePeerRole(s: StatusSnapshot): Role {
  return highestRole(volumesOf(s).map((v) => v.peer));
}

/** True when drbdsetup would print "Unconfigured" (StandAlone + Diskless + Secondary). */
export function isUnconfigured(s: StateSnapshot): boolean {
  return s.conn === ConnState.StandAlone && s.disk === DiskState.Diskless && s.role === Role.Secondary;
}

export function roleText(s: StateSnapshot): string {
  return `${roleName(s.role)}/${roleName(s.peer)}`;
}

export function cstateText(s: StateSnapshot): string {
  return connName(s.conn);
}

export function dstateText(s: StateSnapshot): string {
  return `${diskName(s.disk)}/${diskName(s.pdsk)}`;
}

/**
 * `drbdadm role|cstate|dstate RES` (or RES/VNR: `vnr`): drbdadm-84 runs
 * drbdsetup once per minor, so one line per volume in volume order, each
 * `Unconfigured` for a volume with nothing configured.
 */
export function perVolumeLines(s: StatusSnapshot, text: (v: StateSnapshot) => string, vnr?: number): string {
  const volumes = volumesOf(s).filter((v) => vnr === undefined || v.volume === vnr);
  return volumes.map((v) => `${isUnconfigured(v) ? UNCONFIGURED : text(v)}\n`).join('');
}

/** DRBD 9 names the 8.4 connection states it shows as `connection:` (not connected) or `replication:`. */
function connectionText(conn: ConnState): string {
  switch (conn) {
    case ConnState.Unconnected:
    case ConnState.WFConnection:
    case ConnState.WFReportParams:
      return 'Connecting';
    case ConnState.Timeout:
    case ConnState.BrokenPipe:
    case ConnState.NetworkFailure:
    case ConnState.ProtocolError:
    case ConnState.TearDown:
      return connName(conn);
    default:
      return connName(conn);
  }
}

export function replicationText(conn: ConnState): string {
  return conn === ConnState.Connected ? 'Established' : connName(conn);
}

function isConnected(conn: ConnState): boolean {
  return conn >= ConnState.Connected;
}

function isSyncing(conn: ConnState): boolean {
  return (
    conn === ConnState.SyncSource ||
    conn === ConnState.SyncTarget ||
    conn === ConnState.PausedSyncS ||
    conn === ConnState.PausedSyncT ||
    conn === ConnState.VerifyS ||
    conn === ConnState.VerifyT
  );
}

/**
 * `drbdadm status RES` text (drbd-utils 9 against an 8.4-style resource); `verbose` adds the protocol to the peer line.
 * Several volumes: drbdsetup status's layout, a `volume:N` device line per volume and, under the peer line,
 * a `volume:N` replication line per volume; the resource and peer roles are the highest of the volumes'.
 */
export function statusText(s: StatusSnapshot, verbose = false): string {
  const volumes = volumesOf(s);
  const several = volumes.length > 1;
  const volumeWord = (v: StatusSnapshot): string => (several ? `volume:${v.volume} ` : '');
  const lines: string[] = [];
  lines.push(`${s.resource} role:${roleName(resourceRole(s))}${s.susp ? ' suspended:user' : ''}`);
  for (const v of volumes) lines.push(`  ${volumeWord(v)}disk:${diskName(v.disk)}`);
  // drbd-utils against an 8.4 resource names the connection `peer` (DRBD 9 would print the host name)
  const peerName = 'peer';
  const protocol = verbose && s.protocol ? ` protocol:${s.protocol}` : '';
  if (volumes.some((v) => isConnected(v.conn))) {
    lines.push(`  ${peerName} role:${roleName(resourcePeerRole(s))}${protocol}`);
    for (const v of volumes) {
      let repl = `    ${volumeWord(v)}replication:${replicationText(v.conn)} peer-disk:${diskName(v.pdsk)}`;
      if (v.sync && isSyncing(v.conn)) repl += ` done:${v.sync.percentDone.toFixed(2)}`;
      const suspended = resyncSuspendedText(v);
      if (suspended !== 'no') repl += ` resync-suspended:${suspended}`;
      lines.push(repl);
    }
  } else {
    lines.push(`  ${peerName} connection:${connectionText(s.conn)}${protocol}`);
  }
  return `${lines.join('\n')}\n\n`;
}

/** `role( Secondary -> Primary ) conn( ... )` — DRBD's kernel-log text, from resource/state. */
export const stateChangeText = formatStateChange;

/** The status snapshot with names instead of enum numbers (`status --json`); several volumes add `volumes`, one object each. */
export function statusJson(s: StatusSnapshot): Record<string, unknown> {
  const volumes = volumesOf(s);
  // The top level stays the first volume's, as the snapshot's.
  return volumes.length > 1 ? { ...volumeJson(s), volumes: volumes.map(volumeJson) } : volumeJson(s);
}

function volumeJson(s: StatusSnapshot): Record<string, unknown> {
  return {
    resource: s.resource,
    node: s.node,
    minor: s.minor,
    device: s.device,
    role: roleName(s.role),
    peerRole: roleName(s.peer),
    cstate: isUnconfigured(s) ? UNCONFIGURED : connName(s.conn),
    replication: isConnected(s.conn) ? replicationText(s.conn) : connectionText(s.conn),
    disk: diskName(s.disk),
    peerDisk: diskName(s.pdsk),
    peerNode: s.peerNode ?? null,
    protocol: s.protocol ?? null,
    resyncRateKiBps: s.resyncRateKiBps ?? null,
    resyncRateLimitKiBps: s.resyncRateLimitKiBps ?? null,
    suspended: s.susp || s.suspNod || s.suspFen,
    resyncSuspended: { user: s.userIsp, peer: s.peerIsp, dependency: s.aftrIsp },
    uuids: s.uuids ?? null,
    outOfSyncKiB: s.outOfSyncKiB,
    sync: s.sync ?? null,
    counters: s.counters,
    exposed: s.exposed,
    frontend: s.frontend ?? null,
    pid: s.pid,
  };
}
