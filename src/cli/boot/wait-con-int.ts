/**
 * cli/boot/wait-con-int — drbdadm-84's `wait-con-int`, the wait the init
 * script runs after bringing the resources up (drbd-utils scripts/drbd): one
 * wait-connect per resource of this node, all at once. On a terminal
 * (stdin and stdout): a dot per second for up to 10 s, then DRBD's banner
 * and `To abort waiting enter 'yes' [ N]:` with the seconds counter redrawn
 * every second; typing `yes` ends every wait. Without a terminal drbdadm
 * would take over /dev/console; udrbd does not: after the same 10 s it
 * prints the banner and how to abort (kill the process), and waits for the
 * configured timeouts. Always exit 0, as drbdadm's. Knows nothing of the
 * resource processes beyond wait-connect.
 */
import type { CliContext } from '../context.js';
import { waitConnect, type WaitOutcome, type WaitRequest } from './wait-connect.js';
import { ABORT_PROMPT, counterRedraw, waitBanner } from './wfc.js';

/** drbdadm prints a dot a second for this many seconds before the banner. */
export const QUIET_WAIT_SECONDS = 10;
/** global { dialog-refresh } default: the counter is redrawn every second. */
export const DIALOG_REFRESH_MS = 1_000;
/** drbdadm reads at most 40 bytes per answer; a longer line is not "yes". */
const ANSWER_BYTES_MAX = 40;

export interface WaitConIntOptions {
  requests: WaitRequest[];
  /** Raw startup values of the first resource, as the banner shows them. */
  banner: { resource: string; degrWfcTimeout: string; wfcTimeout: string };
  interactive: boolean;
  input: NodeJS.ReadableStream & { destroy?: () => void };
}

const sleep = (ms: number): Promise<'tick'> => new Promise((resolve) => setTimeout(() => resolve('tick'), ms));

export async function waitConInt(ctx: CliContext, opts: WaitConIntOptions): Promise<number> {
  const abort = new AbortController();
  const waits = opts.requests.map((req) =>
    waitConnect(ctx, { ...req, signal: abort.signal }).catch((err: Error): WaitOutcome => {
      ctx.err(`${err.message}\n`);
      return 'aborted';
    }),
  );
  let finished = false;
  const allDone = Promise.all(waits).then(() => {
    finished = true;
    return 'done' as const;
  });
  const stopSignals = (): void => abort.abort();
  process.once('SIGINT', stopSignals);
  process.once('SIGTERM', stopSignals);
  try {
    const startMs = Date.now();
    for (let i = 0; i < QUIET_WAIT_SECONDS && !finished; i++) {
      if ((await Promise.race([allDone, sleep(1_000)])) === 'done') break;
      if (opts.interactive) ctx.out('.');
    }
    if (finished) return 0;
    ctx.out(waitBanner(opts.banner.degrWfcTimeout, opts.banner.wfcTimeout, opts.banner.resource));
    if (!opts.interactive) {
      ctx.out(` To abort waiting for DRBD connections, kill this process: kill ${process.pid}\n`);
      await allDone;
      return 0;
    }
    await interactiveWait(ctx, opts.input, startMs, allDone, abort);
    ctx.out('\n');
    return 0;
  } finally {
    process.off('SIGINT', stopSignals);
    process.off('SIGTERM', stopSignals);
  }
}

/** The prompt with its counter until every wait ended or the operator typed `yes`. */
async function interactiveWait(ctx: CliContext, input: WaitConIntOptions['input'], startMs: number, allDone: Promise<'done'>, abort: AbortController): Promise<void> {
  const answers: string[] = [];
  let wake: (() => void) | undefined;
  let pending = '';
  const onData = (chunk: Buffer | string): void => {
    pending += chunk.toString();
    // A canonical tty hands over whole lines; keep each line as one answer.
    for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
      answers.push(pending.slice(0, nl + 1).slice(0, ANSWER_BYTES_MAX - 1));
      pending = pending.slice(nl + 1);
    }
    wake?.();
  };
  input.on('data', onData);
  const answered = (): Promise<'answer'> => new Promise((resolve) => (wake = () => resolve('answer')));
  try {
    ctx.out(`${ABORT_PROMPT} `);
    for (;;) {
      ctx.out(counterRedraw(Math.floor((Date.now() - startMs) / 1000)));
      const woke = answers.length > 0 ? 'answer' : await Promise.race([allDone, sleep(DIALOG_REFRESH_MS), answered()]);
      if (woke === 'done') return;
      if (woke !== 'answer') continue;
      const answer = answers.shift()!;
      if (answer === 'yes\n') {
        abort.abort();
        await allDone;
        return;
      }
      ctx.out(ABORT_PROMPT);
    }
  } finally {
    input.off('data', onData);
    input.pause();
    input.destroy?.();
  }
}
