/**
 * daemon/device-size — the size of the replicated device, as DRBD 8.4
 * decides it (drbd_new_dev_size / receive_sizes / drbd_determine_dev_size):
 * at attach the last agreed size (la_size_sect) capped by what the local
 * disk can hold; on connect the smaller of both nodes' usable sizes. A node
 * whose data is worth keeping (disk Outdated or better) never shrinks its
 * device while connecting: it logs "The peer's disk size is too small!" and
 * drops the connection. Pure: no disks, no sockets; the link applies it.
 *
 * udrbd difference: at connect an in-use device (a Primary) keeps its size
 * and its peer adopts it; it grows only by `resize` (planResize: DRBD's
 * drbd_new_dev_size and the drbd_determine_dev_size checks; then, with the
 * peer's answering P_SIZES, sizeAfterPeerSizes). Nothing here shrinks a
 * device that holds data.
 */
import { assert } from '../util/assert.js';
import { DiskState, Role } from '../resource/states.js';
import { ppsize } from '../meta/metadata.js';

export const SECTOR_BYTES = 512;

export interface LocalSizeView {
  /** What the local data area can hold, capped by a configured `disk { size }`. */
  maxSizeBytes: number;
  /** The device's current size (agreed at the last connect, or la_size at attach). */
  currentSizeBytes: number;
  role: Role;
  disk: DiskState;
}

export interface PeerSizeView {
  /** The peer's usable size (its P_SIZES d_size). */
  diskSizeBytes: number;
  /** The peer's current device size (its P_SIZES c_size). */
  currentSizeBytes: number;
  role: Role;
}

export type SizeAgreement =
  | { kind: 'agreed'; sizeBytes: number; warnLines: string[] }
  | { kind: 'peer-too-small'; sizeBytes: number; errorLine: string; warnLines: string[] };

/** DRBD's warn_if_differ_considerably: more than 1/8 apart. */
export function differConsiderably(aSectors: number, bSectors: number): boolean {
  const d = Math.abs(aSectors - bSectors);
  return d > Math.floor(aSectors / 8) || d > Math.floor(bSectors / 8);
}

/** The size both nodes use while connected (receive_sizes on connect). */
export function agreeDeviceSize(local: LocalSizeView, peer: PeerSizeView): SizeAgreement {
  assert(local.maxSizeBytes > 0 && local.maxSizeBytes % SECTOR_BYTES === 0, 'local usable size is whole sectors');
  assert(local.currentSizeBytes > 0 && local.currentSizeBytes <= local.maxSizeBytes, 'current size lies inside the local data area');
  const warnLines: string[] = [];
  const mySectors = local.maxSizeBytes / SECTOR_BYTES;
  const peerSectors = Math.floor(peer.diskSizeBytes / SECTOR_BYTES);
  if (differConsiderably(peerSectors, mySectors)) {
    warnLines.push(`Considerable difference in lower level device sizes: ${peerSectors}s vs. ${mySectors}s`);
  }
  let sizeBytes = peerSectors > 0 ? Math.min(local.maxSizeBytes, peerSectors * SECTOR_BYTES) : local.currentSizeBytes;
  // udrbd: an exposed device keeps its size (no online grow); both sides cap at the Primary's current size.
  if (local.role === Role.Primary) sizeBytes = Math.min(sizeBytes, local.currentSizeBytes);
  if (peer.role === Role.Primary && peer.currentSizeBytes > 0) sizeBytes = Math.min(sizeBytes, Math.floor(peer.currentSizeBytes / SECTOR_BYTES) * SECTOR_BYTES);
  // "Never shrink a device with usable data during connect."
  if (sizeBytes < local.currentSizeBytes && (local.disk >= DiskState.Outdated || local.role === Role.Primary)) {
    return {
      kind: 'peer-too-small',
      sizeBytes,
      errorLine: `The peer's disk size is too small! (${sizeBytes / SECTOR_BYTES} < ${local.currentSizeBytes / SECTOR_BYTES} sectors)`,
      warnLines,
    };
  }
  assert(sizeBytes > 0 && sizeBytes <= local.maxSizeBytes, 'agreed size lies inside the local data area');
  return { kind: 'agreed', sizeBytes, warnLines };
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
 * refuses (111), so no option is silently dropped. A smaller size is refused
 * too: without --size with DRBD's ERR_IMPLICIT_SHRINK (170); with --size
 * because udrbd does not shrink a device online (DRBD 8.4 would).
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
  if (size < view.currentSizeBytes) {
    if (u === 0) {
      return {
        kind: 'refused',
        code: 170,
        errorLines: [`Implicit shrink not allowed. Use --size=${size / SECTOR_BYTES}s for explicit shrink.`],
      };
    }
    return {
      kind: 'refused',
      code: 0,
      errorLines: [],
      message: `udrbd does not shrink a device online: --size=${size / SECTOR_BYTES}s is below the current size of ${view.currentSizeBytes / SECTOR_BYTES}s (DRBD 8.4 would shrink it). Shrink the file system first, then set 'disk { size }' in the configuration and restart the resource on both nodes (udrbdadm down, udrbdadm up)`,
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

/**
 * receive_sizes while connected: the size both nodes can now hold (the
 * peer's usable size, this node's, each already capped by its --size /
 * `disk { size }`). udrbd never shrinks online: a smaller result keeps the
 * current size (DRBD would shrink a connected device).
 */
export function sizeAfterPeerSizes(localMaxBytes: number, peerDiskBytes: number, currentSizeBytes: number): { sizeBytes: number; shrinkRefused: boolean } {
  const agreed = Math.floor(Math.min(localMaxBytes, peerDiskBytes) / SECTOR_BYTES) * SECTOR_BYTES;
  if (agreed < currentSizeBytes) return { sizeBytes: currentSizeBytes, shrinkRefused: true };
  return { sizeBytes: agreed, shrinkRefused: false };
}
