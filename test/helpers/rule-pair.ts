/**
 * test/helpers/rule-pair — two resource nodes without sockets, disks or
 * timers, driven by the same pure rules the resource process calls:
 * resource/admin (operator requests), resource/uuid (syncHandshake and the
 * UUID rotations), resource/link-rules (connection-state targets) and
 * resource/transition (the one commit point, with its after-state effects).
 * The order of the steps follows daemon/link: WFReportParams → handshake →
 * WFBitMap* → bitmap exchange → WFSyncUUID / sync UUID → Sync*, P_STATE
 * both ways after every local change, the lost-link states. The bitmap is
 * a count of set bits (the exchange ORs them as the larger count).
 * Every committed transition is recorded for the tests to check.
 */
import type { GenerationUuids } from '../../src/meta/types.js';
import { UUID_JUST_CREATED } from '../../src/meta/types.js';
import {
  type AdminResult,
  requestConnect,
  requestDisconnect,
  requestInvalidate,
  requestInvalidateRemote,
  requestOutdate,
  requestPauseSync,
  requestPrimary,
  requestSecondary,
  requestVerify,
} from '../../src/resource/admin.js';
import {
  afterHandshake,
  handshakeStateRefusal,
  aheadToSyncSource,
  behindToSyncTarget,
  bitmapExchangedAsTarget,
  onCongestion,
  linkLostStates,
  peerRequestTarget,
  peerStateNews,
  resyncStarts,
  standAloneStates,
  targetResyncFinished,
  type LinkLoss,
  type PeerView,
  type StatePatch,
} from '../../src/resource/link-rules.js';
import { type ResourceState, type StateCtx, defaultStateCtx, unconfiguredState } from '../../src/resource/state.js';
import { ConnState, DiskState, Role } from '../../src/resource/states.js';
import { type Committed, internalTransition } from '../../src/resource/transition.js';
import {
  UuidFlag,
  newCurrentUuid,
  syncHandshake,
  syncSourceFinish,
  syncSourceStart,
  syncTargetFinish,
  syncTargetStart,
  type HandshakeDecision,
} from '../../src/resource/uuid.js';

/** Bound on packet deliveries per step: a loop between the two nodes is a bug. */
const DELIVERIES_PER_STEP_MAX = 200;

export interface NodeConfig {
  afterSb0pri: string;
  afterSb1pri: string;
  afterSb2pri: string;
  allowTwoPrimaries: boolean;
  verifyAlg: string | null;
}

export const defaultNodeConfig: NodeConfig = {
  afterSb0pri: 'disconnect',
  afterSb1pri: 'disconnect',
  afterSb2pri: 'disconnect',
  allowTwoPrimaries: false,
  verifyAlg: null,
};

export interface SimNode {
  readonly name: string;
  readonly cfg: NodeConfig;
  state: ResourceState;
  uuids: GenerationUuids;
  bitsSet: number;
  net: boolean;
  discardMyData: boolean;
  /** P_UUIDS as the peer sent them in the handshake. */
  peerUuids: GenerationUuids | null;
  /** Transitions committed on this node, in order. */
  readonly commits: Committed[];
  /** Non-state log lines (handshake, refusals, rule lines). */
  readonly log: string[];
  /** Handlers the rules asked for. */
  readonly handlers: string[];
}

type Message =
  | { to: SimNode; kind: 'state'; state: ResourceState }
  | { to: SimNode; kind: 'sync-uuid'; uuid: bigint };

export class RulePair {
  readonly a: SimNode;
  readonly b: SimNode;
  /** Number of 4 KiB blocks of the device (a full sync sets them all). */
  readonly deviceBits = 1024;
  private readonly queue: Message[] = [];
  private randomState: bigint;

  constructor(cfgA: Partial<NodeConfig> = {}, cfgB: Partial<NodeConfig> = {}, seed = 0x5eedn) {
    this.randomState = seed;
    const node = (name: string, cfg: NodeConfig): SimNode => ({
      name,
      cfg,
      state: { ...unconfiguredState },
      uuids: { current: UUID_JUST_CREATED, bitmap: 0n, historyStart: 0n, historyEnd: 0n },
      bitsSet: 0,
      net: false,
      discardMyData: false,
      peerUuids: null,
      commits: [],
      log: [],
      handlers: [],
    });
    this.a = node('alpha', { ...defaultNodeConfig, ...cfgA });
    this.b = node('beta', { ...defaultNodeConfig, ...cfgA, ...cfgB });
  }

  other(n: SimNode): SimNode {
    return n === this.a ? this.b : this.a;
  }

