import { describe, expect, it } from 'vitest';
import type { GenerationUuids } from '../../src/meta/types.js';
import {
  DiskState,
  Role,
  UUID_NEW_BM_OFFSET,
  adminNewCurrentUuid,
  formatUuids,
  newCurrentUuid,
  syncHandshake,
  syncSourceFinish,
  syncSourceStart,
  syncTargetFinish,
  syncTargetStart,
  uuidCompare,
  type HandshakeInput,
  type UuidCompareCtx,
} from '../../src/resource/index.js';

const u = (current: bigint, bitmap = 0n, historyStart = 0n, historyEnd = 0n): GenerationUuids => ({
  current, bitmap, historyStart, historyEnd,
});
const ctx = (patch: Partial<UuidCompareCtx> = {}): UuidCompareCtx => ({
  selfCrashedPrimary: false,
  peerUuidFlags: 0,
  selfRole: Role.Secondary,
  peerRole: Role.Secondary,
  resolveConflicts: false,
  ...patch,
});

const X = 0xaaaa000000000010n;
const Y = 0xbbbb000000000020n;
const Z = 0xcccc000000000030n;
const W = 0xdddd000000000040n;

describe('uuidCompare: every rule of drbd84.md §2.4 in order', () => {
  const cases: Array<[string, GenerationUuids, GenerationUuids, Partial<UuidCompareCtx>, number, number]> = [
    ['10 both just created', u(4n), u(4n), {}, 0, 10],
    ['10 masks bit 0 (Primary bit)', u(5n), u(4n), {}, 0, 10],
    ['20 self just created, peer has data', u(4n), u(X), {}, -2, 20],
    ['20 self current 0', u(0n), u(X), {}, -2, 20],
    ['30 peer just created', u(X), u(4n), {}, 2, 30],
    ['30 peer current 0', u(X), u(0n), {}, 2, 30],
    ['34 was SyncSource, missed resync finished', u(X, Y, Z), u(X, 0n, Y, Z), {}, 1, 34],
    ['36 was SyncSource, peer failed to write sync uuid', u(X, Y, Z), u(X, 0n, W, 0n), {}, 1, 36],
    ['35 was SyncTarget, peer missed resync finished', u(X, 0n, Y, Z), u(X, Y, Z), {}, -1, 35],
    ['37 was SyncTarget, failed to write sync uuid', u(X, 0n, W), u(X, Y, Z), {}, -1, 37],
    ['40 equal, no crash → no sync', u(X, 0n, Y), u(X, 0n, Y), {}, 0, 40],
    ['40 self crashed primary → source', u(X), u(X), { selfCrashedPrimary: true }, 1, 40],
    ['40 peer crashed primary → target', u(X), u(X), { peerUuidFlags: 2 }, -1, 40],
    ['40 both crashed, tie-breaker holder loses', u(X), u(X), { selfCrashedPrimary: true, peerUuidFlags: 2, resolveConflicts: true }, -1, 40],
    ['40 both crashed, other node wins', u(X), u(X), { selfCrashedPrimary: true, peerUuidFlags: 2, resolveConflicts: false }, 1, 40],
    ['41 crashed and self Primary now', u(X | 1n), u(X), { peerUuidFlags: 2, selfRole: Role.Primary }, 1, 41],
    ['41 crashed and peer Primary now', u(X), u(X | 1n), { selfCrashedPrimary: true, peerRole: Role.Primary }, -1, 41],
    ['41 crashed and both Primary', u(X | 1n), u(X | 1n), { selfCrashedPrimary: true, selfRole: Role.Primary, peerRole: Role.Primary }, -100, 41],
    ['50 self current = peer bitmap', u(X), u(Y, X), {}, -1, 50],
    ['51 lost last sync uuid (peer corrected)', u(X), u(Y, X + UUID_NEW_BM_OFFSET, X, Z), {}, -1, 51],
    ['60 self current in peer history (start)', u(X), u(Y, 0n, X), {}, -2, 60],
    ['60 self current in peer history (end)', u(X), u(Y, 0n, Z, X), {}, -2, 60],
    ['70 self bitmap = peer current', u(Y, X), u(X), {}, 1, 70],
    ['71 own sync uuid did not get through (self corrected)', u(Y, X + UUID_NEW_BM_OFFSET, X, Z), u(X), {}, 1, 71],
    ['80 peer current in self history', u(Y, 0n, X), u(X), {}, 2, 80],
    ['80 peer current in self older history', u(Y, 0n, Z, X), u(X), {}, 2, 80],
    ['90 same bitmap uuid → split brain', u(Y | 1n, X), u(Z | 1n, X), {}, 100, 90],
    ['90 two independently forced nodes (bitmap 4)', u(Y | 1n, 4n), u(Z | 1n, 4n), {}, 100, 90],
    ['100 common history', u(Y, W, X), u(Z, 0x1234n, X), {}, -100, 100],
    ['100 zero history equals zero history', u(Y, W), u(Z, 0x1230n), {}, -100, 100],
    ['-1000 unrelated data', u(Y, W, 0x11110n, 0x11120n), u(Z, 0x1230n, 0x22220n, 0x22240n), {}, -1000, 100],
  ];
  for (const [name, self, peer, c, hg, rule] of cases) {
    it(`rule ${name}`, () => {
      const r = uuidCompare(self, peer, ctx(c));
      expect([r.hg, r.rule]).toEqual([hg, rule]);
    });
  }

  it('rule 34 corrects the local UUIDs (bitmap moves into history)', () => {
    const r = uuidCompare(u(X, Y, Z), u(X, 0n, Y, Z), ctx());
    expect(r.self).toEqual(u(X, 0n, Y, Z));
    expect(r.logLines[0]).toBe('was SyncSource, missed the resync finished event, corrected myself:');
  });
  it('rule 35 corrects the peer UUIDs', () => {
    const r = uuidCompare(u(X, 0n, Y, Z), u(X, Y, Z), ctx());
    expect(r.peer).toEqual(u(X, 0n, Y, Z));
  });
  it('rule 51 undoes the peer sync-UUID rotation', () => {
    const r = uuidCompare(u(X), u(Y, X + UUID_NEW_BM_OFFSET, X, Z), ctx());
    expect(r.peer).toEqual(u(Y, X, Z, Z));
    expect(r.logLines[0]).toBe('Lost last syncUUID packet, corrected:');
  });
  it('rule 71 undoes the own sync-UUID rotation', () => {
    const r = uuidCompare(u(Y, X + UUID_NEW_BM_OFFSET, X, Z), u(X), ctx());
    expect(r.self).toEqual(u(Y, X, Z, Z));
    expect(r.logLines[0]).toBe('Last syncUUID did not get through, corrected:');
  });
  it('old protocols are told to upgrade', () => {
    expect(uuidCompare(u(X, Y, Z), u(X, 0n, Y, Z), ctx({ protocolVersion: 90 })).hg).toBe(-1091);
  });
});

