/**
 * daemon/device-size — the size of the replicated device, as DRBD 8.4
 * decides it (drbd_new_dev_size / receive_sizes / drbd_determine_dev_size):
 * at attach the last agreed size (la_size_sect) capped by what the local
 * disk can hold; on connect the smaller of both nodes' usable sizes, so a
 * device (a Primary's too) grows when both disks hold more than it. A node
 * whose data is worth keeping (disk Outdated or better) never shrinks its
 * device while connecting: it logs "The peer's disk size is too small!" and
 * drops the connection. On connect the smaller non-zero u_size (`resize
 * --size`, `disk { size }`) of both nodes becomes both nodes' u_size; once
 * connected a node takes the peer's u_size as it comes (receive_sizes:
 * "Peer sets u_size to ..."), which is how `resize --size` shrinks both.
 * `resize` is planResize (drbd_new_dev_size and the drbd_determine_dev_size
 * checks), then, with the peer's answering P_SIZES, sizeAfterPeerSizes.
 * Pure: no disks, no sockets; the link and the resize verb apply it.
 *
 * udrbd difference: a P_SIZES d_size is already capped by the sender's
 * u_size (DRBD sends the uncapped disk size beside it).
 */
import { assert } from '../util/assert.js';
import { DiskState, Role } from '../resource/states.js';
import { ppsize } from '../meta/metadata.js';

export const SECTOR_BYTES = 512;

export interface LocalSizeView {
  /** What the local data area can hold, capped by the u_size. */
  maxSizeBytes: number;
  /** m_size: the local data area, not capped by the u_size. */
  dataAreaBytes: number;
  /** The local u_size (`disk { size }`, the last `resize --size`); 0 = none. */
  userSizeBytes: number;
  /** The device's current size (agreed at the last connect, or la_size at attach). */
  currentSizeBytes: number;
  role: Role;
  disk: DiskState;
}

export interface PeerSizeView {
  /** The peer's usable size (its P_SIZES d_size). */
  diskSizeBytes: number;
  /** The peer's u_size (its P_SIZES u_size); 0 = none. */
  userSizeBytes: number;
  /** The peer's current device size (its P_SIZES c_size). */
  currentSizeBytes: number;
  role: Role;
}

export type SizeAgreement =
  /** userSizeBytes: the u_size this node takes (min_not_zero of both); infoLines: "Peer sets u_size to ...". */
  | { kind: 'agreed'; sizeBytes: number; userSizeBytes: number; warnLines: string[]; infoLines: string[] }
  | { kind: 'peer-too-small'; sizeBytes: number; errorLine: string; warnLines: string[] };

/** DRBD's warn_if_differ_considerably: more than 1/8 apart. */
export function differConsiderably(aSectors: number, bSectors: number): boolean {
  const d = Math.abs(aSectors - bSectors);
  return d > Math.floor(aSectors / 8) || d > Math.floor(bSectors / 8);
}

/** DRBD's min_not_zero. */
function minNotZero(a: number, b: number): number {
  if (a === 0) return b;
  if (b === 0) return a;
  return Math.min(a, b);
}

/**
 * The u_size a node takes from the peer's P_SIZES: on connect the smaller
 * non-zero one of both, once connected the peer's as it is. A u_size larger
 * than this node's data area is not taken (DRBD would take it and log
 * "Requested disk size is too big" at every size decision): the size is then
 * the disks' anyway.
 */
export function userSizeFromPeer(localUserBytes: number, peerUserBytes: number, dataAreaBytes: number, connecting: boolean): { userSizeBytes: number; infoLines: string[] } {
  const wanted = connecting ? minNotZero(localUserBytes, peerUserBytes) : peerUserBytes;
  if (wanted === localUserBytes || wanted > dataAreaBytes || wanted % SECTOR_BYTES !== 0) return { userSizeBytes: localUserBytes, infoLines: [] };
  return { userSizeBytes: wanted, infoLines: [`Peer sets u_size to ${wanted / SECTOR_BYTES} sectors`] };
}

