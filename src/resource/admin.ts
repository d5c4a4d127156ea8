/**
 * resource/admin — operator requests (primary, secondary, connect,
 * disconnect, invalidate, verify, outdate, pause/resume-sync, detach) as pure
 * functions of the current state. Each returns either the sequence of new
 * states plus named effects for the resource process to carry out (new
 * current UUID, set all bitmap bits, ...), a refusal with DRBD's SS code,
 * text and drbdadm exit code, or a request to run the fence-peer handler
 * first. Mirrors drbd_set_role / drbd_adm_* of the 8.4 kernel
 * (drbd_nl.c); daemon/wiring, daemon/link and daemon/runtime call these.
 * Knows nothing of sockets, disks or the control protocol.
 */
import {
  ErrCode,
  SsCode,
  failure,
  formatRefusalLog,
  refusal,
  sanitizeState,
  type Refusal,
  type ResourceState,
  type StateCheck,
  type StateCtx,
} from './state.js';
import { ConnState, DiskState, Role } from './states.js';
import { interpretFencePeer } from './fencing.js';
import { internalTransition, transition } from './transition.js';

/**
 * Every state an operator request reaches is checked by resource/transition:
 * the soft and hard rules (a refusal), or with `hard` (the request's own
 * follow-up steps, DRBD's CS_HARD) the hard rules only (an InvariantError).
 */
function check(os: ResourceState, wanted: ResourceState, ctx: StateCtx, opts: { hard?: boolean } = {}): StateCheck {
  const r = opts.hard ? internalTransition(os, wanted, ctx) : transition(os, wanted, ctx, 'request');
  if (!r.ok) return r;
  return { ok: true, state: r.to, changed: r.changed, warnings: r.warnings };
}

/** Named side effects the resource process performs after an admin request succeeded. */
export type AdminEffect =
  | 'new-current-uuid'
  | 'uuid-primary-bit'
  | 'uuid-secondary-bit'
  | 'clear-discard-my-data'
  | 'set-all-bits'
  | 'clear-all-bits'
  | 'skip-initial-sync'
  | 'send-uuids'
  | 'send-state'
  | 'start-verify'
  | 'net-connect'
  | 'net-disconnect';

export type AdminResult =
  | {
      kind: 'ok';
      /** New states in order (each one is a logged state change); empty = nothing to do. */
      states: ResourceState[];
      effects: AdminEffect[];
      /** Kernel log lines besides the state-change lines (warnings like "Forced to consider…"). */
      logLines: string[];
    }
  | {
      kind: 'refused';
      refusal: Refusal;
      /** Kernel log lines ("State change failed: …", "  state = { … }", " wanted = { … }"). */
      logLines: string[];
      /** State changes that did happen before the refusal (fence-peer results); usually empty. */
      states: ResourceState[];
    }
  | {
      /** Run the fence-peer handler, then repeat the request with its exit code. */
      kind: 'fence-peer';
    };

export interface AdminCtx extends StateCtx {
  /** Local bitmap UUID (0 = not tracking changes); undefined without a disk (drbd_set_role: no UUID step without get_ldev). */
  bitmapUuid: bigint | undefined;
}

const ok = (states: ResourceState[], effects: AdminEffect[] = [], logLines: string[] = []): AdminResult => ({
  kind: 'ok', states, effects, logLines,
});
const refused = (r: Refusal, old?: ResourceState, wanted?: ResourceState, states: ResourceState[] = []): AdminResult => ({
  kind: 'refused',
  refusal: r,
  logLines: old && wanted && !r.failure ? formatRefusalLog(r.code as SsCode, old, wanted) : [],
  states,
});

// fence-peer exit codes are resource/fencing's rules; re-exported for the callers that came first.
export { type FenceOutcome, interpretFencePeer } from './fencing.js';

export interface PrimaryOptions {
  force: boolean;
  /** Exit code of the fence-peer handler, when the caller already ran it for this request. */
  fencePeerExit?: number;
  /**
   * The caller (daemon/fencing: beforePromote) already ran fence-peer where
   * drbd_set_role would and applied its answer; this is what the promotion
   * adds (promotionAfterFence). The peer then counts as outdated only if
   * pdsk says so, and no handler is asked for.
   */
  fenced?: Partial<ResourceState>;
}

/** The maximum number of state-change attempts drbd_set_role makes. */
const PROMOTE_TRIES_MAX = 4;

/**
 * `primary [--force]` (drbd_set_role): retries with disk forced UpToDate
 * (--force), with the peer outdated through fence-peer, as the kernel does.
 */
