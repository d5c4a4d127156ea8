/**
 * resource/after-sb — automatic split-brain recovery policies (after-sb-0pri,
 * -1pri, -2pri; drbd_receiver.c: drbd_asb_recover_0p/1p/2p), the connect-time
 * compatibility check of both nodes' net settings (drbd_receiver.c: receive_protocol) and the tie-breaker convention. Pure decisions
 * returning a handshake value (+1 I become SyncSource, -1 I become SyncTarget,
 * -100 unresolved) plus DRBD's log lines; knows nothing of sockets or disks.
 */
import { Role } from './states.js';

export type AfterSb0Policy =
  | 'disconnect'
  | 'discard-younger-primary'
  | 'discard-older-primary'
  | 'discard-zero-changes'
  | 'discard-least-changes'
  | 'discard-local'
  | 'discard-remote'
  /** udrbd extension: the named node's data is discarded (that node becomes SyncTarget). */
  | `discard-node-${string}`;
export type AfterSb1Policy = 'disconnect' | 'consensus' | 'discard-secondary' | 'call-pri-lost-after-sb' | 'violently-as0p';
export type AfterSb2Policy = 'disconnect' | 'call-pri-lost-after-sb' | 'violently-as0p';
export type RrConflictPolicy = 'disconnect' | 'call-pri-lost' | 'violently';
export type AnyAfterSbPolicy = AfterSb0Policy | AfterSb1Policy | AfterSb2Policy;

export const afterSb0Policies: readonly string[] = [
  'disconnect', 'discard-younger-primary', 'discard-older-primary', 'discard-zero-changes',
  'discard-least-changes', 'discard-local', 'discard-remote',
];
export const afterSb1Policies: readonly string[] = [
  'disconnect', 'consensus', 'discard-secondary', 'call-pri-lost-after-sb', 'violently-as0p',
];
export const afterSb2Policies: readonly string[] = ['disconnect', 'call-pri-lost-after-sb', 'violently-as0p'];

/** Handshake value of an unresolved split brain. */
export const HG_SPLIT_BRAIN = -100;

/** What the 0pri logic needs to know about both nodes. */
export interface AsbInput {
  /** Bit 0 of the local / peer bitmap UUID: 1 = that node was already Primary when the generations split. */
  selfBitmapPrimaryBit: 0 | 1;
  peerBitmapPrimaryBit: 0 | 1;
  /** Set bits ("changes") in the local bitmap / as reported by the peer. */
  selfBitsSet: number;
  peerBitsSet: number;
  /** This node holds RESOLVE_CONFLICTS (it accepted the connection): it loses ties. */
  resolveConflicts: boolean;
  selfNodeName: string;
  peerNodeName: string;
  selfRole: Role;
  /** Demoting this node would succeed now (device not held open). */
  canDemote: boolean;
}

export interface AsbResult {
  hg: number;
  logLines: string[];
  handlers: string[];
  /** call-pri-lost-after-sb demoted this node ("Successfully gave up primary role."). */
  demoted: boolean;
}

const tieBreak = (input: AsbInput): number => (input.resolveConflicts ? -1 : 1);

function isDiscardNode(policy: string): policy is `discard-node-${string}` {
  return policy.startsWith('discard-node-');
}

