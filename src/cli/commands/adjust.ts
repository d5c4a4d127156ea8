/**
 * cli/commands/adjust — `udrbdadm adjust RES|all`: make each running
 * resource match the configuration file, as drbdadm adjust does. A
 * resource that is up gets the `adjust` control request (its process reads
 * the file, validates the whole change, refuses what cannot change online
 * with exit 10, and applies the rest); one that is down is brought up. With
 * `-d` it prints the plan — the drbdsetup-84 / drbdmeta lines drbdadm would
 * run, nothing when nothing changed — and changes nothing. Knows the plan
 * only as data (daemon/adjust-plan's steps); not how a step is applied.
 */
import path from 'node:path';
import type { Command } from 'commander';
import type { GetContext } from './index.js';
import type { CliContext } from '../context.js';
import { UdrbdError } from '../../util/errors.js';
import { expandResourceNames, loadConfig } from '../../config/index.js';
import { runtimePaths, type RuntimePaths } from '../../control/paths.js';
import { ControlClient, ResourceNotUpError, callResource } from '../../control/client.js';
import { startDaemon } from '../../control/launcher.js';
import { loadSpec } from '../../daemon/config-adapter.js';
import { type AdjustStep, planText, planUp } from '../../daemon/adjust-plan.js';
import type { AdjustReply } from '../../daemon/adjust.js';
import { declareOwnDryRun } from '../dry-run.js';
import { enforceOptionSupport } from '../option-check.js';
import { resolveVolumeArgument } from '../volume-args.js';
import { refuseResyncAfterCycle } from '../resync-after-check.js';

/** A connect or disconnect step waits for the link; a reconnect has this long. */
const ADJUST_TIMEOUT_MS = 60_000;

/** The steps `adjust` runs (or, under -d, would run) for one resource; throws DRBD's error on a refusal. */
export async function adjustResource(ctx: CliContext, resource: string, paths: RuntimePaths): Promise<AdjustStep[]> {
  const configPath = path.resolve(ctx.configPath);
  // Options udrbd refuses stop the adjust before anything is planned (exit 10); ignored ones are warned about.
  enforceOptionSupport(ctx, resource);
  if (!ctx.dryRun) refuseResyncAfterCycle(ctx, resource, ControlClient.isUp(paths) ? 'disk-options' : 'attach');
  try {
    const reply = await callResource(paths, 'adjust', { configPath, dryRun: ctx.dryRun }, ADJUST_TIMEOUT_MS);
    if (reply.stderr) ctx.err(reply.stderr);
    if (!reply.ok) throw new UdrbdError(`udrbd resource ${resource}: adjust refused, nothing changed`, reply.exitCode);
    return (JSON.parse(reply.stdout) as AdjustReply).steps;
  } catch (err) {
    if (!(err instanceof ResourceNotUpError)) throw err;
  }
  // Not up (or its process died): drbdadm adjust runs the whole `up` sequence.
  const plan = planUp(loadSpec(configPath, resource, ctx.nodeName));
  if (!ctx.dryRun) await startDaemon({ configPath, node: ctx.nodeName, resource, mode: 'up', paths });
  return [...plan.steps];
}

export function register(program: Command, getContext: GetContext): void {
  // -d adjust prints the plan computed against the running resource (adjustResource honours ctx.dryRun).
  declareOwnDryRun('adjust');
  program
    .command('adjust')
    .description(
      'apply the configuration file to the running resource, as drbdadm adjust: net options (protocol, timeouts, ' +
        'max-buffers, after-sb, verify-alg, ...) and disk options (resync-rate, c-*, fencing) change online, a changed ' +
        'address disconnects and connects with the new one, a StandAlone resource is connected, a diskless one ' +
        'attached, a resource that is down is brought up; handlers are used from their next run. What cannot change ' +
        'online (disk, meta-disk, device, minor, size, al-extents) is refused with exit 10 and nothing changes. ' +
        '-d prints the drbdsetup-84 lines of the plan and changes nothing',
    )
    .allowUnknownOption()
    .argument('<resources...>')
    .action(async (resources: string[]) => {
      const ctx = getContext();
      const config = loadConfig(ctx.configPath);
      const names = expandResourceNames(config, ctx.nodeName, resources);
      // adjust acts on whole resources: a RES/VNR is drbdadm's exit-1 refusal, before anything runs.
      for (const name of names) resolveVolumeArgument(config, ctx.nodeName, 'adjust', name);
      let worstExitCode = 0;
      for (const name of names) {
        try {
          const steps = await adjustResource(ctx, name, runtimePaths(name, ctx.nodeName));
          if (ctx.dryRun) ctx.out(planText({ steps, refusals: [] }));
        } catch (err) {
          // drbdadm goes on with the next resource and exits with the highest code
          if (!(err instanceof UdrbdError) || names.length === 1) throw err;
          ctx.err(`${err.message}\n`);
          worstExitCode = Math.max(worstExitCode, err.exitCode);
        }
      }
      if (worstExitCode !== 0) throw new UdrbdError('adjust all: at least one resource was refused (see above)', worstExitCode);
    });
}
