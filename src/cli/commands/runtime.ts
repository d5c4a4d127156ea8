/**
 * cli/commands/runtime — the udrbdadm verbs that drive a running resource:
 * up, down, attach, detach, connect, disconnect, primary, secondary, role,
 * cstate, dstate, invalidate, invalidate-remote, verify, pause-sync,
 * resume-sync, resume-io, outdate, new-current-uuid, status (events: commands/events;
 * wait-connect: commands/boot).
 * Each talks to the resource process over its control socket (daemon/client)
 * and prints what drbdadm 8.4 prints; refusals keep DRBD's text and exit code.
 * Knows nothing of how the resource process does its work.
 */
import type { Command } from 'commander';
import type { GetContext } from './index.js';
import type { CliContext } from '../context.js';
import { UdrbdError, ExitCode } from '../../util/errors.js';
import { ErrCode } from '../../resource/state.js';
import { runtimePaths, readPid, type RuntimePaths } from '../../control/paths.js';
import fs from 'node:fs';
import { ControlClient, ResourceDiedError, ResourceNotUpError, callResource } from '../../control/client.js';
import { dstate as offlineDstate, type MetaTarget } from '../../meta/tool.js';
import { metaToolTarget } from './meta.js';
import { printInsteadOfActing } from '../dry-run.js';
import { startDaemon, waitForExit, type DaemonMode } from '../../control/launcher.js';
import { expandResourceNames, loadConfig, resolveResource } from '../../config/index.js';
import { parseScaledNumber } from '../../config/limits.js';
import { enforceOptionSupport } from '../option-check.js';
import { resolveVolumeArgument } from '../volume-args.js';
import { refuseResyncAfterCycle } from '../resync-after-check.js';
import { FENCE_PEER_TIMEOUT_MS } from '../../daemon/handlers.js';

/** The verbs drbdadm-84 runs once per volume (drbdsetup-84 VERB MINOR); the rest act on the resource. */
const PER_VOLUME_VERBS: ReadonlySet<string> = new Set([
  'attach', 'detach', 'primary', 'secondary', 'invalidate', 'invalidate-remote', 'verify', 'pause-sync', 'resume-sync', 'outdate', 'new-current-uuid', 'resize',
]);

/** Verbs that wait on the peer (state change requests, handshakes) get this long. */
const NETWORK_VERB_TIMEOUT_MS = 60_000;
/** primary may run the fence-peer handler first (daemon/handlers bounds it), then promote. */
const PRIMARY_TIMEOUT_MS = FENCE_PEER_TIMEOUT_MS + NETWORK_VERB_TIMEOUT_MS;
/** down: demote, disconnect, flush the bitmap, close md. */
const DOWN_TIMEOUT_MS = 60_000;

/** resize waits for the peer's answer (daemon/link bounds it at 30 s) after moving meta-data and writing the bitmap. */
const RESIZE_TIMEOUT_MS = 120_000;

/** drbdsetup resize's --size: sectors unless a K/M/G/T suffix says otherwise (drbdsetup's unit). */
function sizeOptionBytes(text: string): number {
  const parsed = parseScaledNumber(text, 's');
  if (!parsed.ok || parsed.value > BigInt(Math.floor(Number.MAX_SAFE_INTEGER / 512))) {
    throw new UdrbdError(`resize: --size=${text} is not a size (a number of sectors, or with a K, M, G or T suffix, e.g. --size=2G)`, ExitCode.usage);
  }
  return Number(parsed.value) * 512;
}

/** drbdsetup resize also takes --al-stripes / --al-stripe-size-kB; udrbd does not: refused, never ignored. */
function refuseUnknownResizeOptions(args: readonly string[]): void {
  const unknown = args.filter((a) => a.startsWith('-'));
  if (unknown.length === 0) return;
  const layout = unknown.find((a) => a.startsWith('--al-stripe'));
  if (layout) {
    throw new UdrbdError(`resize: ${layout}: udrbd does not change the activity-log layout online; its resize takes --size, --assume-peer-has-space and --assume-clean`, ExitCode.usage);
  }
  throw new UdrbdError(`resize: unrecognized option '${unknown[0]}' (udrbdadm resize takes --size=N, --assume-peer-has-space and --assume-clean)`, ExitCode.usage);
}

/** One volume a verb acts on. */
interface VolumeTarget {
  vnr: number;
  minor: number;
  /** Where drbdmeta-style offline reads find the meta-data (dstate when the process is not running). */
  meta: MetaTarget;
}