  private random(): bigint {
    // xorshift64: deterministic UUIDs for a seed
    let x = this.randomState;
    x ^= (x << 13n) & 0xffffffffffffffffn;
    x ^= x >> 7n;
    x ^= (x << 17n) & 0xffffffffffffffffn;
    this.randomState = x;
    return x;
  }

  ctx(n: SimNode): StateCtx {
    return {
      ...defaultStateCtx,
      allowTwoPrimaries: n.cfg.allowTwoPrimaries,
      hasNetConfig: n.net,
      verifyAlg: n.cfg.verifyAlg,
    };
  }

  /** The one commit point, as ResourceRuntime.setVolumeState / setConnState: transition, then P_STATE and after-state effects. */
  commit(n: SimNode, patch: StatePatch): void {
    const t = internalTransition(n.state, { ...n.state, ...patch }, this.ctx(n), { bitmapUuid: n.uuids.bitmap, newCurrentUuidPending: false });
    if (!t.changed) return;
    n.state = t.to;
    n.commits.push(t);
    const before = t.from;
    const after = t.to;
    if (after.conn >= ConnState.WFReportParams &&
        (before.role !== after.role || before.disk !== after.disk || before.conn !== after.conn || before.userIsp !== after.userIsp)) {
      this.queue.push({ to: this.other(n), kind: 'state', state: { ...after } });
    }
    for (const effect of t.effects) {
      if (effect.kind === 'new-current-uuid') {
        const r = newCurrentUuid(n.uuids, after.role, this.random());
        n.uuids = r.uuids;
        n.log.push(...r.logLines);
      }
    }
  }

  /** Runs resource/admin's verdict: false when refused. */
  private admin(n: SimNode, result: AdminResult): result is Extract<AdminResult, { kind: 'ok' }> {
    if (result.kind !== 'ok') {
      if (result.kind === 'refused') n.log.push(...result.logLines);
      return false;
    }
    n.log.push(...result.logLines);
    return true;
  }

  attachFresh(n: SimNode): void {
    this.commit(n, { disk: DiskState.Attaching });
    this.commit(n, { disk: DiskState.Inconsistent });
  }

  connect(n: SimNode, discardMyData = false): boolean {
    if (n.net) return false;
    const plan = requestConnect(n.state, { discardMyData }, this.ctx(n));
    if (!this.admin(n, plan)) return false;
    n.net = true;
    n.discardMyData = discardMyData;
    for (const s of plan.states) this.commit(n, { conn: s.conn });
    return true;
  }

  disconnect(n: SimNode): boolean {
    if (!n.net) return true;
    const plan = requestDisconnect(n.state, this.ctx(n));
    if (!this.admin(n, plan)) return false;
    n.net = false;
    const [disconnecting] = plan.states;
    if (disconnecting) this.commit(n, { conn: disconnecting.conn, pdsk: disconnecting.pdsk });
    this.linkGone(this.other(n), 'BrokenPipe');
    for (const conn of standAloneStates(n.state)) this.commit(n, { conn });
    this.drain();
    return true;
  }

  primary(n: SimNode, force = false): boolean {
    if (n.state.role === Role.Primary) return true;
    const plan = requestPrimary(n.state, { force }, { ...this.ctx(n), bitmapUuid: n.uuids.bitmap });
    if (!this.admin(n, plan)) return false;
    if (plan.effects.includes('new-current-uuid')) {
      const r = newCurrentUuid(n.uuids, Role.Primary, this.random());
      n.uuids = r.uuids;
    } else if (plan.effects.includes('uuid-primary-bit')) {
      n.uuids = { ...n.uuids, current: n.uuids.current | 1n };
    }
    n.discardMyData = false;
    for (const s of plan.states) this.commit(n, s);
    // P_UUIDS to the peer; both run the handshake again (daemon/link: forcedWhileConnected)
    if (plan.effects.includes('send-uuids')) this.decideAgain(n);
    this.drain();
    return true;
  }

  secondary(n: SimNode): boolean {
    if (n.state.role !== Role.Primary) return true;
    if (!this.admin(n, requestSecondary(n.state, { deviceOpen: false }, this.ctx(n)))) return false;
    n.uuids = { ...n.uuids, current: n.uuids.current & ~1n };
    this.commit(n, { role: Role.Secondary });
    this.drain();
    return true;
  }

  outdate(n: SimNode): boolean {
    const plan = requestOutdate(n.state, this.ctx(n));
    if (!this.admin(n, plan)) return false;
    for (const s of plan.states) this.commit(n, s);
    return true;
  }

