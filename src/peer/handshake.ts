/**
 * peer/handshake — the parameter exchange right after a link is chosen and
 * authenticated (DRBD's WFReportParams): both sides send Protocol, SyncParam,
 * Uuids, Sizes and State, in that order (a node without a disk sends no Uuids:
 * drbd_main.c drbd_send_uuids), and check what DRBD checks at connect
 * time (protocol, after-sb-*pri, allow-two-primaries, discard-my-data on both,
 * data-integrity-alg: "incompatible <x> settings"; csums-alg: "Different
 * csums-alg settings"); a
 * mismatch drops the link. It
 * reports the peer's values; deciding who syncs from whom is resource/'s job.
 * SyncParam, Uuids, Sizes and State are per volume (their frame header
 * carries `LocalParams.volume`); the process runs one volume, so the exchange
 * is Protocol once and the four of that volume (DRBD's conn_connect:
 * P_PROTOCOL, then drbd_connected() per volume).
 */
import type { Logger } from '../util/log.js';
import type { GenerationUuids } from '../meta/types.js';
import type { AfterSb0, AfterSb1, AfterSb2, Packet, ProtocolPacket, SizesPacket, StatePacket, SyncParamPacket, UuidsPacket } from './packets.js';
import { PacketType } from './packets.js';
import type { PeerSession } from './session.js';

/** A packet's fields without its type and (per-volume packets) the volume its header carries. */
type Body<T> = Omit<T, 'type' | 'volume'>;

/** What this node tells its peer at connect; produced fresh by the caller for every attempt. */
export interface LocalParams {
  /** The volume SyncParam, Uuids, Sizes and State are about (the header's volume; the peer's must match). */
  volume: number;
  protocol: Body<ProtocolPacket>;
  /** Resync parameters (DRBD sends P_SYNC_PARAM right after P_PROTOCOL at connect). */
  syncParam: Body<SyncParamPacket>;
  /** Absent without a local disk (drbd_send_uuids sends nothing then). */
  uuids: Body<UuidsPacket> | undefined;
  sizes: Body<SizesPacket>;
  state: Body<StatePacket>;
}

