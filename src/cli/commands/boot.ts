/**
 * cli/commands/boot — the udrbdadm verbs for boot and the status screens:
 *   proc-drbd            the text of DRBD 8.4's /proc/drbd for this node
 *   init-status          what `/etc/init.d/drbd status` prints for it
 *   sh-status [RES|all]  drbdadm/drbdsetup 8.4's eval-able sh-status
 *   sh-nop               parse the configuration, do nothing (exit 0 if valid)
 *   sh-b-pri [RES|all]   promote where `become-primary-on` names this node
 *   wait-connect RES..   wait for the peer with the configured wfc timeouts
 *   wait-con-int         wait for every resource, DRBD's interactive dialog
 * All render from the live state of the resource processes (cli/boot/
 * node-status); output, messages and exit codes are drbd-utils 8.4's.
 */
import type { Command } from 'commander';
import type { GetContext } from './index.js';
import type { CliContext } from '../context.js';
import { UdrbdError, ExitCode } from '../../util/errors.js';
import { bindNode, expandResourceNames, loadConfig, resolveResource, validateBindings, type ResourceView } from '../../config/index.js';
import { resourceOfArgument } from '../volume-args.js';
import { runtimePaths } from '../../control/paths.js';
import { ResourceNotUpError, callResource } from '../../control/client.js';
import { renderInitStatus, renderProcDrbd } from '../render/proc-drbd.js';
import { renderShStatus } from '../render/sh-status.js';
import { collectNodeStatus } from '../boot/node-status.js';
import { mountsByMinor, readMounts } from '../boot/mounts.js';
import { timeoutRangeError, type WfcTimeouts } from '../boot/wfc.js';
import { WAIT_TIMEOUT_EXIT, waitConnect, type WaitRequest } from '../boot/wait-connect.js';
import { waitConInt } from '../boot/wait-con-int.js';

/** sh-b-pri: drbdadm tries `primary` this many times, a second apart. */
export const BECOME_PRIMARY_TRIES = 5;
export const BECOME_PRIMARY_RETRY_MS = 1_000;
/** A `primary` request waits at most this long for the peer's answer. */
const PRIMARY_TIMEOUT_MS = 60_000;

interface TimeoutOptions {
  wfcTimeout?: string;
  degrWfcTimeout?: string;
  outdatedWfcTimeout?: string;
  waitAfterSb?: boolean;
}

/** The resources a verb acts on (RES, RES/VNR or all) with their config views. */
function views(ctx: CliContext, verb: string, names: readonly string[]): ResourceView[] {
  const config = loadConfig(ctx.configPath);
  const fromAll = names.length === 1 && names[0] === 'all';
  return expandResourceNames(config, ctx.nodeName, names).map((name) =>
    resolveResource(config, resourceOfArgument(config, ctx.nodeName, verb, name, fromAll), ctx.nodeName));
}

function parseTimeout(name: 'wfc_timeout' | 'degr_wfc_timeout' | 'outdated_wfc_timeout', text: string | undefined, fallbackS: number): number {
  if (text === undefined) return fallbackS;
  const valueS = Number(text);
  const problem = timeoutRangeError(name, valueS);
  if (problem) throw new UdrbdError(problem, ExitCode.fatal);
  return valueS;
}

/** Config startup values, overridden by the options given (drbdadm appends the user's after the config's). */
function timeoutsFor(startup: WfcTimeouts, opts: TimeoutOptions): WfcTimeouts {
  return {
    wfcTimeoutS: parseTimeout('wfc_timeout', opts.wfcTimeout, startup.wfcTimeoutS),
    degrWfcTimeoutS: parseTimeout('degr_wfc_timeout', opts.degrWfcTimeout, startup.degrWfcTimeoutS),
    outdatedWfcTimeoutS: parseTimeout('outdated_wfc_timeout', opts.outdatedWfcTimeout, startup.outdatedWfcTimeoutS),
  };
}

function waitRequests(ctx: CliContext, names: readonly string[], opts: TimeoutOptions): WaitRequest[] {
  return views(ctx, 'wait-connect', names).map((view) => ({
    name: view.name,
    minor: view.minor,
    paths: runtimePaths(view.name, ctx.nodeName),
    timeouts: timeoutsFor(view.startup, opts),
    waitAfterSb: Boolean(opts.waitAfterSb),
  }));
}

/** What drbdadm -d prints: one drbdsetup call per minor, with the timeouts that are set. */
function dryRunWait(ctx: CliContext, requests: readonly WaitRequest[]): void {
  for (const r of requests) {
    const t = r.timeouts;
    const options = [
      t.wfcTimeoutS > 0 ? ` --wfc-timeout=${t.wfcTimeoutS}` : '',
      t.degrWfcTimeoutS > 0 ? ` --degr-wfc-timeout=${t.degrWfcTimeoutS}` : '',
      t.outdatedWfcTimeoutS > 0 ? ` --outdated-wfc-timeout=${t.outdatedWfcTimeoutS}` : '',
    ].join('');
    ctx.out(`drbdsetup-84 wait-connect ${r.minor}${options}\n`);
  }
}