/** The size both nodes use while connected (receive_sizes on connect). */
export function agreeDeviceSize(local: LocalSizeView, peer: PeerSizeView): SizeAgreement {
  assert(local.maxSizeBytes > 0 && local.maxSizeBytes % SECTOR_BYTES === 0, 'local usable size is whole sectors');
  assert(local.maxSizeBytes <= local.dataAreaBytes, 'the usable size lies inside the data area');
  assert(local.currentSizeBytes > 0 && local.currentSizeBytes <= local.maxSizeBytes, 'current size lies inside the local data area');
  const warnLines: string[] = [];
  const mySectors = local.dataAreaBytes / SECTOR_BYTES;
  const peerSectors = Math.floor(peer.diskSizeBytes / SECTOR_BYTES);
  if (differConsiderably(peerSectors, mySectors)) {
    warnLines.push(`Considerable difference in lower level device sizes: ${peerSectors}s vs. ${mySectors}s`);
  }
  const user = userSizeFromPeer(local.userSizeBytes, peer.userSizeBytes, local.dataAreaBytes, true);
  const myMaxBytes = user.userSizeBytes > 0 ? Math.min(user.userSizeBytes, local.dataAreaBytes) : local.dataAreaBytes;
  // drbd_new_dev_size: min(p_size, m_size), then u_size; the device grows when both disks hold more (a Primary's too).
  const sizeBytes = peerSectors > 0 ? Math.min(myMaxBytes, peerSectors * SECTOR_BYTES) : Math.min(local.currentSizeBytes, myMaxBytes);
  // "Never shrink a device with usable data during connect."
  if (sizeBytes < local.currentSizeBytes && (local.disk >= DiskState.Outdated || local.role === Role.Primary)) {
    return {
      kind: 'peer-too-small',
      sizeBytes,
      errorLine: `The peer's disk size is too small! (${sizeBytes / SECTOR_BYTES} < ${local.currentSizeBytes / SECTOR_BYTES} sectors)`,
      warnLines,
    };
  }
  assert(sizeBytes > 0 && sizeBytes <= myMaxBytes, 'agreed size lies inside the local data area');
  return { kind: 'agreed', sizeBytes, userSizeBytes: user.userSizeBytes, warnLines, infoLines: user.infoLines };
}

/** The size at attach: la_size_sect if set (capped by the disk), else the whole usable area. */
export function sizeAtAttach(laSizeSectors: number, maxSizeBytes: number): number {
  const laBytes = laSizeSectors * SECTOR_BYTES;
  return laBytes > 0 ? Math.min(laBytes, maxSizeBytes) : maxSizeBytes;
}

/** drbd_set_my_capacity's line: `size = 64 MB (65496 KB)`. */
export function sizeLogLine(sizeBytes: number): string {
  const kib = Math.floor(sizeBytes / 1024);
  return `size = ${ppsize(kib)} (${kib} KB)`;
}

/** P_SIZES dds_flags (drbd_int.h enum dds_flags): the resize options travel to the peer. */
export const DdsFlag = {
  /** --assume-peer-has-space (DDSF_FORCED). */
  forced: 1,
  /** --assume-clean (DDSF_NO_RESYNC): the grown area counts as in sync on both nodes. */
  noResync: 2,
} as const;

export const UNCHANGED_DISK_DID_NOT_GROW = 'the backing disk did not grow (grow it first: truncate -s, lvextend)';

/** `resize` options (drbdsetup resize --size --assume-peer-has-space --assume-clean). */
export interface ResizeOptions {
  /** u_size: --size (or `disk { size }`, which drbdadm passes as --size); 0 = the whole disk. */
  userSizeBytes: number;
  assumePeerHasSpace: boolean;
  assumeClean: boolean;
}

export interface ResizeView {
  /** m_size: what the local data area holds now (the backing disk re-read, meta-data moved). */
  localMaxBytes: number;
  /** p_size: the peer's usable size from its last P_SIZES (kept while disconnected); 0 = not known. */
  peerDiskBytes: number;
  /** The device's current size (la_size_sect). */
  currentSizeBytes: number;
  connected: boolean;
}

export type ResizeVerdict =
  | {
      kind: 'size';
      /** The new device size (may equal the current one). */
      sizeBytes: number;
      warnLines: string[];
      /** Why the size stays as it is, for the operator (udrbd; DRBD says nothing and exits 0). */
      unchangedWhy: string | null;
    }
  | { kind: 'refused'; code: number; errorLines: string[]; message?: string };

function kib(bytes: number): number {
  return Math.floor(bytes / 1024);
}

/**
 * drbd_new_dev_size + the checks of drbd_determine_dev_size for `resize`:
 * the smaller of both nodes' usable sizes (a disconnected node uses the
 * peer's last known size, or with --assume-peer-has-space its own: "Resize
 * while not connected was forced by the user!"), then --size. Where DRBD goes
 * on with a smaller size after "Requested disk size is too big", udrbd
 * refuses (111), so no option is silently dropped. A smaller size needs
 * --size (drbd_determine_dev_size: without it DRBD's ERR_IMPLICIT_SHRINK,
 * 170); with it the device shrinks to --size, as DRBD 8.4 does.
 */
