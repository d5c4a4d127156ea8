/**
 * resource/uuid — generation-UUID logic of DRBD 8.4 (drbd_receiver.c, drbd_main.c): the
 * ordered comparison rules of drbd_uuid_compare (rules 10…100 with their
 * numbers), the sync handshake post-processing of drbd_sync_handshake
 * (disk-state override, after-sb, discard-my-data, rr-conflict, full sync),
 * and the slot rotations as pure functions returning new GenerationUuids.
 * Random values are passed in by the caller; nothing here reads a clock, a
 * disk or a socket.
 */
import { assert } from '../util/assert.js';
import { UUID_JUST_CREATED, type GenerationUuids } from '../meta/types.js';
import {
  HG_SPLIT_BRAIN,
  applyDiscardMyData,
  recover0p,
  recover1p,
  recover2p,
  type AsbInput,
  type RrConflictPolicy,
} from './after-sb.js';
import { DiskState, Role } from './states.js';

/** UUID_NEW_BM_OFFSET: a sync UUID is the bitmap UUID plus this. */
export const UUID_NEW_BM_OFFSET = 0x0001000000000000n;
const U64_MASK = 0xffffffffffffffffn;
const JC = UUID_JUST_CREATED;

/** UUID packet flags (P_UUIDS uuid[UI_FLAGS], drbd_main.c: _drbd_send_uuids). */
export const UuidFlag = { discardMyData: 1, crashedPrimary: 2, inconsistent: 4, skipInitialSync: 8 } as const;

/** Highest protocol version udrbd speaks (DRBD 8.4 = 101). */
export const PROTOCOL_VERSION_MAX = 101;

const m = (u: bigint): bigint => u & ~1n;
const hex16 = (u: bigint): string => u.toString(16).toUpperCase().padStart(16, '0');

/** `C:B:H1:H2` as the kernel prints UUIDs (%016llX). */
export function formatUuids(u: GenerationUuids): string {
  return `${hex16(u.current)}:${hex16(u.bitmap)}:${hex16(u.historyStart)}:${hex16(u.historyEnd)}`;
}

/** The handshake's uuid dump line: `self C:B:H1:H2 bits:N flags:F`. */
export function formatUuidDump(label: string, u: GenerationUuids, bits: number, flags: number): string {
  return `${label} ${formatUuids(u)} bits:${bits} flags:${flags.toString(16).toUpperCase()}`;
}

export function uuidsEqual(a: GenerationUuids, b: GenerationUuids): boolean {
  return a.current === b.current && a.bitmap === b.bitmap && a.historyStart === b.historyStart &&
    a.historyEnd === b.historyEnd;
}

export interface UuidCompareCtx {
  /** This node carries the CRASHED_PRIMARY flag. */
  selfCrashedPrimary: boolean;
  /** The peer's UUID flags (bit 2 = crashed primary). */
  peerUuidFlags: number;
  selfRole: Role;
  peerRole: Role;
  /** This node holds RESOLVE_CONFLICTS: it loses ties. */
  resolveConflicts: boolean;
  /** Agreed protocol version (default 101). */
  protocolVersion?: number;
}

export interface UuidCompareResult {
  /** +2/+1 source full/bitmap, 0 none, -1/-2 target, +100/-100 split brain, -1000 unrelated, < -1000 needs protocol. */
  hg: number;
  rule: number;
  /** Local UUIDs after rule 34/71 corrections (equal to the input otherwise). */
  self: GenerationUuids;
  /** Peer UUIDs after rule 35/51 corrections. */
  peer: GenerationUuids;
  logLines: string[];
}