interface ResourceTarget {
  name: string;
  /** The first volume named (the resource's only one, mostly): drbdadm's trailer of a whole-resource verb names it. */
  minor: number;
  meta: MetaTarget;
  paths: RuntimePaths;
  /** The volumes the argument names (RES: all, RES/VNR: one), ascending. */
  volumes: VolumeTarget[];
  /**
   * The request must say which volume: the argument named one (RES/VNR) or
   * the resource has several. Else the request goes without (the process's
   * only volume), as before volumes existed.
   */
  perVolume: boolean;
}

/**
 * Resolves RES|RES/VNR|all against the config (drbdadm's errors for unknown
 * resources and volumes, and for a volume given to a whole-resource verb).
 * One resource process runs every volume of its resource, so a target is a
 * resource; per-volume verbs send one request per volume (volumeTargets).
 */
function targets(ctx: CliContext, verb: string, names: string[]): ResourceTarget[] {
  const config = loadConfig(ctx.configPath);
  const fromAll = names.length === 1 && names[0] === 'all';
  const expanded = expandResourceNames(config, ctx.nodeName, names);
  return expanded.map((written) => {
    const { name, volumes, all } = resolveVolumeArgument(config, ctx.nodeName, verb, written, fromAll);
    // What the resource process would start from: refuses what resolve refuses (a host section without an address).
    resolveResource(config, name.resource, ctx.nodeName);
    const volume = volumes[0]!;
    return {
      name: name.resource,
      minor: volume.minor,
      meta: metaToolTarget(volume),
      paths: runtimePaths(name.resource, ctx.nodeName),
      volumes: volumes.map((v) => ({ vnr: v.vnr, minor: v.minor, meta: metaToolTarget(v) })),
      perVolume: name.vnr !== undefined || all.length > 1,
    };
  });
}

/** The same resource as seen by one of its volumes: its minor in drbdadm's trailer, the volume in the request. */
function volumeTargets(target: ResourceTarget, dryRun = false): Array<{ target: ResourceTarget; volume: number | undefined }> {
  // -d prints the whole resource's plan once (cli/dry-run lists every volume's drbdsetup call itself).
  if (!target.perVolume || dryRun) return [{ target, volume: undefined }];
  return target.volumes.map((v) => ({ target: { ...target, minor: v.minor, meta: v.meta, volumes: [v] }, volume: v.vnr }));
}

/**
 * A volume verb (drbdadm-84 runs `drbdsetup-84 VERB MINOR` once per volume,
 * in volume order, and stops at the first failure): one request per volume,
 * each naming it.
 */
async function callEach(ctx: CliContext, target: ResourceTarget, verb: string, args: Record<string, unknown> = {}, timeoutMs?: number): Promise<void> {
  for (const { target: t, volume } of volumeTargets(target, ctx.dryRun)) await call(ctx, t, verb, volume === undefined ? args : { ...args, volume }, timeoutMs);
}

/** drbdadm's trailer after a failed drbdsetup call. */
function terminated(verb: string, target: ResourceTarget, exitCode: number): string {
  return `Command 'drbdsetup-84 ${verb} ${target.minor}' terminated with exit code ${exitCode}`;
}

async function call(
  ctx: CliContext,
  target: ResourceTarget,
  verb: string,
  args: Record<string, unknown> = {},
  timeoutMs: number = NETWORK_VERB_TIMEOUT_MS,
): Promise<void> {
  // -d never reaches a resource process (cli/dry-run); this covers verbs that run their own dry run.
  const flags = [args.force === true ? '--force' : '', args.discardMyData === true ? '--discard-my-data' : '', args.clearBitmap === true ? '--clear-bitmap' : ''].filter((f) => f !== '');
  if (printInsteadOfActing(ctx, target.name, verb, flags)) return;
  const reply = await callResource(target.paths, verb, args, timeoutMs);
  if (reply.stdout) ctx.out(reply.stdout);
  if (reply.stderr) ctx.err(reply.stderr);
  if (!reply.ok) throw new UdrbdError(terminated(verb, target, reply.exitCode), reply.exitCode);
}

/**
 * role/cstate/dstate print a line per volume, "Unconfigured" for a resource
 * that is not up. A resource process that died says so (exit 10); dstate
 * then falls back to the on-disk state as drbdadm falls back to drbdmeta
 * dstate, with drbdmeta's exit code (0), the notice on stderr only.
 */
async function query(ctx: CliContext, resource: ResourceTarget, verb: string): Promise<void> {
  for (const { target, volume } of volumeTargets(resource, ctx.dryRun)) await queryOne(ctx, target, verb, volume);
}

