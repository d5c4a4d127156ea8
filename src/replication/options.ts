/**
 * replication/options — the net/disk options the data path obeys (protocol,
 * max-buffers, max-epoch-size, resync rate and controller settings, verify-alg, csums-alg, disk-flushes) as plain numbers with
 * units in their names, plus the named limits of this folder. Knows nothing
 * of the config grammar: daemon/ maps parsed config onto these fields.
 */
import { assert } from '../util/assert.js';
import type { RsControllerSettings } from './rs-controller.js';

export type ReplicationProtocol = 'A' | 'B' | 'C';

/** DRBD 8.4 `on-congestion`: what the Primary does when the link cannot keep up. */
export type OnCongestion = 'block' | 'pull-ahead' | 'disconnect';

export interface ReplicationOptions {
  /** When a mirrored write completes: A on send, B on the peer's receipt, C on its disk write (drbd_req.c). */
  readonly protocol: ReplicationProtocol;
  /** Bound on application requests in flight and on the transfer log (DRBD max-buffers). */
  readonly maxBuffers: number;
  /** Writes per epoch before a Barrier is sent (DRBD max-epoch-size). */
  readonly maxEpochSize: number;
  /** Resync rate limit on the SyncTarget, KiB/s; 0 means unlimited (as fast as the disks allow). */
  readonly resyncRateKiBps: number;
  /**
   * The dynamic resync controller and c-min-rate throttle (disk { c-* }).
   * planAheadDs 0 = fixed rate (resyncRateKiBps); minRateKiBps 0 = never
   * step back for application I/O.
   */
  readonly resyncController: RsControllerSettings;
  /** Longest contiguous run one resync or verify request covers, bytes (multiple of 4 KiB). */
  readonly resyncRunBytesMax: number;
  /** Resync (and verify) requests in flight at once. */
  readonly resyncInflightMax: number;
  /** Digest for online verify: a node:crypto hash name (sha1, md5, sha256, ...) or crc32c / crc32. */
  readonly verifyAlg: string;
  /**
   * csums-alg: checksum-based resync (the SyncTarget sends a digest of each
   * run, the source sends data only when its digest differs); '' = off.
   */
  readonly csumsAlg: string;
  /**
   * DRBD's request timer: a mirrored write (or a flush's Barrier) the peer
   * has not answered after this long expels the peer (cstate Timeout).
   * DRBD 8.4 uses ko-count × timeout; 0 disables (ko-count 0).
   */
  readonly requestTimeoutMs: number;
  /**
   * `disk-flushes`: flush the backing disk at the end of each epoch (a
   * Barrier received) and after a resync. `no` drains instead — the writes of
   * the epoch are complete before it is acknowledged, but may sit in a
   * volatile disk cache: safe only with a battery-backed cache. Flushes an
   * application asks for (DP_FLUSH writes, a Primary's local flush) still run.
   */
  readonly diskFlushes: boolean;
  /**
   * `on-congestion`: `block` waits for the send buffer (the default);
   * `pull-ahead` goes Ahead — writes complete locally and are only marked out
   * of sync, locally and on the peer (P_OUT_OF_SYNC), until the link drained
   * and a resync catches up; `disconnect` drops the connection.
   */
  readonly onCongestion: OnCongestion;
  /** `congestion-fill`: bytes sent and not yet acknowledged that count as congestion; 0 = off. */
  readonly congestionFillBytes: number;
  /** `congestion-extents`: activity-log extents of unacknowledged writes that count as congestion. */
  readonly congestionExtents: number;
}

/** DRBD 8.4 defaults (drbd_limits.h); resync as fast as possible unless told otherwise. */
export const defaultReplicationOptions: ReplicationOptions = {
  protocol: 'C',
  maxBuffers: 2048,
  maxEpochSize: 2048,
  resyncRateKiBps: 0,
  resyncController: { planAheadDs: 0, fillTargetSectors: 100, delayTargetDs: 10, maxRateKiBps: 102400, minRateKiBps: 0, resyncRateKiBps: 250 },
  resyncRunBytesMax: 1024 * 1024,
  resyncInflightMax: 16,
  verifyAlg: 'sha1',
  csumsAlg: '',
  requestTimeoutMs: 7 * 6000, // ko-count 7 × timeout 60 (tenths of a second)
  diskFlushes: true,
  onCongestion: 'block',
  congestionFillBytes: 0,
  congestionExtents: 1237, // DRBD_CONG_EXTENTS_DEF = DRBD_AL_EXTENTS_DEF
};

