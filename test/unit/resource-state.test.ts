import { describe, expect, it } from 'vitest';
import {
  ConnState as C,
  DiskState as D,
  Role as R,
  SsCode,
  checkStateChange,
  defaultStateCtx,
  formatRefusalMessage,
  formatStateChange,
  formatStateLine,
  isValidSoftTransition,
  isValidState,
  refusal,
  requestConnect,
  requestDetach,
  requestDisconnect,
  requestInvalidate,
  requestInvalidateRemote,
  requestOutdate,
  requestPauseSync,
  requestPrimary,
  requestSecondary,
  requestVerify,
  sanitizeState,
  unconfiguredState,
  type AdminCtx,
  type AdminResult,
  type ResourceState,
  type StateCtx,
} from '../../src/resource/index.js';

const st = (p: Partial<ResourceState>): ResourceState => ({ ...unconfiguredState, disk: D.UpToDate, ...p });
const ctx = (p: Partial<StateCtx> = {}): StateCtx => ({ ...defaultStateCtx, hasNetConfig: true, ...p });
const actx = (p: Partial<AdminCtx> = {}): AdminCtx => ({ ...ctx(), bitmapUuid: 0n, ...p });
const connected = (p: Partial<ResourceState> = {}): ResourceState =>
  st({ conn: C.Connected, peer: R.Secondary, pdsk: D.UpToDate, ...p });

function refusedCode(r: AdminResult): number | null {
  return r.kind === 'refused' ? r.refusal.code : null;
}

describe('sanitizeState (drbd84.md §4.2)', () => {
  it('not connected: peer Unknown, pdsk DUnknown unless Inconsistent/Outdated', () => {
    const s = sanitizeState(connected(), { ...connected(), conn: C.WFConnection }, ctx());
    expect([s.peer, s.pdsk]).toEqual([R.Unknown, D.DUnknown]);
    const o = sanitizeState(connected(), { ...connected(), conn: C.WFConnection, pdsk: D.Outdated }, ctx());
    expect(o.pdsk).toBe(D.Outdated);
  });
  it('connected: Consistent and Outdated become UpToDate', () => {
    const s = sanitizeState(connected(), connected({ disk: D.Consistent, pdsk: D.Outdated }), ctx());
    expect([s.disk, s.pdsk]).toEqual([D.UpToDate, D.UpToDate]);
  });
  it('SyncSource clamps to UpToDate/Inconsistent, SyncTarget to Inconsistent/UpToDate', () => {
    expect(sanitizeState(connected(), connected({ conn: C.SyncSource }), ctx()).pdsk).toBe(D.Inconsistent);
    const t = sanitizeState(connected(), connected({ conn: C.SyncTarget }), ctx());
    expect([t.disk, t.pdsk]).toEqual([D.Inconsistent, D.UpToDate]);
  });
  it('WFBitMapT keeps the disk at most Outdated', () => {
    expect(sanitizeState(connected(), connected({ conn: C.WFBitMapT }), ctx()).disk).toBe(D.Outdated);
  });
  it('Verify states clamp both disks to UpToDate', () => {
    const v = sanitizeState(connected(), connected({ conn: C.VerifyS, pdsk: D.Inconsistent }), ctx());
    expect(v.pdsk).toBe(D.UpToDate);
  });
  it('a pause flag turns SyncSource into PausedSyncS and back', () => {
    const p = sanitizeState(connected(), connected({ conn: C.SyncSource, userIsp: true }), ctx());
    expect(p.conn).toBe(C.PausedSyncS);
    expect(sanitizeState(p, { ...p, userIsp: false }, ctx()).conn).toBe(C.SyncSource);
  });
  it('a failed disk aborts the resync', () => {
    const warnings: string[] = [];
    const s = sanitizeState(connected(), connected({ conn: C.SyncTarget, disk: D.Failed }), ctx(), warnings);
    expect(s.conn).toBe(C.Connected);
    expect(warnings).toContain('Resync aborted.');
  });
  it('resource-and-stonith: a Primary losing the peer freezes IO', () => {
    const s = sanitizeState(connected({ role: R.Primary }), connected({ role: R.Primary, conn: C.NetworkFailure }), ctx({ fencing: 'resource-and-stonith' }));
    expect(s.suspFen).toBe(true);
  });
  it('on-no-data-accessible suspend-io suspends a Primary without data', () => {
    const old = connected({ role: R.Primary, peer: R.Secondary });
    const s = sanitizeState(old, { ...old, disk: D.Diskless, conn: C.NetworkFailure }, ctx({ onNoDataSuspendIo: true }));
    expect(s.suspNod).toBe(true);
  });
});