export function requestPrimary(state: ResourceState, opts: PrimaryOptions, ctx: AdminCtx): AdminResult {
  let base = state;
  const committed: ResourceState[] = [];
  const logLines: string[] = [];
  const want: Partial<ResourceState> = { ...opts.fenced, role: Role.Primary };
  let forced = false;
  let fenceTried = false;
  let last: Refusal | null = null;
  let lastWanted: ResourceState = base;

  // Returns false when the handler must run first.
  const fence = (): boolean | 'need-handler' => {
    fenceTried = true;
    if (ctx.fencing === 'dont-care') return true;
    if (opts.fenced !== undefined) return base.pdsk <= DiskState.Outdated;
    if (opts.fencePeerExit === undefined) return 'need-handler';
    const outcome = interpretFencePeer(opts.fencePeerExit, base, ctx.fencing);
    logLines.push(...outcome.logLines);
    if (Object.keys(outcome.patch).length > 0) {
      const r = check(base, { ...base, ...outcome.patch }, ctx, { hard: true });
      if (r.ok && r.changed) {
        base = r.state;
        committed.push(base);
      }
    }
    return outcome.peerOutdated;
  };

  for (let tries = 0; tries < PROMOTE_TRIES_MAX; tries++) {
    lastWanted = { ...base, ...want };
    const r = check(base, lastWanted, ctx);
    if (r.ok) {
      if (!r.changed) return ok(committed, [], logLines);
      const effects: AdminEffect[] = ['clear-discard-my-data'];
      if (((r.state.conn < ConnState.Connected || r.state.pdsk <= DiskState.Failed) && ctx.bitmapUuid === 0n) || forced) {
        effects.push('new-current-uuid');
      }
      effects.push('uuid-primary-bit');
      if (r.state.conn >= ConnState.WFReportParams) {
        if (forced) effects.push('send-uuids');
        effects.push('send-state');
      }
      if (forced) logLines.push('Forced to consider local data as UpToDate!');
      return ok([...committed, r.state], effects, logLines);
    }
    last = r;
    if (r.code === SsCode.noUpToDateDisk && opts.force && want.disk === undefined &&
        base.disk < DiskState.UpToDate && base.disk >= DiskState.Inconsistent) {
      want.disk = DiskState.UpToDate;
      forced = true;
      continue;
    }
    if (r.code === SsCode.noUpToDateDisk && base.disk === DiskState.Consistent && want.pdsk === undefined && !fenceTried) {
      const f = fence();
      if (f === 'need-handler') return { kind: 'fence-peer' };
      if (f) want.disk = DiskState.UpToDate;
      continue;
    }
    if (r.code === SsCode.primaryNop && want.pdsk === undefined) {
      const f = fenceTried ? false : fence();
      if (f === 'need-handler') return { kind: 'fence-peer' };
      if (!f && opts.force) {
        logLines.push('Forced into split brain situation!');
        want.pdsk = DiskState.Outdated;
      }
      continue;
    }
    if (r.code === SsCode.twoPrimaries) {
      // The kernel pings the peer and tries once more; without a new answer it fails the same way.
      if (tries < PROMOTE_TRIES_MAX - 2) tries = PROMOTE_TRIES_MAX - 2;
      continue;
    }
    break;
  }
  const failed = last ?? refusal(SsCode.inTransientState);
  const res = refused(failed, base, sanitizeState(base, lastWanted, ctx), committed);
  if (res.kind === 'refused') res.logLines.unshift(...logLines);
  return res;
}

/** `secondary`: refused with -12 while the device is held open. */
export function requestSecondary(state: ResourceState, opts: { deviceOpen: boolean }, ctx: StateCtx): AdminResult {
  const c = { ...ctx, deviceOpen: opts.deviceOpen };
  const wanted = { ...state, role: Role.Secondary };
  const r = check(state, wanted, c);
  if (!r.ok) return refused(r, state, sanitizeState(state, wanted, c));
  if (!r.changed) return ok([]);
  const effects: AdminEffect[] = ['uuid-secondary-bit'];
  if (r.state.conn >= ConnState.WFReportParams) effects.push('send-state');
  return ok([r.state], effects);
}

/** The net options `connect` / `net-options` check (drbd_nl.c: _check_net_options). */
export interface NetOptionFacts {
  protocol: 'A' | 'B' | 'C';
  onCongestion: 'block' | 'pull-ahead' | 'disconnect';
  /** The attached disk's fencing policy (none known without a disk). */
  fencing?: 'dont-care' | 'resource-only' | 'resource-and-stonith';
}

