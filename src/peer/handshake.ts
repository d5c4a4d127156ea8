/**
 * peer/handshake — the parameter exchange right after a link is chosen and
 * authenticated (DRBD's WFReportParams). Each side sends Protocol once, then
 * for every volume of the resource (vnr ascending) its SyncParam, Uuids,
 * Sizes and State, the header carrying the volume (DRBD's conn_connect:
 * P_PROTOCOL, then drbd_connected() per volume); a volume without a disk
 * sends no Uuids (drbd_main.c drbd_send_uuids). On receipt Protocol must
 * come first; each volume's packets must come in that order, volumes may
 * interleave, and a volume this node does not exchange is refused. The
 * exchange is done once every local volume has the peer's State; a peer
 * lacking one of them never gets there and the exchange times out (the
 * caller retries). Then it checks what DRBD checks at connect time
 * (protocol, after-sb-*pri, allow-two-primaries, discard-my-data on both,
 * data-integrity-alg: "incompatible <x> settings"; per volume csums-alg:
 * "Different csums-alg settings"); a mismatch drops the link. It reports
 * the peer's values, per connection and per volume; deciding who syncs
 * from whom is resource/'s job.
 */
import type { Logger } from '../util/log.js';
import { InvariantError, assert } from '../util/assert.js';
import type { GenerationUuids } from '../meta/types.js';
import type { AfterSb0, AfterSb1, AfterSb2, Packet, ProtocolPacket, SizesPacket, StatePacket, SyncParamPacket, UuidsPacket } from './packets.js';
import { PacketType } from './packets.js';
import type { PeerSession } from './session.js';

/** A packet's fields without its type and (per-volume packets) the volume its header carries. */
type Body<T> = Omit<T, 'type' | 'volume'>;

/** The most volumes one exchange carries (bounds what a LocalParams may list). */
export const EXCHANGED_VOLUMES_MAX = 256;

/** One volume's part of what this node tells its peer at connect. */
export interface LocalVolumeParams {
  /** The volume number its SyncParam, Uuids, Sizes and State carry in the header. */
  volume: number;
  /** Resync parameters (DRBD sends P_SYNC_PARAM first in drbd_connected). */
  syncParam: Body<SyncParamPacket>;
  /** Absent without a local disk (drbd_send_uuids sends nothing then). */
  uuids: Body<UuidsPacket> | undefined;
  sizes: Body<SizesPacket>;
  state: Body<StatePacket>;
}

/** What this node tells its peer at connect; produced fresh by the caller for every attempt. */
export interface LocalParams {
  protocol: Body<ProtocolPacket>;
  /** Every volume of the resource: vnr ascending, distinct, 1..EXCHANGED_VOLUMES_MAX entries. */
  volumes: LocalVolumeParams[];
}

/** What the peer told us at connect about the connection (its Protocol packet). */
export interface PeerConnectionParams {
  protocol: 'A' | 'B' | 'C';
  afterSb0pri: AfterSb0;
  afterSb1pri: AfterSb1;
  afterSb2pri: AfterSb2;
  allowTwoPrimaries: boolean;
  discardMyData: boolean;
  nodeName: string;
  /** The peer's data-integrity-alg ('' = none); equal to ours once the exchange succeeded. */
  integrityAlg: string;
}

/** What the peer told us at connect about one volume. */
export interface PeerVolumeParams {
  /** The peer's resync parameters as it sent them at connect. */
  syncParam: Body<SyncParamPacket>;
  /** All zero when the peer sent none (it has no disk); `uuidsKnown` says which (DRBD's mdev->p_uuid). */
  uuids: GenerationUuids;
  uuidsKnown: boolean;
  bitsSet: number;
  uuidFlags: number;
  sizes: Body<SizesPacket>;
  role: number;
  disk: number;
  conn: number;
  userIsp: boolean;
}

/** The flat view of one volume: the connection's values and that volume's. */
export type PeerParams = PeerConnectionParams & PeerVolumeParams;

