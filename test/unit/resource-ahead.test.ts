/**
 * DRBD 8.4's Ahead/Behind rules as udrbd's pure functions: what on-congestion
 * leads to (drbd_req.c maybe_pull_ahead), the peer going Behind on the
 * Primary's P_STATE (drbd_receiver.c receive_state), the clamps
 * sanitize_state applies (the Behind disk is Outdated at best, the Ahead
 * node's pdsk Consistent at most), the way back (Ahead → SyncSource,
 * Behind → SyncTarget), the invariants transition() enforces, and the
 * protocol-A rule of drbd_nl.c (ERR_CONG_NOT_PROTO_A, 155).
 */
import { describe, expect, it } from 'vitest';
import { checkNetOptions, requestConnect, requestPrimary } from '../../src/resource/admin.js';
import {
  AHEAD_TO_SYNC_SOURCE_DELAY_MS,
  aheadToSyncSource,
  behindToSyncTarget,
  linkLostStates,
  onCongestion,
  peerStateNews,
} from '../../src/resource/link-rules.js';
import { type ResourceState, defaultStateCtx, unconfiguredState } from '../../src/resource/state.js';
import { ConnState as C, DiskState as D, Role as R } from '../../src/resource/states.js';
import { brokenInvariant, internalTransition, transition } from '../../src/resource/transition.js';
import { InvariantError } from '../../src/util/assert.js';
import { ExitCode } from '../../src/util/errors.js';

const st = (patch: Partial<ResourceState>): ResourceState => ({ ...unconfiguredState, disk: D.UpToDate, ...patch });
const primary = st({ role: R.Primary, peer: R.Secondary, conn: C.Connected, pdsk: D.UpToDate });
const secondary = st({ role: R.Secondary, peer: R.Primary, conn: C.Connected, pdsk: D.UpToDate });
const ctx = { ...defaultStateCtx, hasNetConfig: true };
const facts = { bitmapUuid: 0n, newCurrentUuidPending: false };

describe('on-congestion: the state a congested Primary goes to', () => {
  it('pull-ahead: Connected → Ahead, the peer disk is Consistent at most (it misses writes now)', () => {
    const next = onCongestion(primary, 'pull-ahead');
    expect(next).toEqual({ conn: C.Ahead });
    const t = internalTransition(primary, { ...primary, ...(next as object) }, ctx, facts);
    expect(t.to.conn).toBe(C.Ahead);
    expect(t.to.pdsk).toBe(D.Consistent);
    expect(t.line).toBe('conn( Connected -> Ahead ) pdsk( UpToDate -> Consistent )');
    expect(t.effects).toEqual([]);
  });

  it('disconnect: the connection is dropped (DRBD C_DISCONNECTING, then StandAlone)', () => {
    expect(onCongestion(primary, 'disconnect')).toBe('disconnect');
  });

  it('only from Connected with UpToDate data: not during a resync, not without good local data', () => {
    expect(onCongestion({ ...primary, conn: C.SyncSource, pdsk: D.Inconsistent }, 'pull-ahead')).toBeNull();
    expect(onCongestion({ ...primary, conn: C.Ahead, pdsk: D.Consistent }, 'pull-ahead')).toBeNull();
    expect(onCongestion({ ...primary, disk: D.Inconsistent }, 'pull-ahead')).toBeNull();
    expect(onCongestion({ ...primary, conn: C.WFConnection, peer: R.Unknown, pdsk: D.DUnknown }, 'disconnect')).toBeNull();
  });
});

describe('the peer of an Ahead Primary goes Behind', () => {
  it("receive_state: the peer's P_STATE says Ahead → Behind, this disk Outdated (sanitize_state)", () => {
    const news = peerStateNews(secondary, { role: R.Primary, disk: D.UpToDate, conn: C.Ahead, userIsp: false });
    expect(news.patch.conn).toBe(C.Behind);
    const t = internalTransition(secondary, { ...secondary, ...news.patch }, ctx, facts);
    expect(t.to.disk).toBe(D.Outdated);
    expect(t.to.pdsk).toBe(D.UpToDate);
    expect(t.line).toBe('conn( Connected -> Behind ) disk( UpToDate -> Outdated )');
  });

  it('a peer state other than Ahead leaves a Connected node Connected', () => {
    const news = peerStateNews(secondary, { role: R.Primary, disk: D.UpToDate, conn: C.Connected, userIsp: false });
    expect(news.patch.conn).toBeUndefined();
  });

  it('the Ahead Primary learning its peer is Outdated starts a new data generation (after_state_ch: lost peer data)', () => {
    const ahead = internalTransition(primary, { ...primary, conn: C.Ahead }, ctx, facts).to;
    const news = peerStateNews(ahead, { role: R.Secondary, disk: D.Outdated, conn: C.Behind, userIsp: false });
    const t = internalTransition(ahead, { ...ahead, ...news.patch }, ctx, facts);
    expect(t.to.pdsk).toBe(D.Outdated);
    expect(t.effects).toEqual([{ kind: 'new-current-uuid' }]);
  });

  it('Behind is never a Primary candidate: refused while the peer is Primary, and Outdated after the link is lost', () => {
    const behind = internalTransition(secondary, { ...secondary, conn: C.Behind }, ctx, facts).to;
    const promote = requestPrimary(behind, { force: false, fenced: undefined }, { ...ctx, bitmapUuid: 0n });
    expect(promote.kind).toBe('refused');
    let s = behind;
    for (const conn of linkLostStates('NetworkFailure', true)) s = internalTransition(s, { ...s, conn }, ctx, facts).to;
    expect(s.conn).toBe(C.WFConnection);
    expect(s.disk).toBe(D.Outdated);
    const alone = requestPrimary(s, { force: false, fenced: undefined }, { ...ctx, bitmapUuid: 0n });
    expect(alone.kind).toBe('refused');
    if (alone.kind === 'refused') expect(alone.refusal.text).toBe('Need access to UpToDate data');
  });
});

