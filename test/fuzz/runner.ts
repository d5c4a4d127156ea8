/**
 * test/fuzz/runner — runs one fuzz property from a seed with fast-check,
 * bounded by a run count and/or a time limit, and reports how many inputs it
 * tried. A failure throws fast-check's report (seed, path, the shrunk
 * counterexample) so `npm run fuzz -- --seed S` replays it. Also the per-input
 * hang guard for synchronous decoders. Knows nothing of what a target tests.
 */
import fc from 'fast-check';

/** How many inputs, or how long, one property may take. */
export interface FuzzBudget {
  readonly seed: number;
  /** Inputs to try (default: unbounded, then timeLimitMs must be set). */
  readonly numRuns?: number;
  /** Stop (successfully) after this long. */
  readonly timeLimitMs?: number;
}

export interface PropertyResult {
  readonly name: string;
  readonly runs: number;
}

/**
 * One input of a synchronous decoder may take at most this long; longer is
 * reported as a hang. Inputs are at most a few KiB and decode in well under a
 * millisecond, so this only fires on a loop that does not end.
 */
export const SYNC_INPUT_HANG_MS = 5_000;
/** One input of a socket target (connect, send, wait for the hang-up) may take at most this long. */
export const ASYNC_INPUT_HANG_MS = 15_000;
/** Runs when only a time limit is given. */
const UNBOUNDED_RUNS = 1_000_000_000;

/** Calls `decode` and fails when one input took longer than SYNC_INPUT_HANG_MS. */
export function withinHangBound<T>(what: string, decode: () => T): T {
  const startMs = performance.now();
  try {
    return decode();
  } finally {
    const tookMs = performance.now() - startMs;
    if (tookMs > SYNC_INPUT_HANG_MS) throw new Error(`${what}: one input took ${Math.round(tookMs)} ms (hang bound ${SYNC_INPUT_HANG_MS} ms)`);
  }
}

function errorOf(details: { errorInstance: unknown }): string {
  const error = details.errorInstance;
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

function parameters(budget: FuzzBudget): fc.Parameters<unknown> {
  if (budget.numRuns === undefined && budget.timeLimitMs === undefined) throw new Error('a fuzz budget needs numRuns or timeLimitMs');
  return {
    seed: budget.seed,
    numRuns: budget.numRuns ?? UNBOUNDED_RUNS,
    endOnFailure: false,
    plugins: budget.timeLimitMs === undefined ? [] : [fc.interruptAfterTimeLimit(budget.timeLimitMs)],
  };
}

/** Checks a synchronous property; throws fast-check's report on a counterexample. */
export function runProperty<T>(name: string, arbitrary: fc.Arbitrary<T>, predicate: (input: T) => void, budget: FuzzBudget): PropertyResult {
  const details = fc.check(fc.property(arbitrary, (input) => predicate(input)), parameters(budget) as fc.Parameters<[T]>);
  if (details.failed) throw new Error(`fuzz property '${name}' failed (seed ${budget.seed}): ${errorOf(details)}\n${fc.defaultReportMessage(details)}`);
  return { name, runs: details.numRuns };
}

/** Inputs per fast-check call when an asynchronous property runs against a clock. */
const ASYNC_BATCH_RUNS = 25;

/**
 * Checks an asynchronous property (each input bounded by ASYNC_INPUT_HANG_MS).
 * Against a time limit it runs batches of ASYNC_BATCH_RUNS inputs, batch k
 * from seed + k, until the time is up: fast-check's own time limit abandons
 * the input in progress, which would leave its sockets to a later input.
 */
export async function runAsyncProperty<T>(
  name: string,
  arbitrary: fc.Arbitrary<T>,
  predicate: (input: T) => Promise<void>,
  budget: FuzzBudget,
): Promise<PropertyResult> {
  const property = fc.asyncProperty(arbitrary, (input) => predicate(input));
  const check = async (seed: number, numRuns: number): Promise<number> => {
    const details = await fc.check(property, { seed, numRuns, endOnFailure: false, timeout: ASYNC_INPUT_HANG_MS });
    if (details.failed) throw new Error(`fuzz property '${name}' failed (seed ${seed}): ${errorOf(details)}\n${await fc.asyncDefaultReportMessage(details)}`);
    return details.numRuns;
  };
  if (budget.timeLimitMs === undefined) {
    if (budget.numRuns === undefined) throw new Error('a fuzz budget needs numRuns or timeLimitMs');
    return { name, runs: await check(budget.seed, budget.numRuns) };
  }
  const deadlineMs = performance.now() + budget.timeLimitMs;
  let runs = 0;
  for (let batch = 0; performance.now() < deadlineMs && runs < (budget.numRuns ?? UNBOUNDED_RUNS); batch++) {
    runs += await check((budget.seed + batch) | 0, ASYNC_BATCH_RUNS);
  }
  return { name, runs };
}

/** Splits a budget's time (not its run count) evenly over `parts` properties. */
export function share(budget: FuzzBudget, parts: number): FuzzBudget {
  return budget.timeLimitMs === undefined ? budget : { ...budget, timeLimitMs: Math.max(1, Math.floor(budget.timeLimitMs / parts)) };
}
