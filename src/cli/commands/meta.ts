/**
 * cli/commands/meta — the meta-data verbs of udrbdadm: create-md, dump-md,
 * show-gi, get-gi, set-gi, apply-al, wipe-md, dstate (offline). Each resolves
 * the backing disk of every volume named (RES: all of them in volume order,
 * RES/VNR: one, as drbdadm-84 runs drbdmeta per volume) and runs the matching
 * meta/tool operation, refusing md-modifying verbs while the resource is up
 * ("Device '<minor>' is configured!", exit 20, as drbdmeta). Knows nothing of
 * on-disk formats (meta/ does) or of the daemon beyond cli/resource-up.
 */
import readline from 'node:readline';
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import type { GetContext } from './index.js';
import { expandResourceNames, loadConfig, type ResourceView } from '../../config/index.js';
import { resolveVolumeArgument } from '../volume-args.js';
import { UdrbdError, ExitCode } from '../../util/errors.js';
import { applyAl, createMd, dstate, dumpMd, getGi, setGi, showGi, wipeMd, type MetaTarget as ToolTarget, type ToolIo } from '../../meta/tool.js';
import { placementOf } from '../../meta/superblock.js';
import { isResourceUp } from '../resource-up.js';

interface MetaTarget {
  name: string;
  minor: number;
  diskPath: string;
  /** What meta/tool works on: the backing disk, or the meta device, slot and data disk. */
  tool: ToolTarget;
  /** drbdmeta's device and index arguments (`/dev/x 0`, `/dev/x flex-external`, `/dev/disk internal`). */
  drbdmetaArgs: string;
}

/** What meta/tool works on for a resolved volume: its backing disk, or its meta device, slot and data disk. */
export function metaToolTarget(view: Pick<ResourceView, 'metaDisk' | 'diskPath'>): ToolTarget {
  return view.metaDisk === 'internal' ? view.diskPath : { mdPath: view.metaDisk.path, placement: placementOf(view.metaDisk), dataPath: view.diskPath };
}

/** RES (every volume, in volume-number order) or RES/VNR (one), as drbdadm-84 runs drbdmeta for each. */
function targets(ctx: CliContext, verb: string, names: string[]): MetaTarget[] {
  const config = loadConfig(ctx.configPath);
  const fromAll = names.length === 1 && names[0] === 'all';
  const expanded = expandResourceNames(config, ctx.nodeName, names);
  if (expanded.length === 0) throw new UdrbdError('No resource names specified', ExitCode.usage);
  return expanded.flatMap((written) => {
    const { name, volumes } = resolveVolumeArgument(config, ctx.nodeName, verb, written, fromAll);
    return volumes.map((vol) => ({
      name: name.resource,
      minor: vol.minor,
      diskPath: vol.diskPath,
      tool: metaToolTarget(vol),
      drbdmetaArgs: `${vol.meta.device} ${vol.meta.drbdmetaIndex}`,
    }));
  });
}

/** One line from stdin; resolves null at end of input. */
function readStdinLine(): Promise<string | null> {
  return new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin, terminal: false });
    let answered = false;
    rl.once('line', (line) => {
      answered = true;
      rl.close();
      resolve(line);
    });
    rl.once('close', () => {
      if (!answered) resolve(null);
    });
  });
}

function toolIo(ctx: CliContext, force: boolean): ToolIo {
  return {
    out: ctx.out,
    err: ctx.err,
    force: force || ctx.backendOptions.includes('--force'),
    stdinIsTty: process.stdin.isTTY === true,
    readLine: readStdinLine,
  };
}

function refuseIfUp(ctx: CliContext, target: MetaTarget): void {
  if (isResourceUp(target.name, ctx.nodeName)) {
    throw new UdrbdError(`Device '${target.minor}' is configured!`, ExitCode.fatal);
  }
}

function drbdmetaLine(target: MetaTarget, verb: string): string {
  return `drbdmeta ${target.minor} v08 ${target.drbdmetaArgs} ${verb}`;
}

type MetaAction = (ctx: CliContext, target: MetaTarget, io: ToolIo) => Promise<void> | void;

export function register(program: Command, getContext: GetContext): void {
  const verb = (name: string, description: string, modifies: boolean, action: MetaAction, withForce = false): void => {
    const cmd = program.command(name).description(description).argument('<resources...>', 'resource names or "all"');
    if (withForce) cmd.option('--force', 'skip confirmations, like drbdmeta --force');
    cmd.action(async (resources: string[], opts: { force?: boolean }) => {
      const ctx = getContext();
      for (const target of targets(ctx, name, resources)) {
        if (modifies) refuseIfUp(ctx, target);
        await action(ctx, target, toolIo(ctx, opts.force === true));
      }
    });
  };

  verb('create-md', 'initialize v08 meta-data (internal, or on the external meta-disk)', true, (_ctx, t, io) => createMd(t.tool, io), true);
  verb('dump-md', 'print the meta-data in drbdmeta dump-md format', false, (_ctx, t, io) =>
    dumpMd(t.tool, io, { commandLine: drbdmetaLine(t, 'dump-md') }),
  true);
  verb('show-gi', 'show the generation identifiers with explanations', false, (_ctx, t, io) => showGi(t.tool, io));
  verb('get-gi', 'print the generation identifiers', false, (_ctx, t, io) => getGi(t.tool, io));
  verb('apply-al', 'apply the activity log to the bitmap and mark the meta-data clean', true, (_ctx, t, io) => applyAl(t.tool, io));
  verb('wipe-md', 'destroy the meta-data superblock', true, (_ctx, t, io) => wipeMd(t.tool, io), true);
  verb('dstate-offline', 'disk state from the on-disk flags (drbdmeta dstate)', false, (_ctx, t, io) => dstate(t.tool, io));

  program
    .command('set-gi')
    .description('set generation identifiers and flags (C:B:H1:H2:c:u:p:n:f:o:x)')
    .argument('<resource>', 'resource name')
    .argument('<gi>', 'get-gi style string; empty fields keep their value')
    .option('--force', 'skip the confirmation')
    .action(async (resource: string, gi: string, opts: { force?: boolean }) => {
      const ctx = getContext();
      const [target] = targets(ctx, 'set-gi', [resource]);
      refuseIfUp(ctx, target!);
      await setGi(target!.tool, gi, toolIo(ctx, opts.force === true));
    });
}
