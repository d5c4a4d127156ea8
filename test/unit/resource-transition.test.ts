/**
 * resource/transition, the one function every state change passes, and
 * ResourceRuntime.setVolumeState / setConnState, the one place that commits: an illegal internal
 * change is an InvariantError naming both states and changes nothing; a
 * request is refused with DRBD's text and exit code; a committed change
 * logs exactly one `conn( A -> B )` line and runs the after-state rules.
 */
import { describe, expect, it } from 'vitest';
import { ResourceRuntime, type AttachedStore, type RuntimeOptions } from '../../src/daemon/runtime.js';
import type { ResourceSpec } from '../../src/daemon/spec.js';
import type { GenerationUuids } from '../../src/meta/types.js';
import { requestPrimary } from '../../src/resource/admin.js';
import { type ConnectionState, type ResourceState, type VolumeState, defaultStateCtx, joinState, unconfiguredState, volumeOf } from '../../src/resource/state.js';
import { ConnState as C, DiskState as D, Role as R } from '../../src/resource/states.js';
import { brokenInvariant, connectionLogLines, connectionTransition, lostPeerDataRule, transition } from '../../src/resource/transition.js';
import { InvariantError } from '../../src/util/assert.js';
import { pino } from 'pino';

const st = (patch: Partial<ResourceState>): ResourceState => ({ ...unconfiguredState, disk: D.UpToDate, ...patch });
const connectedPrimary = st({ role: R.Primary, peer: R.Secondary, conn: C.Connected, pdsk: D.UpToDate });

interface Probe {
  lines: string[];
  newCurrent: number;
}

function runtimeWithStore(uuids: GenerationUuids, frontend?: RuntimeOptions['frontend']): { rt: ResourceRuntime; probe: Probe } {
  const probe: Probe = { lines: [], newCurrent: 0 };
  const store = {
    diskAtAttach: D.UpToDate,
    uuids,
    syncFlags: async () => undefined,
    setPrimaryBit: () => undefined,
    newCurrentUuid: async () => {
      probe.newCurrent++;
    },
    close: async () => undefined,
    uuidsText: () => ({ current: '0', bitmap: '0', historyStart: '0', historyEnd: '0' }),
    outOfSyncKiB: () => 0,
  } as unknown as AttachedStore;
  // info and above, as the resource process logs them; each JSON line's msg is kept
  const log = pino({ level: 'info' }, {
    write: (line: string) => {
      const parsed = JSON.parse(line) as { msg?: unknown };
      if (typeof parsed.msg === 'string') probe.lines.push(parsed.msg);
    },
  });
  const spec = { name: 'smunit', node: 'alpha', minor: 100, volume: 0, devicePath: '/dev/drbd100', volumes: [{ volume: 0, minor: 100, devicePath: '/dev/drbd100' }], handlers: {}, peer: undefined } as unknown as ResourceSpec;
  return { rt: new ResourceRuntime({ spec, log, openStore: async () => store, ...(frontend ? { frontend } : {}) }), probe };
}

