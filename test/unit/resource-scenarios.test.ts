/**
 * The reducer's scenario tests, ported to the rules the resource process
 * runs: resource/admin, resource/uuid, resource/link-rules and
 * resource/transition, sequenced as daemon/link does (test/helpers/rule-pair).
 * The same scenarios run end to end on two real processes in
 * test/integration/two-node*.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { MdFlag, UUID_JUST_CREATED } from '../../src/meta/types.js';
import { ConnState as C, DiskState as D, Role as R } from '../../src/resource/states.js';
import { diskStateFromMdFlags, mdFlagsForState } from '../../src/resource/md-flags.js';
import { freshPair, stateLines, syncedPair, type SimNode } from '../helpers/rule-pair.js';

const short = (n: SimNode) => ({ role: n.state.role, peer: n.state.peer, conn: n.state.conn, disk: n.state.disk, pdsk: n.state.pdsk });
/** UUIDs with bit 0 masked in every slot (DRBD compares them that way). */
const masked = (n: SimNode) => ({
  current: n.uuids.current & ~1n,
  bitmap: n.uuids.bitmap & ~1n,
  historyStart: n.uuids.historyStart & ~1n,
  historyEnd: n.uuids.historyEnd & ~1n,
});

describe('connect scenarios on the live rules', () => {
  it('fresh pair: Connected Secondary/Secondary Inconsistent/Inconsistent by rule 10', () => {
    const p = freshPair();
    expect(short(p.a)).toEqual({ role: R.Secondary, peer: R.Secondary, conn: C.Connected, disk: D.Inconsistent, pdsk: D.Inconsistent });
    expect(p.a.log).toContain('uuid_compare()=0 by rule 10');
    expect(stateLines(p.a)).toContain('peer( Unknown -> Secondary ) conn( WFReportParams -> Connected ) pdsk( DUnknown -> Inconsistent )');
  });

  it('initial sync: primary --force → full sync alpha→beta → UpToDate/UpToDate with equal UUIDs', () => {
    const p = freshPair();
    expect(p.primary(p.a, true)).toBe(true);
    expect(p.a.log).toContain('Forced to consider local data as UpToDate!');
    expect(short(p.a)).toMatchObject({ role: R.Primary, conn: C.SyncSource, disk: D.UpToDate, pdsk: D.Inconsistent });
    expect(short(p.b)).toMatchObject({ role: R.Secondary, conn: C.SyncTarget, disk: D.Inconsistent, pdsk: D.UpToDate });
    expect(p.b.log).toContain('uuid_compare()=-2 by rule 20');
    expect(p.a.log).toContain('uuid_compare()=2 by rule 30');
    expect(p.b.bitsSet).toBe(p.deviceBits);
    p.finishResync();
    expect(short(p.a)).toEqual({ role: R.Primary, peer: R.Secondary, conn: C.Connected, disk: D.UpToDate, pdsk: D.UpToDate });
    expect(short(p.b)).toEqual({ role: R.Secondary, peer: R.Primary, conn: C.Connected, disk: D.UpToDate, pdsk: D.UpToDate });
    expect(masked(p.a)).toEqual(masked(p.b));
    expect(p.a.uuids.current & 1n).toBe(1n);
    expect(p.b.uuids.historyEnd).toBe(UUID_JUST_CREATED);
  });

  it('lost peer as Primary: a new current UUID, and the reconnect is a bitmap-based resync (rules 70 / 50)', () => {
    const p = syncedPair();
    const before = p.a.uuids;
    p.cut();
    expect(short(p.a)).toEqual({ role: R.Primary, peer: R.Unknown, conn: C.WFConnection, disk: D.UpToDate, pdsk: D.DUnknown });
    expect(p.a.uuids.bitmap).toBe(before.current);
    expect(p.a.uuids.current).not.toBe(before.current);
    expect(p.a.log.some((l) => l.startsWith('new current UUID '))).toBe(true);
    expect(p.b.uuids).toEqual({ ...before, current: before.current & ~1n });
    p.write(p.a, 25);
    p.link();
    expect(p.a.log).toContain('uuid_compare()=1 by rule 70');
    expect(p.b.log).toContain('uuid_compare()=-1 by rule 50');
    expect(p.a.state.conn).toBe(C.SyncSource);
    expect(p.a.bitsSet).toBe(25);
    p.finishResync();
    expect(masked(p.a)).toEqual(masked(p.b));
    expect(short(p.b)).toMatchObject({ conn: C.Connected, disk: D.UpToDate, pdsk: D.UpToDate });
  });

  it('split brain: both promoted while cut → both StandAlone, helpers run, roles and disks unchanged', () => {
    const p = syncedPair();
    p.cut();
    expect(p.primary(p.b)).toBe(true);
    p.link();
    for (const n of [p.a, p.b]) {
      expect(short(n)).toEqual({ role: R.Primary, peer: R.Unknown, conn: C.StandAlone, disk: D.UpToDate, pdsk: D.DUnknown });
      expect(n.log).toContain('uuid_compare()=100 by rule 90');
      expect(n.log).toContain('Split-Brain detected but unresolved, dropping connection!');
      expect(n.handlers).toEqual(expect.arrayContaining(['initial-split-brain', 'split-brain']));
      expect(n.net).toBe(false);
    }
    expect(stateLines(p.a)).toContain('conn( WFReportParams -> Disconnecting )');
    expect(stateLines(p.a)).toContain('conn( Disconnecting -> StandAlone )');
  });

  it('discard-my-data recovery: victim becomes SyncTarget (bitmap-based) and ends equal to the survivor', () => {
    const p = syncedPair();
    p.cut();
    p.primary(p.b);
    p.link(); // split brain → both StandAlone
    expect(p.disconnect(p.b)).toBe(true);
    expect(p.secondary(p.b)).toBe(true);
    expect(p.connect(p.b, true)).toBe(true);
    expect(p.connect(p.a)).toBe(true);
    p.link();
    expect(p.b.log).toContain('Split-Brain detected, manually solved. Sync from peer node');
    expect(p.a.log).toContain('Split-Brain detected, manually solved. Sync from this node');
    expect(p.b.state.conn).toBe(C.SyncTarget);
    expect(p.b.discardMyData).toBe(false);
    p.finishResync();
    expect(short(p.b)).toEqual({ role: R.Secondary, peer: R.Primary, conn: C.Connected, disk: D.UpToDate, pdsk: D.UpToDate });
    expect(masked(p.a)).toEqual(masked(p.b));
  });

  it('--discard-my-data on a Primary is refused with (123), exit 10', () => {
    const p = syncedPair();
    p.cut();
    p.disconnect(p.a);
    expect(p.connect(p.a, true)).toBe(false);
    expect(p.a.state.conn).toBe(C.StandAlone);
  });

  it('after-sb-0pri discard-zero-changes resolves a split brain between two Secondaries', () => {
    const p = syncedPair({ afterSb0pri: 'discard-zero-changes' });
    p.cut();
    p.primary(p.b); // beta writes nothing
    p.secondary(p.b);
    p.write(p.a, 9); // alpha changed blocks
    p.secondary(p.a);
    p.link();
    expect(p.a.log).toContain('Split-Brain detected, 0 primaries, automatically solved. Sync from this node');
    expect([p.a.state.conn, p.b.state.conn]).toEqual([C.SyncSource, C.SyncTarget]);
  });

  it('after-sb-1pri discard-secondary makes the Secondary the target', () => {
    const p = syncedPair({ afterSb1pri: 'discard-secondary' });
    p.cut();
    p.primary(p.b);
    p.secondary(p.b);
    p.link();
    expect([p.a.state.conn, p.b.state.conn]).toEqual([C.SyncSource, C.SyncTarget]);
  });

  it('after-sb-2pri call-pri-lost-after-sb demotes the loser (discard-node-beta)', () => {
    const p = syncedPair({ afterSb0pri: 'discard-node-beta', afterSb2pri: 'call-pri-lost-after-sb', allowTwoPrimaries: true });
    p.cut();
    p.primary(p.b);
    p.link();
    expect(p.b.log).toContain('Successfully gave up primary role.');
    expect(short(p.b)).toMatchObject({ role: R.Secondary, conn: C.SyncTarget });
    expect(short(p.a)).toMatchObject({ role: R.Primary, conn: C.SyncSource });
  });

  it('two Primaries without allow-two-primaries: after-sb-2pri violently-as0p decides, the SyncSource’s receive_state refuses (-1), both StandAlone', () => {
    const p = syncedPair({ afterSb0pri: 'discard-node-beta', afterSb2pri: 'violently-as0p' });
    p.cut();
    expect(p.primary(p.b)).toBe(true);
    p.link();
    // the would-be SyncSource fails receive_state's check; the would-be SyncTarget drops by rr-conflict
    expect(p.a.log).toContain('State change failed: Multiple primaries not allowed by config');
    expect(p.b.log).toContain('I shall become SyncTarget, but I am primary!');
    for (const n of [p.a, p.b]) {
      expect(short(n)).toEqual({ role: R.Primary, peer: R.Unknown, conn: C.StandAlone, disk: D.UpToDate, pdsk: D.DUnknown });
      expect(n.net).toBe(false);
    }
  });

  it('refusals: primary without UpToDate data (-2), two primaries (-1), outdate while connected (-6), verify without verify-alg (-14)', () => {
    const p = freshPair();
    expect(p.primary(p.a)).toBe(false);
    expect(p.a.log).toContain('State change failed: Need access to UpToDate data');
    const q = syncedPair();
    expect(q.primary(q.b)).toBe(false);
    expect(q.b.log).toContain('State change failed: Multiple primaries not allowed by config');
    expect(q.outdate(q.a)).toBe(false);
    expect(q.verify(q.a)).toBe(false);
    expect(q.a.log).toContain('State change failed: Need a verify algorithm to start online verify');
  });

  it('online verify: VerifyS / VerifyT, then both back to Connected', () => {
    const p = syncedPair({ verifyAlg: 'sha1' });
    expect(p.verify(p.a)).toBe(true);
    expect([p.a.state.conn, p.b.state.conn]).toEqual([C.VerifyS, C.VerifyT]);
    p.finishVerify();
    expect([p.a.state.conn, p.b.state.conn]).toEqual([C.Connected, C.Connected]);
  });

  it('invalidate on the Secondary: full resync towards it', () => {
    const p = syncedPair();
    expect(p.invalidate(p.b, false)).toBe(true);
    expect([p.a.state.conn, p.b.state.conn]).toEqual([C.SyncSource, C.SyncTarget]);
    expect(p.a.bitsSet).toBe(p.deviceBits);
    p.finishResync();
    expect(short(p.b)).toMatchObject({ conn: C.Connected, disk: D.UpToDate });
    // The target takes the history from the P_UUIDS of the handshake (daemon/link does not resend them
    // after the initial sync), so only current and bitmap are compared here.
    expect([masked(p.a).current, masked(p.a).bitmap]).toEqual([masked(p.b).current, masked(p.b).bitmap]);
  });

  it('pause-sync on the target pauses both sides; resume-sync resumes both', () => {
    const p = freshPair();
    p.primary(p.a, true);
    expect(p.pauseSync(p.b, true)).toBe(true);
    expect([p.a.state.conn, p.b.state.conn]).toEqual([C.PausedSyncS, C.PausedSyncT]);
    expect(p.pauseSync(p.b, false)).toBe(true);
    expect([p.a.state.conn, p.b.state.conn]).toEqual([C.SyncSource, C.SyncTarget]);
  });

  it('failed resync leaves the target Inconsistent and its UUIDs unchanged', () => {
    const p = freshPair();
    p.primary(p.a, true);
    const uuidsB = p.b.uuids;
    p.finishResync(false);
    expect(short(p.b)).toMatchObject({ conn: C.Connected, disk: D.Inconsistent });
    expect(p.b.uuids).toEqual(uuidsB);
  });

  it('a lost link during resync: the target stays Inconsistent, the source keeps its bitmap UUID (no new generation)', () => {
    const p = freshPair();
    p.primary(p.a, true);
    const bitmapUuid = p.a.uuids.bitmap;
    p.cut('Timeout');
    // sanitize_state keeps a remembered Inconsistent peer disk while not connected
    expect(stateLines(p.a)).toContain('peer( Secondary -> Unknown ) conn( SyncSource -> Timeout )');
    expect(p.a.state.pdsk).toBe(D.Inconsistent);
    expect(short(p.b)).toMatchObject({ conn: C.WFConnection, disk: D.Inconsistent, pdsk: D.DUnknown });
    expect(p.a.uuids.bitmap).toBe(bitmapUuid);
  });
});