export interface HandshakeResult {
  /** The established link; register `onPacket` to start receiving (packets are held until then). */
  session: PeerSession;
  /** The peer's connection-wide values. */
  connection: PeerConnectionParams;
  /** The peer's values of every exchanged volume (exactly `local.volumes`), by vnr, ascending. */
  volumes: ReadonlyMap<number, PeerVolumeParams>;
  /** Exactly what we sent. */
  local: LocalParams;
  /**
   * DRBD's RESOLVE_CONFLICTS flag: true on exactly one of the two nodes (the
   * one that accepted the kept TCP connection); that node loses tie-breaks.
   */
  resolveConflicts: boolean;
  /** Wire protocol version both sides agreed on. */
  agreedVersion: number;
}

/** The peer's values for volume `vnr` (which must have been exchanged), flat. */
export function peerParams(result: HandshakeResult, vnr: number): PeerParams {
  const volume = result.volumes.get(vnr);
  assert(volume !== undefined, `volume ${vnr} was exchanged at connect`);
  return { ...result.connection, ...volume };
}

/** The peer's settings cannot work with ours: DRBD drops to StandAlone. */
export class IncompatibleSettingsError extends Error {
  override name = 'IncompatibleSettingsError';
}

/** A step of the exchange did not finish in time or the link died meanwhile. */
export class HandshakeFailedError extends Error {
  override name = 'HandshakeFailedError';
}

/** How the peer's after-sb-0pri reads from our side: its discard-local is our discard-remote. */
function mirrorAfterSb0(value: AfterSb0): AfterSb0 {
  if (value === 'discard-local') return 'discard-remote';
  if (value === 'discard-remote') return 'discard-local';
  return value;
}

/** DRBD's connect-time compatibility checks; returns the kernel's message or null. */
export function checkCompatibility(local: Body<ProtocolPacket>, peer: Body<ProtocolPacket>): string | null {
  if (local.protocol !== peer.protocol) return 'incompatible communication protocols';
  if (local.afterSb0pri !== mirrorAfterSb0(peer.afterSb0pri)) return 'incompatible after-sb-0pri settings';
  if (local.afterSb1pri !== peer.afterSb1pri) return 'incompatible after-sb-1pri settings';
  if (local.afterSb2pri !== peer.afterSb2pri) return 'incompatible after-sb-2pri settings';
  if (local.allowTwoPrimaries !== peer.allowTwoPrimaries) return 'incompatible setting of the two-primaries options';
  if (local.discardMyData && peer.discardMyData) return 'incompatible discard-my-data settings';
  // receive_protocol compares the names as written (strcmp), '' (none) included.
  if (local.integrityAlg !== peer.integrityAlg) return 'incompatible data-integrity-alg settings';
  return null;
}

/**
 * receive_SyncParam in WFReportParams: both nodes must name the same
 * csums-alg (compared as written, as DRBD compares the strings).
 */
export function checkSyncParamCompatibility(local: Body<SyncParamPacket>, peer: Body<SyncParamPacket>): string | null {
  if (local.csumsAlg !== peer.csumsAlg) return `Different csums-alg settings. me="${local.csumsAlg}" peer="${peer.csumsAlg}"`;
  return null;
}

/** Each volume's packets, in order (after the connection's Protocol). */
const VOLUME_ORDER = [PacketType.SyncParam, PacketType.Uuids, PacketType.Sizes, PacketType.State] as const;
/** The peer's Uuids is left out when it has no disk. */
const OPTIONAL_TYPES: ReadonlySet<number> = new Set([PacketType.Uuids]);
const NO_UUIDS: GenerationUuids = { current: 0n, bitmap: 0n, historyStart: 0n, historyEnd: 0n };
const TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(PacketType).map(([k, v]) => [v, k]));

function typeName(type: number): string {
  return TYPE_NAMES[type] ?? String(type);
}

/** One volume's packets from the peer so far; `next` indexes VOLUME_ORDER (its length once State is in). */
interface VolumeProgress {
  next: number;
  syncParam?: SyncParamPacket;
  uuids?: UuidsPacket;
  sizes?: SizesPacket;
  state?: StatePacket;
}

/**
 * The packet volume `v` expects when `type` arrives: an optional packet
 * other than `type` is skipped (left out by the peer); undefined after State.
 */
