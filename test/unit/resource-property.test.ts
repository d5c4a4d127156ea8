/**
 * Property: random, seeded sequences of operator requests and peer-link
 * events on two nodes (test/helpers/rule-pair: the rules the resource
 * process runs, sequenced as daemon/link) never reach a state DRBD's
 * is_valid_state rejects — except the ones DRBD itself enters with a hard
 * change (listed below) — and every logged transition is one
 * is_valid_transition accepts, logged as exactly its `conn( A -> B )` line.
 *
 * CI runs a fixed seed; UDRBD_PROPERTY_RUNS / UDRBD_PROPERTY_SEED run longer.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ResourceState, type StateCtx, SsCode, defaultStateCtx, formatStateChange, isValidState, isValidTransition } from '../../src/resource/state.js';
import { ConnState, DiskState, Role } from '../../src/resource/states.js';
import { brokenInvariant } from '../../src/resource/transition.js';
import { RulePair, type SimNode, syncedPair } from '../helpers/rule-pair.js';

const RUNS = Number(process.env.UDRBD_PROPERTY_RUNS ?? 300);
const SEED = Number(process.env.UDRBD_PROPERTY_SEED ?? 15015);
/** Steps per generated sequence. */
const STEPS_MAX = 40;

type Op =
  | { op: 'primary'; node: 0 | 1; force: boolean }
  | { op: 'secondary'; node: 0 | 1 }
  | { op: 'connect'; node: 0 | 1; discard: boolean }
  | { op: 'disconnect'; node: 0 | 1 }
  | { op: 'outdate'; node: 0 | 1 }
  | { op: 'pause'; node: 0 | 1; pause: boolean }
  | { op: 'invalidate'; node: 0 | 1; remote: boolean }
  | { op: 'verify'; node: 0 | 1 }
  | { op: 'write'; node: 0 | 1; blocks: number }
  | { op: 'link' }
  | { op: 'cut'; loss: 'NetworkFailure' | 'BrokenPipe' | 'Timeout' | 'ProtocolError' | 'Disconnecting' }
  | { op: 'finish-resync'; ok: boolean }
  | { op: 'finish-verify' }
  | { op: 'congest'; node: 0 | 1; blocks: number }
  | { op: 'ahead-drained' };

const node = fc.constantFrom<0 | 1>(0, 1);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('primary' as const), node, force: fc.boolean() }),
  fc.record({ op: fc.constant('secondary' as const), node }),
  fc.record({ op: fc.constant('connect' as const), node, discard: fc.boolean() }),
  fc.record({ op: fc.constant('disconnect' as const), node }),
  fc.record({ op: fc.constant('outdate' as const), node }),
  fc.record({ op: fc.constant('pause' as const), node, pause: fc.boolean() }),
  fc.record({ op: fc.constant('invalidate' as const), node, remote: fc.boolean() }),
  fc.record({ op: fc.constant('verify' as const), node }),
  fc.record({ op: fc.constant('write' as const), node, blocks: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ op: fc.constant('link' as const) }),
  fc.record({ op: fc.constant('link' as const) }),
  fc.record({ op: fc.constant('cut' as const), loss: fc.constantFrom('NetworkFailure' as const, 'BrokenPipe' as const, 'Timeout' as const, 'ProtocolError' as const, 'Disconnecting' as const) }),
  fc.record({ op: fc.constant('finish-resync' as const), ok: fc.boolean() }),
  fc.record({ op: fc.constant('finish-verify' as const) }),
  // Weighted up: pulling ahead needs a synced, Connected Primary first (several steps in).
  fc.record({ op: fc.constant('congest' as const), node, blocks: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ op: fc.constant('congest' as const), node, blocks: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ op: fc.constant('congest' as const), node, blocks: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ op: fc.constant('ahead-drained' as const) }),
  fc.record({ op: fc.constant('ahead-drained' as const) }),
);

function apply(p: RulePair, o: Op): void {
  const n = (i: 0 | 1): SimNode => (i === 0 ? p.a : p.b);
  switch (o.op) {
    case 'primary': p.primary(n(o.node), o.force); return;
    case 'secondary': p.secondary(n(o.node)); return;
    case 'connect': p.connect(n(o.node), o.discard); return;
    case 'disconnect': p.disconnect(n(o.node)); return;
    case 'outdate': p.outdate(n(o.node)); return;
    case 'pause': p.pauseSync(n(o.node), o.pause); return;
    case 'invalidate': p.invalidate(n(o.node), o.remote); return;
    case 'verify': p.verify(n(o.node)); return;
    case 'write': p.write(n(o.node), o.blocks); return;
    case 'link': p.link(); return;
    case 'cut': p.cut(o.loss); return;
    case 'finish-resync': p.finishResync(o.ok); return;
    case 'finish-verify': p.finishVerify(); return;
    case 'congest': p.congest(n(o.node), o.blocks); return;
    case 'ahead-drained': p.aheadDrained(); return;
  }
}

/**
 * is_valid_state codes DRBD enters through hard (CS_HARD) changes, which
 * skip is_valid_state: a Primary whose SyncSource goes away while it is
 * itself Inconsistent (SyncTarget Primary losing the link: -2), the same
 * code whenever the old state already failed it (__drbd_set_state keeps an
 * invalid state valid for the same reason).
 */