export function planResize(view: ResizeView, options: ResizeOptions): ResizeVerdict {
  const m = view.localMaxBytes;
  assert(m > 0 && m % SECTOR_BYTES === 0, 'local usable size is whole sectors');
  assert(view.currentSizeBytes > 0, 'the device has a size');
  const warnLines: string[] = [];
  let p = view.peerDiskBytes;
  if (!view.connected && options.assumePeerHasSpace) {
    warnLines.push('Resize while not connected was forced by the user!');
    p = m;
  }
  let size: number;
  if (p > 0) size = Math.min(p, m);
  else size = Math.min(view.currentSizeBytes, m);
  size = Math.floor(size / SECTOR_BYTES) * SECTOR_BYTES;
  const u = options.userSizeBytes;
  // Connected, the peer's usable size here may be stale (its disk grew too): it answers our P_SIZES
  // with its new one, so only this disk bounds --size now; the exchange ends at min(--size, both disks).
  const bound = view.connected ? m : size;
  if (u > 0) {
    if (u > bound) {
      return {
        kind: 'refused',
        code: 111,
        errorLines: [`Requested disk size is too big (${kib(u)} > ${kib(bound)})`],
        message: `--size=${u / SECTOR_BYTES}s is more than ${bound < m ? "the peer's disk holds" : 'this disk holds'} (${bound / SECTOR_BYTES}s)`,
      };
    }
    size = Math.min(size, u);
    if (!view.connected) size = u;
  }
  if (size < view.currentSizeBytes && u === 0) {
    return {
      kind: 'refused',
      code: 170,
      errorLines: [`Implicit shrink not allowed. Use --size=${size / SECTOR_BYTES}s for explicit shrink.`],
    };
  }
  // Connected, the peer's new size arrives with its answer to our P_SIZES: the caller judges the outcome then.
  let unchangedWhy: string | null = null;
  if (size === view.currentSizeBytes && !view.connected) {
    if (p === 0) unchangedWhy = "the peer's disk size is not known (not connected since attach); connect, or use --assume-peer-has-space";
    else if (p < m) unchangedWhy = `the peer's last known disk size is ${p / SECTOR_BYTES}s and it is not connected; connect, or use --assume-peer-has-space`;
    else unchangedWhy = UNCHANGED_DISK_DID_NOT_GROW;
  }
  return { kind: 'size', sizeBytes: size, warnLines, unchangedWhy };
}

export interface PeerSizesView {
  /** m_size: this node's data area (not capped by its u_size). */
  dataAreaBytes: number;
  /** This node's u_size before the packet. */
  userSizeBytes: number;
  /** The peer's d_size (capped by its u_size). */
  peerDiskBytes: number;
  /** The peer's u_size. */
  peerUserBytes: number;
  currentSizeBytes: number;
}

export interface PeerSizesOutcome {
  sizeBytes: number;
  /** The u_size this node takes (the peer's, receive_sizes after the connect). */
  userSizeBytes: number;
  infoLines: string[];
  errorLines: string[];
}

/**
 * receive_sizes while connected: this node takes the peer's u_size, then
 * drbd_new_dev_size (the smaller of both usable sizes, then u_size) decides
 * the size — larger or smaller than now (`resize --size` on the peer shrinks
 * this node too). A u_size larger than the disks hold is DRBD's
 * "Requested disk size is too big"; below the current size that keeps the
 * size (DS_ERROR_SPACE_MD).
 */
export function sizeAfterPeerSizes(view: PeerSizesView): PeerSizesOutcome {
  const user = userSizeFromPeer(view.userSizeBytes, view.peerUserBytes, view.dataAreaBytes, false);
  const errorLines: string[] = [];
  let size = Math.floor(Math.min(view.dataAreaBytes, view.peerDiskBytes) / SECTOR_BYTES) * SECTOR_BYTES;
  const u = view.peerUserBytes;
  if (u > 0) {
    if (u > size) errorLines.push(`Requested disk size is too big (${kib(u)} > ${kib(size)})`);
    else size = u;
  }
  if (size === 0 || (size < view.currentSizeBytes && u > size)) size = view.currentSizeBytes;
  // The size stays where the taken u_size would not cover it (DS_ERROR_SPACE_MD): then so does this node's u_size.
  if (user.userSizeBytes > 0 && user.userSizeBytes < size) return { sizeBytes: size, userSizeBytes: view.userSizeBytes, infoLines: [], errorLines };
  return { sizeBytes: size, userSizeBytes: user.userSizeBytes, infoLines: user.infoLines, errorLines };
}