describe('connection transitions (§4.3)', () => {
  const change = (from: C, to: C) => checkStateChange(st({ conn: from }), st({ conn: to }), ctx(), { hard: true });
  it('StandAlone only to Unconnected', () => {
    expect(change(C.StandAlone, C.Unconnected).ok).toBe(true);
    expect(change(C.StandAlone, C.WFConnection)).toMatchObject({ ok: false, code: SsCode.needConnection });
    expect(change(C.StandAlone, C.Disconnecting)).toMatchObject({ ok: false, code: SsCode.alreadyStandalone });
  });
  it('cannot jump from below WFReportParams to Connected', () => {
    expect(change(C.WFConnection, C.Connected)).toMatchObject({ ok: false, code: SsCode.needConnection });
  });
  it('after a network error only Unconnected or Disconnecting', () => {
    expect(change(C.NetworkFailure, C.WFConnection)).toMatchObject({ ok: false, code: SsCode.inTransientState });
    expect(change(C.NetworkFailure, C.Unconnected).ok).toBe(true);
  });
  it('after Disconnecting only StandAlone', () => {
    expect(change(C.Disconnecting, C.Unconnected)).toMatchObject({ ok: false, code: SsCode.inTransientState });
    expect(change(C.Disconnecting, C.StandAlone).ok).toBe(true);
  });
  it('a state equal after sanitizing is "nothing to do"', () => {
    const r = checkStateChange(connected(), connected({ disk: D.Consistent }), ctx());
    expect(r).toMatchObject({ ok: true, changed: false });
  });
});

