/**
 * cli/commands/wait-sync — `udrbdadm wait-sync [-t S] [--wait-after-sb] RES…`:
 * blocks until each resource is connected and no resync / online verify runs
 * (cli/wait-sync decides), polling the resource process's status. Exit 5 when
 * the timeout passes first (drbdsetup's wait-sync/wait-connect code), 0 when
 * done. The timeout is `-t`/`--wfc-timeout` seconds, else the resource's
 * `startup { wfc-timeout }` (0 = wait forever, DRBD's default). Knows nothing
 * of how the resource process syncs.
 */
import type { Command } from 'commander';
import type { GetContext } from './index.js';
import type { CliContext } from '../context.js';
import { UdrbdError, ExitCode } from '../../util/errors.js';
import { runtimePaths } from '../../control/paths.js';
import { callResource } from '../../control/client.js';
import { expandResourceNames, loadConfig, resolveResource } from '../../config/index.js';
import { resourceOfArgument } from '../volume-args.js';
import { waitSyncVerdict, type WaitSyncVerdict } from '../wait-sync.js';

/** How often the state is polled; a sync that starts and ends between polls needs no wait anyway. */
const POLL_INTERVAL_MS = 200;
/** One status request may take this long before the wait counts as failed. */
const STATUS_TIMEOUT_MS = 10_000;
/** drbdsetup's exit code for a wait-connect / wait-sync timeout. */
export const WAIT_TIMEOUT_EXIT = 5;

interface WaitOptions {
  wfcTimeout?: string;
  waitAfterSb?: boolean;
}

function timeoutSeconds(text: string | undefined, configured: number): number {
  if (text === undefined) return configured;
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds < 0) {
    throw new UdrbdError(`wait-sync: -t/--wfc-timeout takes seconds (0 = wait forever), not '${text}'`, ExitCode.usage);
  }
  return seconds;
}

async function cstateOf(ctx: CliContext, resource: string): Promise<string> {
  const reply = await callResource(runtimePaths(resource, ctx.nodeName), 'status', { json: true }, STATUS_TIMEOUT_MS);
  if (!reply.ok) throw new UdrbdError(reply.stderr || `wait-sync: status of ${resource} failed`, reply.exitCode);
  const status = JSON.parse(reply.stdout) as { cstate?: unknown };
  if (typeof status.cstate !== 'string') throw new UdrbdError(`wait-sync: the resource process of ${resource} reported no cstate`, ExitCode.fatal);
  return status.cstate;
}

async function waitSync(ctx: CliContext, resource: string, minor: number, timeoutS: number, waitAfterSb: boolean): Promise<void> {
  const deadline = timeoutS > 0 ? Date.now() + timeoutS * 1000 : Number.POSITIVE_INFINITY;
  let verdict: WaitSyncVerdict;
  let cstate: string;
  for (;;) {
    cstate = await cstateOf(ctx, resource);
    verdict = waitSyncVerdict(cstate, waitAfterSb);
    if (verdict === 'done') return;
    if (Date.now() >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, Math.min(POLL_INTERVAL_MS, Math.max(0, deadline - Date.now()))));
  }
  const what = verdict === 'waiting-for-connection' ? 'the connection' : 'the end of the resync';
  throw new UdrbdError(
    `${minor}: wait-sync timed out after ${timeoutS} s waiting for ${what} (cs:${cstate}); see 'udrbdadm status ${resource}'`,
    WAIT_TIMEOUT_EXIT,
  );
}

export function register(program: Command, getContext: GetContext): void {
  program
    .command('wait-sync')
    .description(
      'wait until the resource is connected and no resync or online verify runs (drbdsetup wait-sync); ' +
        'exit 5 on timeout',
    )
    .option('-t, --wfc-timeout <seconds>', "give up after this many seconds (0 = forever; default: the resource's startup wfc-timeout)")
    .option('--wait-after-sb', 'keep waiting in StandAlone (after a split brain) instead of returning')
    .argument('<resources...>')
    .action(async (resources: string[], opts: WaitOptions) => {
      const ctx = getContext();
      const config = loadConfig(ctx.configPath);
      const fromAll = resources.length === 1 && resources[0] === 'all';
      for (const written of expandResourceNames(config, ctx.nodeName, resources)) {
        const name = resourceOfArgument(config, ctx.nodeName, 'wait-sync', written, fromAll);
        const view = resolveResource(config, name, ctx.nodeName);
        const timeoutS = timeoutSeconds(opts.wfcTimeout, view.startup.wfcTimeoutS);
        if (ctx.dryRun) {
          ctx.out(`drbdsetup-84 wait-sync ${view.minor} --wfc-timeout=${timeoutS}${opts.waitAfterSb ? ' --wait-after-sb' : ''}\n`);
          continue;
        }
        await waitSync(ctx, name, view.minor, timeoutS, Boolean(opts.waitAfterSb));
      }
    });
}
