/**
 * daemon/state-handlers: pri-on-incon-degr runs exactly when DRBD 8.4's
 * after_state_ch runs it — on entering "Primary, disk < UpToDate and
 * pdsk < UpToDate", not while already in it, not for a Secondary.
 */
import { describe, expect, it } from 'vitest';
import { stateChangeHandlers } from '../../src/daemon/state-handlers.js';
import { ConnState, DiskState, Role } from '../../src/resource/states.js';
import { unconfiguredState } from '../../src/resource/state.js';
import type { StateSnapshot } from '../../src/daemon/status.js';

const s = (patch: Partial<StateSnapshot>): StateSnapshot => ({ ...unconfiguredState, conn: ConnState.Connected, ...patch });

describe('pri-on-incon-degr', () => {
  const syncTargetPrimary = s({ role: Role.Primary, disk: DiskState.Inconsistent, pdsk: DiskState.UpToDate, conn: ConnState.SyncTarget });
  const lostPeer = s({ role: Role.Primary, disk: DiskState.Inconsistent, pdsk: DiskState.DUnknown, conn: ConnState.NetworkFailure });

  it('runs when a Primary SyncTarget loses its UpToDate peer', () => {
    expect(stateChangeHandlers(syncTargetPrimary, lostPeer)).toEqual(['pri-on-incon-degr']);
  });

  it('runs when an Inconsistent node is promoted without an UpToDate peer', () => {
    const secondary = s({ role: Role.Secondary, disk: DiskState.Inconsistent, pdsk: DiskState.DUnknown, conn: ConnState.StandAlone });
    expect(stateChangeHandlers(secondary, { ...secondary, role: Role.Primary })).toEqual(['pri-on-incon-degr']);
  });

  it('does not run again while the node stays in that state', () => {
    expect(stateChangeHandlers(lostPeer, { ...lostPeer, conn: ConnState.WFConnection })).toEqual([]);
  });

  it('does not run for a Primary with an UpToDate disk on either side, nor for a Secondary', () => {
    const upToDatePrimary = s({ role: Role.Primary, disk: DiskState.UpToDate, pdsk: DiskState.UpToDate });
    expect(stateChangeHandlers(upToDatePrimary, { ...upToDatePrimary, pdsk: DiskState.DUnknown, conn: ConnState.NetworkFailure })).toEqual([]);
    expect(stateChangeHandlers(s({ role: Role.Primary }), syncTargetPrimary)).toEqual([]);
    const secondary = s({ role: Role.Secondary, disk: DiskState.Inconsistent, pdsk: DiskState.UpToDate });
    expect(stateChangeHandlers(secondary, { ...secondary, pdsk: DiskState.DUnknown })).toEqual([]);
  });
});
