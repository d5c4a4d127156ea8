/**
 * disk/fault/plan — what the fault layer (disk/fault/fault-disk) does to the
 * requests it passes on: a list of rules, each naming the operation, an
 * optional byte range, how many matching requests pass first and how many it
 * hits, and the effect (fail with EIO, or stall). Plus `powerCut`: whether
 * writes since the last successful flush are kept apart so a simulated
 * power cut can drop them. A plan is plain JSON (a file named by
 * $UDRBD_FAULT_PLAN, or the `fault.plan` control request); parsePlan
 * validates it and says what is wrong, so a typo never silently injects
 * nothing. Knows nothing of DRBD.
 */

export type FaultOperation = 'read' | 'write' | 'flush' | 'any';
export type FaultEffect = 'eio' | 'stall';

export interface FaultRule {
  readonly op: FaultOperation;
  /** First byte of the range the rule hits (reads and writes); absent = the whole disk. Flushes have no range. */
  readonly offsetBytes?: number;
  /** Length of the range; absent with offsetBytes = to the end of the disk. */
  readonly lengthBytes?: number;
  /** Matching requests that pass before the rule starts hitting (0 = the first one is hit). */
  readonly afterOps?: number;
  /** How many matching requests the rule hits, then it is spent; absent = every one from then on. */
  readonly count?: number;
  readonly effect: FaultEffect;
  /** For `stall`: how long a hit request waits before it goes on; absent = until the plan changes. */
  readonly stallMs?: number;
}

export interface FaultPlan {
  readonly rules: readonly FaultRule[];
  /** Keep writes since the last flush apart (undo log) so powerCut() can drop them (LazyFS-like). */
  readonly powerCut?: boolean;
}

/** Rules per plan: a plan is written by a test, not generated. */
export const FAULT_RULES_MAX = 64;
/** Longest finite stall, ms (one hour): a longer one is a mistake; omit stallMs to stall until the plan changes. */
export const FAULT_STALL_MS_MAX = 3_600_000;

export const EMPTY_PLAN: FaultPlan = Object.freeze({ rules: Object.freeze([]) });

const OPERATIONS: readonly FaultOperation[] = ['read', 'write', 'flush', 'any'];
const EFFECTS: readonly FaultEffect[] = ['eio', 'stall'];
const RULE_KEYS = new Set(['op', 'offsetBytes', 'lengthBytes', 'afterOps', 'count', 'effect', 'stallMs']);

function wholeNumber(value: unknown, where: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new Error(`fault plan: ${where} must be a whole number from 0 to ${max}, not ${JSON.stringify(value)}`);
  }
  return value;
}

/** Validates a parsed JSON value as a plan; throws an Error naming the bad field. */
export function parsePlan(value: unknown): FaultPlan {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('fault plan: must be an object { "rules": [...], "powerCut": bool }');
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (key !== 'rules' && key !== 'powerCut') throw new Error(`fault plan: unknown field '${key}' (known: rules, powerCut)`);
  }
  const rulesValue = record.rules ?? [];
  if (!Array.isArray(rulesValue)) throw new Error('fault plan: rules must be an array');
  if (rulesValue.length > FAULT_RULES_MAX) throw new Error(`fault plan: at most ${FAULT_RULES_MAX} rules, not ${rulesValue.length}`);
  const powerCut = record.powerCut;
  if (powerCut !== undefined && typeof powerCut !== 'boolean') throw new Error('fault plan: powerCut must be true or false');
  const rules = rulesValue.map((raw: unknown, index): FaultRule => {
    const where = `rules[${index}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`fault plan: ${where} must be an object`);
    const r = raw as Record<string, unknown>;
    for (const key of Object.keys(r)) if (!RULE_KEYS.has(key)) throw new Error(`fault plan: ${where} has unknown field '${key}'`);
    if (!OPERATIONS.includes(r.op as FaultOperation)) throw new Error(`fault plan: ${where}.op must be one of ${OPERATIONS.join(', ')}`);
    if (!EFFECTS.includes(r.effect as FaultEffect)) throw new Error(`fault plan: ${where}.effect must be one of ${EFFECTS.join(', ')}`);
    const offsetBytes = wholeNumber(r.offsetBytes, `${where}.offsetBytes`);
    const lengthBytes = wholeNumber(r.lengthBytes, `${where}.lengthBytes`);
    if (lengthBytes !== undefined && offsetBytes === undefined) throw new Error(`fault plan: ${where}.lengthBytes needs offsetBytes`);
    const afterOps = wholeNumber(r.afterOps, `${where}.afterOps`);
    const count = wholeNumber(r.count, `${where}.count`);
    const stallMs = wholeNumber(r.stallMs, `${where}.stallMs`, FAULT_STALL_MS_MAX);
    if (stallMs !== undefined && r.effect !== 'stall') throw new Error(`fault plan: ${where}.stallMs only goes with effect 'stall'`);
    return {
      op: r.op as FaultOperation,
      effect: r.effect as FaultEffect,
      ...(offsetBytes !== undefined ? { offsetBytes } : {}),
      ...(lengthBytes !== undefined ? { lengthBytes } : {}),
      ...(afterOps !== undefined ? { afterOps } : {}),
      ...(count !== undefined ? { count } : {}),
      ...(stallMs !== undefined ? { stallMs } : {}),
    };
  });
  return { rules, ...(powerCut !== undefined ? { powerCut } : {}) };
}

/** Whether `rule` concerns a request of `op` over [offsetBytes, +lengthBytes) (ignoring its counters). */
export function ruleMatches(rule: FaultRule, op: Exclude<FaultOperation, 'any'>, offsetBytes: number, lengthBytes: number): boolean {
  if (rule.op !== 'any' && rule.op !== op) return false;
  if (rule.offsetBytes === undefined || op === 'flush') return true;
  const start = rule.offsetBytes;
  const end = rule.lengthBytes === undefined ? Number.POSITIVE_INFINITY : start + rule.lengthBytes;
  return offsetBytes < end && offsetBytes + lengthBytes > start;
}