async function queryOne(ctx: CliContext, target: ResourceTarget, verb: string, volume: number | undefined): Promise<void> {
  try {
    await call(ctx, target, verb, volume === undefined ? {} : { volume }, 10_000);
  } catch (err) {
    if (err instanceof ResourceDiedError) {
      if (verb !== 'dstate') throw err;
      ctx.err(`${err.message}\n`);
      offlineDstate(target.meta, { out: ctx.out, err: ctx.err, force: true, stdinIsTty: false, readLine: () => Promise.resolve(null) });
    } else if (err instanceof ResourceNotUpError) ctx.out('Unconfigured\n');
    else throw err;
  }
}

/** After a crash the pid file and socket stay behind: `down` removes them (the process is confirmed dead). */
function removeStaleFiles(paths: RuntimePaths): void {
  for (const file of [paths.socketPath, paths.pidPath]) fs.rmSync(file, { force: true });
}

async function up(ctx: CliContext, target: ResourceTarget, mode: DaemonMode, options: string[]): Promise<void> {
  if (ControlClient.isUp(target.paths)) {
    try {
      const client = await ControlClient.connect(target.paths, 2_000);
      client.close();
      if (mode === 'attach') return callEach(ctx, target, 'attach');
      throw new UdrbdError(`${target.minor}: Failure: (${ErrCode.minorExists}) Minor or volume exists already (delete it first)\n${terminated('new-minor', target, ExitCode.configInvalid)}`, ExitCode.configInvalid);
    } catch (err) {
      if (!(err instanceof ResourceNotUpError)) throw err;
      // Stale socket of a crashed process: the new process takes over.
    }
  }
  enforceOptionSupport(ctx, target.name);
  if (printInsteadOfActing(ctx, target.name, mode, options)) return;
  refuseResyncAfterCycle(ctx, target.name, 'attach');
  await startDaemon({
    configPath: ctx.configPath,
    node: ctx.nodeName,
    resource: target.name,
    mode,
    paths: target.paths,
    extraArgs: options,
  });
}

/**
 * drbdsetup new-resource: the resource process starts without its volume
 * (no attach, no connect); `new-minor` adds the volume, then `attach` and
 * `connect` work as on any resource — `connect` without `attach` makes a
 * diskless node. A resource that is up already is left as it is.
 */
async function newResource(ctx: CliContext, target: ResourceTarget): Promise<void> {
  if (ControlClient.isUp(target.paths)) {
    try {
      const client = await ControlClient.connect(target.paths, 2_000);
      client.close();
      return;
    } catch (err) {
      if (!(err instanceof ResourceNotUpError)) throw err;
      // Stale socket of a crashed process: the new process takes over.
    }
  }
  enforceOptionSupport(ctx, target.name);
  if (printInsteadOfActing(ctx, target.name, 'new-resource')) return;
  await startDaemon({ configPath: ctx.configPath, node: ctx.nodeName, resource: target.name, mode: 'new', paths: target.paths });
}

/** drbdsetup new-minor RES MINOR VOLUME: needs the resource (158 "Unknown resource" otherwise). */
async function newMinor(ctx: CliContext, target: ResourceTarget): Promise<void> {
  if (printInsteadOfActing(ctx, target.name, 'new-minor')) return;
  const terminatedLine = (exitCode: number): string => `Command 'drbdsetup-84 new-minor ${target.name} ${target.minor} 0' terminated with exit code ${exitCode}`;
  let reply;
  try {
    reply = await callResource(target.paths, 'new-minor', {}, NETWORK_VERB_TIMEOUT_MS);
  } catch (err) {
    if (!(err instanceof ResourceNotUpError) || err instanceof ResourceDiedError) throw err;
    throw new UdrbdError(`${target.name}: Failure: (${ErrCode.resourceNotKnown}) Unknown resource\n${terminatedLine(ExitCode.configInvalid)}`, ExitCode.configInvalid);
  }
  if (reply.stderr) ctx.err(reply.stderr);
  if (!reply.ok) throw new UdrbdError(terminatedLine(reply.exitCode), reply.exitCode);
}