function tolerated(code: SsCode, from: ResourceState, to: ResourceState, ctx: StateCtx): boolean {
  if (isValidState(from, ctx) === code) return true;
  const lostLinkAsInconsistentPrimary = code === SsCode.noUpToDateDisk && to.role === Role.Primary &&
    to.disk < DiskState.UpToDate && from.conn >= ConnState.Connected && to.conn < ConnState.Connected;
  return lostLinkAsInconsistentPrimary;
}

interface Figures {
  transitions: number;
  /** Connection states reached: the generator must reach the resync, verify and pause states. */
  reached: Set<ConnState>;
  toleratedStates: Map<number, number>;
  aheadTransitions: number;
}

function checkNode(n: SimNode, seen: number, figures: Figures, allowTwoPrimaries: boolean): void {
  for (const t of n.commits.slice(seen)) {
    figures.transitions++;
    figures.reached.add(t.to.conn);
    if (t.to.conn === ConnState.Ahead && t.from.conn !== ConnState.Ahead) figures.aheadTransitions++;
    expect(isValidTransition(t.from, t.to), `${n.name}: ${t.line}`).toBeNull();
    expect(brokenInvariant(t.to), `${n.name}: ${t.line}`).toBeNull();
    expect(t.line).toBe(formatStateChange(t.from, t.to));
    expect(t.line).not.toBe('');
    const ctx: StateCtx = { ...defaultStateCtx, verifyAlg: 'sha1', allowTwoPrimaries, hasNetConfig: true };
    const code = isValidState(t.to, ctx);
    if (code !== null) {
      figures.toleratedStates.set(code, (figures.toleratedStates.get(code) ?? 0) + 1);
      expect(tolerated(code, t.from, t.to, ctx), `${n.name}: ${t.line} reaches a state is_valid_state rejects (${code})`).toBe(true);
    }
  }
}

function runSequence(ops: Op[], allowTwoPrimaries: boolean, figures: Figures, start: 'fresh' | 'synced' = 'fresh'): void {
  let p: RulePair;
  if (start === 'synced') {
    // A synced pair with alpha Primary: on-congestion (Ahead/Behind) is a step away.
    p = syncedPair({ verifyAlg: 'sha1', allowTwoPrimaries });
  } else {
    p = new RulePair({ verifyAlg: 'sha1', allowTwoPrimaries });
    for (const n of [p.a, p.b]) {
      p.attachFresh(n);
      p.connect(n);
    }
    p.link();
  }
  const seen = [0, 0];
  for (const o of ops) {
    apply(p, o);
    checkNode(p.a, seen[0] ?? 0, figures, allowTwoPrimaries);
    checkNode(p.b, seen[1] ?? 0, figures, allowTwoPrimaries);
    seen[0] = p.a.commits.length;
    seen[1] = p.b.commits.length;
  }
}

describe('property: random event sequences stay within DRBD’s rules', () => {
  it(`${RUNS} seeded sequences of up to ${STEPS_MAX} steps (seed ${SEED})`, () => {
    const figures: Figures = { transitions: 0, reached: new Set(), toleratedStates: new Map(), aheadTransitions: 0 };
    const started = Date.now();
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: STEPS_MAX }), fc.boolean(), (ops, twoPrimaries) => {
        runSequence(ops, twoPrimaries, figures);
      }),
      { numRuns: RUNS, seed: SEED },
    );
    const aheadCount = figures.aheadTransitions;
    console.log(`property: ${aheadCount} transitions into Ahead, ${RUNS} runs, ${figures.transitions} transitions, ${figures.reached.size} connection states, tolerated is_valid_state codes ${JSON.stringify([...figures.toleratedStates])}, ${Date.now() - started} ms, seed ${SEED}`);
    expect(figures.transitions).toBeGreaterThan(RUNS);
    for (const c of [ConnState.SyncSource, ConnState.SyncTarget, ConnState.PausedSyncS, ConnState.PausedSyncT, ConnState.VerifyS,
      ConnState.VerifyT, ConnState.StartingSyncS, ConnState.StartingSyncT, ConnState.WFSyncUUID, ConnState.TearDown, ConnState.StandAlone]) {
      expect(figures.reached.has(c), `reached ${c}`).toBe(true);
    }
  });

  it(`${RUNS} seeded sequences from a synced pair reach Ahead/Behind and back (seed ${SEED})`, () => {
    const figures: Figures = { transitions: 0, reached: new Set(), toleratedStates: new Map(), aheadTransitions: 0 };
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: STEPS_MAX }), fc.boolean(), (ops, twoPrimaries) => {
        runSequence(ops, twoPrimaries, figures, 'synced');
      }),
      { numRuns: RUNS, seed: SEED },
    );
    console.log(`property (synced start): ${figures.aheadTransitions} transitions into Ahead, ${figures.transitions} transitions, tolerated ${JSON.stringify([...figures.toleratedStates])}`);
    expect(figures.aheadTransitions).toBeGreaterThan(RUNS / 10);
    for (const c of [ConnState.Ahead, ConnState.Behind, ConnState.SyncSource, ConnState.SyncTarget]) {
      expect(figures.reached.has(c), `reached ${c}`).toBe(true);
    }
  });
});