/**
 * _check_net_options: resource-and-stonith fencing of an attached disk needs
 * protocol B or C (ERR_STONITH_AND_PROT_A, 154): under protocol A a write
 * completes before the peer has it, so freezing I/O while the peer is fenced
 * cannot keep acknowledged writes on the survivor. On-congestion other than
 * block needs protocol A (ERR_CONG_NOT_PROTO_A, 155).
 */
export function checkNetOptions(net: NetOptionFacts): Refusal | null {
  if (net.protocol === 'A' && net.fencing === 'resource-and-stonith') return failure(ErrCode.stonithAndProtA);
  if (net.onCongestion !== 'block' && net.protocol !== 'A') return failure(ErrCode.congNotProtoA);
  return null;
}

/** `connect [--discard-my-data]`: StandAlone → Unconnected → WFConnection. */
export function requestConnect(state: ResourceState, opts: { discardMyData: boolean; net?: NetOptionFacts }, ctx: StateCtx): AdminResult {
  const netRefusal = opts.net ? checkNetOptions(opts.net) : null;
  if (netRefusal !== null) return refused(netRefusal);
  if (opts.discardMyData && state.role === Role.Primary) return refused(failure(ErrCode.discardImpossible));
  if (state.conn !== ConnState.StandAlone) return refused(failure(ErrCode.netConfigured));
  const c = { ...ctx, hasNetConfig: true };
  const s1 = check(state, { ...state, conn: ConnState.Unconnected }, c, { hard: true });
  if (!s1.ok) return refused(s1, state, { ...state, conn: ConnState.Unconnected });
  const s2 = check(s1.state, { ...s1.state, conn: ConnState.WFConnection }, c, { hard: true });
  if (!s2.ok) return refused(s2, s1.state, { ...s1.state, conn: ConnState.WFConnection }, [s1.state]);
  return ok([s1.state, s2.state], ['net-connect']);
}

/**
 * `disconnect`: → Disconnecting → StandAlone. On a StandAlone device this is
 * a successful no-op (SS_ALREADY_STANDALONE is reported as success). A
 * Primary refused with -7 retries with the peer marked Outdated.
 */
export function requestDisconnect(state: ResourceState, ctx: StateCtx): AdminResult {
  if (state.conn === ConnState.StandAlone) return ok([]);
  let wanted: ResourceState = { ...state, conn: ConnState.Disconnecting };
  let r = check(state, wanted, ctx);
  if (!r.ok && r.code === SsCode.primaryNop) {
    wanted = { ...state, conn: ConnState.Disconnecting, pdsk: DiskState.Outdated };
    r = check(state, wanted, ctx);
    if (!r.ok && r.code === SsCode.outdateWithoutConnection) {
      wanted = { ...state, conn: ConnState.Disconnecting };
      r = check(state, wanted, ctx, { hard: true });
    }
  }
  if (!r.ok) return refused(r, state, sanitizeState(state, wanted, ctx));
  const s2 = check(r.state, { ...r.state, conn: ConnState.StandAlone }, ctx, { hard: true });
  if (!s2.ok) return refused(s2, r.state, { ...r.state, conn: ConnState.StandAlone }, [r.state]);
  return ok([r.state, s2.state], ['net-disconnect']);
}

/**
 * `invalidate`: StandAlone Secondary → disk Inconsistent and all bits set;
 * otherwise start a full resync as target (StartingSyncT).
 */
export function requestInvalidate(state: ResourceState, ctx: StateCtx): AdminResult {
  if (state.disk === DiskState.Diskless) return refused(failure(ErrCode.noDisk));
  if (state.conn === ConnState.StandAlone && state.role === Role.Secondary) {
    const wanted = { ...state, disk: DiskState.Inconsistent };
    const r = check(state, wanted, ctx);
    if (!r.ok) return refused(r, state, sanitizeState(state, wanted, ctx));
    return ok(r.changed ? [r.state] : [], ['set-all-bits']);
  }
  const wanted = { ...state, conn: ConnState.StartingSyncT };
  const r = check(state, wanted, ctx);
  if (!r.ok) return refused(r, state, sanitizeState(state, wanted, ctx));
  return ok([r.state], ['set-all-bits', 'send-state']);
}

/** `invalidate-remote`: start a full resync as source (StartingSyncS). */
export function requestInvalidateRemote(state: ResourceState, ctx: StateCtx): AdminResult {
  if (state.disk === DiskState.Diskless) return refused(failure(ErrCode.noDisk));
  const wanted = { ...state, conn: ConnState.StartingSyncS };
  // Checked before sanitizing, which would otherwise "implicitly upgrade" a diskless peer.
  if (state.conn >= ConnState.Connected && state.pdsk < DiskState.Inconsistent) {
    return refused(refusal(SsCode.noRemoteDisk), state, wanted);
  }
  const r = check(state, wanted, ctx);
  if (!r.ok) return refused(r, state, sanitizeState(state, wanted, ctx));
  return ok([r.state], ['set-all-bits', 'send-state']);
}