function expectedFor(v: VolumeProgress, type: number): number | undefined {
  while (VOLUME_ORDER[v.next] !== undefined && OPTIONAL_TYPES.has(VOLUME_ORDER[v.next]!) && type !== VOLUME_ORDER[v.next]) v.next++;
  return VOLUME_ORDER[v.next];
}

/** The invariants of what the caller hands in (a violation is a bug of the caller). */
function assertLocalParams(params: LocalParams): void {
  const { volumes } = params;
  assert(volumes.length >= 1, 'LocalParams lists at least one volume');
  assert(volumes.length <= EXCHANGED_VOLUMES_MAX, `LocalParams lists at most ${EXCHANGED_VOLUMES_MAX} volumes`);
  volumes.forEach((v, i) => {
    assert(Number.isInteger(v.volume) && v.volume >= 0, 'LocalParams volume numbers are non-negative integers');
    assert(i === 0 || volumes[i - 1]!.volume < v.volume, 'LocalParams volumes are distinct and ascending');
  });
}

function peerVolume(v: VolumeProgress): PeerVolumeParams {
  const sp = v.syncParam!;
  const u = v.uuids;
  const s = v.sizes!;
  const st = v.state!;
  return {
    syncParam: {
      resyncRateKiBps: sp.resyncRateKiBps, cPlanAheadDs: sp.cPlanAheadDs, cDelayTargetDs: sp.cDelayTargetDs,
      cFillTargetSectors: sp.cFillTargetSectors, cMaxRateKiBps: sp.cMaxRateKiBps, verifyAlg: sp.verifyAlg, csumsAlg: sp.csumsAlg,
    },
    uuids: u?.uuids ?? NO_UUIDS,
    uuidsKnown: u !== undefined,
    bitsSet: u?.bitsSet ?? 0,
    uuidFlags: u?.uuidFlags ?? 0,
    sizes: { diskSizeBytes: s.diskSizeBytes, userSizeBytes: s.userSizeBytes, currentSizeBytes: s.currentSizeBytes, maxRequestBytes: s.maxRequestBytes, ddsFlags: s.ddsFlags },
    role: st.role,
    disk: st.disk,
    conn: st.conn,
    userIsp: st.userIsp,
  };
}

export interface ExchangeOptions {
  /** Limit for the whole exchange, in ms. */
  timeoutMs: number;
  resolveConflicts: boolean;
  agreedVersion: number;
  logger: Logger;
}

/**
 * Send our parameters, receive the peer's, check compatibility. Resolves with
 * the result (the session's packet handler is detached so later packets wait
 * for the caller's handler). Rejects with IncompatibleSettingsError (caller
 * should go StandAlone) or HandshakeFailedError (caller should retry); the
 * session is left open either way — the caller closes it. LocalParams that
 * break its invariants reject with the InvariantError.
 */