describe('the way back: resync once the link drained', () => {
  it('Ahead → SyncSource after DRBD’s start_resync_timer (1 s); the peer is Inconsistent while it syncs', () => {
    expect(AHEAD_TO_SYNC_SOURCE_DELAY_MS).toBe(1000);
    const ahead = internalTransition(primary, { ...primary, conn: C.Ahead }, ctx, facts).to;
    const next = aheadToSyncSource(ahead);
    expect(next).not.toBeNull();
    const t = internalTransition(ahead, { ...ahead, ...next }, ctx, facts);
    expect(t.line).toBe('conn( Ahead -> SyncSource ) pdsk( Consistent -> Inconsistent )');
    expect(aheadToSyncSource({ ...ahead, conn: C.NetworkFailure })).toBeNull();
  });

  it('Behind → SyncTarget on the sync UUID; only from Behind', () => {
    const behind = internalTransition(secondary, { ...secondary, conn: C.Behind }, ctx, facts).to;
    const next = behindToSyncTarget(behind);
    expect(next).not.toBeNull();
    const t = internalTransition(behind, { ...behind, ...next }, ctx, facts);
    expect(t.line).toBe('conn( Behind -> SyncTarget ) disk( Outdated -> Inconsistent )');
    expect(behindToSyncTarget(secondary)).toBeNull();
  });
});

describe('Ahead/Behind invariants (what sanitize_state guarantees)', () => {
  it('Ahead keeps UpToDate data and a stale peer; Behind the reverse', () => {
    expect(brokenInvariant(st({ role: R.Primary, peer: R.Secondary, conn: C.Ahead, pdsk: D.Consistent }))).toBeNull();
    expect(brokenInvariant(st({ role: R.Primary, peer: R.Secondary, conn: C.Ahead, pdsk: D.UpToDate }))).toBe('Ahead is UpToDate/Inconsistent…Consistent');
    expect(brokenInvariant(st({ peer: R.Primary, conn: C.Behind, disk: D.Outdated, pdsk: D.UpToDate }))).toBeNull();
    expect(brokenInvariant(st({ peer: R.Primary, conn: C.Behind, disk: D.UpToDate, pdsk: D.UpToDate }))).toBe('Behind is Inconsistent…Outdated/UpToDate');
  });

  it('a request that would make the Ahead node lose its good data is clamped by sanitize_state, never committed broken', () => {
    const ahead = internalTransition(primary, { ...primary, conn: C.Ahead }, ctx, facts).to;
    // The Ahead node's disk is held at UpToDate by the clamp: an internal change asking Outdated gets UpToDate.
    const t = transition(ahead, { ...ahead, disk: D.Outdated }, ctx, 'internal', facts);
    expect(t.ok && t.to.disk).toBe(D.UpToDate);
    expect(() => internalTransition(st({ conn: C.StandAlone }), { ...st({ conn: C.StandAlone }), conn: C.Ahead }, ctx, facts)).toThrow(InvariantError);
  });
});

describe('drbd_nl.c: on-congestion other than block needs protocol A', () => {
  it('pull-ahead or disconnect with protocol B or C: Failure (155), exit 10', () => {
    for (const protocol of ['B', 'C'] as const) {
      for (const onCongestion of ['pull-ahead', 'disconnect'] as const) {
        const r = checkNetOptions({ protocol, onCongestion });
        expect(r).toEqual({ ok: false, code: 155, text: 'on-congestion policy pull-ahead only with prot A allowed', exitCode: ExitCode.configInvalid, failure: true });
      }
    }
    expect(checkNetOptions({ protocol: 'A', onCongestion: 'pull-ahead' })).toBeNull();
    expect(checkNetOptions({ protocol: 'C', onCongestion: 'block' })).toBeNull();
  });

  it('connect refuses before any state change', () => {
    const standAlone = st({ conn: C.StandAlone });
    const refused = requestConnect(standAlone, { discardMyData: false, net: { protocol: 'C', onCongestion: 'pull-ahead' } }, ctx);
    expect(refused.kind).toBe('refused');
    if (refused.kind === 'refused') expect(refused.refusal.code).toBe(155);
    const ok = requestConnect(standAlone, { discardMyData: false, net: { protocol: 'A', onCongestion: 'pull-ahead' } }, ctx);
    expect(ok.kind).toBe('ok');
  });
});
