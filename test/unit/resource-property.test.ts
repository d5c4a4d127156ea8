/**
 * Property: random, seeded sequences of operator requests and peer-link
 * events on two nodes (test/helpers/rule-pair: the rules the resource
 * process runs, sequenced as daemon/link) never reach a state DRBD's
 * is_valid_state rejects — except the ones DRBD itself enters with a hard
 * change (listed below) — and every logged transition is one
 * is_valid_transition accepts, logged as exactly its `conn( A -> B )` line.
 *
 * Then the connection-wide change (resource/transition: connectionTransition,
 * DRBD's conn_request_state) on 1..4 volumes: states from those sequences
 * and random sanitized ones, random connection changes as request or
 * internal: a refusal is the first refusing volume's and changes nothing;
 * a commit puts every volume on the one new connection with its own
 * volume part; the after-state rules fire per volume with its own facts;
 * with one volume it agrees with transition() on every case.
 *
 * CI runs a fixed seed; UDRBD_PROPERTY_RUNS / UDRBD_PROPERTY_SEED run longer.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type ConnectionState,
  type ResourceState,
  type StateCtx,
  type VolumeState,
  SsCode,
  connectionOf,
  defaultStateCtx,
  formatStateChange,
  isValidState,
  isValidTransition,
  joinState,
  sanitizeState,
  volumeOf,
} from '../../src/resource/state.js';
import { ConnState, DiskState, Role } from '../../src/resource/states.js';
import {
  type Committed,
  type StateFacts,
  type TransitionKind,
  afterStateRules,
  brokenInvariant,
  connectionLogLines,
  connectionTransition,
  transition,
} from '../../src/resource/transition.js';
import { InvariantError } from '../../src/util/assert.js';
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

// ---- several volumes on one connection: connectionTransition ---------------------------------

/** State words the rule-pair sequences reach (both nodes), as realistic volume states. */
function reachedStates(): ResourceState[] {
  const figures: Figures = { transitions: 0, reached: new Set(), toleratedStates: new Map(), aheadTransitions: 0 };
  const out: ResourceState[] = [];
  const seqs = fc.sample(fc.tuple(fc.array(opArb, { maxLength: STEPS_MAX }), fc.boolean()), { numRuns: 40, seed: SEED });
  for (const [ops, two] of seqs) {
    const p = new RulePair({ verifyAlg: 'sha1', allowTwoPrimaries: two });
    for (const n of [p.a, p.b]) {
      p.attachFresh(n);
      p.connect(n);
    }
    p.link();
    for (const o of ops) apply(p, o);
    for (const t of [...p.a.commits, ...p.b.commits]) out.push(t.to);
  }
  void figures;
  return out;
}
const REACHED = reachedStates();

const roleArb = fc.constantFrom<Role>(Role.Primary, Role.Secondary, Role.Unknown);
const diskArb = fc.constantFrom<DiskState>(...(Object.values(DiskState) as DiskState[]));
const cstateArb = fc.constantFrom<ConnState>(...(Object.values(ConnState) as ConnState[]).filter((c) => c <= ConnState.Connected));
const replArb = fc.constantFrom<ConnState>(...(Object.values(ConnState) as ConnState[]).filter((c) => c >= ConnState.Connected));
const rawVolumeArb: fc.Arbitrary<VolumeState> = fc.record({
  role: fc.constantFrom<Role>(Role.Primary, Role.Secondary), peer: roleArb, disk: diskArb, pdsk: diskArb, replication: replArb,
  userIsp: fc.boolean(), peerIsp: fc.boolean(), aftrIsp: fc.boolean(),
});
const volumeArb: fc.Arbitrary<VolumeState> = fc.oneof(rawVolumeArb, fc.constantFrom(...REACHED).map(volumeOf));
const connectionArb: fc.Arbitrary<ConnectionState> = fc.oneof(
  fc.record({ conn: cstateArb, susp: fc.boolean(), suspNod: fc.boolean(), suspFen: fc.boolean() }),
  fc.constantFrom(...REACHED).map(connectionOf),
);
const ctxArb: fc.Arbitrary<StateCtx> = fc.record({
  fencing: fc.constantFrom('dont-care' as const, 'resource-only' as const, 'resource-and-stonith' as const),
  allowTwoPrimaries: fc.boolean(), deviceOpen: fc.boolean(), hasNetConfig: fc.boolean(),
  verifyAlg: fc.constantFrom(null, 'sha1'), onNoDataSuspendIo: fc.boolean(), stateSent: fc.boolean(),
});
/** A connection-wide change as DRBD's mask/val: cstate, the suspension flags, now and then pdsk / disk / role for every volume. */
const changeArb: fc.Arbitrary<Partial<ResourceState>> = fc.record(
  { conn: cstateArb, susp: fc.boolean(), suspNod: fc.boolean(), suspFen: fc.boolean(), pdsk: diskArb, disk: diskArb, role: fc.constantFrom<Role>(Role.Primary, Role.Secondary) },
  { requiredKeys: [] },
).filter((c) => Object.keys(c).length > 0);
const factsArb: fc.Arbitrary<StateFacts> = fc.record({
  bitmapUuid: fc.constantFrom<bigint | undefined>(undefined, 0n, 0x1234n),
  newCurrentUuidPending: fc.boolean(),
});
const kindArb = fc.constantFrom<TransitionKind>('request', 'internal');

