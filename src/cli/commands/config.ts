/**
 * cli/commands/config — the udrbdadm verbs that only read the configuration:
 * `dump [RES|all]` (drbdadm-84's normal form; -d / -v fold `common` in) and the
 * sh-* helpers the Pacemaker agent and init script call (sh-resources, sh-dev,
 * sh-minor, sh-ll-dev, sh-md-dev, sh-md-idx). Output and messages match
 * drbdadm-84's. Knows nothing about the daemon or disks.
 */
import type { Command } from 'commander';
import type { GetContext } from './index.js';
import type { CliContext } from '../context.js';
import { UdrbdError, ExitCode } from '../../util/errors.js';
import { loadConfig, bindNode, validateBindings, dumpConfig, expandResourceNames, notDefinedError, parseVolumeName, type DrbdConfig, type NodeBinding, type VolumeDef } from '../../config/index.js';

interface Loaded {
  config: DrbdConfig;
  bindings: NodeBinding[];
}

/** Parse, report parse warnings, pick this node's sections and validate, as drbdadm does before any verb. */
function load(ctx: CliContext): Loaded {
  const config = loadConfig(ctx.configPath);
  for (const warning of config.warnings) ctx.err(`${warning}\n`);
  const { bindings, errors } = bindNode(config, ctx.nodeName);
  const problems = [...errors, ...validateBindings(config, bindings)];
  if (problems.length > 0) throw new UdrbdError(problems.join('').replace(/\n$/, ''), ExitCode.configInvalid);
  return { config, bindings };
}

function dump(ctx: CliContext, names: string[]): void {
  const { config, bindings } = load(ctx);
  const opts = { nodeName: ctx.nodeName, expand: ctx.dryRun || ctx.verbose, verbose: ctx.verbose };
  if (names.length === 0 || names[0] === 'all') {
    ctx.out(dumpConfig(config, bindings, opts));
    return;
  }
  for (const name of names) {
    if (parseVolumeName(name).vnr !== undefined) throw new UdrbdError('dump operates on whole resources, but you specified a specific volume!', ExitCode.usage);
    // drbdadm-84 9.22 looks resources up among this node's only: an ignored one is "not defined".
    if (!bindings.some((b) => b.resource.name === name && !b.ignored)) {
      throw new UdrbdError(`'${name}' not defined in your config (for this host).`, ExitCode.usage);
    }
    ctx.out(dumpConfig(config, bindings, opts, [name]));
  }
}

/** sh-* verbs that print one line per volume of this node's section. */
function perVolume(ctx: CliContext, written: string, line: (vol: VolumeDef) => string): void {
  const { config, bindings } = load(ctx);
  if (config.resources.length === 0) throw new UdrbdError('no resources defined!', ExitCode.usage);
  // RES/VNR: that volume only (drbdadm-84 sh-minor r0/1).
  const name = parseVolumeName(written);
  const binding = bindings.find((b) => b.resource.name === name.resource);
  if (!binding || binding.ignored || !binding.me) throw notDefinedError(written);
  const volumes = binding.me.volumes.filter((v) => name.vnr === undefined || v.vnr === name.vnr);
  if (volumes.length === 0) throw notDefinedError(written);
  for (const vol of volumes) ctx.out(`${line(vol)}\n`);
}

const SH_VOLUME_VERBS: ReadonlyArray<readonly [string, string, (vol: VolumeDef) => string]> = [
  ['sh-dev', 'print the DRBD device of each volume', (v) => v.device ?? `/dev/drbd${v.minor}`],
  ['sh-minor', 'print the minor number of each volume', (v) => `${v.minor}`],
  ['sh-ll-dev', 'print the backing (lower-level) device of each volume', (v) => v.disk ?? ''],
  ['sh-md-dev', 'print the meta-data device of each volume', (v) => (v.metaDisk === 'internal' ? (v.disk ?? '') : (v.metaDisk ?? ''))],
  ['sh-md-idx', 'print the meta-data index of each volume (internal, flexible or N)', (v) => v.metaIndex ?? ''],
];

export function register(program: Command, getContext: GetContext): void {
  program
    .command('dump')
    .description('print the configuration in normal form (like drbdadm dump)')
    .argument('[resources...]', 'resource names, or all')
    .action((resources: string[]) => dump(getContext(), resources));

  program
    .command('sh-resources')
    .description("print the names of this node's resources")
    .action(() => {
      const ctx = getContext();
      const { bindings } = load(ctx);
      const names = bindings.filter((b) => !b.ignored).map((b) => b.resource.name);
      if (names.length > 0) ctx.out(`${names.join(' ')}\n`);
    });

  for (const [verb, description, line] of SH_VOLUME_VERBS) {
    program
      .command(verb)
      .description(description)
      .argument('<resources...>', 'resource names, or all')
      .action((resources: string[]) => {
        const ctx = getContext();
        // `all` is every resource of this node, as with drbdadm (the init scripts call `sh-dev all`).
        const names = resources.length === 1 && resources[0] === 'all' ? expandResourceNames(loadConfig(ctx.configPath), ctx.nodeName, resources) : resources;
        for (const name of names) perVolume(ctx, name, line);
      });
  }
}