/** drbd_asb_recover_0p: the zero-primaries policy (also the base of 1pri/2pri). */
export function recover0p(policy: string, input: AsbInput): AsbResult {
  const logLines: string[] = [];
  const out = (hg: number): AsbResult => ({ hg, logLines, handlers: [], demoted: false });
  const self = input.selfBitmapPrimaryBit;
  const peer = input.peerBitmapPrimaryBit;
  const chSelf = input.selfBitsSet;
  const chPeer = input.peerBitsSet;

  if (isDiscardNode(policy)) {
    const name = policy.slice('discard-node-'.length);
    if (name === input.selfNodeName) return out(-1);
    if (name === input.peerNodeName) return out(1);
    logLines.push(`after-sb-0pri ${policy}: node '${name}' is neither this node nor the peer`);
    logLines.push('Configuration error.');
    return out(HG_SPLIT_BRAIN);
  }

  switch (policy) {
    case 'disconnect':
      return out(HG_SPLIT_BRAIN);
    case 'discard-local':
      return out(-1);
    case 'discard-remote':
      return out(1);
    case 'discard-younger-primary':
    case 'discard-older-primary': {
      const younger = policy === 'discard-younger-primary';
      if (self === 0 && peer === 1) return out(younger ? -1 : 1);
      if (self === 1 && peer === 0) return out(younger ? 1 : -1);
      logLines.push('Discard younger/older primary did not find a decision');
      logLines.push('Using discard-least-changes instead');
      return leastChanges(input, logLines, true);
    }
    case 'discard-zero-changes':
      return zeroChanges(input, logLines, false);
    case 'discard-least-changes':
      return leastChanges(input, logLines, false);
    default:
      logLines.push('Configuration error.');
      return out(HG_SPLIT_BRAIN);
  }

  function zeroChanges(i: AsbInput, lines: string[], fallThrough: boolean): AsbResult {
    if (chPeer === 0 && chSelf === 0) return { hg: tieBreak(i), logLines: lines, handlers: [], demoted: false };
    if (chPeer === 0) return { hg: 1, logLines: lines, handlers: [], demoted: false };
    if (chSelf === 0) return { hg: -1, logLines: lines, handlers: [], demoted: false };
    if (!fallThrough) return { hg: HG_SPLIT_BRAIN, logLines: lines, handlers: [], demoted: false };
    let hg: number;
    if (chSelf < chPeer) hg = -1;
    else if (chSelf > chPeer) hg = 1;
    else hg = tieBreak(i);
    return { hg, logLines: lines, handlers: [], demoted: false };
  }
  function leastChanges(i: AsbInput, lines: string[], viaOlderYounger: boolean): AsbResult {
    // The kernel falls from younger/older-primary through zero-changes into least-changes.
    if (viaOlderYounger) return zeroChanges(i, lines, true);
    let hg: number;
    if (chSelf < chPeer) hg = -1;
    else if (chSelf > chPeer) hg = 1;
    else hg = tieBreak(i);
    return { hg, logLines: lines, handlers: [], demoted: false };
  }
}

/** call-pri-lost-after-sb: a Primary that must become target demotes, or runs the helper. */
function callPriLost(base: AsbResult, mustDemote: boolean, input: AsbInput): AsbResult {
  if (!mustDemote) return base;
  if (input.canDemote) {
    return {
      hg: base.hg,
      logLines: [...base.logLines, 'Successfully gave up primary role.'],
      handlers: [],
      demoted: true,
    };
  }
  return { hg: HG_SPLIT_BRAIN, logLines: base.logLines, handlers: ['pri-lost-after-sb'], demoted: false };
}

/** drbd_asb_recover_1p: exactly one node is Primary. */
export function recover1p(policy1: string, policy0: string, input: AsbInput): AsbResult {
  switch (policy1) {
    case 'disconnect':
      return { hg: HG_SPLIT_BRAIN, logLines: [], handlers: [], demoted: false };
    case 'consensus': {
      const r = recover0p(policy0, input);
      const agrees =
        (r.hg === -1 && input.selfRole === Role.Secondary) || (r.hg === 1 && input.selfRole === Role.Primary);
      return { ...r, hg: agrees ? r.hg : HG_SPLIT_BRAIN };
    }
    case 'violently-as0p':
      return recover0p(policy0, input);
    case 'discard-secondary':
      return { hg: input.selfRole === Role.Primary ? 1 : -1, logLines: [], handlers: [], demoted: false };
    case 'call-pri-lost-after-sb': {
      const r = recover0p(policy0, input);
      return callPriLost(r, r.hg === -1 && input.selfRole === Role.Primary, input);
    }
    default:
      return { hg: HG_SPLIT_BRAIN, logLines: ['Configuration error.'], handlers: [], demoted: false };
  }
}

/** drbd_asb_recover_2p: both nodes are Primary. */
export function recover2p(policy2: string, policy0: string, input: AsbInput): AsbResult {
  switch (policy2) {
    case 'disconnect':
      return { hg: HG_SPLIT_BRAIN, logLines: [], handlers: [], demoted: false };
    case 'violently-as0p':
      return recover0p(policy0, input);
    case 'call-pri-lost-after-sb': {
      const r = recover0p(policy0, input);
      return callPriLost(r, r.hg === -1, input);
    }
    default:
      return { hg: HG_SPLIT_BRAIN, logLines: ['Configuration error.'], handlers: [], demoted: false };
  }
}

/**
 * --discard-my-data (drbd_receiver.c: drbd_sync_handshake), consulted only while the result is still -100:
 * my flag alone → -1 (I become target), the peer's flag alone → +1.
 */
export function applyDiscardMyData(hg: number, selfDiscard: boolean, peerDiscard: boolean): number {
  if (hg !== HG_SPLIT_BRAIN) return hg;
  if (selfDiscard && !peerDiscard) return -1;
  if (!selfDiscard && peerDiscard) return 1;
  return hg;
}