/** A volume as sanitize_state leaves it on `connection`, or null if it still breaks an invariant there. */
function onConnection(v: VolumeState, c: ConnectionState, ctx: StateCtx): VolumeState | null {
  const joined = joinState(v, c);
  const s = sanitizeState(joined, joined, ctx);
  if (brokenInvariant(s) !== null || connectionOf(s).conn !== c.conn) return null;
  return volumeOf(s);
}

interface Case {
  connection: ConnectionState;
  volumes: Map<number, VolumeState>;
  facts: Map<number, StateFacts>;
  change: Partial<ResourceState>;
  ctx: StateCtx;
  kind: TransitionKind;
}

/** 1..4 volumes with volume numbers 0..7 (not always dense), each with its own facts. */
const caseArb = (maxVolumes: number): fc.Arbitrary<Case | null> =>
  fc.record({
    connection: connectionArb,
    vols: fc.uniqueArray(fc.tuple(fc.integer({ min: 0, max: 7 }), volumeArb, factsArb), { minLength: 1, maxLength: maxVolumes, selector: ([vnr]) => vnr }),
    change: changeArb,
    ctx: ctxArb,
    kind: kindArb,
  }).map(({ connection, vols, change, ctx, kind }) => {
    const volumes = new Map<number, VolumeState>();
    const facts = new Map<number, StateFacts>();
    for (const [vnr, v, f] of vols) {
      const on = onConnection(v, connection, ctx);
      if (on === null) return null;
      volumes.set(vnr, Object.freeze(on));
      facts.set(vnr, f);
    }
    return { connection: Object.freeze({ ...connection }), volumes, facts, change, ctx, kind };
  });

type Outcome = { threw: string } | ReturnType<typeof connectionTransition>;
function runConnection(c: Case): Outcome {
  try {
    return connectionTransition({ connection: c.connection, volumes: c.volumes }, c.change, c.ctx, c.kind, (vnr) => c.facts.get(vnr)!);
  } catch (err) {
    if (!(err instanceof InvariantError)) throw err;
    return { threw: err.message };
  }
}
function runVolume(c: Case, vnr: number): { threw: string } | ReturnType<typeof transition> {
  const os = joinState(c.volumes.get(vnr)!, c.connection);
  try {
    return transition(os, { ...os, ...c.change }, c.ctx, c.kind, c.facts.get(vnr));
  } catch (err) {
    if (!(err instanceof InvariantError)) throw err;
    return { threw: err.message };
  }
}

