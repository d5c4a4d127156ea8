/**
 * resource/diskless — DRBD 8.4's rules for a link on which one node has no
 * disk (never attached, or detached and reconnected), as pure functions:
 * whether the connect runs the sync handshake at all (drbd_receiver.c
 * receive_state), what a node without a disk tells its peer
 * (drbd_main.c drbd_send_uuids / drbd_send_sizes), and which size its
 * device takes from the peer's P_SIZES (receive_sizes). No sockets, no
 * disks: daemon/link applies them.
 */
import { DiskState, Role } from './states.js';
import type { GenerationUuids } from '../meta/types.js';
import type { HandshakeDecision } from './uuid.js';

/** DRBD's sector; P_SIZES counts in sectors. */
const SECTOR_BYTES = 512;

/** receive_sizes refuses a link on which neither node has a disk (then C_DISCONNECTING). */
export const NO_BACKING_STORAGE_LINE = 'some backing storage is needed';

/**
 * receive_state: drbd_sync_handshake runs only with the peer's UUIDs known
 * (`mdev->p_uuid`), the peer's disk at least Negotiating and a local disk
 * (get_ldev_if_state(D_NEGOTIATING)). Otherwise the link goes Connected
 * with the peer's disk state as it reports it (ds:Diskless/UpToDate).
 */
export function syncHandshakeRuns(localDisk: DiskState, peerDisk: DiskState, peerUuidsKnown: boolean): boolean {
  return peerUuidsKnown && peerDisk >= DiskState.Negotiating && localDisk >= DiskState.Negotiating;
}

/**
 * drbd_send_uuids sends nothing without a local disk (get_ldev_if_state
 * D_NEGOTIATING fails), and drbd_send_sizes sends d_size 0: a node is
 * "diskless" on the wire below Negotiating (Diskless, Failed, Attaching).
 */
export function hasDiskOnWire(localDisk: DiskState): boolean {
  return localDisk >= DiskState.Negotiating;
}

export type DisklessDeviceSize =
  | { kind: 'size'; sizeBytes: number }
  | { kind: 'no-backing-storage'; errorLine: string };

/**
 * receive_sizes on a node without a disk: "I am diskless, need to accept the
 * peer's size" — drbd_set_my_capacity(p_csize ?: p_usize ?: p_size) (8.4:
 * the peer's current device size, else its usable disk size; udrbd's
 * P_SIZES has no u_size). A peer that has no disk either (d_size 0) is
 * refused: "some backing storage is needed".
 */
export function disklessDeviceSize(peer: { diskSizeBytes: number; currentSizeBytes: number }): DisklessDeviceSize {
  if (peer.diskSizeBytes <= 0) return { kind: 'no-backing-storage', errorLine: NO_BACKING_STORAGE_LINE };
  const bytes = peer.currentSizeBytes > 0 ? peer.currentSizeBytes : peer.diskSizeBytes;
  return { kind: 'size', sizeBytes: Math.floor(bytes / SECTOR_BYTES) * SECTOR_BYTES };
}

/**
 * drbd_nl.c drbd_adm_attach: a disk attached under a device that already
 * has a size (a diskless node that took the peer's) must hold all of it —
 * "make sure the new disk is big enough (we may currently be R_PRIMARY with
 * no local disk...)": else ERR_DISK_TOO_SMALL (111). Returns the size the
 * new disk then agrees on (the device's), or null when it is too small.
 */
export function attachSizeUnderDevice(diskMaxBytes: number, deviceBytes: number): number | null {
  if (deviceBytes <= 0) return diskMaxBytes;
  return diskMaxBytes < deviceBytes ? null : deviceBytes;
}

/**
 * receive_uuids: a diskless Primary that is not connected may only connect
 * to the data its device shows — the peer's current UUID must be its
 * ed_uuid (bit 0, the role bit, masked): else "Can only connect to data
 * with current UUID=…" and the link is dropped. Any other node may connect.
 */
export function disklessPrimaryMayConnect(
  role: Role,
  exposedDataUuid: bigint | undefined,
  peerCurrentUuid: bigint | undefined,
): { ok: true } | { ok: false; errorLine: string } {
  if (role !== Role.Primary || exposedDataUuid === undefined || peerCurrentUuid === undefined) return { ok: true };
  if ((exposedDataUuid & ~1n) === (peerCurrentUuid & ~1n)) return { ok: true };
  return { ok: false, errorLine: `Can only connect to data with current UUID=${exposedDataUuid.toString(16).toUpperCase().padStart(16, '0')}` };
}

/** The outcome of a connect without a sync handshake (syncHandshakeRuns false): Connected, nothing to sync. */
export function noSyncHandshake(selfUuids: GenerationUuids, peerUuids: GenerationUuids): HandshakeDecision {
  return { kind: 'no-sync', full: false, hg: 0, compareHg: 0, rule: 0, logLines: [], handlers: [], selfUuids, peerUuids, demoted: false };
}