  pauseSync(n: SimNode, pause: boolean): boolean {
    const plan = requestPauseSync(n.state, pause, this.ctx(n));
    if (!this.admin(n, plan)) return false;
    this.commit(n, { userIsp: pause });
    this.drain();
    return true;
  }

  /** Writes on a node: while not replicating they mark the bitmap (an up-to-date Primary only). */
  write(n: SimNode, blocks: number): void {
    if (n.state.role !== Role.Primary || n.state.conn >= ConnState.Connected) return;
    n.bitsSet = Math.min(this.deviceBits, n.bitsSet + blocks);
  }

  /**
   * on-congestion pull-ahead on n, a Primary writing `blocks` while the link
   * is congested: Ahead (daemon/link congested), the blocks only marked, on
   * the peer too (P_OUT_OF_SYNC); the peer goes Behind on n's P_STATE.
   */
  congest(n: SimNode, blocks: number): boolean {
    if (n.state.role !== Role.Primary) return false;
    const next = onCongestion(n.state, 'pull-ahead');
    if (next === null || next === 'disconnect') return false;
    this.commit(n, next);
    n.bitsSet = Math.min(this.deviceBits, n.bitsSet + blocks);
    const peer = this.other(n);
    peer.bitsSet = Math.min(this.deviceBits, peer.bitsSet + blocks);
    this.drain();
    return true;
  }

  /** The Ahead node's link drained (daemon/link aheadDrained): SyncSource, the sync UUID to the Behind peer. */
  aheadDrained(): boolean {
    const source = [this.a, this.b].find((n) => n.state.conn === ConnState.Ahead);
    if (!source) return false;
    const next = aheadToSyncSource(source.state);
    if (next === null) return false;
    const start = syncSourceStart(source.uuids, this.random());
    source.uuids = start.uuids;
    this.queue.push({ to: this.other(source), kind: 'sync-uuid', uuid: start.syncUuid });
    this.commit(source, next);
    this.drain();
    return true;
  }

  /** Both nodes' connectors reach each other (both WFConnection). */
  link(): boolean {
    const { a, b } = this;
    if (a.state.conn !== ConnState.WFConnection || b.state.conn !== ConnState.WFConnection) return false;
    // P_UUIDS / P_STATE of the handshake, as each node sent them
    const hello = (n: SimNode) => ({ uuids: { ...n.uuids }, bitsSet: n.bitsSet, uuidFlags: this.uuidFlags(n), role: n.state.role, disk: n.state.disk });
    const helloA = hello(a);
    const helloB = hello(b);
    a.peerUuids = helloB.uuids;
    b.peerUuids = helloA.uuids;
    const decideA = this.handshake(a, helloB, true);
    const decideB = this.handshake(b, helloA, false);
    this.commit(a, { conn: ConnState.WFReportParams });
    this.commit(b, { conn: ConnState.WFReportParams });
    this.act(a, decideA, { role: helloB.role, disk: helloB.disk, conn: ConnState.WFReportParams, userIsp: false });
    this.act(b, decideB, { role: helloA.role, disk: helloA.disk, conn: ConnState.WFReportParams, userIsp: false });
    this.exchangeBitmaps(true);
    this.drain();
    return true;
  }

  /** The link breaks on both sides (each sees it with the given reason). */
  cut(loss: LinkLoss = 'NetworkFailure'): boolean {
    if (this.a.state.conn < ConnState.WFReportParams && this.b.state.conn < ConnState.WFReportParams) return false;
    this.queue.length = 0;
    this.linkGone(this.a, loss);
    this.linkGone(this.b, loss);
    return true;
  }

  private linkGone(n: SimNode, loss: LinkLoss): void {
    if (n.state.conn < ConnState.WFReportParams) return;
    for (const conn of linkLostStates(loss, n.net)) this.commit(n, { conn });
  }

  /** The running resync ends on the target (ok, or with failed blocks) and the source learns it by P_STATE. */
  finishResync(ok = true): boolean {
    const target = [this.a, this.b].find((n) => n.state.conn === ConnState.SyncTarget || n.state.conn === ConnState.PausedSyncT);
    if (!target) return false;
    if (target.state.conn === ConnState.PausedSyncT) return false; // a paused resync does not finish
    if (ok) {
      target.bitsSet = 0;
      this.other(target).bitsSet = 0;
      target.uuids = syncTargetFinish(target.uuids, target.peerUuids ?? target.uuids, target.state.role);
    }
    this.commit(target, targetResyncFinished(ok));
    this.drain();
    return true;
  }