/** drbd_receiver.c: drbd_uuid_compare: the first matching rule decides. */
export function uuidCompare(self: GenerationUuids, peer: GenerationUuids, ctx: UuidCompareCtx): UuidCompareResult {
  const proto = ctx.protocolVersion ?? PROTOCOL_VERSION_MAX;
  let s = { ...self };
  let p = { ...peer };
  const logLines: string[] = [];
  const done = (hg: number, rule: number): UuidCompareResult => ({ hg, rule, self: s, peer: p, logLines });

  const sc = m(s.current);
  const pc = m(p.current);
  if (sc === JC && pc === JC) return done(0, 10);
  if ((sc === JC || sc === 0n) && pc !== JC) return done(-2, 20);
  if (sc !== JC && (pc === JC || pc === 0n)) return done(2, 30);

  if (sc === pc) {
    if (p.bitmap === 0n && s.bitmap !== 0n) {
      if (proto < 91) return done(-1091, 34);
      if (m(s.bitmap) === m(p.historyStart) && m(s.historyStart) === m(p.historyEnd)) {
        logLines.push('was SyncSource, missed the resync finished event, corrected myself:');
        s = { current: s.current, bitmap: 0n, historyStart: s.bitmap, historyEnd: s.historyStart };
        logLines.push(formatUuidDump('self', s, 0, 0));
        return done(1, 34);
      }
      logLines.push('was SyncSource (peer failed to write sync_uuid)');
      return done(1, 36);
    }
    if (s.bitmap === 0n && p.bitmap !== 0n) {
      if (proto < 91) return done(-1091, 35);
      if (m(s.historyStart) === m(p.bitmap) && m(s.historyEnd) === m(p.historyStart)) {
        logLines.push('was SyncTarget, peer missed the resync finished event, corrected peer:');
        p = { current: p.current, bitmap: 0n, historyStart: p.bitmap, historyEnd: p.historyStart };
        logLines.push(formatUuidDump('peer', p, 0, ctx.peerUuidFlags));
        return done(-1, 35);
      }
      logLines.push('was SyncTarget (failed to write sync_uuid)');
      return done(-1, 37);
    }
    // Common power failure: arbitrate by who was a crashed primary.
    const rct = (ctx.selfCrashedPrimary ? 1 : 0) + (ctx.peerUuidFlags & UuidFlag.crashedPrimary);
    if (rct === 0) return done(0, 40);
    if (ctx.selfRole === Role.Primary || ctx.peerRole === Role.Primary) {
      if (ctx.selfRole === Role.Primary && ctx.peerRole === Role.Primary) {
        logLines.push('Equivalent unrotated UUIDs, but both are primary. Can not resolve this.');
        return done(-100, 41);
      }
      return done(ctx.selfRole === Role.Primary ? 1 : -1, 41);
    }
    if (rct === 1) return done(1, 40);
    if (rct === 2) return done(-1, 40);
    return done(ctx.resolveConflicts ? -1 : 1, 40);
  }

  if (sc === m(p.bitmap)) return done(-1, 50);

  if (sc === m(p.historyStart)) {
    const lostSyncUuid = proto < 96
      ? m(s.historyStart) === m(p.historyEnd)
      : ((m(p.historyStart) + UUID_NEW_BM_OFFSET) & U64_MASK) === m(p.bitmap);
    if (lostSyncUuid) {
      if (proto < 91) return done(-1091, 51);
      p = { current: p.current, bitmap: p.historyStart, historyStart: p.historyEnd, historyEnd: p.historyEnd };
      logLines.push('Lost last syncUUID packet, corrected:');
      logLines.push(formatUuidDump('peer', p, 0, ctx.peerUuidFlags));
      return done(-1, 51);
    }
  }

  if (sc === m(p.historyStart) || sc === m(p.historyEnd)) return done(-2, 60);

  if (m(s.bitmap) === pc) return done(1, 70);

  if (m(s.historyStart) === pc) {
    const lostSyncUuid = proto < 96
      ? m(s.historyEnd) === m(p.historyStart)
      : ((m(s.historyStart) + UUID_NEW_BM_OFFSET) & U64_MASK) === m(s.bitmap);
    if (lostSyncUuid) {
      if (proto < 91) return done(-1091, 71);
      s = { current: s.current, bitmap: s.historyStart, historyStart: s.historyEnd, historyEnd: s.historyEnd };
      logLines.push('Last syncUUID did not get through, corrected:');
      logLines.push(formatUuidDump('self', s, 0, 0));
      return done(1, 71);
    }
  }

  if (pc === m(s.historyStart) || pc === m(s.historyEnd)) return done(2, 80);

  if (m(s.bitmap) === m(p.bitmap) && m(s.bitmap) !== 0n) return done(100, 90);

  const sh = [m(s.historyStart), m(s.historyEnd)];
  const ph = [m(p.historyStart), m(p.historyEnd)];
  for (const a of sh) for (const b of ph) if (a === b) return done(-100, 100);

  return done(-1000, 100);
}

/** Everything the handshake needs to know about one side. */
export interface HandshakeSide {
  uuids: GenerationUuids;
  /** Set bits in that side's bitmap (peer: its reported uuid[UI_SIZE]). */
  bitsSet: number;
  role: Role;
  /** Disk state used for the decision (a Negotiating peer is reported via flag 4). */
  disk: DiskState;
  nodeName: string;
}