type HsPatch = Partial<Omit<HandshakeInput, 'self' | 'peer'>> & {
  self?: Partial<HandshakeInput['self']>;
  peer?: Partial<HandshakeInput['peer']>;
};
function hs(patch: HsPatch): HandshakeInput {
  const { self, peer, ...rest } = patch;
  return {
    self: { uuids: u(X), bitsSet: 0, role: Role.Secondary, disk: DiskState.UpToDate, nodeName: 'alpha', crashedPrimary: false, discardMyData: false, ...self },
    peer: { uuids: u(X), bitsSet: 0, role: Role.Secondary, disk: DiskState.UpToDate, nodeName: 'beta', uuidFlags: 0, ...peer },
    afterSb0pri: 'disconnect',
    afterSb1pri: 'disconnect',
    afterSb2pri: 'disconnect',
    rrConflict: 'disconnect',
    alwaysAsbp: false,
    resolveConflicts: false,
    canDemote: () => true,
    ...rest,
  };
}

describe('syncHandshake (drbd84.md §2.5)', () => {
  it('fresh pair: no sync, logs the uuid dump and rule', () => {
    const d = syncHandshake(hs({ self: { uuids: u(4n), disk: DiskState.Inconsistent }, peer: { uuids: u(4n), disk: DiskState.Inconsistent } }));
    expect(d.kind).toBe('no-sync');
    expect(d.logLines).toEqual([
      'drbd_sync_handshake:',
      'self 0000000000000004:0000000000000000:0000000000000000:0000000000000000 bits:0 flags:0',
      'peer 0000000000000004:0000000000000000:0000000000000000:0000000000000000 bits:0 flags:0',
      'uuid_compare()=0 by rule 10',
    ]);
  });
  it('forced primary vs fresh peer: full sync target on the fresh node', () => {
    const d = syncHandshake(hs({ self: { uuids: u(4n), disk: DiskState.Inconsistent }, peer: { uuids: u(X | 1n, 4n), role: Role.Primary } }));
    expect(d.kind).toBe('sync-target');
    expect(d.full).toBe(true);
    expect(d.logLines).toContain('uuid_compare()=-2 by rule 20');
    expect(d.logLines).toContain('Becoming sync target due to disk states.');
  });
  it('bitmap-based resync after a secondary failure: rule 50 on the secondary', () => {
    const d = syncHandshake(hs({ self: { uuids: u(X) }, peer: { uuids: u(Y | 1n, X), role: Role.Primary } }));
    expect(d.logLines).toContain('uuid_compare()=-1 by rule 50');
    expect([d.kind, d.full]).toEqual(['sync-target', false]);
  });
  it('disk-state override doubles a -100 into a full sync', () => {
    const d = syncHandshake(hs({ self: { uuids: u(Y, W, X), disk: DiskState.Inconsistent }, peer: { uuids: u(Z, 0x1230n, X) } }));
    expect(d.compareHg).toBe(-100);
    expect([d.kind, d.full, d.hg]).toEqual(['sync-target', true, -2]);
  });
  it('unrelated data aborts', () => {
    const d = syncHandshake(hs({ self: { uuids: u(Y, W, 0x10n, 0x20n) }, peer: { uuids: u(Z, 0x30n, 0x40n, 0x50n) } }));
    expect(d.kind).toBe('unrelated');
    expect(d.logLines).toContain('Unrelated data, aborting!');
  });
  it('asks whether the device could be demoted only when a split-brain policy runs (that check scans /proc)', () => {
    let asked = 0;
    const canDemote = (): boolean => (asked++, true);
    syncHandshake(hs({ canDemote, self: { uuids: u(X | 1n, 4n), role: Role.Primary, bitsSet: 10 }, peer: { uuids: u(4n), disk: DiskState.Inconsistent } }));
    syncHandshake(hs({ canDemote, self: { uuids: u(Y | 1n, X) }, peer: { uuids: u(X) } }));
    expect(asked).toBe(0);
    syncHandshake(hs({ canDemote, self: { uuids: u(Y | 1n, X | 1n), role: Role.Primary }, peer: { uuids: u(Z | 1n, X | 1n), role: Role.Primary } }));
    expect(asked).toBe(1);
  });
  it('split brain with disconnect policy: unresolved, both helpers run', () => {
    const d = syncHandshake(hs({ self: { uuids: u(Y | 1n, X | 1n), role: Role.Primary }, peer: { uuids: u(Z | 1n, X | 1n), role: Role.Primary } }));
    expect(d.kind).toBe('split-brain-unresolved');
    expect(d.handlers).toEqual(['initial-split-brain', 'split-brain']);
    expect(d.logLines).toContain('Split-Brain detected but unresolved, dropping connection!');
  });
  it('split brain solved by after-sb-0pri discard-zero-changes', () => {
    const d = syncHandshake(hs({
      afterSb0pri: 'discard-zero-changes',
      self: { uuids: u(Y, X), bitsSet: 0 },
      peer: { uuids: u(Z, X), bitsSet: 12 },
    }));
    expect([d.kind, d.full]).toEqual(['sync-target', false]);
    expect(d.logLines).toContain('Split-Brain detected, 0 primaries, automatically solved. Sync from peer node');
  });
  it('always-asbp applies policies to rule 100 and forces a full sync', () => {
    const d = syncHandshake(hs({
      afterSb0pri: 'discard-local',
      alwaysAsbp: true,
      self: { uuids: u(Y, W, X) },
      peer: { uuids: u(Z, 0x1230n, X) },
    }));
    expect([d.kind, d.full]).toEqual(['sync-target', true]);
    expect(d.logLines).toContain('Doing a full sync, since UUIDs where ambiguous.');
  });
  it('discard-my-data on me resolves split brain as bitmap-based target', () => {
    const d = syncHandshake(hs({ self: { uuids: u(Y, X), discardMyData: true }, peer: { uuids: u(Z | 1n, X), role: Role.Primary } }));
    expect([d.kind, d.full]).toEqual(['sync-target', false]);
    expect(d.logLines).toContain('Split-Brain detected, manually solved. Sync from peer node');
  });
  it('discard-my-data on the peer makes me the source', () => {
    const d = syncHandshake(hs({ self: { uuids: u(Y | 1n, X), role: Role.Primary }, peer: { uuids: u(Z, X), uuidFlags: 1 } }));
    expect([d.kind, d.full]).toEqual(['sync-source', false]);
    expect(d.logLines).toContain('Split-Brain detected, manually solved. Sync from this node');
  });
  it('refuses to become source while inconsistent', () => {
    const d = syncHandshake(hs({ self: { uuids: u(Y, X), disk: DiskState.Inconsistent }, peer: { uuids: u(X), disk: DiskState.Inconsistent } }));
    expect(d.kind).toBe('drop');
    expect(d.logLines).toContain('I shall become SyncSource, but I am inconsistent!');
  });
  it('rr-conflict disconnect: a Primary refuses to become target', () => {
    const d = syncHandshake(hs({ self: { uuids: u(X | 1n), role: Role.Primary }, peer: { uuids: u(Y, X) } }));
    expect(d.kind).toBe('drop');
    expect(d.logLines).toContain('I shall become SyncTarget, but I am primary!');
  });
  it('rr-conflict call-pri-lost runs pri-lost then drops', () => {
    const d = syncHandshake(hs({ rrConflict: 'call-pri-lost', self: { uuids: u(X | 1n), role: Role.Primary }, peer: { uuids: u(Y, X) } }));
    expect([d.kind, d.handlers]).toEqual(['drop', ['pri-lost']]);
  });
  it('rr-conflict violently continues as target', () => {
    const d = syncHandshake(hs({ rrConflict: 'violently', self: { uuids: u(X | 1n), role: Role.Primary }, peer: { uuids: u(Y, X) } }));
    expect(d.kind).toBe('sync-target');
  });
  it('dry-run logs the outcome and drops', () => {
    const d = syncHandshake(hs({ dryRun: true, self: { uuids: u(Y, X) }, peer: { uuids: u(X) } }));
    expect(d.kind).toBe('drop');
    expect(d.logLines).toContain('dry-run connect: Would become SyncSource, doing a bit-map based resync.');
  });
  it('no resync but bits in bitmap is reported', () => {
    const d = syncHandshake(hs({ self: { bitsSet: 3 } }));
    expect(d.kind).toBe('no-sync');
    expect(d.logLines).toContain('No resync, but 3 bits in bitmap!');
  });
});

