import { describe, expect, it } from 'vitest';
import {
  Role,
  applyDiscardMyData,
  recover0p,
  recover1p,
  recover2p,
  type AsbInput,
} from '../../src/resource/index.js';

const input = (patch: Partial<AsbInput> = {}): AsbInput => ({
  selfBitmapPrimaryBit: 0,
  peerBitmapPrimaryBit: 0,
  selfBitsSet: 0,
  peerBitsSet: 0,
  resolveConflicts: false,
  selfNodeName: 'alpha',
  peerNodeName: 'beta',
  selfRole: Role.Secondary,
  canDemote: true,
  ...patch,
});

describe('after-sb-0pri policies (drbd84.md §3.2)', () => {
  const cases: Array<[string, string, Partial<AsbInput>, number]> = [
    ['disconnect never resolves', 'disconnect', {}, -100],
    ['discard-local: I become target', 'discard-local', {}, -1],
    ['discard-remote: I become source', 'discard-remote', {}, 1],
    ['discard-younger-primary: I was promoted later → target', 'discard-younger-primary', { selfBitmapPrimaryBit: 0, peerBitmapPrimaryBit: 1 }, -1],
    ['discard-younger-primary: I was the older primary → source', 'discard-younger-primary', { selfBitmapPrimaryBit: 1, peerBitmapPrimaryBit: 0 }, 1],
    ['discard-older-primary: inverse mapping (self 0 / peer 1 → source)', 'discard-older-primary', { selfBitmapPrimaryBit: 0, peerBitmapPrimaryBit: 1 }, 1],
    ['discard-older-primary: self 1 / peer 0 → target', 'discard-older-primary', { selfBitmapPrimaryBit: 1, peerBitmapPrimaryBit: 0 }, -1],
    ['discard-younger-primary undecided falls to least changes', 'discard-younger-primary', { selfBitsSet: 5, peerBitsSet: 9 }, -1],
    ['discard-zero-changes: only peer changed nothing → source', 'discard-zero-changes', { selfBitsSet: 3, peerBitsSet: 0 }, 1],
    ['discard-zero-changes: only I changed nothing → target', 'discard-zero-changes', { selfBitsSet: 0, peerBitsSet: 3 }, -1],
    ['discard-zero-changes: both changed → unresolved', 'discard-zero-changes', { selfBitsSet: 2, peerBitsSet: 3 }, -100],
    ['discard-zero-changes: neither changed, tie-breaker holder loses', 'discard-zero-changes', { resolveConflicts: true }, -1],
    ['discard-zero-changes: neither changed, other node wins', 'discard-zero-changes', { resolveConflicts: false }, 1],
    ['discard-least-changes: fewer changes → target', 'discard-least-changes', { selfBitsSet: 2, peerBitsSet: 3 }, -1],
    ['discard-least-changes: more changes → source', 'discard-least-changes', { selfBitsSet: 4, peerBitsSet: 3 }, 1],
    ['discard-least-changes: equal → tie-break', 'discard-least-changes', { selfBitsSet: 3, peerBitsSet: 3, resolveConflicts: true }, -1],
    ['discard-node-NAME naming me → my data is discarded', 'discard-node-alpha', {}, -1],
    ['discard-node-NAME naming the peer → peer data is discarded', 'discard-node-beta', {}, 1],
    ['discard-node-NAME naming nobody → unresolved', 'discard-node-gamma', {}, -100],
    ['a 1pri-only option in 0pri is a configuration error', 'consensus', {}, -100],
  ];
  for (const [name, policy, patch, hg] of cases) {
    it(name, () => expect(recover0p(policy, input(patch)).hg).toBe(hg));
  }
  it('younger/older fall-through logs DRBD’s two lines', () => {
    expect(recover0p('discard-older-primary', input()).logLines).toEqual([
      'Discard younger/older primary did not find a decision',
      'Using discard-least-changes instead',
    ]);
  });
  it('wrong-section option logs "Configuration error."', () => {
    expect(recover0p('violently-as0p', input()).logLines).toEqual(['Configuration error.']);
  });
});