export interface HandshakeInput {
  /** `attachDisk`: with disk Negotiating (attached while connected), the state the attach found (DRBD's new_state_tmp). */
  self: HandshakeSide & { crashedPrimary: boolean; discardMyData: boolean; attachDisk?: DiskState };
  peer: HandshakeSide & { uuidFlags: number };
  afterSb0pri: string;
  afterSb1pri: string;
  afterSb2pri: string;
  rrConflict: RrConflictPolicy;
  alwaysAsbp: boolean;
  /** This node accepted the connection (RESOLVE_CONFLICTS): it loses ties. */
  resolveConflicts: boolean;
  /**
   * Demotion would succeed now (device not held open) — for call-pri-lost-after-sb.
   * Asked only when a split-brain policy runs: finding holders scans /proc (tens of ms).
   */
  canDemote: () => boolean;
  /** --tentative / dry-run connect. */
  dryRun?: boolean;
  protocolVersion?: number;
}

export type HandshakeKind = 'no-sync' | 'sync-source' | 'sync-target' | 'split-brain-unresolved' | 'unrelated' | 'drop';

export interface HandshakeDecision {
  kind: HandshakeKind;
  /** Full sync: the whole bitmap must be set before the bitmap exchange. */
  full: boolean;
  /** Final handshake value after all post-processing. */
  hg: number;
  /** uuid_compare() value and rule number. */
  compareHg: number;
  rule: number;
  logLines: string[];
  /** Helpers to run, in order (`initial-split-brain`, `split-brain`, `pri-lost`, `pri-lost-after-sb`). */
  handlers: string[];
  /** Local / peer UUIDs after compare-time corrections; persist `self` if it changed. */
  selfUuids: GenerationUuids;
  peerUuids: GenerationUuids;
  /** call-pri-lost-after-sb demoted this node. */
  demoted: boolean;
}