describe('meta-data flags (drbd84.md §1.5)', () => {
  it('attach-time disk state from flags, incl. fencing dont-care → UpToDate', () => {
    const cu = MdFlag.consistent | MdFlag.wasUpToDate;
    expect(diskStateFromMdFlags(cu, 'dont-care').disk).toBe(D.UpToDate);
    expect(diskStateFromMdFlags(cu, 'resource-only').disk).toBe(D.Consistent);
    expect(diskStateFromMdFlags(cu | MdFlag.peerOutDated, 'resource-only')).toMatchObject({ disk: D.UpToDate, pdsk: D.Outdated });
    expect(diskStateFromMdFlags(MdFlag.consistent, 'dont-care').disk).toBe(D.Outdated);
    expect(diskStateFromMdFlags(0, 'dont-care').disk).toBe(D.Inconsistent);
    expect(diskStateFromMdFlags(MdFlag.primaryInd | cu, 'dont-care')).toMatchObject({ crashedPrimary: true, useDegrWfcTimeout: true });
    expect(diskStateFromMdFlags(MdFlag.fullSync, 'dont-care').fullSync).toBe(true);
    // AL recovery: a crashed Primary with the activity log disabled needs a full sync
    expect(diskStateFromMdFlags(MdFlag.primaryInd | MdFlag.alDisabled | cu, 'dont-care').fullSync).toBe(true);
  });
  it('flags derived from a state (0x95-style example)', () => {
    const s = { role: R.Secondary, peer: R.Secondary, conn: C.Connected, disk: D.UpToDate, pdsk: D.UpToDate, susp: false, suspNod: false, suspFen: false, userIsp: false, peerIsp: false, aftrIsp: false };
    expect(mdFlagsForState(s, MdFlag.alClean, false)).toBe(MdFlag.consistent | MdFlag.wasUpToDate | MdFlag.connectedInd);
    expect(mdFlagsForState({ ...s, conn: C.WFConnection, pdsk: D.Outdated, role: R.Primary }, MdFlag.fullSync, true))
      .toBe(MdFlag.consistent | MdFlag.wasUpToDate | MdFlag.primaryInd | MdFlag.peerOutDated | MdFlag.crashedPrimary | MdFlag.fullSync);
  });
});
