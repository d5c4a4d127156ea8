/**
 * config/limits — drbd_limits.h ranges and units for the options drbdadm-84
 * range-checks while parsing, and its number-with-suffix conversion (m_strtoll).
 * Pure functions; knows nothing about files or sections.
 */
import type { RangeCheck } from './lexer.js';

/** Scale a value is expressed in: '1' plain, 'k' KiB, 's' 512-byte sectors. */
export type Scale = '1' | 'k' | 's';

export interface Range {
  scale: Scale;
  min: bigint;
  max: bigint;
}

const r = (scale: Scale, min: number | bigint, max: number | bigint): Range => ({ scale, min: BigInt(min), max: BigInt(max) });

/** drbd_limits.h (drbd-utils 9.22, v84). al-extents is deliberately unchecked, as in drbdadm. */
export const RANGES: Partial<Record<RangeCheck, Range>> = {
  diskSize: r('s', 0, 2n << 40n),
  timeout: r('1', 1, 600),
  connectInt: r('1', 1, 120),
  pingInt: r('1', 1, 120),
  maxBuffers: r('1', 32, 131072),
  maxEpochSize: r('1', 1, 20000),
  sndbufSize: r('1', 0, 10 << 20),
  rcvbufSize: r('1', 0, 10 << 20),
  koCount: r('1', 0, 200),
  rate: r('k', 1, 4 << 20),
  wfcTimeout: r('1', 0, 300000),
  degrWfcTimeout: r('1', 0, 300000),
  outdatedWfcTimeout: r('1', 0, 300000),
  cPlanAhead: r('1', 0, 300),
  cDelayTarget: r('1', 1, 100),
  cFillTarget: r('s', 0, 1 << 20),
  cMaxRate: r('k', 250, 4 << 20),
  cMinRate: r('k', 0, 4 << 20),
  congFill: r('s', 0, 10 << 21),
  congExtents: r('1', 67, 0xfffe),
};

export const PORT_RANGE = r('1', 1, 0xffff);
export const MINOR_COUNT_RANGE = r('1', 1, 255);
export const DIALOG_REFRESH_RANGE = r('1', 0, 600);
export const CMD_TIMEOUT_RANGE = r('1', 0, 900);

export type NumberParse = { ok: true; value: bigint } | { ok: false; message: string };

const UNIT_SHIFT: Record<string, number> = { K: 10, k: 10, M: 20, m: 20, G: 30, g: 30, s: 9 };
const SCALE_SHIFT: Record<Scale, number> = { '1': 0, k: -10, s: -9 };
const U64_MAX = (1n << 64n) - 1n;

/**
 * drbdadm's m_strtoll: decimal digits with an optional K/M/G/s suffix, converted
 * into `scale` units (rounding up when converting to a coarser unit).
 * Failure messages are drbdadm's (it exits 20 on them).
 */
export function parseScaledNumber(text: string, scale: Scale): NumberParse {
  const m = /^\s*\+?([0-9]+)(.?)(.?)/s.exec(text);
  if (!m || m[3] !== '') return { ok: false, message: `${text} is not a valid number` };
  let value = BigInt(m[1]!);
  if (value > U64_MAX) value = U64_MAX;
  const unit = m[2]!;
  if (unit === '') return { ok: true, value };
  const unitShift = UNIT_SHIFT[unit];
  if (unitShift === undefined) return { ok: false, message: `${text} is not a valid number` };
  const shift = SCALE_SHIFT[scale] + unitShift;
  if (shift < 0) {
    const s = BigInt(-shift);
    return { ok: true, value: (value + (1n << s) - 1n) >> s };
  }
  const s = BigInt(shift);
  if (value > U64_MAX >> s) return { ok: false, message: `${text}: out of range` };
  return { ok: true, value: value << s };
}