describe('an illegal internal transition is an InvariantError naming both states', () => {
  it('StandAlone → Connected through setConnState throws, and the state, the log and the events stay as they were', async () => {
    const { rt, probe } = runtimeWithStore({ current: 0x10n, bitmap: 0n, historyStart: 0n, historyEnd: 0n });
    await rt.attach();
    const events: unknown[] = [];
    rt.onEvent((e) => events.push(e));
    const before = rt.snapshot;
    const linesBefore = probe.lines.length;
    const err = await rt.setConnState({ conn: C.Connected }, 'injected').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvariantError);
    const message = (err as Error).message;
    expect(message).toContain('{ cs:StandAlone ro:Secondary/Unknown ds:UpToDate/DUnknown r----- }');
    expect(message).toContain('-> { cs:Connected ro:Secondary/Unknown ds:UpToDate/DUnknown r----- }');
    expect(message).toContain('Need a connection to start verify or resync');
    expect(rt.snapshot).toEqual(before);
    expect(probe.lines.length).toBe(linesBefore);
    expect(events).toEqual([]);
  });

  it('a volume change may not move the connection (setVolumeState), a connection change not past Connected (setConnState)', async () => {
    const { rt, probe } = runtimeWithStore({ current: 0x10n, bitmap: 0n, historyStart: 0n, historyEnd: 0n });
    await rt.attach();
    for (const conn of [C.Unconnected, C.WFConnection, C.WFReportParams]) await rt.setConnState({ conn }, 'test');
    await rt.setVolumeState(0, { conn: C.Connected, peer: R.Secondary, pdsk: D.UpToDate }, 'handshake');
    const before = rt.snapshot;
    const linesBefore = probe.lines.length;
    const lost = await rt.setVolumeState(0, { conn: C.NetworkFailure }, 'injected').catch((e: unknown) => e);
    expect((lost as Error).message).toContain('connection changes go through setConnState');
    const resync = await rt.setConnState({ conn: C.SyncSource }, 'injected').catch((e: unknown) => e);
    expect(resync).toBeInstanceOf(InvariantError);
    expect((resync as Error).message).toContain('a connection change goes to Connected at most');
    expect(rt.snapshot).toEqual(before);
    expect(probe.lines.length).toBe(linesBefore);
    await expect(rt.setVolumeState(1, { role: R.Primary }, 'injected')).rejects.toThrow('volume 1 does not exist');
  });

  it('a state sanitize_state never yields (local role Unknown) is an InvariantError too', () => {
    expect(() => transition(unconfiguredState, st({ role: R.Unknown }), defaultStateCtx, 'internal')).toThrow(InvariantError);
    expect(() => transition(unconfiguredState, st({ role: R.Unknown }), defaultStateCtx, 'internal')).toThrow(/-> \{ cs:StandAlone ro:Unknown\/Unknown/);
    expect(brokenInvariant(st({ conn: C.SyncTarget, disk: D.UpToDate, pdsk: D.UpToDate }))).toBe('SyncTarget is Inconsistent/UpToDate');
  });

  it('a network-error state may only go on to Unconnected or Disconnecting (is_valid_transition)', () => {
    const lost = st({ role: R.Primary, conn: C.Timeout });
    expect(() => transition(lost, { ...lost, conn: C.WFConnection }, defaultStateCtx, 'internal')).toThrow(/Timeout.*-> \{ cs:WFConnection.*In transient state/);
    const ok = transition(lost, { ...lost, conn: C.Unconnected }, defaultStateCtx, 'internal');
    expect(ok.ok && ok.line).toBe('conn( Timeout -> Unconnected )');
  });
});

describe('requests get the soft rules, refused with DRBD text and exit code', () => {
  it('promoting without UpToDate data: (-2), exit 17 — resource/admin asks transition() as a request', () => {
    const r = transition(st({ disk: D.Inconsistent }), st({ disk: D.Inconsistent, role: R.Primary }), defaultStateCtx, 'request');
    expect(r).toMatchObject({ ok: false, code: -2, text: 'Need access to UpToDate data', exitCode: 17 });
    const viaAdmin = requestPrimary(st({ disk: D.Inconsistent }), { force: false }, { ...defaultStateCtx, bitmapUuid: 0n });
    expect(viaAdmin.kind === 'refused' && viaAdmin.refusal).toMatchObject({ code: -2, exitCode: 17 });
  });

  it('the same change as an internal transition is not subject to the soft rules', () => {
    const r = transition(st({ disk: D.Inconsistent }), st({ disk: D.Inconsistent, role: R.Primary }), defaultStateCtx, 'internal');
    expect(r.ok).toBe(true);
  });
});

describe('one commit: one log line, one event, the after-state rules', () => {
  it('a Primary losing its UpToDate peer logs one line, publishes one change and starts a new data generation', async () => {
    const { rt, probe } = runtimeWithStore({ current: 0x11n, bitmap: 0n, historyStart: 0n, historyEnd: 0n });
    await rt.attach();
    await rt.setVolumeState(0, { role: R.Primary }, 'test');
    await rt.setConnState({ conn: C.Unconnected }, 'test');
    await rt.setConnState({ conn: C.WFConnection }, 'test');
    await rt.setConnState({ conn: C.WFReportParams }, 'test');
    await rt.setVolumeState(0, { conn: C.Connected, peer: R.Secondary, pdsk: D.UpToDate }, 'test');
    const events: unknown[] = [];
    rt.onEvent((e) => events.push(e));
    const lines = probe.lines.length;
    await rt.setConnState({ conn: C.NetworkFailure }, 'link lost');
    expect(probe.lines.slice(lines)).toEqual(['peer( Secondary -> Unknown ) conn( Connected -> NetworkFailure ) pdsk( UpToDate -> DUnknown )']);
    expect(events.filter((e) => JSON.stringify(e).includes('change'))).toHaveLength(events.length);
    expect(events.length).toBeGreaterThan(0);
    expect(probe.newCurrent).toBe(1);
  });

  it('lost-peer-data rule: not with a bitmap UUID already set, not for a Secondary, deferred while IO is suspended', () => {
    const lost = { ...connectedPrimary, conn: C.NetworkFailure, peer: R.Unknown, pdsk: D.DUnknown };
    const facts = (bitmapUuid: bigint) => ({ bitmapUuid, newCurrentUuidPending: false });
    expect(lostPeerDataRule(connectedPrimary, lost, facts(0n))).toEqual([{ kind: 'new-current-uuid' }]);
    expect(lostPeerDataRule(connectedPrimary, lost, facts(7n))).toEqual([]);
    expect(lostPeerDataRule({ ...connectedPrimary, role: R.Secondary }, { ...lost, role: R.Secondary }, facts(0n))).toEqual([]);
    expect(lostPeerDataRule(connectedPrimary, { ...lost, susp: true }, facts(0n))).toEqual([{ kind: 'defer-new-current-uuid' }]);
    // the peer detaching (pdsk Diskless) while connected is a loss of its data too (after_state_ch)
    expect(lostPeerDataRule(connectedPrimary, { ...connectedPrimary, pdsk: D.Diskless }, facts(0n))).toEqual([{ kind: 'new-current-uuid' }]);
  });
});

describe('the device-open check is a request rule only', () => {
  // is_valid_state's "Secondary while open" rule scans /proc/*/fd; internal changes never need it.
  const throwingCtx = {
    ...defaultStateCtx,
    get deviceOpen(): boolean {
      throw new Error('deviceOpen read by an internal change');
    },
  };

  it('an internal change never reads deviceOpen, a demotion request does', () => {
    const lost = { ...connectedPrimary, conn: C.NetworkFailure };
    expect(transition(connectedPrimary, lost, throwingCtx, 'internal').ok).toBe(true);
    expect(() => transition(connectedPrimary, { ...connectedPrimary, role: R.Secondary }, throwingCtx, 'request')).toThrow(/internal change/);
  });

  it("the runtime's state changes ask the frontend only for a request", async () => {
    let asked = 0;
    const frontend = {
      isHeldOpen: () => {
        asked++;
        return true;
      },
    } as unknown as RuntimeOptions['frontend'];
    const { rt } = runtimeWithStore({ current: 0x11n, bitmap: 0n, historyStart: 0n, historyEnd: 0n }, frontend);
    await rt.attach();
    await rt.setVolumeState(0, { role: R.Primary }, 'test');
    for (const conn of [C.Unconnected, C.WFConnection, C.WFReportParams]) await rt.setConnState({ conn }, 'test');
    await rt.setVolumeState(0, { conn: C.Connected, peer: R.Secondary, pdsk: D.UpToDate }, 'test');
    await rt.setConnState({ conn: C.NetworkFailure }, 'test');
    expect(asked).toBe(0);
    const demote = transition(rt.snapshot, { ...rt.snapshot, role: R.Secondary }, rt.stateCtx(), 'request');
    expect(demote).toMatchObject({ ok: false, code: -12, text: 'Device is held open by someone' });
    expect(asked).toBe(1);
  });
});

describe('connectionTransition: one connection change on several volumes (conn_request_state)', () => {
  const vol = (patch: Partial<VolumeState>): VolumeState => ({ ...volumeOf(st({})), ...patch });
  const connected: ConnectionState = { conn: C.Connected, susp: false, suspNod: false, suspFen: false };

  it('volume 3 refusing refuses the whole change although volume 0 accepts it: (-21), nothing committed', () => {
    const waiting: ConnectionState = { ...connected, conn: C.WFConnection };
    const volumes = new Map([[0, vol({ pdsk: D.Outdated })], [3, vol({ pdsk: D.DUnknown })]]);
    const change = { conn: C.Disconnecting, pdsk: D.Outdated };
    const alone0 = transition(joinState(volumes.get(0)!, waiting), { ...joinState(volumes.get(0)!, waiting), ...change }, defaultStateCtx, 'request');
    expect(alone0.ok).toBe(true);
    const r = connectionTransition({ connection: waiting, volumes }, change, defaultStateCtx, 'request');
    expect(r).toMatchObject({ ok: false, vnr: 3, code: -21, text: 'Need a connection for a graceful disconnect/outdate peer' });
    expect(!r.ok && r.from).toEqual(joinState(volumes.get(3)!, waiting));
  });

  it('a Primary volume losing the link freezes IO for all; after-state rules per volume with its own facts; one shared line', () => {
    const ctx = { ...defaultStateCtx, fencing: 'resource-and-stonith' as const };
    const volumes = new Map([
      [0, vol({ role: R.Primary, peer: R.Secondary, pdsk: D.UpToDate })],
      [1, vol({ role: R.Secondary, peer: R.Secondary, pdsk: D.Inconsistent })],
      [2, vol({ role: R.Primary, peer: R.Secondary, pdsk: D.UpToDate })],
    ]);
    const facts = (vnr: number) => ({ bitmapUuid: vnr === 2 ? 0x55n : 0n, newCurrentUuidPending: false });
    const r = connectionTransition({ connection: connected, volumes }, { conn: C.NetworkFailure }, ctx, 'internal', facts);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.to).toEqual({ conn: C.NetworkFailure, susp: false, suspNod: false, suspFen: true });
    // volume 1 (Secondary) did not freeze IO itself, yet its state word shows the connection's flag
    expect(r.volumes.get(1)!.to.suspFen).toBe(true);
    expect(r.volumes.get(0)!.effects).toEqual([{ kind: 'defer-new-current-uuid' }]);
    expect(r.volumes.get(1)!.effects).toEqual([]);
    expect(r.volumes.get(2)!.effects).toEqual([]); // a bitmap UUID is already set
    expect(connectionLogLines(r)).toEqual([
      'peer( Secondary -> Unknown ) conn( Connected -> NetworkFailure ) susp( 0 -> 1 )',
      'volume 0: pdsk( UpToDate -> DUnknown )',
      'volume 2: pdsk( UpToDate -> DUnknown )',
    ]);
  });

  it('with one volume the runtime logs exactly the old single line', () => {
    const volumes = new Map([[0, vol({ role: R.Primary, peer: R.Secondary, pdsk: D.UpToDate, userIsp: true })]]);
    const r = connectionTransition({ connection: connected, volumes }, { conn: C.NetworkFailure }, defaultStateCtx, 'internal');
    expect(r.ok && connectionLogLines(r)).toEqual(['peer( Secondary -> Unknown ) conn( Connected -> NetworkFailure ) pdsk( UpToDate -> DUnknown )']);
  });
});
