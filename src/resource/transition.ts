/**
 * resource/transition — the one function every state change of a resource
 * passes, whether an operator asked for it, the peer reported something, a
 * resync or verify finished, the link was lost or a handler answered
 * (DRBD: drbd_state.c, __drbd_set_state). In order:
 *
 *   1. sanitizeState — the implied clamps (drbd_state.c: sanitize_state);
 *   2. for requests only, the soft rules (is_valid_state, is_valid_soft_transition):
 *      a refusal with DRBD's SS code, text and drbdadm exit code;
 *   3. the hard rules (is_valid_transition) and the state invariants that
 *      sanitize_state guarantees: a violation is a bug, an InvariantError
 *      naming both states, never a silently wrong state;
 *   4. the after-state rules (drbd_state.c: after_state_ch) — pure functions
 *      over (old, new) returning effects the resource process carries out.
 *
 * The resource process (daemon/runtime: ResourceRuntime.setState) is the
 * only caller that commits: it logs the one `conn( A -> B )` line this
 * returns, publishes one events2 change, persists the meta-data flags and
 * runs the effects. New state rules (fencing, on-io-error) go into
 * `afterStateRules` or the checks here, nowhere else.
 *
 * Why this shape and not a reducer driving the process: the live connect
 * sequence interleaves awaits on sockets, the bitmap exchange and the disk
 * with each state change; a reducer with its own copy of the UUIDs, flags
 * and peer view duplicated the process's data and ran beside it, never in
 * it. Keeping the decisions as pure functions the process calls
 * (resource/uuid: syncHandshake and the UUID rotations, resource/admin: the
 * operator requests, resource/link-rules: the connection-state targets, and
 * this transition) leaves every rule testable without sockets and leaves
 * exactly one copy of each.
 */
import { InvariantError } from '../util/assert.js';
import {
  checkStateChange,
  formatStateChange,
  formatStateLine,
  isValidTransition,
  sanitizeState,
  ssText,
  statesEqual,
  type Refusal,
  type ResourceState,
  type StateCtx,
} from './state.js';
import { ConnState, DiskState, Role } from './states.js';
import { fencingSuspended } from './fencing.js';

/** `request`: an operator asked (soft rules apply, refusals are answers); `internal`: CS_HARD. */
export type TransitionKind = 'request' | 'internal';

/** What the after-state rules need to know besides the two states. */
export interface StateFacts {
  /** Local bitmap UUID; undefined while no disk is attached (DRBD: no get_ldev()). */
  bitmapUuid: bigint | undefined;
  /** A new current UUID was deferred while IO was suspended (DRBD's NEW_CUR_UUID bit). */
  newCurrentUuidPending: boolean;
}

export const noFacts: StateFacts = Object.freeze({ bitmapUuid: undefined, newCurrentUuidPending: false });

/** After-effects of a committed change, in the order the resource process runs them. */
export type StateEffect =
  /** Start a new data generation: bitmap UUID := current, fresh current (drbd_uuid_new_current). */
  | { kind: 'new-current-uuid' }
  /** The same, but IO is suspended: remember it and do it once IO resumes. */
  | { kind: 'defer-new-current-uuid' };

/** An after-state rule: pure over the old and new state (drbd_state.c: after_state_ch). */
export type AfterStateRule = (os: ResourceState, ns: ResourceState, facts: StateFacts) => StateEffect[];

const isSuspended = (s: ResourceState): boolean => s.susp || s.suspNod || s.suspFen;
const holdsPeerData = (d: DiskState): boolean => d >= DiskState.Inconsistent && d !== DiskState.DUnknown && d !== DiskState.Outdated;

/**
 * "Lost contact to peer's copy of the data": a Primary (or the peer of one)
 * with UpToDate data and no bitmap UUID starts a new data generation, so the
 * changes made from now on are found by the next handshake (drbd_state.c:
 * after_state_ch → drbd_uuid_new_current).
 */
export const lostPeerDataRule: AfterStateRule = (os, ns, facts) => {
  if (facts.bitmapUuid === undefined) return [];
  if (!holdsPeerData(os.pdsk) || holdsPeerData(ns.pdsk)) return [];
  if (ns.role !== Role.Primary && ns.peer !== Role.Primary) return [];
  if (facts.bitmapUuid !== 0n || ns.disk < DiskState.UpToDate) return [];
  return [{ kind: isSuspended(ns) ? 'defer-new-current-uuid' : 'new-current-uuid' }];
};

/**
 * A diskless peer becomes Primary while this node holds UpToDate data and no
 * bitmap UUID: its writes land here only, so a new data generation starts
 * (drbd_state.c after_state_ch: "ns.pdsk < D_INCONSISTENT", peer
 * Secondary -> Primary → drbd_uuid_new_current + drbd_send_uuids).
 */
export const disklessPeerPromotedRule: AfterStateRule = (os, ns, facts) => {
  if (facts.bitmapUuid !== 0n) return [];
  if (ns.pdsk >= DiskState.Inconsistent || os.peer !== Role.Secondary || ns.peer !== Role.Primary) return [];
  if (ns.disk < DiskState.UpToDate) return [];
  return [{ kind: 'new-current-uuid' }];
};

/** IO resumed with a deferred new current UUID: take it now (DRBD: NEW_CUR_UUID on resume). */
export const resumedIoRule: AfterStateRule = (os, ns, facts) =>
  facts.newCurrentUuidPending && isSuspended(os) && !isSuspended(ns) ? [{ kind: 'new-current-uuid' }] : [];

