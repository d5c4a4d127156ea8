import { describe, expect, it } from 'vitest';
import { MdFlag, UUID_JUST_CREATED } from '../../src/meta/types.js';
import {
  ConnState as C,
  DiskState as D,
  Role as R,
  defaultResourceConfig,
  diskStateFromMdFlags,
  formatStateChange,
  initialModel,
  mdFlagsForState,
  step,
  type Action,
  type Model,
  type ResourceConfig,
  type ResourceEvent,
} from '../../src/resource/index.js';

/** Loop bound for message delivery between the two simulated nodes. */
const DELIVERY_STEPS_MAX = 200;

interface Node {
  name: string;
  model: Model;
  actions: Action[];
  bitmapReady: boolean;
}

/**
 * Two reducers wired back to back: send-* actions become the other node's
 * events, exchange-bitmap completes when both sides asked for it. Resync and
 * verify runs are finished explicitly by the test.
 */
class Pair {
  readonly a: Node;
  readonly b: Node;
  private rnd = 0x1000n;
  private queue: Array<[Node, ResourceEvent]> = [];

  constructor(cfg: Partial<ResourceConfig> = {}, cfgB: Partial<ResourceConfig> = {}) {
    this.a = { name: 'alpha', model: initialModel({ ...defaultResourceConfig, nodeName: 'alpha', ...cfg }), actions: [], bitmapReady: false };
    this.b = { name: 'beta', model: initialModel({ ...defaultResourceConfig, nodeName: 'beta', minor: 1, ...cfg, ...cfgB }), actions: [], bitmapReady: false };
  }

  other(n: Node): Node {
    return n === this.a ? this.b : this.a;
  }

  /** Feeds one event and delivers everything that follows; returns the actions of that first step. */
  send(n: Node, ev: ResourceEvent): Action[] {
    const first = this.apply(n, ev);
    this.drain();
    return first;
  }