describe('refusal codes reachable through admin requests', () => {
  it('-1 two primaries without allow-two-primaries', () => {
    expect(refusedCode(requestPrimary(connected({ peer: R.Primary }), { force: false }, actx()))).toBe(-1);
  });
  it('-2 promote Inconsistent (exit 17) with DRBD’s log lines', () => {
    const r = requestPrimary(st({ disk: D.Inconsistent }), { force: false }, actx());
    expect(r.kind).toBe('refused');
    if (r.kind !== 'refused') return;
    expect([r.refusal.code, r.refusal.text, r.refusal.exitCode]).toEqual([-2, 'Need access to UpToDate data', 17]);
    expect(r.logLines).toEqual([
      'State change failed: Need access to UpToDate data',
      '  state = { cs:StandAlone ro:Secondary/Unknown ds:Inconsistent/DUnknown r----- }',
      ' wanted = { cs:StandAlone ro:Primary/Unknown ds:Inconsistent/DUnknown r----- }',
    ]);
    expect(formatRefusalMessage(0, r.refusal)).toBe('0: State change failed: (-2) Need access to UpToDate data');
  });
  it('--force promotes Inconsistent data, forcing UpToDate with a new current UUID', () => {
    const r = requestPrimary(st({ disk: D.Inconsistent }), { force: true }, actx({ bitmapUuid: 5n }));
    expect(r.kind).toBe('ok');
    if (r.kind !== 'ok') return;
    expect(r.states.at(-1)).toMatchObject({ role: R.Primary, disk: D.UpToDate });
    expect(r.effects).toContain('new-current-uuid');
    expect(r.logLines).toContain('Forced to consider local data as UpToDate!');
  });
  it('promotion while disconnected with bitmap UUID 0 creates a new current UUID; with B≠0 it does not', () => {
    const a = requestPrimary(st({ conn: C.WFConnection }), { force: false }, actx({ bitmapUuid: 0n }));
    const b = requestPrimary(st({ conn: C.WFConnection }), { force: false }, actx({ bitmapUuid: 7n }));
    expect(a.kind === 'ok' && a.effects.includes('new-current-uuid')).toBe(true);
    expect(b.kind === 'ok' && b.effects.includes('new-current-uuid')).toBe(false);
  });
  it('connected Inconsistent node may be Primary when the peer is UpToDate, but not during the handshake', () => {
    const sync = connected({ conn: C.SyncTarget, disk: D.Inconsistent });
    expect(requestPrimary(sync, { force: false }, actx()).kind).toBe('ok');
    const wf = connected({ conn: C.WFBitMapT, disk: D.Inconsistent });
    expect(refusedCode(requestPrimary(wf, { force: false }, actx()))).toBe(-18);
  });
  it('-4 / -5 cannot resync without local or remote disk', () => {
    expect(refusedCode(requestInvalidateRemote(connected({ pdsk: D.Diskless }), ctx()))).toBe(-5);
    expect(isValidState(connected({ disk: D.Diskless, conn: C.StartingSyncT }), ctx())).toBe(-4);
    expect(refusal(SsCode.noLocalDisk).exitCode).toBe(16);
  });
  it('-6 outdate while connected, -16 outdate below Outdated (exit 5)', () => {
    expect(refusedCode(requestOutdate(connected(), ctx()))).toBe(-6);
    const r = requestOutdate(st({ disk: D.Inconsistent }), ctx());
    expect(r.kind === 'refused' && [r.refusal.code, r.refusal.exitCode]).toEqual([-16, 5]);
    expect(requestOutdate(st({}), ctx()).kind).toBe('ok');
  });
  it('-7 fencing: promote a disconnected node whose peer is not outdated needs fence-peer', () => {
    const s = st({ conn: C.WFConnection });
    const c = actx({ fencing: 'resource-only' });
    expect(requestPrimary(s, { force: false }, c).kind).toBe('fence-peer');
    // fence-peer exit 4: peer was fenced → promotion succeeds
    const ok = requestPrimary(s, { force: false, fencePeerExit: 4 }, c);
    expect(ok.kind).toBe('ok');
    // handler broken → refused -7
    expect(refusedCode(requestPrimary(s, { force: false, fencePeerExit: 1 }, c))).toBe(-7);
    // --force overrides: "Forced into split brain situation!"
    const forced = requestPrimary(s, { force: true, fencePeerExit: 1 }, c);
    expect(forced.kind === 'ok' && forced.logLines).toContain('Forced into split brain situation!');
  });
  it('Consistent disconnected disk becomes UpToDate when fence-peer outdates the peer', () => {
    const s = st({ conn: C.WFConnection, disk: D.Consistent });
    const c = actx({ fencing: 'resource-only' });
    expect(requestPrimary(s, { force: false }, c).kind).toBe('fence-peer');
    const r = requestPrimary(s, { force: false, fencePeerExit: 4 }, c);
    expect(r.kind === 'ok' && r.states.at(-1)).toMatchObject({ role: R.Primary, disk: D.UpToDate, pdsk: D.Outdated });
    // exit 6: peer is Primary → I outdate myself and stay Secondary
    const p = requestPrimary(s, { force: false, fencePeerExit: 6 }, c);
    expect(p.kind).toBe('refused');
    expect(p.kind === 'refused' && p.states.at(-1)?.disk).toBe(D.Outdated);
  });
  it('-8 verify while resync is running', () => {
    expect(refusedCode(requestVerify(connected({ conn: C.SyncSource, pdsk: D.Inconsistent }), ctx({ verifyAlg: 'sha1' })))).toBe(-8);
  });
  it('-9 disconnect of a StandAlone device is a successful no-op', () => {
    const r = requestDisconnect(st({}), ctx());
    expect(r).toEqual({ kind: 'ok', states: [], effects: [], logLines: [] });
  });
  it('disconnect goes Disconnecting → StandAlone', () => {
    const r = requestDisconnect(connected(), ctx());
    expect(r.kind === 'ok' && r.states.map((s) => s.conn)).toEqual([C.Disconnecting, C.StandAlone]);
  });
  it('a fenced Primary disconnecting marks the peer Outdated', () => {
    const r = requestDisconnect(connected({ role: R.Primary }), ctx({ fencing: 'resource-only' }));
    expect(r.kind === 'ok' && r.states[0]?.pdsk).toBe(D.Outdated);
  });
  it('-11 a diskless device cannot become Inconsistent', () => {
    const s = st({ disk: D.Diskless });
    expect(checkStateChange(s, { ...s, disk: D.Inconsistent }, ctx())).toMatchObject({ code: -11 });
  });
  it('-12 secondary while the device is held open', () => {
    const r = requestSecondary(st({ role: R.Primary }), { deviceOpen: true }, ctx());
    expect(r.kind === 'refused' && [r.refusal.code, r.refusal.text, r.refusal.exitCode]).toEqual([-12, 'Device is held open by someone', 11]);
    expect(requestSecondary(st({ role: R.Primary }), { deviceOpen: false }, ctx()).kind).toBe('ok');
  });
  it('-13 WFConnection without net config (soft rule; the hard rules usually answer first)', () => {
    expect(isValidSoftTransition(st({ conn: C.StandAlone }), st({ conn: C.WFConnection }), ctx())).toBe(-13);
    expect(checkStateChange(st({ conn: C.StandAlone }), st({ conn: C.WFConnection }), ctx())).toMatchObject({ code: -15 });
  });
  it('-14 verify without verify-alg, -15 verify without connection', () => {
    expect(refusedCode(requestVerify(connected(), ctx({ verifyAlg: null })))).toBe(-14);
    expect(refusedCode(requestVerify(st({ conn: C.WFConnection }), ctx({ verifyAlg: 'sha1' })))).toBe(-15);
    expect(requestVerify(connected(), ctx({ verifyAlg: 'sha1' })).kind).toBe('ok');
  });
  it('-15 invalidate-remote without a connection', () => {
    expect(refusedCode(requestInvalidateRemote(st({ conn: C.WFConnection }), ctx()))).toBe(-15);
  });
  it('-2 detach of a disconnected Primary', () => {
    expect(refusedCode(requestDetach(st({ role: R.Primary }), ctx()))).toBe(-2);
    const ok = requestDetach(st({}), ctx());
    expect(ok.kind === 'ok' && ok.states.map((s) => s.disk)).toEqual([D.Failed, D.Diskless]);
  });
  it('--discard-my-data on a Primary is refused (ERR 123, exit 10)', () => {
    const r = requestConnect(st({ role: R.Primary }), { discardMyData: true }, ctx());
    expect(r.kind === 'refused' && r.refusal).toMatchObject({ code: 123, text: '--discard-my-data not allowed when primary.', exitCode: 10 });
    expect(r.kind === 'refused' && formatRefusalMessage(1, r.refusal)).toBe('1: Failure: (123) --discard-my-data not allowed when primary.');
  });
  it('connect goes StandAlone → Unconnected → WFConnection', () => {
    const r = requestConnect(st({}), { discardMyData: false }, ctx({ hasNetConfig: false }));
    expect(r.kind === 'ok' && r.states.map((s) => s.conn)).toEqual([C.Unconnected, C.WFConnection]);
  });
  it('invalidate: StandAlone Secondary becomes Inconsistent with all bits set; connected starts sync target', () => {
    const a = requestInvalidate(st({}), ctx());
    expect(a.kind === 'ok' && [a.states[0]?.disk, a.effects]).toEqual([D.Inconsistent, ['set-all-bits']]);
    const b = requestInvalidate(connected(), ctx());
    expect(b.kind === 'ok' && b.states[0]?.conn).toBe(C.StartingSyncT);
    expect(refusedCode(requestInvalidate(st({ conn: C.WFConnection }), ctx()))).toBe(-15);
  });
  it('pause-sync twice is an error', () => {
    const s = connected({ conn: C.SyncSource, pdsk: D.Inconsistent });
    const r = requestPauseSync(s, true, ctx());
    expect(r.kind === 'ok' && r.states[0]?.conn).toBe(C.PausedSyncS);
    expect(refusedCode(requestPauseSync({ ...s, userIsp: true, conn: C.PausedSyncS }, true, ctx()))).toBe(134);
  });
  it('every SS code maps to its text and exit code', () => {
    expect(refusal(SsCode.otherVolPeerPrimary).text).toBe('Other vol primary on peer not allowed by config');
    expect(refusal(SsCode.outdateWithoutConnection).text).toBe('Need a connection for a graceful disconnect/outdate peer');
    expect(refusal(SsCode.noLocalDisk).exitCode).toBe(16);
    expect(refusal(SsCode.resyncRunning).exitCode).toBe(11);
  });
});

describe('log renderings (§5.2)', () => {
  it('formatStateChange prints only the changed parts in DRBD order', () => {
    const a = st({ conn: C.WFConnection });
    const b = { ...a, role: R.Primary, conn: C.Connected, peer: R.Secondary, pdsk: D.UpToDate };
    expect(formatStateChange(a, b)).toBe(
      'role( Secondary -> Primary ) peer( Unknown -> Secondary ) conn( WFConnection -> Connected ) pdsk( DUnknown -> UpToDate )',
    );
    expect(formatStateChange(a, { ...a, userIsp: true, suspFen: true })).toBe('susp( 0 -> 1 ) user_isp( 0 -> 1 )');
  });
  it('formatStateLine shows the flag characters', () => {
    expect(formatStateLine(connected({ role: R.Primary }))).toBe('{ cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate r----- }');
    expect(formatStateLine(st({ suspFen: true, userIsp: true }))).toBe('{ cs:StandAlone ro:Secondary/Unknown ds:UpToDate/DUnknown s--uF- }');
  });
});