describe('after-sb-1pri policies', () => {
  it('disconnect never resolves', () => expect(recover1p('disconnect', 'discard-local', input()).hg).toBe(-100));
  it('discard-secondary: the Secondary becomes target', () => {
    expect(recover1p('discard-secondary', 'disconnect', input({ selfRole: Role.Secondary })).hg).toBe(-1);
    expect(recover1p('discard-secondary', 'disconnect', input({ selfRole: Role.Primary })).hg).toBe(1);
  });
  it('consensus applies the 0pri result only when it discards the Secondary', () => {
    expect(recover1p('consensus', 'discard-local', input({ selfRole: Role.Secondary })).hg).toBe(-1);
    expect(recover1p('consensus', 'discard-local', input({ selfRole: Role.Primary })).hg).toBe(-100);
    expect(recover1p('consensus', 'discard-remote', input({ selfRole: Role.Primary })).hg).toBe(1);
  });
  it('violently-as0p applies the 0pri result even against the Primary', () => {
    expect(recover1p('violently-as0p', 'discard-local', input({ selfRole: Role.Primary })).hg).toBe(-1);
  });
  it('call-pri-lost-after-sb: a Primary that loses demotes', () => {
    const r = recover1p('call-pri-lost-after-sb', 'discard-local', input({ selfRole: Role.Primary, canDemote: true }));
    expect([r.hg, r.demoted, r.logLines]).toEqual([-1, true, ['Successfully gave up primary role.']]);
  });
  it('call-pri-lost-after-sb: demotion impossible → pri-lost-after-sb helper, unresolved', () => {
    const r = recover1p('call-pri-lost-after-sb', 'discard-local', input({ selfRole: Role.Primary, canDemote: false }));
    expect([r.hg, r.handlers]).toEqual([-100, ['pri-lost-after-sb']]);
  });
  it('call-pri-lost-after-sb: the Secondary losing just becomes target', () => {
    expect(recover1p('call-pri-lost-after-sb', 'discard-local', input({ selfRole: Role.Secondary })).hg).toBe(-1);
  });
  it('a 0pri option in 1pri is a configuration error', () => {
    expect(recover1p('discard-local', 'disconnect', input()).hg).toBe(-100);
  });
});

describe('after-sb-2pri policies', () => {
  it('disconnect never resolves', () => expect(recover2p('disconnect', 'discard-local', input()).hg).toBe(-100));
  it('violently-as0p applies the 0pri result', () => {
    expect(recover2p('violently-as0p', 'discard-remote', input({ selfRole: Role.Primary })).hg).toBe(1);
  });
  it('call-pri-lost-after-sb: loser demotes', () => {
    const r = recover2p('call-pri-lost-after-sb', 'discard-local', input({ selfRole: Role.Primary }));
    expect([r.hg, r.demoted]).toEqual([-1, true]);
  });
  it('call-pri-lost-after-sb: loser cannot demote → helper', () => {
    const r = recover2p('call-pri-lost-after-sb', 'discard-local', input({ selfRole: Role.Primary, canDemote: false }));
    expect([r.hg, r.handlers]).toEqual([-100, ['pri-lost-after-sb']]);
  });
  it('consensus in 2pri is a configuration error', () => expect(recover2p('consensus', 'discard-local', input()).hg).toBe(-100));
});

describe('--discard-my-data resolution (§3.3)', () => {
  it('only consulted for an unresolved split brain', () => {
    expect(applyDiscardMyData(2, true, false)).toBe(2);
    expect(applyDiscardMyData(-100, true, false)).toBe(-1);
    expect(applyDiscardMyData(-100, false, true)).toBe(1);
    expect(applyDiscardMyData(-100, false, false)).toBe(-100);
    expect(applyDiscardMyData(-100, true, true)).toBe(-100);
  });
});