/** drbd_receiver.c: drbd_sync_handshake: decide no-sync / source / target / drop. */
export function syncHandshake(input: HandshakeInput): HandshakeDecision {
  const { self, peer } = input;
  const logLines: string[] = [
    'drbd_sync_handshake:',
    formatUuidDump('self', self.uuids, self.bitsSet, 0),
    formatUuidDump('peer', peer.uuids, peer.bitsSet, peer.uuidFlags),
  ];
  const handlers: string[] = [];
  const cmp = uuidCompare(self.uuids, peer.uuids, {
    selfCrashedPrimary: self.crashedPrimary,
    peerUuidFlags: peer.uuidFlags,
    selfRole: self.role,
    peerRole: peer.role,
    resolveConflicts: input.resolveConflicts,
    ...(input.protocolVersion !== undefined ? { protocolVersion: input.protocolVersion } : {}),
  });
  logLines.push(...cmp.logLines);
  logLines.push(`uuid_compare()=${cmp.hg} by rule ${cmp.rule}`);
  let hg = cmp.hg;
  let demoted = false;
  const decide = (kind: HandshakeKind, full = false): HandshakeDecision => ({
    kind, full, hg, compareHg: cmp.hg, rule: cmp.rule, logLines, handlers,
    selfUuids: cmp.self, peerUuids: cmp.peer, demoted,
  });

  if (hg === -1000) {
    logLines.push('Unrelated data, aborting!');
    return decide('unrelated');
  }
  if (hg < -1000) {
    logLines.push(`To resolve this both sides have to support at least protocol ${-hg - 1000}`);
    return decide('drop');
  }

  // drbd_sync_handshake: a Negotiating disk is judged by what the attach found.
  const myDisk = self.disk === DiskState.Negotiating && self.attachDisk !== undefined ? self.attachDisk : self.disk;
  const peerDisk = peer.disk;
  if ((myDisk === DiskState.Inconsistent && peerDisk > DiskState.Inconsistent) ||
      (peerDisk === DiskState.Inconsistent && myDisk > DiskState.Inconsistent)) {
    const double = hg === -100 || Math.abs(hg) === 2;
    hg = myDisk > DiskState.Inconsistent ? 1 : -1;
    if (double) hg *= 2;
    logLines.push(`Becoming sync ${hg > 0 ? 'source' : 'target'} due to disk states.`);
  }

  if (Math.abs(hg) === 100) handlers.push('initial-split-brain');

  if (hg === 100 || (hg === -100 && input.alwaysAsbp)) {
    const pcount = (self.role === Role.Primary ? 1 : 0) + (peer.role === Role.Primary ? 1 : 0);
    const forced = hg === -100;
    const asb: AsbInput = {
      selfBitmapPrimaryBit: (self.uuids.bitmap & 1n) === 1n ? 1 : 0,
      peerBitmapPrimaryBit: (peer.uuids.bitmap & 1n) === 1n ? 1 : 0,
      selfBitsSet: self.bitsSet,
      peerBitsSet: peer.bitsSet,
      resolveConflicts: input.resolveConflicts,
      selfNodeName: self.nodeName,
      peerNodeName: peer.nodeName,
      selfRole: self.role,
      canDemote: input.canDemote(),
    };
    const r = pcount === 0
      ? recover0p(input.afterSb0pri, asb)
      : pcount === 1
        ? recover1p(input.afterSb1pri, input.afterSb0pri, asb)
        : recover2p(input.afterSb2pri, input.afterSb0pri, asb);
    logLines.push(...r.logLines);
    handlers.push(...r.handlers);
    demoted = r.demoted;
    hg = r.hg;
    if (Math.abs(hg) < 100) {
      logLines.push(
        `Split-Brain detected, ${pcount} primaries, automatically solved. Sync from ${hg < 0 ? 'peer' : 'this'} node`,
      );
      if (forced) {
        logLines.push('Doing a full sync, since UUIDs where ambiguous.');
        hg *= 2;
      }
    } else {
      hg = HG_SPLIT_BRAIN;
    }
  }

  if (hg === HG_SPLIT_BRAIN) {
    hg = applyDiscardMyData(hg, self.discardMyData, (peer.uuidFlags & UuidFlag.discardMyData) !== 0);
    if (Math.abs(hg) < 100) {
      logLines.push(`Split-Brain detected, manually solved. Sync from ${hg < 0 ? 'peer' : 'this'} node`);
    }
  }

  if (hg === HG_SPLIT_BRAIN) {
    logLines.push('Split-Brain detected but unresolved, dropping connection!');
    handlers.push('split-brain');
    return decide('split-brain-unresolved');
  }

  if (hg > 0 && myDisk <= DiskState.Inconsistent) {
    logLines.push('I shall become SyncSource, but I am inconsistent!');
    return decide('drop');
  }

  const selfRoleNow = demoted ? Role.Secondary : self.role;
  if (hg < 0 && selfRoleNow === Role.Primary && self.disk >= DiskState.Consistent) {
    switch (input.rrConflict) {
      case 'call-pri-lost':
        handlers.push('pri-lost');
        logLines.push('I shall become SyncTarget, but I am primary!');
        return decide('drop');
      case 'disconnect':
        logLines.push('I shall become SyncTarget, but I am primary!');
        return decide('drop');
      case 'violently':
        logLines.push('Becoming SyncTarget, violating the stable-data assumption');
        break;
    }
  }

  if (input.dryRun) {
    if (hg === 0) logLines.push('dry-run connect: No resync, would become Connected immediately.');
    else {
      logLines.push(
        `dry-run connect: Would become ${hg > 0 ? 'SyncSource' : 'SyncTarget'}, doing a ${Math.abs(hg) >= 2 ? 'full' : 'bit-map based'} resync.`,
      );
    }
    return decide('drop');
  }

  const full = Math.abs(hg) >= 2;
  if (full) logLines.push('Writing the whole bitmap, full sync required after drbd_sync_handshake.');
  if (hg > 0) return decide('sync-source', full);
  if (hg < 0) return decide('sync-target', full);
  if (self.bitsSet > 0) logLines.push(`No resync, but ${self.bitsSet} bits in bitmap!`);
  return decide('no-sync');
}

// ---------------------------------------------------------------------------
// Slot rotations (drbd_main.c: drbd_uuid_new_current, drbd_uuid_set_bm, _drbd_uuid_set)

const roleBit = (u: bigint, role: Role): bigint => (role === Role.Primary ? u | 1n : u & ~1n);

/** drbd_uuid_set with rotation: a non-zero old bitmap UUID moves into history. */
function setBitmapWithRotation(u: GenerationUuids, value: bigint): GenerationUuids {
  if (u.bitmap === 0n) return { ...u, bitmap: value };
  return { current: u.current, bitmap: value, historyStart: u.bitmap, historyEnd: u.historyStart };
}