  /** `verify` on n: VerifyS here, VerifyT on the peer; `finishVerify` ends it. */
  verify(n: SimNode): boolean {
    if (!this.admin(n, requestVerify(n.state, this.ctx(n)))) return false;
    const peer = this.other(n);
    const target = peerRequestTarget(ConnState.VerifyT);
    if (peer.state.conn !== ConnState.Connected || target === null) return false;
    this.commit(peer, { conn: target });
    this.commit(n, { conn: ConnState.VerifyS });
    this.drain();
    return true;
  }

  finishVerify(): boolean {
    const source = [this.a, this.b].find((n) => n.state.conn === ConnState.VerifyS);
    if (!source) return false;
    this.commit(source, { conn: ConnState.Connected });
    this.drain();
    return true;
  }

  /** `invalidate` (full sync towards n) or `invalidate-remote` (from n), while Connected. */
  invalidate(n: SimNode, remote: boolean): boolean {
    const request = remote ? requestInvalidateRemote(n.state, this.ctx(n)) : requestInvalidate(n.state, this.ctx(n));
    if (!this.admin(n, request)) return false;
    if (n.state.conn === ConnState.StandAlone && !remote) {
      n.bitsSet = this.deviceBits;
      this.commit(n, { disk: DiskState.Inconsistent });
      return true;
    }
    const peer = this.other(n);
    if (peer.state.conn !== ConnState.Connected) return false;
    const [sourceNode, targetNode] = remote ? [n, peer] : [peer, n];
    // the peer agrees (P_STATE_CHG_REPLY), then both start a full sync without a bitmap exchange
    this.commit(sourceNode, { conn: peerRequestTarget(ConnState.StartingSyncS) ?? ConnState.StartingSyncS });
    this.commit(targetNode, { conn: ConnState.StartingSyncT });
    for (const x of [sourceNode, targetNode]) x.bitsSet = this.deviceBits;
    this.commit(sourceNode, afterHandshake('sync-source', this.view(targetNode)));
    this.commit(targetNode, afterHandshake('sync-target', this.view(sourceNode)));
    this.exchangeBitmaps(false);
    this.drain();
    return true;
  }

  private view(n: SimNode): PeerView {
    return { role: n.state.role, disk: n.state.disk, conn: n.state.conn, userIsp: n.state.userIsp };
  }

  private uuidFlags(n: SimNode): number {
    let f = 0;
    if (n.discardMyData) f |= UuidFlag.discardMyData;
    if (n.state.disk <= DiskState.Inconsistent) f |= UuidFlag.inconsistent;
    return f;
  }

  private handshake(
    n: SimNode,
    peer: { uuids: GenerationUuids; bitsSet: number; uuidFlags: number; role: Role; disk: DiskState },
    resolveConflicts: boolean,
  ): HandshakeDecision {
    const d = syncHandshake({
      self: { uuids: n.uuids, bitsSet: n.bitsSet, role: n.state.role, disk: n.state.disk, nodeName: n.name, crashedPrimary: false, discardMyData: n.discardMyData },
      peer: { ...peer, nodeName: this.other(n).name },
      afterSb0pri: n.cfg.afterSb0pri,
      afterSb1pri: n.cfg.afterSb1pri,
      afterSb2pri: n.cfg.afterSb2pri,
      rrConflict: 'disconnect',
      alwaysAsbp: false,
      resolveConflicts,
      canDemote: () => true,
    });
    n.log.push(...d.logLines);
    n.handlers.push(...d.handlers);
    return d;
  }

  /** daemon/link `act`: what a handshake decision does on one node. */
  private act(n: SimNode, d: HandshakeDecision, peer: PeerView): void {
    n.discardMyData = false;
    n.uuids = { ...d.selfUuids };
    if (d.demoted && n.state.role === Role.Primary) {
      n.uuids = { ...n.uuids, current: n.uuids.current & ~1n };
      this.commit(n, { role: Role.Secondary });
    }
    const refused = d.kind === 'no-sync' || d.kind === 'sync-source' || d.kind === 'sync-target'
      ? handshakeStateRefusal(n.state, d.kind, peer, this.ctx(n))
      : null;
    if (refused !== null) n.log.push(refused);
    // A connect outcome on a connection the peer already dropped (daemon/link: `link.closed`).
    if (refused === null && d.kind !== 'unrelated' && d.kind !== 'drop' && d.kind !== 'split-brain-unresolved' &&
      n.state.conn < ConnState.WFReportParams) return;
    switch (refused === null ? d.kind : 'drop') {
      case 'unrelated':
      case 'drop':
      case 'split-brain-unresolved':
        n.net = false;
        for (const conn of standAloneStates(n.state)) this.commit(n, { conn });
        // the peer sees the connection close
        this.linkGone(this.other(n), 'BrokenPipe');
        return;
      case 'no-sync':
        this.commit(n, afterHandshake('no-sync', peer));
        return;
      case 'sync-source':
        if (d.full) n.bitsSet = this.deviceBits;
        this.commit(n, afterHandshake('sync-source', peer));
        return;
      case 'sync-target':
        if (d.full) n.bitsSet = this.deviceBits;
        this.commit(n, afterHandshake('sync-target', peer));
        return;
    }
  }