describe('property: a connection change on N volumes (connectionTransition = conn_request_state)', () => {
  it(`with one volume it agrees with transition() on every generated case (${RUNS * 10} cases, seed ${SEED})`, () => {
    const figures = { refused: 0, committed: 0, threw: 0, unchanged: 0 };
    fc.assert(
      fc.property(caseArb(1), (c) => {
        fc.pre(c !== null);
        const [vnr] = [...c.volumes.keys()] as [number];
        const one = runVolume(c, vnr);
        const all = runConnection(c);
        if ('threw' in one) {
          figures.threw++;
          expect(all).toEqual(one);
          return;
        }
        if (!one.ok) {
          figures.refused++;
          expect(all).toMatchObject({ ok: false, code: one.code, text: one.text, exitCode: one.exitCode, vnr });
          return;
        }
        if (!one.changed) figures.unchanged++;
        else figures.committed++;
        expect(all).toMatchObject({ ok: true });
        if (!('ok' in all) || !all.ok) return;
        expect(all.volumes.get(vnr)).toEqual(one);
        expect(all.to).toEqual(connectionOf(one.to));
        expect(all.changed).toBe(one.changed);
        // the runtime logs these: with one volume exactly transition's one line
        expect(connectionLogLines(all)).toEqual(one.changed ? [one.line] : []);
      }),
      { numRuns: RUNS * 10, seed: SEED },
    );
    console.log(`connectionTransition N=1: ${JSON.stringify(figures)}`);
    for (const n of [figures.refused, figures.committed, figures.threw]) expect(n).toBeGreaterThan(RUNS / 10);
    expect(figures.unchanged).toBeGreaterThan(0);
  });

  it(`on 1..4 volumes: all or none, one connection after, after-state rules per volume (${RUNS * 10} cases, seed ${SEED})`, () => {
    const figures = { refused: 0, refusedAfterAccepting: 0, committed: 0, threw: 0, multi: 0, frozeOthers: 0, effectsDiffer: 0 };
    fc.assert(
      fc.property(caseArb(4), (c) => {
        fc.pre(c !== null);
        if (c.volumes.size > 1) figures.multi++;
        const before = { connection: structuredClone(c.connection), volumes: structuredClone([...c.volumes]) };
        const all = runConnection(c);
        // pure: the inputs are as they were, whatever happened (they are frozen too)
        expect(c.connection).toEqual(before.connection);
        expect([...c.volumes]).toEqual(before.volumes);
        const vnrs = [...c.volumes.keys()].sort((a, b) => a - b);
        const alone = new Map(vnrs.map((vnr) => [vnr, runVolume(c, vnr)] as const));
        if ('threw' in all) {
          figures.threw++;
          // the first volume (by number) whose own change breaks a hard rule; none before it did
          const first = vnrs.find((vnr) => 'threw' in alone.get(vnr)! || !(alone.get(vnr) as { ok: boolean }).ok);
          expect(first).toBeDefined();
          expect(alone.get(first!)).toEqual(all);
          return;
        }
        if (!all.ok) {
          figures.refused++;
          // the refusal is the first refusing volume's own, every volume before it accepted alone
          expect(alone.get(all.vnr)).toMatchObject({ ok: false, code: all.code, text: all.text, exitCode: all.exitCode });
          for (const vnr of vnrs.filter((v) => v < all.vnr)) expect(alone.get(vnr)).toMatchObject({ ok: true });
          if (vnrs[0] !== all.vnr) figures.refusedAfterAccepting++;
          expect(all.from).toEqual(joinState(c.volumes.get(all.vnr)!, c.connection));
          return;
        }
        // committed: no volume refused alone (all or none)
        for (const vnr of vnrs) expect(alone.get(vnr)).toMatchObject({ ok: true });
        figures.committed++;
        expect([...all.volumes.keys()].sort((a, b) => a - b)).toEqual(vnrs);
        expect(all.from).toEqual(c.connection);
        if (c.change.conn !== undefined) expect(all.to.conn).toBe(c.change.conn);
        const own = vnrs.map((vnr) => alone.get(vnr) as Committed);
        for (const flag of ['susp', 'suspNod', 'suspFen'] as const) expect(all.to[flag]).toBe(own.some((t) => t.to[flag]));
        let effects = '';
        for (const [i, vnr] of vnrs.entries()) {
          const t = all.volumes.get(vnr)!;
          const solo = own[i]!;
          // every volume is on the one new connection, with exactly the volume part its own change gives
          expect(connectionOf(t.to)).toEqual(all.to);
          expect(volumeOf(t.to)).toEqual(volumeOf(solo.to));
          expect(t.from).toEqual(joinState(c.volumes.get(vnr)!, c.connection));
          expect(brokenInvariant(t.to)).toBeNull();
          expect(t.line).toBe(formatStateChange(t.from, t.to));
          // the after-state rules ran on this volume's own states and facts
          expect(t.effects).toEqual(afterStateRules.flatMap((rule) => rule(t.from, t.to, c.facts.get(vnr)!)));
          if (connectionOf(solo.to).suspFen === all.to.suspFen && connectionOf(solo.to).suspNod === all.to.suspNod) expect(t.effects).toEqual(solo.effects);
          else figures.frozeOthers++;
          if (i > 0 && JSON.stringify(t.effects) !== effects) figures.effectsDiffer++;
          effects = JSON.stringify(t.effects);
        }
      }),
      { numRuns: RUNS * 10, seed: SEED },
    );
    console.log(`connectionTransition N=1..4: ${JSON.stringify(figures)}`);
    for (const n of Object.values(figures)) expect(n).toBeGreaterThan(0);
  });
});