/**
 * A sanitize rule of the transition (drbd_state.c: sanitize_state and
 * after_state_ch case 2, resource/fencing): resource-and-stonith freezes
 * I/O (susp_fen) when a Primary loses a peer not known Outdated; the
 * connection coming back (Connected or beyond) releases it.
 */
function withFencingSuspension(os: ResourceState, ns: ResourceState, ctx: StateCtx): ResourceState {
  const suspFen = fencingSuspended(os, ns, ctx.fencing);
  return suspFen === ns.suspFen ? ns : { ...ns, suspFen };
}

/** Every after-state rule, in order. */
export const afterStateRules: readonly AfterStateRule[] = [lostPeerDataRule, disklessPeerPromotedRule, resumedIoRule];

export interface Committed {
  ok: true;
  from: ResourceState;
  to: ResourceState;
  changed: boolean;
  /** The one `role( A -> B ) conn( … )` log line; empty when nothing changed. */
  line: string;
  /** DRBD's lines for implicit changes ("Resync aborted."). */
  warnings: string[];
  effects: StateEffect[];
}

function illegal(os: ResourceState, ns: ResourceState, why: string): InvariantError {
  return new InvariantError(`illegal state change ${formatStateLine(os)} -> ${formatStateLine(ns)}: ${why}`);
}

/**
 * What sanitize_state guarantees of every state; a state breaking one of
 * these never comes out of sanitizeState, so reaching it is a bug.
 * Returns the broken rule, or null.
 */
export function brokenInvariant(s: ResourceState): string | null {
  if (s.role === Role.Unknown) return 'the local role is Primary or Secondary';
  if (s.disk === DiskState.DUnknown) return 'the local disk is never DUnknown';
  if (s.conn < ConnState.Connected) {
    if (s.peer !== Role.Unknown) return 'the peer role is Unknown while not connected';
    if (s.pdsk !== DiskState.DUnknown && s.pdsk !== DiskState.Inconsistent && s.pdsk !== DiskState.Outdated) {
      return 'pdsk is DUnknown, Inconsistent or Outdated while not connected';
    }
    if (s.peerIsp) return 'peer_isp is clear while not connected';
  }
  if (s.conn === ConnState.SyncSource && !(s.disk === DiskState.UpToDate && s.pdsk === DiskState.Inconsistent)) {
    return 'SyncSource is UpToDate/Inconsistent';
  }
  if (s.conn === ConnState.SyncTarget && !(s.disk === DiskState.Inconsistent && s.pdsk === DiskState.UpToDate)) {
    return 'SyncTarget is Inconsistent/UpToDate';
  }
  // Ahead/Behind (DRBD 8.4's congestion mode): the Primary keeps the good data, the peer is stale until the resync.
  if (s.conn === ConnState.Ahead && !(s.disk === DiskState.UpToDate && s.pdsk >= DiskState.Inconsistent && s.pdsk <= DiskState.Consistent)) {
    return 'Ahead is UpToDate/Inconsistent…Consistent';
  }
  if (s.conn === ConnState.Behind && !(s.disk >= DiskState.Inconsistent && s.disk <= DiskState.Outdated && s.pdsk === DiskState.UpToDate)) {
    return 'Behind is Inconsistent…Outdated/UpToDate';
  }
  const paused = s.userIsp || s.peerIsp || s.aftrIsp;
  if ((s.conn === ConnState.SyncSource || s.conn === ConnState.SyncTarget) && paused) return 'Sync* has no pause flag';
  if ((s.conn === ConnState.PausedSyncS || s.conn === ConnState.PausedSyncT) && !paused) return 'PausedSync* has a pause flag';
  return null;
}

/**
 * The one transition function. `request`: an operator's change, refused
 * (returned) by DRBD's soft and hard rules. `internal`: peer news, link
 * loss, resync/verify completion, handler results — only the hard rules
 * apply, and breaking one throws an InvariantError naming both states.
 */
export function transition(
  os: ResourceState,
  wanted: ResourceState,
  ctx: StateCtx,
  kind: TransitionKind,
  facts: StateFacts = noFacts,
): Committed | Refusal {
  let ns: ResourceState;
  let warnings: string[];
  if (kind === 'request') {
    const checked = checkStateChange(os, wanted, ctx);
    if (!checked.ok) return checked;
    ns = withFencingSuspension(os, checked.state, ctx);
    warnings = checked.warnings;
  } else {
    warnings = [];
    ns = withFencingSuspension(os, sanitizeState(os, wanted, ctx, warnings), ctx);
    if (statesEqual(ns, os)) ns = os;
    const hard = isValidTransition(os, ns);
    if (hard !== null) throw illegal(os, ns, ssText(hard));
  }
  if (ns === os || statesEqual(ns, os)) {
    return { ok: true, from: os, to: os, changed: false, line: '', warnings: [], effects: [] };
  }
  const broken = brokenInvariant(ns);
  if (broken !== null) throw illegal(os, ns, broken);
  const effects = afterStateRules.flatMap((rule) => rule(os, ns, facts));
  return {
    ok: true,
    from: os,
    to: ns,
    changed: true,
    line: formatStateChange(os, ns),
    warnings: warnings.filter((w) => !w.startsWith('Implicitly')),
    effects,
  };
}

/** `transition` for internal changes, whose only failure mode is an InvariantError. */
export function internalTransition(os: ResourceState, wanted: ResourceState, ctx: StateCtx, facts: StateFacts = noFacts): Committed {
  const r = transition(os, wanted, ctx, 'internal', facts);
  if (!r.ok) throw illegal(os, wanted, `refused (${r.code}) ${r.text}`);
  return r;
}

export type { Refusal };