  /** Both sides in WFBitMapS / WFBitMapT: exchange (OR) the bitmaps, sync UUID, Sync*. */
  private exchangeBitmaps(exchange: boolean): void {
    const source = [this.a, this.b].find((n) => n.state.conn === ConnState.WFBitMapS);
    const target = [this.a, this.b].find((n) => n.state.conn === ConnState.WFBitMapT);
    if (!source || !target) return;
    if (exchange) {
      const union = Math.max(source.bitsSet, target.bitsSet);
      source.bitsSet = union;
      target.bitsSet = union;
    }
    this.commit(target, bitmapExchangedAsTarget);
    const start = syncSourceStart(source.uuids, this.random());
    source.uuids = start.uuids;
    this.queue.push({ to: target, kind: 'sync-uuid', uuid: start.syncUuid });
    this.commit(source, resyncStarts('source'));
  }

  /** `primary --force` while Connected: both nodes run the handshake again on the new UUIDs. */
  private decideAgain(n: SimNode): void {
    const peer = this.other(n);
    if (n.state.conn !== ConnState.Connected || peer.state.conn !== ConnState.Connected) return;
    const hello = (x: SimNode) => ({ uuids: { ...x.uuids }, bitsSet: x.bitsSet, uuidFlags: this.uuidFlags(x), role: x.state.role, disk: x.state.disk });
    n.peerUuids = hello(peer).uuids;
    peer.peerUuids = hello(n).uuids;
    const dn = this.handshake(n, hello(peer), n === this.a);
    const dp = this.handshake(peer, hello(n), peer === this.a);
    this.act(n, dn, this.view(peer));
    this.act(peer, dp, this.view(n));
    this.exchangeBitmaps(true);
  }

  private deliver(m: Message): void {
    const n = m.to;
    switch (m.kind) {
      case 'state': {
        if (n.state.conn < ConnState.WFReportParams) return;
        const news = peerStateNews(n.state, this.view({ ...n, state: m.state }));
        if (news.sourceResyncDone) n.uuids = syncSourceFinish(n.uuids);
        this.commit(n, news.patch);
        return;
      }
      case 'sync-uuid': {
        const fromBehind = behindToSyncTarget(n.state);
        if (fromBehind !== null) {
          n.uuids = syncTargetStart(n.uuids, m.uuid, n.state.role);
          this.commit(n, fromBehind);
          return;
        }
        if (n.state.conn !== ConnState.WFSyncUUID) return; // the link went meanwhile
        n.uuids = syncTargetStart(n.uuids, m.uuid, n.state.role);
        this.commit(n, resyncStarts('target'));
        return;
      }
    }
  }

  drain(): void {
    for (let i = 0; i < DELIVERIES_PER_STEP_MAX && this.queue.length > 0; i++) {
      const m = this.queue.shift();
      if (m) this.deliver(m);
    }
    if (this.queue.length > 0) throw new Error(`rule-pair: more than ${DELIVERIES_PER_STEP_MAX} packets in one step`);
  }
}

/** Fresh pair: both attached (Inconsistent, just-created UUIDs), connected, handshake done. */
export function freshPair(cfgA: Partial<NodeConfig> = {}, cfgB: Partial<NodeConfig> = {}, seed?: bigint): RulePair {
  const p = new RulePair(cfgA, cfgB, seed);
  for (const n of [p.a, p.b]) {
    p.attachFresh(n);
    p.connect(n);
  }
  p.link();
  return p;
}

/** Fresh pair, `primary --force` on alpha, the full initial sync finished. */
export function syncedPair(cfgA: Partial<NodeConfig> = {}, cfgB: Partial<NodeConfig> = {}, seed?: bigint): RulePair {
  const p = freshPair(cfgA, cfgB, seed);
  p.primary(p.a, true);
  p.finishResync();
  return p;
}

/** The state-change log lines of a node. */
export const stateLines = (n: SimNode): string[] => n.commits.map((c) => c.line);
