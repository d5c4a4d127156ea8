/**
 * daemon/device-size — the size of the replicated device, as DRBD 8.4
 * decides it (drbd_new_dev_size / receive_sizes / drbd_determine_dev_size):
 * at attach the last agreed size (la_size_sect) capped by what the local
 * disk can hold; on connect the smaller of both nodes' usable sizes. A node
 * whose data is worth keeping (disk Outdated or better) never shrinks its
 * device while connecting: it logs "The peer's disk size is too small!" and
 * drops the connection. Pure: no disks, no sockets; the link applies it.
 *
 * udrbd difference: an in-use device (a Primary) does not grow online either
 * (the NBD export and the FUSE file have a fixed size while exposed), so a
 * Primary keeps its current size and its peer adopts it.
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