  private apply(n: Node, ev: ResourceEvent): Action[] {
    this.rnd += 0x10001n;
    const r = step(n.model, { random: (this.rnd * 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn, ...ev });
    n.model = r.model;
    n.actions.push(...r.actions);
    checkLogDiscipline(r.actions);
    const peer = this.other(n);
    for (const a of r.actions) {
      switch (a.type) {
        case 'send-state':
          this.queue.push([peer, { type: 'peer-state', role: a.state.role, disk: a.state.disk, conn: a.state.conn, userIsp: a.state.userIsp }]);
          break;
        case 'send-uuids':
          this.queue.push([peer, { type: 'peer-uuids', uuids: a.uuids, bitsSet: a.bitsSet, uuidFlags: a.uuidFlags }]);
          break;
        case 'send-sync-uuid':
          this.queue.push([peer, { type: 'sync-uuid', uuid: a.uuid }]);
          break;
        case 'exchange-bitmap':
          n.bitmapReady = true;
          if (peer.bitmapReady) {
            n.bitmapReady = false;
            peer.bitmapReady = false;
            const [target, source] = a.as === 'target' ? [n, peer] : [peer, n];
            this.queue.push([target, { type: 'bitmap-exchanged' }], [source, { type: 'bitmap-exchanged' }]);
          }
          break;
        default:
          break;
      }
    }
    return r.actions;
  }

  private drain(): void {
    for (let i = 0; i < DELIVERY_STEPS_MAX && this.queue.length > 0; i++) {
      const [n, ev] = this.queue.shift()!;
      this.apply(n, ev);
    }
    expect(this.queue.length).toBe(0);
  }

  /** Both resource processes reach each other: net-connected on both with the handshake parameters. */
  link(): void {
    const params = (n: Node) => ({
      nodeName: n.name,
      protocol: n.model.config.protocol,
      afterSb0pri: n.model.config.afterSb0pri,
      afterSb1pri: n.model.config.afterSb1pri,
      afterSb2pri: n.model.config.afterSb2pri,
      allowTwoPrimaries: n.model.config.allowTwoPrimaries,
      discardMyData: n.model.net?.discardMyData ?? false,
      uuids: n.model.uuids,
      bitsSet: n.model.bitsSet,
      uuidFlags: (n.model.net?.discardMyData ? 1 : 0) | (n.model.crashedPrimary ? 2 : 0) | (n.model.state.disk === D.Inconsistent ? 4 : 0),
      role: n.model.state.role,
      disk: n.model.state.disk,
      conn: C.WFReportParams,
    });
    const pa = params(this.a);
    const pb = params(this.b);
    this.apply(this.a, { type: 'net-connected', peer: pb, resolveConflicts: true });
    this.apply(this.b, { type: 'net-connected', peer: pa, resolveConflicts: false });
    this.drain();
  }

  cut(): void {
    this.a.bitmapReady = false;
    this.b.bitmapReady = false;
    this.send(this.a, { type: 'net-lost', reason: 'network-failure' });
    this.send(this.b, { type: 'net-lost', reason: 'network-failure' });
  }

  finishResync(ok = true): void {
    this.send(this.a, { type: 'resync-finished', ok });
    this.send(this.b, { type: 'resync-finished', ok });
  }
}

function checkLogDiscipline(actions: Action[]): void {
  actions.forEach((a, i) => {
    if (a.type !== 'state-change') return;
    const prev = actions[i - 1];
    expect(prev).toEqual({ type: 'log', level: 'info', msg: formatStateChange(a.from, a.to) });
  });
  const changes = actions.filter((a) => a.type === 'state-change').length;
  const changeLogs = actions.filter((a) => a.type === 'log' && /^(role|peer|conn|disk|pdsk|susp|aftr_isp|peer_isp|user_isp)\( /.test(a.msg)).length;
  expect(changeLogs).toBe(changes);
}

const short = (m: Model) => ({ role: m.state.role, peer: m.state.peer, conn: m.state.conn, disk: m.state.disk, pdsk: m.state.pdsk });
const logs = (n: Node) => n.actions.filter((a): a is Extract<Action, { type: 'log' }> => a.type === 'log').map((a) => a.msg);
const replies = (acts: Action[]) => acts.filter((a): a is Extract<Action, { type: 'reply' }> => a.type === 'reply');
/** UUIDs with bit 0 masked in every slot (DRBD compares them that way). */
const masked = (m: Model) => ({
  current: m.uuids.current & ~1n,
  bitmap: m.uuids.bitmap & ~1n,
  historyStart: m.uuids.historyStart & ~1n,
  historyEnd: m.uuids.historyEnd & ~1n,
});

function freshPairUp(cfg: Partial<ResourceConfig> = {}, cfgB: Partial<ResourceConfig> = {}): Pair {
  const p = new Pair(cfg, cfgB);
  for (const n of [p.a, p.b]) {
    p.send(n, { type: 'attach', uuids: { current: UUID_JUST_CREATED, bitmap: 0n, historyStart: 0n, historyEnd: 0n }, mdFlags: MdFlag.alClean, bitsSet: 0 });
    p.send(n, { type: 'connect', discardMyData: false });
  }
  p.link();
  return p;
}

/** Fresh pair, primary --force on alpha, full initial sync finished. */
function syncedPair(cfg: Partial<ResourceConfig> = {}, cfgB: Partial<ResourceConfig> = {}): Pair {
  const p = freshPairUp(cfg, cfgB);
  p.send(p.a, { type: 'primary', force: true });
  p.finishResync();
  return p;
}

describe('reducer scenarios', () => {
  it('fresh pair: Connected Secondary/Secondary Inconsistent/Inconsistent by rule 10', () => {
    const p = freshPairUp();
    expect(short(p.a.model)).toEqual({ role: R.Secondary, peer: R.Secondary, conn: C.Connected, disk: D.Inconsistent, pdsk: D.Inconsistent });
    expect(logs(p.a)).toContain('uuid_compare()=0 by rule 10');
    expect(logs(p.a)).toContain('peer( Unknown -> Secondary ) conn( WFReportParams -> Connected ) pdsk( DUnknown -> Inconsistent )');
    expect(p.a.actions.some((a) => a.type === 'net-connect')).toBe(true);
  });

  it('initial sync: primary --force → full sync alpha→beta → UpToDate/UpToDate with equal UUIDs', () => {
    const p = freshPairUp();
    const acts = p.send(p.a, { type: 'primary', force: true });
    expect(replies(acts)).toEqual([{ type: 'reply', ok: true, code: 1, text: '', exitCode: 0, stderr: '' }]);
    expect(logs(p.a)).toContain('Forced to consider local data as UpToDate!');
    expect(short(p.a.model)).toMatchObject({ role: R.Primary, conn: C.SyncSource, disk: D.UpToDate, pdsk: D.Inconsistent });
    expect(short(p.b.model)).toMatchObject({ role: R.Secondary, conn: C.SyncTarget, disk: D.Inconsistent, pdsk: D.UpToDate });
    expect(logs(p.b)).toContain('uuid_compare()=-2 by rule 20');
    expect(logs(p.a)).toContain('uuid_compare()=2 by rule 30');
    expect(p.a.actions).toContainEqual({ type: 'start-resync', as: 'source', full: true });
    expect(p.b.actions).toContainEqual({ type: 'start-resync', as: 'target', full: true });
    expect(p.b.actions.some((a) => a.type === 'set-all-bits')).toBe(true);
    p.finishResync();
    expect(short(p.a.model)).toEqual({ role: R.Primary, peer: R.Secondary, conn: C.Connected, disk: D.UpToDate, pdsk: D.UpToDate });
    expect(short(p.b.model)).toEqual({ role: R.Secondary, peer: R.Primary, conn: C.Connected, disk: D.UpToDate, pdsk: D.UpToDate });
    expect(masked(p.a.model)).toEqual(masked(p.b.model));
    expect(p.a.model.uuids.current & 1n).toBe(1n);
    expect(p.b.model.uuids.historyEnd).toBe(UUID_JUST_CREATED);
    expect(p.b.actions).toContainEqual({ type: 'run-handler', name: 'after-resync-target' });
    const flagsB = p.b.model.mdFlags;
    expect(flagsB & (MdFlag.consistent | MdFlag.wasUpToDate | MdFlag.connectedInd)).toBe(MdFlag.consistent | MdFlag.wasUpToDate | MdFlag.connectedInd);
  });

  it('secondary failure: Primary rotates UUIDs, reconnect gives a bitmap-based resync (rules 70 / 50)', () => {
    const p = syncedPair();
    const before = p.a.model.uuids;
    p.cut();
    expect(short(p.a.model)).toEqual({ role: R.Primary, peer: R.Unknown, conn: C.WFConnection, disk: D.UpToDate, pdsk: D.DUnknown });
    expect(p.a.model.uuids.bitmap).toBe(before.current);
    expect(p.a.model.uuids.current).not.toBe(before.current);
    expect(logs(p.a).some((l) => l.startsWith('new current UUID '))).toBe(true);
    expect(p.b.model.uuids).toEqual({ ...before, current: before.current & ~1n });
    p.send(p.a, { type: 'bits-set', count: 25 });
    p.link();
    expect(logs(p.a)).toContain('uuid_compare()=1 by rule 70');
    expect(logs(p.b)).toContain('uuid_compare()=-1 by rule 50');
    expect(p.a.actions.at(-1)).not.toEqual({ type: 'start-resync', as: 'source', full: true });
    expect(p.a.actions).toContainEqual({ type: 'start-resync', as: 'source', full: false });
    expect(p.a.model.state.conn).toBe(C.SyncSource);
    p.finishResync();
    expect(masked(p.a.model)).toEqual(masked(p.b.model));
    expect(short(p.b.model)).toMatchObject({ conn: C.Connected, disk: D.UpToDate, pdsk: D.UpToDate });
  });

  it('split brain: both promoted while cut → both StandAlone, helpers run, roles and disks unchanged', () => {
    const p = syncedPair();
    p.cut();
    const acts = p.send(p.b, { type: 'primary', force: false });
    expect(replies(acts)[0]?.ok).toBe(true);
    p.link();
    for (const n of [p.a, p.b]) {
      expect(short(n.model)).toEqual({ role: R.Primary, peer: R.Unknown, conn: C.StandAlone, disk: D.UpToDate, pdsk: D.DUnknown });
      expect(logs(n)).toContain('uuid_compare()=100 by rule 90');
      expect(logs(n)).toContain('Split-Brain detected but unresolved, dropping connection!');
      expect(n.actions).toContainEqual({ type: 'run-handler', name: 'initial-split-brain' });
      expect(n.actions).toContainEqual({ type: 'run-handler', name: 'split-brain' });
      expect(n.actions).toContainEqual({ type: 'drop-connection', reason: 'split-brain-unresolved', to: 'StandAlone' });
      expect(n.model.net).toBeNull();
    }
    expect(logs(p.a)).toContain('conn( WFReportParams -> Disconnecting )');
    expect(logs(p.a)).toContain('conn( Disconnecting -> StandAlone )');
  });

  it('discard-my-data recovery: victim becomes SyncTarget (bitmap-based) and ends equal to the survivor', () => {
    const p = syncedPair();
    p.cut();
    p.send(p.b, { type: 'primary', force: false });
    p.link(); // split brain → both StandAlone
    // victim beta: disconnect (no-op), secondary, connect --discard-my-data
    expect(replies(p.send(p.b, { type: 'disconnect' }))[0]).toMatchObject({ ok: true, exitCode: 0 });
    expect(replies(p.send(p.b, { type: 'secondary' }))[0]?.ok).toBe(true);
    expect(replies(p.send(p.b, { type: 'connect', discardMyData: true }))[0]?.ok).toBe(true);
    p.send(p.a, { type: 'connect', discardMyData: false });
    p.send(p.b, { type: 'bits-set', count: 4 });
    p.link();
    expect(logs(p.b)).toContain('Split-Brain detected, manually solved. Sync from peer node');
    expect(logs(p.a)).toContain('Split-Brain detected, manually solved. Sync from this node');
    expect(p.b.actions).toContainEqual({ type: 'start-resync', as: 'target', full: false });
    expect(p.b.model.state.conn).toBe(C.SyncTarget);
    expect(p.b.model.net?.discardMyData).toBe(false);
    p.finishResync();
    expect(short(p.b.model)).toEqual({ role: R.Secondary, peer: R.Primary, conn: C.Connected, disk: D.UpToDate, pdsk: D.UpToDate });
    expect(masked(p.a.model)).toEqual(masked(p.b.model));
  });

  it('--discard-my-data on a Primary is refused with exit 10', () => {
    const p = syncedPair();
    p.cut();
    p.send(p.a, { type: 'disconnect' });
    const r = replies(p.send(p.a, { type: 'connect', discardMyData: true }))[0];
    expect(r).toMatchObject({ ok: false, code: 123, exitCode: 10, stderr: '0: Failure: (123) --discard-my-data not allowed when primary.' });
  });

  it('after-sb-0pri discard-zero-changes resolves a split brain between two Secondaries', () => {
    const p = syncedPair({ afterSb0pri: 'discard-zero-changes' });
    p.cut();
    p.send(p.b, { type: 'primary', force: false }); // beta writes nothing
    p.send(p.b, { type: 'secondary' });
    p.send(p.a, { type: 'bits-set', count: 9 }); // alpha changed blocks
    p.send(p.a, { type: 'secondary' });
    p.link();
    expect(logs(p.a)).toContain('Split-Brain detected, 0 primaries, automatically solved. Sync from this node');
    expect(p.a.model.state.conn).toBe(C.SyncSource);
    expect(p.b.model.state.conn).toBe(C.SyncTarget);
  });

  it('after-sb-1pri discard-secondary makes the Secondary the target', () => {
    const p = syncedPair({ afterSb1pri: 'discard-secondary' });
    p.cut();
    p.send(p.b, { type: 'primary', force: false });
    p.send(p.b, { type: 'secondary' });
    p.link();
    expect([p.a.model.state.conn, p.b.model.state.conn]).toEqual([C.SyncSource, C.SyncTarget]);
  });

  it('after-sb-2pri call-pri-lost-after-sb demotes the loser (discard-node-beta)', () => {
    const p = syncedPair({ afterSb0pri: 'discard-node-beta', afterSb2pri: 'call-pri-lost-after-sb', allowTwoPrimaries: true });
    p.cut();
    p.send(p.b, { type: 'primary', force: false });
    p.link();
    expect(logs(p.b)).toContain('Successfully gave up primary role.');
    expect(short(p.b.model)).toMatchObject({ role: R.Secondary, conn: C.SyncTarget });
    expect(short(p.a.model)).toMatchObject({ role: R.Primary, conn: C.SyncSource });
  });

  it('incompatible after-sb settings drop the connection to StandAlone', () => {
    const p = new Pair({ afterSb0pri: 'discard-zero-changes' }, { afterSb0pri: 'disconnect' });
    for (const n of [p.a, p.b]) {
      p.send(n, { type: 'attach', uuids: { current: 4n, bitmap: 0n, historyStart: 0n, historyEnd: 0n }, mdFlags: 0, bitsSet: 0 });
      p.send(n, { type: 'connect', discardMyData: false });
    }
    p.link();
    expect(logs(p.a)).toContain('incompatible after-sb-0pri settings');
    expect(p.a.model.state.conn).toBe(C.StandAlone);
  });

  it('refusals reach the operator with DRBD texts and exit codes', () => {
    const p = freshPairUp();
    const r = replies(p.send(p.a, { type: 'primary', force: false }))[0];
    expect(r).toMatchObject({ ok: false, code: -2, exitCode: 17, stderr: '0: State change failed: (-2) Need access to UpToDate data' });
    expect(logs(p.a)).toContain('State change failed: Need access to UpToDate data');
    const q = syncedPair();
    p.send(q.a, { type: 'device-open', open: true });
    q.send(q.a, { type: 'device-open', open: true });
    expect(replies(q.send(q.a, { type: 'secondary' }))[0]).toMatchObject({ ok: false, code: -12, exitCode: 11 });
    expect(replies(q.send(q.b, { type: 'primary', force: false }))[0]).toMatchObject({ ok: false, code: -1 });
    expect(replies(q.send(q.a, { type: 'outdate' }))[0]).toMatchObject({ ok: false, code: -6 });
    expect(replies(q.send(q.a, { type: 'verify' }))[0]).toMatchObject({ ok: false, code: -14 });
  });

  it('online verify: VerifyS / VerifyT, then back to Connected', () => {
    const p = syncedPair({ verifyAlg: 'sha1' });
    p.send(p.a, { type: 'verify' });
    expect([p.a.model.state.conn, p.b.model.state.conn]).toEqual([C.VerifyS, C.VerifyT]);
    expect(p.b.actions).toContainEqual({ type: 'start-verify', as: 'target' });
    p.send(p.a, { type: 'verify-finished', oosBlocks: 2 });
    p.send(p.b, { type: 'verify-finished', oosBlocks: 2 });
    expect(logs(p.a)).toContain('Online verify found 2 4k block out of sync!');
    expect([p.a.model.state.conn, p.b.model.state.conn]).toEqual([C.Connected, C.Connected]);
  });

  it('invalidate on the Secondary: full resync towards it', () => {
    const p = syncedPair();
    p.send(p.b, { type: 'invalidate' });
    expect([p.a.model.state.conn, p.b.model.state.conn]).toEqual([C.SyncSource, C.SyncTarget]);
    expect(p.a.actions).toContainEqual({ type: 'start-resync', as: 'source', full: true });
    p.finishResync();
    expect(short(p.b.model)).toMatchObject({ conn: C.Connected, disk: D.UpToDate });
    expect(masked(p.a.model)).toEqual(masked(p.b.model));
  });

  it('pause-sync on the target pauses both sides', () => {
    const p = freshPairUp();
    p.send(p.a, { type: 'primary', force: true });
    p.send(p.b, { type: 'pause-sync' });
    expect([p.a.model.state.conn, p.b.model.state.conn]).toEqual([C.PausedSyncS, C.PausedSyncT]);
    p.send(p.b, { type: 'resume-sync' });
    expect([p.a.model.state.conn, p.b.model.state.conn]).toEqual([C.SyncSource, C.SyncTarget]);
  });

  it('failed resync leaves the target Inconsistent and UUIDs unchanged', () => {
    const p = freshPairUp();
    p.send(p.a, { type: 'primary', force: true });
    const uuidsB = p.b.model.uuids;
    p.send(p.b, { type: 'resync-finished', ok: false, failedBlocks: 3 });
    expect(short(p.b.model)).toMatchObject({ conn: C.Connected, disk: D.Inconsistent });
    expect(p.b.model.uuids).toEqual(uuidsB);
  });

  it('fencing resource-only: promotion while disconnected runs fence-peer first', () => {
    const p = syncedPair({ fencing: 'resource-only' });
    p.send(p.a, { type: 'secondary' });
    p.cut();
    const acts = p.send(p.b, { type: 'primary', force: false });
    expect(acts).toContainEqual({ type: 'run-handler', name: 'fence-peer' });
    expect(replies(acts)).toEqual([]);
    const done = p.send(p.b, { type: 'fence-peer-result', exitCode: 4 });
    expect(logs(p.b)).toContain('fence-peer helper returned 4 (peer was fenced)');
    expect(replies(done)[0]?.ok).toBe(true);
    expect(short(p.b.model)).toMatchObject({ role: R.Primary, pdsk: D.Outdated });
  });

  it('fencing resource-and-stonith: a Primary losing the peer freezes IO until fence-peer answers', () => {
    const p = syncedPair({ fencing: 'resource-and-stonith' });
    const uuids = p.a.model.uuids;
    p.send(p.a, { type: 'net-lost', reason: 'timeout' });
    expect(p.a.model.state.suspFen).toBe(true);
    expect(p.a.actions).toContainEqual({ type: 'run-handler', name: 'fence-peer' });
    expect(p.a.model.uuids).toEqual(uuids); // new current UUID deferred while suspended
    p.send(p.a, { type: 'fence-peer-result', exitCode: 7 });
    expect(p.a.model.state.suspFen).toBe(false);
    expect(p.a.model.state.pdsk).toBe(D.Outdated);
    expect(p.a.model.uuids.bitmap).toBe(uuids.current);
  });

  it('detach of a connected Secondary goes Failed → Diskless and tells the peer', () => {
    const p = syncedPair();
    p.send(p.b, { type: 'detach' });
    expect(logs(p.b)).toContain('disk( UpToDate -> Failed )');
    expect(logs(p.b)).toContain('disk( Failed -> Diskless )');
    expect(p.a.model.state.pdsk).toBe(D.Diskless);
  });

  it('skip initial sync: new-current-uuid --clear-bitmap on a fresh connected pair', () => {
    const p = freshPairUp();
    p.send(p.a, { type: 'new-current-uuid', clearBitmap: true });
    expect(short(p.a.model)).toMatchObject({ conn: C.Connected, disk: D.UpToDate, pdsk: D.UpToDate });
    expect(short(p.b.model)).toMatchObject({ conn: C.Connected, disk: D.UpToDate, pdsk: D.UpToDate });
    expect(masked(p.a.model)).toEqual(masked(p.b.model));
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
  });
  it('flags derived from a state (0x95-style example)', () => {
    const s = { role: R.Secondary, peer: R.Secondary, conn: C.Connected, disk: D.UpToDate, pdsk: D.UpToDate, susp: false, suspNod: false, suspFen: false, userIsp: false, peerIsp: false, aftrIsp: false };
    expect(mdFlagsForState(s, MdFlag.alClean, false)).toBe(MdFlag.consistent | MdFlag.wasUpToDate | MdFlag.connectedInd);
    expect(mdFlagsForState({ ...s, conn: C.WFConnection, pdsk: D.Outdated, role: R.Primary }, MdFlag.fullSync, true))
      .toBe(MdFlag.consistent | MdFlag.wasUpToDate | MdFlag.primaryInd | MdFlag.peerOutDated | MdFlag.crashedPrimary | MdFlag.fullSync);
  });
  it('attach with FULL_SYNC sets all bits and writes the cleared flag back', () => {
    const m = initialModel(defaultResourceConfig);
    const r = step(m, { type: 'attach', uuids: { current: 0x10n, bitmap: 0n, historyStart: 0n, historyEnd: 0n }, mdFlags: MdFlag.fullSync | MdFlag.consistent, bitsSet: 0 });
    expect(r.actions).toContainEqual({ type: 'set-all-bits' });
    const w = r.actions.find((a) => a.type === 'write-md');
    expect(w && w.type === 'write-md' && (w.mdFlags & MdFlag.fullSync)).toBe(0);
    expect(r.model.state.disk).toBe(D.Outdated);
  });
});