/** Sectors of 512 bytes: DRBD logs ranges in sectors. */
export const SECTOR_BYTES = 512;

/**
 * Resync rate ceiling for DRBD 8.4 disk options: with c-plan-ahead 0 the
 * fixed `resync-rate`; otherwise the dynamic controller (replication/rs-controller)
 * runs at up to `c-max-rate`. KiB/s.
 */
export function resyncRateLimitKiBps(disk: { resyncRateKiBps: number; cPlanAheadTenthsS: number; cMaxRateKiBps: number }): number {
  return disk.cPlanAheadTenthsS === 0 ? disk.resyncRateKiBps : disk.cMaxRateKiBps;
}

/** The controller settings of DRBD 8.4 disk options (resolved config units). */
export function resyncControllerSettings(disk: {
  resyncRateKiBps: number;
  cPlanAheadDs: number;
  cFillTargetSectors: number;
  cDelayTargetDs: number;
  cMaxRateKiBps: number;
  cMinRateKiBps: number;
}): RsControllerSettings {
  return {
    planAheadDs: disk.cPlanAheadDs,
    fillTargetSectors: disk.cFillTargetSectors,
    delayTargetDs: disk.cDelayTargetDs,
    maxRateKiBps: disk.cMaxRateKiBps,
    minRateKiBps: disk.cMinRateKiBps,
    resyncRateKiBps: disk.resyncRateKiBps,
  };
}

/** DRBD 8.4's effective request timeout: ko-count × timeout; ko-count 0 turns it off. */
export function requestTimeoutMs(net: { koCount: number; timeoutMs: number }): number {
  return net.koCount === 0 ? 0 : net.koCount * net.timeoutMs;
}

export function withDefaults(partial: Partial<ReplicationOptions> = {}): ReplicationOptions {
  const options = { ...defaultReplicationOptions, ...partial };
  assert(['A', 'B', 'C'].includes(options.protocol), `protocol ${options.protocol} is A, B or C`);
  assert(Number.isSafeInteger(options.maxBuffers) && options.maxBuffers >= 1, `maxBuffers ${options.maxBuffers} ≥ 1`);
  assert(Number.isSafeInteger(options.maxEpochSize) && options.maxEpochSize >= 1, `maxEpochSize ${options.maxEpochSize} ≥ 1`);
  assert(options.resyncRateKiBps >= 0, `resyncRateKiBps ${options.resyncRateKiBps} ≥ 0`);
  const c = options.resyncController;
  assert(Number.isSafeInteger(c.planAheadDs) && c.planAheadDs >= 0, `c-plan-ahead ${c.planAheadDs} is an integer ≥ 0`);
  for (const [name, value] of [['c-fill-target', c.fillTargetSectors], ['c-delay-target', c.delayTargetDs], ['c-max-rate', c.maxRateKiBps], ['c-min-rate', c.minRateKiBps], ['resync-rate', c.resyncRateKiBps]] as const) {
    assert(Number.isSafeInteger(value) && value >= 0, `${name} ${value} is an integer ≥ 0`);
  }
  assert(
    options.resyncRunBytesMax >= 4096 && options.resyncRunBytesMax % 4096 === 0,
    `resyncRunBytesMax ${options.resyncRunBytesMax} is a positive multiple of 4096`,
  );
  assert(Number.isSafeInteger(options.resyncInflightMax) && options.resyncInflightMax >= 1, `resyncInflightMax ≥ 1`);
  assert(Number.isSafeInteger(options.requestTimeoutMs) && options.requestTimeoutMs >= 0, `requestTimeoutMs ${options.requestTimeoutMs} ≥ 0`);
  assert(['block', 'pull-ahead', 'disconnect'].includes(options.onCongestion), `onCongestion ${options.onCongestion} is block, pull-ahead or disconnect`);
  assert(Number.isSafeInteger(options.congestionFillBytes) && options.congestionFillBytes >= 0, `congestionFillBytes ${options.congestionFillBytes} ≥ 0`);
  assert(Number.isSafeInteger(options.congestionExtents) && options.congestionExtents >= 1, `congestionExtents ${options.congestionExtents} ≥ 1`);
  return options;
}