export function exchangeParams(
  session: PeerSession,
  getLocalParams: () => LocalParams | Promise<LocalParams>,
  opts: ExchangeOptions,
): Promise<HandshakeResult> {
  return new Promise<HandshakeResult>((resolve, reject) => {
    let local: LocalParams | null = null;
    let protocol: ProtocolPacket | null = null;
    /** By vnr, for the local volumes; set with `local`. */
    const progress = new Map<number, VolumeProgress>();
    /** Packets that arrived before our parameters were known (they say which volumes are exchanged). */
    const early: Packet[] = [];
    let settled = false;

    const timer = setTimeout(() => finish(new HandshakeFailedError('timed out waiting for the peer\'s parameters')), opts.timeoutMs);
    timer.unref();

    const finish = (error: Error | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.detachPacketHandler();
      if (error !== null) {
        reject(error);
        return;
      }
      const p = protocol!;
      resolve({
        session,
        local: local!,
        resolveConflicts: opts.resolveConflicts,
        agreedVersion: opts.agreedVersion,
        connection: {
          protocol: p.protocol,
          afterSb0pri: p.afterSb0pri,
          afterSb1pri: p.afterSb1pri,
          afterSb2pri: p.afterSb2pri,
          allowTwoPrimaries: p.allowTwoPrimaries,
          discardMyData: p.discardMyData,
          nodeName: p.nodeName,
          integrityAlg: p.integrityAlg,
        },
        volumes: new Map([...progress].map(([vnr, v]) => [vnr, peerVolume(v)])),
      });
    };

    const protocolError = (message: string): void => {
      opts.logger.error(message);
      session.close('ProtocolError');
      finish(new HandshakeFailedError(message));
    };

    const maybeDone = (): void => {
      if (settled || local === null || protocol === null) return;
      for (const v of progress.values()) if (v.state === undefined) return;
      const peer = protocol.nodeName;
      const connectionMessage = checkCompatibility(local.protocol, protocol);
      if (connectionMessage !== null) {
        opts.logger.error({ peer }, connectionMessage);
        finish(new IncompatibleSettingsError(connectionMessage));
        return;
      }
      for (const mine of local.volumes) {
        const message = checkSyncParamCompatibility(mine.syncParam, progress.get(mine.volume)!.syncParam!);
        if (message !== null) {
          opts.logger.error({ peer, volume: mine.volume }, message);
          finish(new IncompatibleSettingsError(message));
          return;
        }
      }
      finish(null);
    };

    /** One packet of the peer's, with our parameters known. */
    const take = (packet: Packet, mine: LocalParams): void => {
      if (protocol === null) {
        if (packet.type !== PacketType.Protocol) return protocolError(`expected Protocol packet, received: ${typeName(packet.type)}`);
        protocol = packet;
        return;
      }
      const several = mine.volumes.length > 1;
      if (!('volume' in packet)) {
        // Not a volume's packet: with one volume, what that volume expects (as for any wrong packet of it).
        if (several) return protocolError(`expected a per-volume packet, received: ${typeName(packet.type)}`);
        const expected = expectedFor(progress.get(mine.volumes[0]!.volume)!, packet.type);
        return protocolError(`expected ${expected === undefined ? 'nothing' : typeName(expected)} packet, received: ${typeName(packet.type)}`);
      }
      const v = progress.get(packet.volume);
      if (v === undefined) {
        const exchanged = mine.volumes.map((x) => x.volume);
        const what = exchanged.length === 1 ? `volume ${exchanged[0]}` : `volumes ${exchanged.join(', ')}`;
        return protocolError(`${typeName(packet.type)} packet for volume ${packet.volume} during the exchange of ${what}`);
      }
      const expected = expectedFor(v, packet.type);
      if (expected === undefined || packet.type !== expected) {
        const forVolume = several ? ` for volume ${packet.volume}` : '';
        return protocolError(`expected ${expected === undefined ? 'nothing' : typeName(expected)} packet${forVolume}, received: ${typeName(packet.type)}`);
      }
      v.next++;
      if (packet.type === PacketType.SyncParam) v.syncParam = packet;
      else if (packet.type === PacketType.Uuids) v.uuids = packet;
      else if (packet.type === PacketType.Sizes) v.sizes = packet;
      else if (packet.type === PacketType.State) v.state = packet;
    };

    session.onClose((reason) => finish(new HandshakeFailedError(`link lost during handshake (${reason})`)));
    session.onPacket((packet) => {
      if (settled) return;
      if (local === null) {
        early.push(packet);
        return;
      }
      take(packet, local);
      maybeDone();
    });

    Promise.resolve()
      .then(getLocalParams)
      .then((params) => {
        if (settled) return;
        assertLocalParams(params);
        local = params;
        for (const v of params.volumes) progress.set(v.volume, { next: 0 });
        session.send({ type: PacketType.Protocol, ...params.protocol });
        for (const { volume, syncParam, uuids, sizes, state } of params.volumes) {
          session.send({ type: PacketType.SyncParam, volume, ...syncParam });
          if (uuids) session.send({ type: PacketType.Uuids, volume, ...uuids });
          session.send({ type: PacketType.Sizes, volume, ...sizes });
          session.send({ type: PacketType.State, volume, ...state });
        }
        for (const packet of early.splice(0)) {
          if (settled) return;
          take(packet, params);
        }
        maybeDone();
      })
      .catch((error: unknown) => finish(error instanceof InvariantError ? error : new HandshakeFailedError(`local parameters unavailable: ${String(error)}`)));
  });
}