/** drbd_uuid_set_bm(0): bitmap UUID → history (older history shifts), bitmap cleared. */
function clearBitmapIntoHistory(u: GenerationUuids): GenerationUuids {
  if (u.bitmap === 0n) return { ...u };
  return { current: u.current, bitmap: 0n, historyStart: u.bitmap, historyEnd: u.historyStart };
}

export interface NewCurrentResult {
  uuids: GenerationUuids;
  logLines: string[];
}

/**
 * drbd_uuid_new_current: bitmap ← current, current ← random (bit 0 = role).
 * Warns "bm UUID was already set" when the old bitmap UUID gets overwritten.
 */
export function newCurrentUuid(u: GenerationUuids, role: Role, random: bigint): NewCurrentResult {
  assert(random >= 0n && random <= U64_MASK, 'random UUID is a u64');
  const logLines: string[] = [];
  if (u.bitmap !== 0n) logLines.push(`bm UUID was already set: ${hex16(u.bitmap)}`);
  const next: GenerationUuids = {
    current: roleBit(random, role),
    bitmap: u.current,
    historyStart: u.historyStart,
    historyEnd: u.historyEnd,
  };
  logLines.push(`new current UUID ${formatUuids(next)}`);
  return { uuids: next, logLines };
}

/** The admin verb `new-current-uuid`: bitmap rotates into history first, then a new current UUID. */
export function adminNewCurrentUuid(u: GenerationUuids, role: Role, random: bigint, clearBitmap = false): NewCurrentResult {
  const made = newCurrentUuid(setBitmapWithRotation(u, 0n), role, random);
  if (!clearBitmap) return made;
  // drbd_nl.c drbd_adm_new_c_uuid --clear-bitmap: _drbd_uuid_set(UI_BITMAP, 0) after the new
  // current UUID. Left at the old current (4 on a fresh pair), the bitmap UUID stops the next
  // lost peer from starting a new generation, and a later split brain goes unseen.
  const uuids = { ...made.uuids, bitmap: 0n };
  return { uuids, logLines: [...made.logLines, `cleared bitmap UUID ${formatUuids(uuids)}`] };
}

export interface SyncSourceStartResult {
  uuids: GenerationUuids;
  /** The sync UUID to send to the target (P_SYNC_UUID). */
  syncUuid: bigint;
  logLines: string[];
}

/** Resync start on the SyncSource: sync UUID = B + offset (random if B is 0 or 4), set B with rotation. */
export function syncSourceStart(u: GenerationUuids, random: bigint): SyncSourceStartResult {
  assert(random >= 0n && random <= U64_MASK, 'random UUID is a u64');
  // A random sync UUID gets bit 0 cleared so both nodes end byte-equal (compares mask bit 0 anyway).
  const syncUuid = u.bitmap !== 0n && u.bitmap !== JC ? (u.bitmap + UUID_NEW_BM_OFFSET) & U64_MASK : random & ~1n;
  const uuids = setBitmapWithRotation(u, syncUuid);
  return { uuids, syncUuid, logLines: [`updated sync UUID ${formatUuids(uuids)}`] };
}

/** Resync finished OK on the SyncSource: H2←H1, H1←B, B←0. */
export function syncSourceFinish(u: GenerationUuids): GenerationUuids {
  return clearBitmapIntoHistory(u);
}

/** Resync start on the SyncTarget (P_SYNC_UUID received): C ← sync UUID (role bit applied), B ← 0. */
export function syncTargetStart(u: GenerationUuids, received: bigint, role: Role = Role.Secondary): GenerationUuids {
  return { current: roleBit(received, role), bitmap: 0n, historyStart: u.historyStart, historyEnd: u.historyEnd };
}

/**
 * Resync finished OK on the SyncTarget: take the peer's B/H1/H2, push own C
 * into B with rotation, take the peer's C, then B → history. Both nodes end
 * with equal UUIDs.
 */
export function syncTargetFinish(u: GenerationUuids, peer: GenerationUuids, role: Role = Role.Secondary): GenerationUuids {
  let next: GenerationUuids = {
    current: u.current,
    bitmap: peer.bitmap,
    historyStart: peer.historyStart,
    historyEnd: peer.historyEnd,
  };
  next = setBitmapWithRotation(next, u.current);
  next = { ...next, current: roleBit(peer.current, role) };
  return clearBitmapIntoHistory(next);
}
