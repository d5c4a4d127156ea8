/**
 * resource/md-flags — DRBD's meta-data flag rules as pure functions: the
 * MDF_* bits a state implies (drbd_state.c: after_state_ch → drbd_md_set_flag
 * / drbd_md_clear_flag) and the disk state a resource attaches with from the
 * flags on disk (drbd_nl.c: drbd_adm_attach). No I/O: daemon/meta-store
 * writes what these return.
 */
import { MdFlag } from '../meta/types.js';
import type { Fencing, ResourceState } from './state.js';
import { ConnState, DiskState, Role } from './states.js';

/** MDF_* bits implied by a state (after_state_ch), keeping FULL_SYNC and AL_DISABLED; AL_CLEAN is cleared. */
export function mdFlagsForState(s: ResourceState, prev: number, crashedPrimary: boolean): number {
  let f = prev & (MdFlag.fullSync | MdFlag.alDisabled);
  if (crashedPrimary) f |= MdFlag.crashedPrimary;
  if (s.role === Role.Primary || (s.pdsk < DiskState.Inconsistent && s.peer === Role.Primary)) f |= MdFlag.primaryInd;
  if (s.conn > ConnState.WFReportParams) f |= MdFlag.connectedInd;
  if (s.disk > DiskState.Inconsistent) f |= MdFlag.consistent;
  if (s.disk > DiskState.Outdated) f |= MdFlag.wasUpToDate;
  if (s.pdsk <= DiskState.Outdated && s.pdsk >= DiskState.Inconsistent) f |= MdFlag.peerOutDated;
  return f;
}

export interface AttachDerivation {
  disk: DiskState;
  pdsk: DiskState;
  crashedPrimary: boolean;
  useDegrWfcTimeout: boolean;
  fullSync: boolean;
}

/** Disk state and flags at attach from the on-disk MDF bits (drbd_adm_attach). */
export function diskStateFromMdFlags(flags: number, fencing: Fencing): AttachDerivation {
  let disk: DiskState;
  if (flags & MdFlag.consistent) disk = flags & MdFlag.wasUpToDate ? DiskState.Consistent : DiskState.Outdated;
  else disk = DiskState.Inconsistent;
  const pdsk: DiskState = flags & MdFlag.peerOutDated ? DiskState.Outdated : DiskState.DUnknown;
  if (disk === DiskState.Consistent && (pdsk === DiskState.Outdated || fencing === 'dont-care')) disk = DiskState.UpToDate;
  const crashedPrimary = (flags & (MdFlag.crashedPrimary | MdFlag.primaryInd)) !== 0;
  const useDegrWfcTimeout = (flags & MdFlag.primaryInd) !== 0 && (flags & MdFlag.connectedInd) === 0;
  const fullSync = (flags & MdFlag.fullSync) !== 0 || (crashedPrimary && (flags & MdFlag.alDisabled) !== 0);
  return { disk, pdsk, crashedPrimary, useDegrWfcTimeout, fullSync };
}