describe('UUID rotations (drbd84.md §2.2)', () => {
  const R1 = 0x1234567890abcdeen;
  const R2 = 0x0fedcba987654320n;

  it('fresh pair → primary --force → full sync → both end with equal UUIDs', () => {
    // A: forced promotion creates a new current UUID, old current (4) → bitmap.
    let a = newCurrentUuid(u(4n), Role.Primary, R1).uuids;
    expect(a).toEqual(u(R1 | 1n, 4n));
    let b = u(4n);
    expect(uuidCompare(b, a, ctx({ peerRole: Role.Primary })).rule).toBe(20);
    expect(uuidCompare(a, b, ctx({ selfRole: Role.Primary })).rule).toBe(30);
    const peerSeenByB = { ...a };
    // Resync start: bitmap is 4 → random sync UUID; old bitmap rotates into history.
    const start = syncSourceStart(a, R2);
    expect(start.syncUuid).toBe(R2);
    a = start.uuids;
    expect(a).toEqual(u(R1 | 1n, R2, 4n));
    b = syncTargetStart(b, start.syncUuid);
    expect(b).toEqual(u(R2, 0n));
    a = syncSourceFinish(a);
    b = syncTargetFinish(b, peerSeenByB, Role.Secondary);
    expect(a).toEqual(u(R1 | 1n, 0n, R2, 4n));
    expect(b).toEqual(u(R1, 0n, R2, 4n));
    expect(uuidCompare(a, b, ctx({ selfRole: Role.Primary })).hg).toBe(0);
  });

  it('bitmap-based resync: sync UUID is bitmap + offset, both sides end equal', () => {
    const primary0 = u(Y | 1n, X, Z);
    const secondary0 = u(X, 0n, Z);
    const start = syncSourceStart(primary0, R2);
    expect(start.syncUuid).toBe(X + UUID_NEW_BM_OFFSET);
    const target = syncTargetFinish(syncTargetStart(secondary0, start.syncUuid), primary0);
    const source = syncSourceFinish(start.uuids);
    expect(formatUuids({ ...source, current: source.current & ~1n })).toBe(formatUuids(target));
  });

  it('new current UUID warns when the bitmap UUID was already set', () => {
    const r = newCurrentUuid(u(X, Y), Role.Primary, R1);
    expect(r.logLines[0]).toBe(`bm UUID was already set: ${Y.toString(16).toUpperCase().padStart(16, '0')}`);
    expect(r.uuids.bitmap).toBe(X);
  });
  it('admin new-current-uuid rotates the bitmap into history first', () => {
    expect(adminNewCurrentUuid(u(X, Y, Z), Role.Secondary, R1).uuids).toEqual(u(R1 & ~1n, X, Y, Z));
  });
  it('new-current-uuid --clear-bitmap on a fresh pair leaves the bitmap UUID 0 (drbd_adm_new_c_uuid), so a later lost peer starts a new generation', () => {
    const r = adminNewCurrentUuid(u(4n), Role.Primary, R1, true);
    expect(r.uuids).toEqual(u(R1 | 1n, 0n, 0n, 0n));
    expect(r.logLines.at(-1)).toBe(`cleared bitmap UUID ${formatUuids(r.uuids)}`);
    // regression (torture seed 1 episode 1): with the bitmap UUID left at 4 the Primary made no new
    // current UUID at the partition, and the split brain read as "peer is newer" (rule 50), not 100.
    const lost = newCurrentUuid(r.uuids, Role.Primary, R1 ^ 0xffn);
    expect(lost.uuids.bitmap).toBe(R1 | 1n);
    expect(lost.logLines.some((l) => l.startsWith('bm UUID was already set'))).toBe(false);
  });
  it('formats UUIDs as the kernel does', () => {
    expect(formatUuids(u(4n))).toBe('0000000000000004:0000000000000000:0000000000000000:0000000000000000');
  });
});