/** `verify`: online verify as VerifyS (-14 no verify-alg, -15 not connected, -8 already syncing). */
export function requestVerify(state: ResourceState, ctx: StateCtx): AdminResult {
  const wanted = { ...state, conn: ConnState.VerifyS };
  const r = check(state, wanted, ctx);
  if (!r.ok) return refused(r, state, sanitizeState(state, wanted, ctx));
  if (!r.changed) return ok([]);
  return ok([r.state], ['start-verify', 'send-state']);
}

/**
 * `outdate`: disk → Outdated. Refused with -6 while connected (udrbd checks
 * the request before DRBD's implicit Outdated→UpToDate clamp of connected
 * states) and -16 when the disk is already lower than Outdated (exit 5).
 */
export function requestOutdate(state: ResourceState, ctx: StateCtx): AdminResult {
  const wanted = { ...state, disk: DiskState.Outdated };
  if (state.conn >= ConnState.Connected) return refused(refusal(SsCode.connectedOutdates), state, wanted);
  const r = check(state, wanted, ctx);
  if (!r.ok) return refused(r, state, sanitizeState(state, wanted, ctx));
  return ok(r.changed ? [r.state] : []);
}

/** `pause-sync` / `resume-sync`: the user_isp flag. */
export function requestPauseSync(state: ResourceState, pause: boolean, ctx: StateCtx): AdminResult {
  if (state.userIsp === pause) return refused(failure(pause ? ErrCode.pauseIsSet : ErrCode.pauseIsClear));
  const wanted = { ...state, userIsp: pause };
  const r = check(state, wanted, ctx);
  if (!r.ok) return refused(r, state, sanitizeState(state, wanted, ctx));
  const effects: AdminEffect[] = state.conn >= ConnState.Connected ? ['send-state'] : [];
  return ok(r.changed ? [r.state] : [], effects);
}

/** `detach`: disk → Failed → Diskless (refused -2 for a Primary without another UpToDate disk). */
export function requestDetach(state: ResourceState, ctx: StateCtx): AdminResult {
  if (state.disk === DiskState.Diskless) return ok([]);
  // Connected, D_FAILED is a cluster-wide change (cl_wide_st_chg): a Primary peer without a disk of its
  // own would be left without data (is_valid_state there: SS_NO_UP_TO_DATE_DISK), so it refuses.
  if (state.conn >= ConnState.Connected && state.peer === Role.Primary && state.pdsk <= DiskState.Inconsistent) {
    return refused(refusal(SsCode.cwFailedByPeer), state, { ...state, disk: DiskState.Failed });
  }
  const wanted = { ...state, disk: DiskState.Failed };
  const r = check(state, wanted, ctx);
  if (!r.ok) return refused(r, state, sanitizeState(state, wanted, ctx));
  const s2 = check(r.state, { ...r.state, disk: DiskState.Diskless }, ctx, { hard: true });
  if (!s2.ok) return refused(s2, r.state, { ...r.state, disk: DiskState.Diskless }, [r.state]);
  const effects: AdminEffect[] = s2.state.conn >= ConnState.Connected ? ['send-state'] : [];
  return ok([r.state, s2.state], effects);
}

/**
 * `new-current-uuid [--clear-bitmap]`: allowed StandAlone, or Connected with
 * a just-created current UUID and --clear-bitmap (skip initial sync).
 */
export function requestNewCurrentUuid(
  state: ResourceState,
  opts: { clearBitmap: boolean; currentIsJustCreated: boolean },
): AdminResult {
  if (state.disk === DiskState.Diskless) return refused(failure(ErrCode.noDisk));
  const skipInitialSync = state.conn === ConnState.Connected && opts.currentIsJustCreated && opts.clearBitmap;
  if (!skipInitialSync && state.conn !== ConnState.StandAlone) return refused(failure(ErrCode.connected));
  const effects: AdminEffect[] = ['new-current-uuid'];
  if (opts.clearBitmap) effects.push('clear-all-bits');
  if (!skipInitialSync) return ok([], effects);
  return ok([{ ...state, disk: DiskState.UpToDate, pdsk: DiskState.UpToDate }], [...effects, 'skip-initial-sync'], [
    'Preparing to skip initial sync',
  ]);
}