async function becomePrimary(ctx: CliContext, names: readonly string[]): Promise<void> {
  let worstExit = 0;
  for (const view of views(ctx, 'sh-b-pri', names)) {
    let lastExit = 0;
    const hosts = view.startup.becomePrimaryOn ?? [];
    if (!hosts.includes(ctx.nodeName) && !hosts.includes('both')) continue;
    if (ctx.dryRun) {
      ctx.out(`drbdsetup-84 primary ${view.minor}\n`);
      continue;
    }
    const paths = runtimePaths(view.name, ctx.nodeName);
    for (let attempt = 1; attempt <= BECOME_PRIMARY_TRIES; attempt++) {
      try {
        const reply = await callResource(paths, 'primary', { force: false }, PRIMARY_TIMEOUT_MS);
        if (reply.stdout) ctx.out(reply.stdout);
        if (reply.stderr) ctx.err(reply.stderr);
        lastExit = reply.ok ? 0 : reply.exitCode;
      } catch (err) {
        if (!(err instanceof ResourceNotUpError)) throw err;
        ctx.err(`${err.message}\n`);
        lastExit = err.exitCode;
      }
      if (lastExit === 0) break;
      if (attempt < BECOME_PRIMARY_TRIES) await new Promise((resolve) => setTimeout(resolve, BECOME_PRIMARY_RETRY_MS));
    }
    if (lastExit !== 0) ctx.err(`Command 'drbdsetup-84 primary ${view.minor}' terminated with exit code ${lastExit}\n`);
    worstExit = Math.max(worstExit, lastExit);
  }
  if (worstExit !== 0) throw new UdrbdError('', worstExit);
}

export function register(program: Command, getContext: GetContext): void {
  program
    .command('proc-drbd')
    .description("print this node's /proc/drbd (DRBD 8.4's text) from the live state of every resource; one that is not up shows as an unconfigured minor")
    .action(async () => {
      const ctx = getContext();
      const entries = await collectNodeStatus(ctx, [], { allowNone: true });
      ctx.out(renderProcDrbd(entries.map((e) => e.status)));
    });
  program
    .command('init-status')
    .description("print what DRBD 8.4's `/etc/init.d/drbd status` prints for this node: driver line, version lines, the m:res/cs/ro/ds/p/mounted/fstype table (a mount is found by the device path or the device its link points to)")
    .action(async () => {
      const ctx = getContext();
      const entries = await collectNodeStatus(ctx, [], { allowNone: true });
      const devices = entries.flatMap((e) => e.volumes.map((v) => ({ minor: v.minor, devicePath: v.devicePath })));
      const mounts = mountsByMinor(devices, readMounts());
      ctx.out(renderInitStatus(entries.map((e) => e.status), mounts));
    });
  program
    .command('sh-status')
    .description("print drbdadm 8.4's eval-able sh-status (_conf_res_name= ... _cstate= _role= _disk= ... _sh_status_process) for RES or all")
    .argument('[resources...]', 'resource names, or all (default)')
    .action(async (resources: string[]) => {
      const ctx = getContext();
      for (const e of await collectNodeStatus(ctx, resources)) {
        ctx.out(renderShStatus({ name: e.view.name, definedAt: e.view.definedAt, volume: e.view.volume, status: e.status }));
      }
    });
  program
    .command('sh-nop')
    .description('parse and check the configuration and do nothing (exit 10 with the parse error when it is invalid)')
    .action(() => {
      const ctx = getContext();
      const config = loadConfig(ctx.configPath);
      for (const warning of config.warnings) ctx.err(`${warning}\n`);
      const { bindings, errors } = bindNode(config, ctx.nodeName);
      const problems = [...errors, ...validateBindings(config, bindings)];
      if (problems.length > 0) throw new UdrbdError(problems.join('').replace(/\n$/, ''), ExitCode.configInvalid);
    });
  program
    .command('sh-b-pri')
    .description("promote each resource whose startup { become-primary-on } names this node (or 'both'); tries 5 times, 1 s apart")
    .argument('[resources...]', 'resource names, or all (default)')
    .action((resources: string[]) => becomePrimary(getContext(), resources));
  program
    .command('wait-connect')
    .description(
      'wait until the resource is connected (or StandAlone after a split brain), up to the startup { wfc-timeout | degr-wfc-timeout | outdated-wfc-timeout } ' +
        'chosen by the on-disk state (degr: this node was a disconnected Primary; outdated: the peer is Outdated); 0 = forever; exit 5 on timeout',
    )
    .option('-t, --wfc-timeout <seconds>', 'override wfc-timeout')
    .option('--degr-wfc-timeout <seconds>', 'override degr-wfc-timeout')
    .option('--outdated-wfc-timeout <seconds>', 'override outdated-wfc-timeout')
    .option('--wait-after-sb', 'keep waiting when a split brain leaves the resource StandAlone')
    .argument('<resources...>')
    .action(async (resources: string[], opts: TimeoutOptions) => {
      const ctx = getContext();
      const requests = waitRequests(ctx, resources, opts);
      if (ctx.dryRun) return dryRunWait(ctx, requests);
      let exitCode = 0;
      for (const req of requests) {
        const outcome = await waitConnect(ctx, req);
        if (outcome === 'timeout') exitCode = WAIT_TIMEOUT_EXIT;
      }
      if (exitCode !== 0) throw new UdrbdError('', exitCode);
    });
  program
    .command('wait-con-int')
    .description(
      "wait for the peer of every resource as DRBD's init script does: on a terminal, after 10 s, DRBD's banner and \"To abort waiting enter 'yes' [ N]:\"; " +
        'without one, a plain wait bounded by the configured timeouts',
    )
    .action(async () => {
      const ctx = getContext();
      const requests = waitRequests(ctx, ['all'], {});
      if (ctx.dryRun) return dryRunWait(ctx, requests);
      const first = views(ctx, 'wait-con-int', ['all'])[0]!;
      const code = await waitConInt(ctx, {
        requests,
        banner: { resource: first.name, degrWfcTimeout: String(first.startup.degrWfcTimeoutS), wfcTimeout: String(first.startup.wfcTimeoutS) },
        interactive: Boolean(process.stdin.isTTY && process.stdout.isTTY),
        input: process.stdin,
      });
      if (code !== 0) throw new UdrbdError('', code);
    });
}