async function down(ctx: CliContext, target: ResourceTarget): Promise<void> {
  const pid = readPid(target.paths);
  try {
    await call(ctx, target, 'down', {}, DOWN_TIMEOUT_MS);
  } catch (err) {
    if (err instanceof ResourceDiedError) {
      // Down already, the hard way: say so once, and leave no stale files for status to trip over.
      ctx.err(`${err.message}\n`);
      removeStaleFiles(target.paths);
      return;
    }
    if (err instanceof ResourceNotUpError) return; // already down: drbdadm succeeds silently
    throw err;
  }
  if (!(await waitForExit(target.paths, pid))) {
    throw new UdrbdError(`udrbd resource ${target.name} on node ${ctx.nodeName}: the resource process (pid ${pid}) did not exit after down; see ${target.paths.logPath}`, ExitCode.fatal);
  }
}

export function register(program: Command, getContext: GetContext): void {
  const each = (verb: string, fn: (ctx: CliContext, target: ResourceTarget) => Promise<void>) => async (resources: string[]): Promise<void> => {
    const ctx = getContext();
    for (const target of targets(ctx, verb, resources)) await fn(ctx, target);
  };
  const simple = (verb: string, description: string, args: Record<string, unknown> = {}): void => {
    program
      .command(verb)
      .description(description)
      .allowUnknownOption()
      .argument('<resources...>')
      .action(each(verb, (ctx, t) => (PER_VOLUME_VERBS.has(verb) ? callEach(ctx, t, verb, args) : call(ctx, t, verb, args))));
  };

  program
    .command('up')
    .description('start the resource process: attach the disk, then connect to the peer; fails (exit 10, no process left) when this node\'s address is not on this host or its port is in use, or when the configuration holds an option udrbd refuses (ignored ones are warned about: README "Options udrbd refuses or ignores")')
    .option('--discard-my-data', 'on connect, give up local changes in a split brain')
    .allowUnknownOption()
    .argument('<resources...>')
    .action(async (resources: string[], opts: { discardMyData?: boolean }) => {
      const ctx = getContext();
      const extra = opts.discardMyData || ctx.backendOptions.includes('--discard-my-data') ? ['--discard-my-data'] : [];
      for (const t of targets(ctx, 'up', resources)) await up(ctx, t, 'up', extra);
    });
  program
    .command('attach')
    .description('attach the backing disk (starts the resource process if needed)')
    .allowUnknownOption()
    .argument('<resources...>')
    .action(each('attach', (ctx, t) => up(ctx, t, 'attach', [])));
  program
    .command('new-resource')
    .description("start the resource process without its volume: no attach, no connect (drbdsetup new-resource); then 'new-minor', and 'connect' alone makes a diskless node")
    .allowUnknownOption()
    .argument('<resources...>')
    .action(each('new-resource', newResource));
  program
    .command('new-minor')
    .description("add the resource's volume (Diskless, StandAlone) to a process started by new-resource; refused with (158) without one, (161) when the volume exists")
    .allowUnknownOption()
    .argument('<resources...>')
    .action(each('new-minor', newMinor));
  program
    .command('down')
    .description('demote, disconnect, detach and stop the resource process; refused with (-12) while the device is held open, and tried again by the next down or SIGTERM')
    .allowUnknownOption()
    .argument('<resources...>')
    .action(each('down', down));
  simple('detach', 'detach the backing disk');
  program
    .command('connect')
    .description('connect to the peer')
    .option('--discard-my-data', 'in a split brain, this node becomes SyncTarget')
    .allowUnknownOption()
    .argument('<resources...>')
    .action(async (resources: string[], opts: { discardMyData?: boolean }) => {
      const ctx = getContext();
      const discardMyData = Boolean(opts.discardMyData || ctx.backendOptions.includes('--discard-my-data'));
      for (const t of targets(ctx, 'connect', resources)) await call(ctx, t, 'connect', { discardMyData });
    });
  simple('disconnect', 'disconnect from the peer (StandAlone)');
  program
    .command('primary')
    .description('promote to Primary')
    .option('--force', 'consider local data UpToDate (initial sync source)')
    .option('--overwrite-data-of-peer', 'alias of --force')
    .allowUnknownOption()
    .argument('<resources...>')
    .action(async (resources: string[], opts: { force?: boolean; overwriteDataOfPeer?: boolean }) => {
      const ctx = getContext();
      const force = Boolean(opts.force || opts.overwriteDataOfPeer || ctx.backendOptions.includes('--force'));
      for (const t of targets(ctx, 'primary', resources)) await callEach(ctx, t, 'primary', { force }, PRIMARY_TIMEOUT_MS);
    });
  simple('secondary', 'demote to Secondary');
  for (const verb of ['role', 'cstate', 'dstate']) {
    program
      .command(verb)
      .description(`print the ${verb} as drbdadm does; a resource process that died says so (exit 10)${verb === 'dstate' ? ', then prints the on-disk state' : ''}`)
      .argument('<resources...>')
      .action(each(verb, (ctx, t) => query(ctx, t, verb)));
  }
  simple('invalidate', 'discard local data: full sync from the peer');
  simple('invalidate-remote', "discard the peer's data: full sync to the peer");
  simple('verify', 'start online verify');
  simple('pause-sync', 'pause resynchronisation');
  simple('resume-sync', 'resume resynchronisation');
  simple('resume-io', 'resume I/O frozen by fencing (resource-and-stonith) whatever fence-peer answered');
  simple('outdate', 'mark local data Outdated (refused while connected: -6; on a Primary: -2)');
  program
    .command('new-current-uuid')
    .description('start a new data generation')
    .option('--clear-bitmap', 'also clear the bitmap (skip initial sync)')
    .allowUnknownOption()
    .argument('<resources...>')
    .action(async (resources: string[], opts: { clearBitmap?: boolean }) => {
      const ctx = getContext();
      for (const t of targets(ctx, 'new-current-uuid', resources)) await callEach(ctx, t, 'new-current-uuid', { clearBitmap: Boolean(opts.clearBitmap) });
    });
  program
    .command('resize')
    .description("grow the device online after the backing disks grew (truncate -s, lvextend): moves internal meta-data to the disk's new end, takes the smaller of both nodes' disks (or --size), and resyncs the new area from the Primary; --size below the current size shrinks it on both nodes (shrink the file system first); refused during a resync (130), with two Secondaries (131), and for a smaller size without --size (170)")
    .option('--size <size>', 'the device size (sectors by default; K, M, G, T suffixes); default: disk { size } or the whole disk')
    .option('--assume-peer-has-space', "not connected: grow without knowing the peer's disk size")
    .option('--assume-clean', 'the new area is identical on both nodes: no resync')
    .allowUnknownOption()
    .argument('<resources...>')
    .action(async (resources: string[], opts: { size?: string; assumePeerHasSpace?: boolean; assumeClean?: boolean }) => {
      const ctx = getContext();
      refuseUnknownResizeOptions(resources);
      const config = loadConfig(ctx.configPath);
      for (const t of targets(ctx, 'resize', resources)) {
        // drbdadm passes `disk { size }` as --size first; a --size given here comes after it and wins.
        const configuredSectors = resolveResource(config, t.name, ctx.nodeName).disk.sizeSectors;
        const sizeBytes = opts.size === undefined ? configuredSectors * 512 : sizeOptionBytes(opts.size);
        await callEach(ctx, t, 'resize', { sizeBytes, assumePeerHasSpace: Boolean(opts.assumePeerHasSpace), assumeClean: Boolean(opts.assumeClean) }, RESIZE_TIMEOUT_MS);
      }
    });
  program
    .command('status')
    .description('show resource status (DRBD 9 style; -v adds the protocol, --json all fields); a resource process that died is reported (exit 10)')
    .option('--json', 'JSON with every field, including sync progress, protocol and resync rate')
    .argument('[resources...]')
    .action(async (resources: string[], opts: { json?: boolean }) => {
      const ctx = getContext();
      const list = targets(ctx, 'status', resources.length === 0 ? ['all'] : resources);
      const jsonItems: unknown[] = [];
      let died: ResourceDiedError | undefined;
      for (const t of list) {
        try {
          const reply = await callResource(t.paths, 'status', { json: Boolean(opts.json), verbose: ctx.verbose }, 10_000);
          if (opts.json) jsonItems.push(JSON.parse(reply.stdout));
          else ctx.out(reply.stdout);
        } catch (err) {
          if (!(err instanceof ResourceNotUpError)) throw err;
          if (err instanceof ResourceDiedError) {
            died = err;
            if (opts.json) jsonItems.push({ resource: t.name, node: ctx.nodeName, cstate: 'Unconfigured', processDied: { pid: err.pid ?? null, log: t.paths.logPath } });
            else ctx.out(`${t.name}: died (the resource process${err.pid === undefined ? '' : ` pid ${err.pid}`} is gone; log ${t.paths.logPath}; run 'udrbdadm up ${t.name}')\n\n`);
            continue;
          }
          if (opts.json) jsonItems.push({ resource: t.name, node: ctx.nodeName, cstate: 'Unconfigured' });
          else ctx.out(`# No currently configured DRBD found.\n${t.name}: not up\n\n`);
        }
      }
      if (opts.json) ctx.out(`${JSON.stringify(jsonItems, null, 2)}\n`);
      if (died) throw died;
    });
}