/** What the peer told us at connect. */
export interface PeerParams {
  protocol: 'A' | 'B' | 'C';
  afterSb0pri: AfterSb0;
  afterSb1pri: AfterSb1;
  afterSb2pri: AfterSb2;
  allowTwoPrimaries: boolean;
  discardMyData: boolean;
  nodeName: string;
  /** The peer's data-integrity-alg ('' = none); equal to ours once the exchange succeeded. */
  integrityAlg: string;
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

export interface HandshakeResult {
  /** The established link; register `onPacket` to start receiving (packets are held until then). */
  session: PeerSession;
  peer: PeerParams;
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

const EXPECTED_ORDER = [PacketType.Protocol, PacketType.SyncParam, PacketType.Uuids, PacketType.Sizes, PacketType.State] as const;
/** The peer's Uuids is left out when it has no disk. */
const OPTIONAL_TYPES: ReadonlySet<number> = new Set([PacketType.Uuids]);
const NO_UUIDS: GenerationUuids = { current: 0n, bitmap: 0n, historyStart: 0n, historyEnd: 0n };
const TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(PacketType).map(([k, v]) => [v, k]));

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
 * session is left open either way — the caller closes it.
 */
export function exchangeParams(
  session: PeerSession,
  getLocalParams: () => LocalParams | Promise<LocalParams>,
  opts: ExchangeOptions,
): Promise<HandshakeResult> {
  return new Promise<HandshakeResult>((resolve, reject) => {
    // Indexed as EXPECTED_ORDER; an optional packet the peer left out stays undefined.
    const received: Array<Packet | undefined> = [];
    let local: LocalParams | null = null;
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
      const [p, sp, u, s, st] = received as [ProtocolPacket, SyncParamPacket, UuidsPacket | undefined, SizesPacket, StatePacket];
      const syncParam: Body<SyncParamPacket> = {
        resyncRateKiBps: sp.resyncRateKiBps, cPlanAheadDs: sp.cPlanAheadDs, cDelayTargetDs: sp.cDelayTargetDs,
        cFillTargetSectors: sp.cFillTargetSectors, cMaxRateKiBps: sp.cMaxRateKiBps, verifyAlg: sp.verifyAlg, csumsAlg: sp.csumsAlg,
      };
      resolve({
        session,
        local: local!,
        resolveConflicts: opts.resolveConflicts,
        agreedVersion: opts.agreedVersion,
        peer: {
          protocol: p.protocol,
          afterSb0pri: p.afterSb0pri,
          afterSb1pri: p.afterSb1pri,
          afterSb2pri: p.afterSb2pri,
          allowTwoPrimaries: p.allowTwoPrimaries,
          discardMyData: p.discardMyData,
          nodeName: p.nodeName,
          integrityAlg: p.integrityAlg,
          syncParam,
          uuids: u?.uuids ?? NO_UUIDS,
          uuidsKnown: u !== undefined,
          bitsSet: u?.bitsSet ?? 0,
          uuidFlags: u?.uuidFlags ?? 0,
          sizes: { diskSizeBytes: s.diskSizeBytes, userSizeBytes: s.userSizeBytes, currentSizeBytes: s.currentSizeBytes, maxRequestBytes: s.maxRequestBytes, ddsFlags: s.ddsFlags },
          role: st.role,
          disk: st.disk,
          conn: st.conn,
          userIsp: st.userIsp,
        },
      });
    };

    const maybeDone = (): void => {
      if (settled || local === null || received.length < EXPECTED_ORDER.length) return;
      // The decoder delivers configured volumes only; with one volume exchanged, the peer's must be that one.
      const volume = local.volume;
      const stray = received.find((p) => p !== undefined && 'volume' in p && p.volume !== volume);
      if (stray !== undefined) {
        const message = `${TYPE_NAMES[stray.type] ?? stray.type} packet for volume ${(stray as { volume: number }).volume} during the exchange of volume ${volume}`;
        opts.logger.error(message);
        session.close('ProtocolError');
        finish(new HandshakeFailedError(message));
        return;
      }
      const message = checkCompatibility(local.protocol, received[0] as ProtocolPacket)
        ?? checkSyncParamCompatibility(local.syncParam, received[1] as SyncParamPacket);
      if (message !== null) {
        opts.logger.error({ peer: (received[0] as ProtocolPacket).nodeName }, message);
        finish(new IncompatibleSettingsError(message));
        return;
      }
      finish(null);
    };

    session.onClose((reason) => finish(new HandshakeFailedError(`link lost during handshake (${reason})`)));
    session.onPacket((packet) => {
      if (settled) return;
      let expected = EXPECTED_ORDER[received.length];
      while (expected !== undefined && OPTIONAL_TYPES.has(expected) && packet.type !== expected) {
        received.push(undefined);
        expected = EXPECTED_ORDER[received.length];
      }
      if (expected === undefined || packet.type !== expected) {
        const message = `expected ${expected === undefined ? 'nothing' : TYPE_NAMES[expected]} packet, received: ${TYPE_NAMES[packet.type] ?? packet.type}`;
        opts.logger.error(message);
        session.close('ProtocolError');
        finish(new HandshakeFailedError(message));
        return;
      }
      received.push(packet);
      maybeDone();
    });

    Promise.resolve()
      .then(getLocalParams)
      .then((params) => {
        if (settled) return;
        local = params;
        const { volume } = params;
        session.send({ type: PacketType.Protocol, ...params.protocol });
        session.send({ type: PacketType.SyncParam, volume, ...params.syncParam });
        if (params.uuids) session.send({ type: PacketType.Uuids, volume, ...params.uuids });
        session.send({ type: PacketType.Sizes, volume, ...params.sizes });
        session.send({ type: PacketType.State, volume, ...params.state });
        maybeDone();
      })
      .catch((error: unknown) => finish(new HandshakeFailedError(`local parameters unavailable: ${String(error)}`)));
  });
}
