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
 * `transition` judges one volume (the pair volume + connection, joined);
 * `connectionTransition` is DRBD's conn_request_state: one change applied
 * to every volume of the resource, all committed or none.
 *
 * The resource process (daemon/runtime: ResourceRuntime.setVolumeState and
 * setConnState) is the only caller that commits: it logs the one
 * `conn( A -> B )` line this returns, publishes one events2 change, persists
 * the meta-data flags and runs the effects. New state rules (fencing,
 * on-io-error) go into `afterStateRules` or the checks here, nowhere else.
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
  STATE_LOG_FIELDS,
  checkStateChange,
  connectionOf,
  connectionStatesEqual,
  formatStateChange,
  formatStateChangeOf,
  formatStateLine,
  isValidTransition,
  joinState,
  sanitizeState,
  ssText,
  statesEqual,
  unconfiguredVolume,
  volumeOf,
  type ConnectionState,
  type Refusal,
  type ResourceState,
  type StateCtx,
  type StateLogField,
  type VolumeState,
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
  return committed(os, ns, warnings, facts);
}

/** The checked change from `os` to `ns`: invariants, the log line, the after-state rules. */
function committed(os: ResourceState, ns: ResourceState, warnings: string[], facts: StateFacts): Committed {
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

/** A resource's states: its connection and its volumes by volume number. */
export interface ResourceStates {
  connection: ConnectionState;
  volumes: ReadonlyMap<number, VolumeState>;
}

/** A connection change refused by one volume (the first, by volume number): nothing changed. */
export type ConnectionRefusal = Refusal & {
  /** The volume whose check refused. */
  vnr: number;
  /** That volume's state word before, and the one the change wanted (for formatRefusalLog). */
  from: ResourceState;
  wanted: ResourceState;
};

export interface ConnectionCommitted {
  ok: true;
  from: ConnectionState;
  to: ConnectionState;
  /** Anything changed, on the connection or on a volume. */
  changed: boolean;
  /** One Committed per volume, by volume number: its state word before and after. */
  volumes: ReadonlyMap<number, Committed>;
  /** The one connection-level line: what every volume shares (conn_pr_state_change); may be empty. */
  line: string;
  /** Per volume, the rest of its change (drbd_pr_state_change); empty when the line says it all. */
  volumeLines: ReadonlyMap<number, string>;
}

/** The fields the connection line prints when every volume shares them (CS_DC_*); the isp flags are per volume. */
const COMMON_FIELDS: readonly StateLogField[] = ['role', 'peer', 'conn', 'disk', 'pdsk'];
const fieldValue = (s: ResourceState, f: StateLogField): number | boolean =>
  f === 'role' ? s.role : f === 'peer' ? s.peer : f === 'conn' ? s.conn : f === 'disk' ? s.disk : s.pdsk;

/**
 * The connection line and the volumes' own lines (conn_old_common_state,
 * conn_pr_state_change, drbd_pr_state_change): role, peer, conn, disk and
 * pdsk go on the connection line when every volume had the same value
 * before and has the same after, susp always (it is the connection's);
 * everything else, and the isp flags, on the volume's line.
 */
function connectionLines(commits: ReadonlyMap<number, Committed>): { line: string; volumeLines: Map<number, string> } {
  const all = [...commits.values()];
  const first = all[0];
  const volumeLines = new Map<number, string>();
  if (!first) return { line: '', volumeLines };
  const shared = COMMON_FIELDS.filter((f) =>
    all.every((c) => fieldValue(c.from, f) === fieldValue(first.from, f) && fieldValue(c.to, f) === fieldValue(first.to, f)),
  );
  const own = STATE_LOG_FIELDS.filter((f) => f !== 'susp' && !shared.includes(f));
  for (const [vnr, c] of commits) volumeLines.set(vnr, formatStateChangeOf(c.from, c.to, own));
  return { line: formatStateChangeOf(first.from, first.to, [...shared, 'susp']), volumeLines };
}

/**
 * The log lines of a committed connection change, in order: with one
 * volume its one line (connection line and volume line joined: exactly
 * `transition`'s line, which the runtime always logged); with several the connection line, then each
 * volume's own line as `volume N: …` (empty lines left out).
 */
export function connectionLogLines(c: ConnectionCommitted): string[] {
  if (c.volumes.size === 1) {
    const [own] = [...c.volumeLines.values()];
    // As transition's line, even an empty one (susp_nod set while susp already was: no part prints).
    return c.changed ? [[c.line, own ?? ''].filter((l) => l !== '').join(' ')] : [];
  }
  const lines = c.line === '' ? [] : [c.line];
  for (const [vnr, own] of c.volumeLines) if (own !== '') lines.push(`volume ${vnr}: ${own}`);
  return lines;
}

/**
 * DRBD's conn_request_state: `change` (conn ≤ Connected, the suspension
 * flags, or any field meant for every volume, as DRBD's mask/val) applied
 * to every volume, in volume-number order. Each volume is judged by
 * `transition` on its pair (volume, connection) — for `request` the first
 * refusal refuses the whole change and nothing changes; for `internal` a
 * broken hard rule throws before anything is returned. Otherwise one
 * Committed per volume, the new connection state and the connection line.
 * The suspension flags are the connection's: a volume whose sanitize froze
 * IO (susp_fen, susp_nod) freezes it for all (DRBD writes tconn->susp_* per
 * volume in turn), so each volume's Committed carries the merged flags.
 * A resource without volumes changes its connection alone (checked on an
 * unconfigured volume, as conn_set_state with number_of_volumes 0).
 */
export function connectionTransition(
  states: ResourceStates,
  change: Partial<ResourceState>,
  ctx: StateCtx,
  kind: TransitionKind,
  facts: (vnr: number) => StateFacts = () => noFacts,
): ConnectionCommitted | ConnectionRefusal {
  if (change.conn !== undefined && change.conn > ConnState.Connected) {
    throw new InvariantError(`a connection change goes to Connected at most, not conn ${change.conn} (a volume's replication is setVolumeState's)`);
  }
  const entries = [...states.volumes].sort(([a], [b]) => a - b);
  const judged = entries.length > 0 ? entries : [[-1, unconfiguredVolume] as const];
  const own = new Map<number, Committed>();
  for (const [vnr, volume] of judged) {
    const os = joinState(volume, states.connection);
    const wanted = { ...os, ...change };
    const r = transition(os, wanted, ctx, kind, facts(vnr));
    if (!r.ok) return { ...r, vnr, from: os, wanted };
    own.set(vnr, r);
  }
  const results = [...own.values()];
  const conns = new Set(results.map((r) => connectionOf(r.to).conn));
  if (conns.size !== 1) throw new InvariantError(`volumes disagree on the connection state after the change: ${[...conns].join(', ')}`);
  const to: ConnectionState = {
    conn: [...conns][0] as ConnState,
    susp: results.some((r) => r.to.susp),
    suspNod: results.some((r) => r.to.suspNod),
    suspFen: results.some((r) => r.to.suspFen),
  };
  const volumes = new Map<number, Committed>();
  for (const [vnr, r] of own) {
    if (vnr < 0) continue;
    const merged = joinState(volumeOf(r.to), to);
    // Another volume froze IO: this volume's state word shows it, and its after-state rules see it.
    volumes.set(vnr, statesEqual(merged, r.to) ? r : committed(r.from, merged, r.warnings, facts(vnr)));
  }
  const { line, volumeLines } = connectionLines(volumes);
  const changed = !connectionStatesEqual(to, states.connection) || [...volumes.values()].some((c) => c.changed);
  return {
    ok: true,
    from: states.connection,
    to,
    changed,
    volumes,
    line: entries.length > 0 ? line : formatStateChangeOf(joinState(unconfiguredVolume, states.connection), joinState(unconfiguredVolume, to), ['conn', 'susp']),
    volumeLines,
  };
}

export type { Refusal };
