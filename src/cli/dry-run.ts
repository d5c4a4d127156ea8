/**
 * cli/dry-run — `udrbdadm -d VERB RES`: the drbdsetup-84 / drbdmeta calls
 * drbdadm 8.4 would print for the verb, and nothing done. One mechanism for
 * every verb: main.ts runs `interceptDryRun` before any verb's action; a verb
 * with a plan here prints its lines and stops, a verb that only reads the
 * configuration (dump, sh-* queries) runs as usual, a verb that declared its
 * own dry run (`declareOwnDryRun`, e.g. adjust showing its diff) runs and must
 * honour ctx.dryRun itself, and any other verb is refused under -d — a new
 * verb can never act for real by being forgotten here.
 * The lines are rendered from the configuration only (drbdadm does not ask
 * the kernel either): this never touches a control socket, pid file or disk,
 * whatever the resource's state, also when its process is not running.
 * Knows the configuration model and drbdadm's call syntax; nothing of the
 * daemon.
 */
import type { Command } from 'commander';
import { bindNode, expandCommon, expandResourceNames, loadConfig, withResyncAfterMinor, parseVolumeName, resolveVolumes, selectVolumes, type DrbdConfig, type MetaDiskArgs, type OptionEntry } from '../config/index.js';
import { resolveVolumeArgument } from './volume-args.js';
import { UdrbdError, ExitCode } from '../util/errors.js';
import type { CliContext } from './context.js';
import { shellEscape } from '../util/shell-escape.js';
export { shellEscape };

/** The helper names drbdadm prints when run as /usr/sbin/drbdadm (drbdadm_main.c: drbdsetup / drbdmeta helper names). */
export const DRBDSETUP = 'drbdsetup-84';
export const DRBDMETA = 'drbdmeta';

/** One volume's part of drbdadm's lines: its minor, number, disks and disk { } options. */
export interface DryRunVolume {
  vnr: number;
  minor: number;
  diskPath: string;
  /** The meta device and index words drbdmeta and drbdsetup-84 attach take. */
  meta: MetaDiskArgs;
  diskOptions: readonly OptionEntry[];
}

/** What drbdadm's lines are made of, for one resource (all its volumes, or the one RES/VNR names) on this node (config only). */
export interface DryRunTarget {
  name: string;
  /** The volumes the verb acts on, by volume number. */
  volumes: readonly DryRunVolume[];
  /** The resource has more than one volume on this node (whatever was selected). */
  hasSeveralVolumes: boolean;
  /** `ipv4:127.0.0.1:7701` as drbdadm prints it. */
  localAddress: string | undefined;
  peerAddress: string | undefined;
  netOptions: readonly OptionEntry[];
  startupOptions: readonly OptionEntry[];
  becomePrimaryOn: readonly string[];
}

/** Flags of the verb itself (`primary --force`) and drbdadm's backend options (`-- --force primary`). */
export interface DryRunFlags {
  verbFlags: readonly string[];
  backendOptions: readonly string[];
}

function addressText(a: { family: string; host: string; port: string } | undefined): string | undefined {
  if (!a) return undefined;
  return a.family === 'ipv6' ? `ipv6:[${a.host}]:${a.port}` : `${a.family}:${a.host}:${a.port}`;
}

function optionArgs(options: readonly OptionEntry[]): string[] {
  return options.map((o) => (o.value === null ? `--${o.name}` : `--${o.name}=${shellEscape(o.value)}`));
}

/**
 * Resolves `RES` or `RES/VNR` for this node from the configuration, as drbdadm
 * does before printing anything ("'r0/7' not defined in your config (for this
 * host).", exit 1, for a volume this node does not have).
 */
export function dryRunTarget(config: DrbdConfig, written: string, nodeName: string): DryRunTarget {
  const name = parseVolumeName(written);
  const all = resolveVolumes(config, name.resource, nodeName);
  const { bindings } = bindNode(config, nodeName);
  const binding = bindings.find((b) => b.resource.name === name.resource)!;
  const res = expandCommon(config).find((r) => r.name === name.resource)!;
  const me = res.hosts[binding.resource.hosts.indexOf(binding.me!)]!;
  const peer = binding.peer ? res.hosts[binding.resource.hosts.indexOf(binding.peer)] : undefined;
  return {
    name: res.name,
    volumes: selectVolumes(all, name).map((v) => ({
      vnr: v.vnr,
      minor: v.minor,
      diskPath: v.diskPath,
      meta: v.meta,
      diskOptions: withResyncAfterMinor(config, nodeName, v.diskOptions.length > 0 ? v.diskOptions : res.diskOptions),
    })),
    hasSeveralVolumes: all.length > 1,
    localAddress: addressText(me.address),
    peerAddress: addressText(peer?.address),
    netOptions: res.netOptions,
    startupOptions: res.startupOptions,
    becomePrimaryOn: res.becomePrimaryOn ?? [],
  };
}

function join(parts: ReadonlyArray<string | undefined>): string {
  return parts.filter((p): p is string => p !== undefined && p !== '').join(' ');
}

/**
 * Verb flags then backend options, each once (main.ts hands backend options
 * to the verb too, so a backend option is also a verb flag: it keeps its
 * place among the backend options, as drbdadm prints them in the order given).
 */
function extras(flags: DryRunFlags): string[] {
  return [...new Set([...flags.verbFlags.filter((f) => !flags.backendOptions.includes(f)), ...flags.backendOptions])];
}

const metaLine = (v: DryRunVolume, verb: string, more: readonly string[]): string =>
  join([DRBDMETA, String(v.minor), 'v08', v.meta.device, v.meta.drbdmetaIndex, verb, ...more]);
const minorLine = (v: DryRunVolume, verb: string, more: readonly string[]): string => join([DRBDSETUP, verb, String(v.minor), ...more]);

/** drbdadm iterates a per-volume verb over the volumes in volume-number order. */
const perVolume = (t: DryRunTarget, lines: (v: DryRunVolume) => string[]): string[] => t.volumes.flatMap(lines);

function attachLines(t: DryRunTarget, more: readonly string[]): string[] {
  return perVolume(t, (v) => [
    metaLine(v, 'apply-al', more),
    join([DRBDSETUP, 'attach', String(v.minor), v.diskPath, v.meta.device, v.meta.attachIndex, ...optionArgs(v.diskOptions), ...more]),
  ]);
}

function connectLine(t: DryRunTarget, more: readonly string[]): string {
  return join([DRBDSETUP, 'connect', t.name, t.localAddress, t.peerAddress, ...optionArgs(t.netOptions), ...more]);
}

/**
 * A verb's calls for one resource, in stages: with several resources
 * drbdadm runs each stage for all of them before the next (`up all`: every
 * new-resource/new-minor, then every attach, then every connect).
 */
type StagedPlan = (t: DryRunTarget, flags: DryRunFlags) => string[][];
type Plan = (t: DryRunTarget, more: readonly string[], nodeName: string) => string[];

const minorVerb = (verb: string): Plan => (t, more) => perVolume(t, (v) => [minorLine(v, verb, more)]);
/** drbdadm tries drbdsetup first and falls back to drbdmeta: -d prints both, volume by volume. */
const withMetaFallback = (verb: string): Plan => (t, more) => perVolume(t, (v) => [minorLine(v, verb, more), metaLine(v, verb, more)]);
const metaVerb = (verb: string): Plan => (t, more) => perVolume(t, (v) => [metaLine(v, verb, more)]);

const STAGED_PLANS: Readonly<Record<string, StagedPlan>> = {
  // Backend options go on every call as drbdadm appends them; udrbd's `up --discard-my-data` is a connect option.
  up: (t, flags) => [
    [join([DRBDSETUP, 'new-resource', t.name, ...flags.backendOptions]), ...perVolume(t, (v) => [join([DRBDSETUP, 'new-minor', t.name, String(v.minor), String(v.vnr)])])],
    attachLines(t, flags.backendOptions),
    [connectLine(t, extras(flags))],
  ],
};

/** The generated calls of each verb (checked against drbdadm-84 -d). */
const PLANS: Readonly<Record<string, Plan>> = {
  'new-resource': (t, more) => [join([DRBDSETUP, 'new-resource', t.name, ...more])],
  'new-minor': (t, more) => perVolume(t, (v) => [join([DRBDSETUP, 'new-minor', t.name, String(v.minor), String(v.vnr), ...more])]),
  attach: (t, more) => attachLines(t, more),
  connect: (t, more) => [connectLine(t, more)],
  disconnect: (t, more) => [join([DRBDSETUP, 'disconnect', t.localAddress, t.peerAddress, ...more])],
  down: (t, more) => [join([DRBDSETUP, 'down', t.name, ...more])],
  status: (t, more) => [join([DRBDSETUP, 'status', t.name, ...more])],
  // drbdadm-84 has no events verb; drbdsetup-84 events takes one minor: the resource's first volume.
  events: (t, more) => [join([DRBDSETUP, 'events', String(t.volumes[0]!.minor), ...more])],
  detach: minorVerb('detach'),
  primary: minorVerb('primary'),
  secondary: minorVerb('secondary'),
  'invalidate-remote': minorVerb('invalidate-remote'),
  verify: minorVerb('verify'),
  'pause-sync': minorVerb('pause-sync'),
  'resume-sync': minorVerb('resume-sync'),
  'resume-io': minorVerb('resume-io'),
  'new-current-uuid': minorVerb('new-current-uuid'),
  role: minorVerb('role'),
  cstate: minorVerb('cstate'),
  // drbdadm-84 has no wait-sync; drbdsetup-84 wait-sync takes wait-connect's startup options
  'wait-sync': (t, more) => perVolume(t, (v) => [minorLine(v, 'wait-sync', [...optionArgs(t.startupOptions), ...more])]),
  'wait-connect': (t, more) => perVolume(t, (v) => [minorLine(v, 'wait-connect', [...optionArgs(t.startupOptions), ...more])]),
  'wait-con-int': (t, more) => perVolume(t, (v) => [minorLine(v, 'wait-connect', [...optionArgs(t.startupOptions), ...more])]),
  // drbdadm passes `disk { size }` (only that disk option) as --size, then the verb's options; check-resize takes none.
  resize: (t, more) => perVolume(t, (v) => [
    minorLine(v, 'resize', [...optionArgs(v.diskOptions.filter((o) => o.name === 'size')), ...more]),
    minorLine(v, 'check-resize', []),
  ]),
  'sh-b-pri': (t, more, nodeName) =>
    t.becomePrimaryOn.includes(nodeName) || t.becomePrimaryOn.includes('both') ? perVolume(t, (v) => [minorLine(v, 'primary', more)]) : [],
  invalidate: withMetaFallback('invalidate'),
  outdate: withMetaFallback('outdate'),
  dstate: withMetaFallback('dstate'),
  'get-gi': withMetaFallback('get-gi'),
  'show-gi': withMetaFallback('show-gi'),
  'create-md': metaVerb('create-md'),
  'dump-md': metaVerb('dump-md'),
  'apply-al': metaVerb('apply-al'),
  'wipe-md': metaVerb('wipe-md'),
  'set-gi': metaVerb('set-gi'),
  'dstate-offline': metaVerb('dstate'),
};

/** Verbs whose plan covers every resource of this node when none is named. */
const ALL_BY_DEFAULT: ReadonlySet<string> = new Set(['status', 'events', 'wait-con-int', 'sh-b-pri']);

/** The two 8.4 screens: they only read the resource processes' state, so under -d they print it as usual. */
const READ_ONLY_SCREENS: ReadonlySet<string> = new Set(['proc-drbd', 'init-status']);

/** Verbs that only read (the configuration, or a screen): -d changes nothing there (dump folds `common` in under -d). */
function readsConfigOnly(verb: string): boolean {
  return verb === 'dump' || verb === 'help' || READ_ONLY_SCREENS.has(verb) || (verb.startsWith('sh-') && verb !== 'sh-b-pri');
}

const ownDryRun = new Set<string>();

/**
 * A verb whose action honours ctx.dryRun itself (prints its own plan, e.g.
 * adjust's diff against the running resource). Without this declaration and
 * without a plan above, a verb is refused under -d.
 */
export function declareOwnDryRun(verb: string): void {
  ownDryRun.add(verb);
}

/** True when `verb` has drbdadm lines here. */
export function hasDryRunPlan(verb: string): boolean {
  return Object.hasOwn(PLANS, verb) || Object.hasOwn(STAGED_PLANS, verb);
}

function stagesOf(verb: string, target: DryRunTarget, flags: DryRunFlags, nodeName: string): string[][] {
  const staged = STAGED_PLANS[verb];
  if (staged) return staged(target, flags);
  const plan = PLANS[verb];
  if (!plan) throw new Error(`dry-run: no plan for verb '${verb}'`);
  return [plan(target, extras(flags), nodeName)];
}

/**
 * The lines drbdadm 8.4 prints under -d for `verb` on one resource. Other
 * verb modules call this to print (part of) their plan, e.g. adjust of a
 * resource that is down = dryRunLines('up', ...).
 */
export function dryRunLines(verb: string, target: DryRunTarget, flags: DryRunFlags, nodeName: string): string[] {
  return stagesOf(verb, target, flags, nodeName).flat();
}

/**
 * For code that is about to ask a resource process to act (cli/commands'
 * call()): under -d print the verb's lines for that one resource instead,
 * and return true — the caller must then not act. A verb without a plan
 * throws rather than act. The preAction hook normally stops a verb before
 * its action; this guards verbs that declared their own dry run and still
 * reach a control request.
 */
export function printInsteadOfActing(ctx: CliContext, resourceName: string, verb: string, verbFlagsGiven: readonly string[] = []): boolean {
  if (!ctx.dryRun) return false;
  if (!hasDryRunPlan(verb)) {
    throw new UdrbdError(`udrbdadm: -d (dry run): '${verb}' on ${resourceName} has no plan; nothing was done.`, ExitCode.usage);
  }
  const config = loadConfig(ctx.configPath);
  const lines = dryRunLines(verb, dryRunTarget(config, resourceName, ctx.nodeName), { verbFlags: verbFlagsGiven, backendOptions: ctx.backendOptions }, ctx.nodeName);
  if (lines.length > 0) ctx.out(`${lines.join('\n')}\n`);
  return true;
}

/** Commander option names of the verbs that become drbdsetup/drbdmeta flags. */
const FLAG_OPTIONS: ReadonlyArray<readonly [string, string]> = [
  ['force', '--force'],
  ['overwriteDataOfPeer', '--force'],
  ['discardMyData', '--discard-my-data'],
  ['clearBitmap', '--clear-bitmap'],
  ['assumePeerHasSpace', '--assume-peer-has-space'],
  ['assumeClean', '--assume-clean'],
];

/** Commander option names of the verbs that take a value (`resize --size=N`). */
const VALUE_OPTIONS: ReadonlyArray<readonly [string, string]> = [['size', '--size']];

function verbFlags(opts: Record<string, unknown>): string[] {
  const values = VALUE_OPTIONS.filter(([name]) => typeof opts[name] === 'string').map(([name, flag]) => `${flag}=${String(opts[name])}`);
  return [...values, ...FLAG_OPTIONS.filter(([name]) => opts[name] === true).map(([, flag]) => flag)];
}

/** The resource names a verb was given (first declared argument; unknown options dropped). */
function resourceArgs(command: Command): string[] {
  const first: unknown = command.processedArgs[0];
  const list = Array.isArray(first) ? (first as unknown[]) : first === undefined ? [] : [first];
  return list.filter((a): a is string => typeof a === 'string' && !a.startsWith('-'));
}

/**
 * Runs before every verb's action (main.ts). Under -d: prints the verb's
 * drbdadm lines and throws an exit-0 UdrbdError so the action never runs;
 * refuses verbs without a plan. Without -d: returns and the verb runs.
 */
export function interceptDryRun(ctx: CliContext, command: Command): void {
  if (!ctx.dryRun) return;
  const verb = command.name();
  if (readsConfigOnly(verb) || ownDryRun.has(verb)) return;
  if (!hasDryRunPlan(verb)) {
    throw new UdrbdError(`udrbdadm: -d (dry run) has no plan for '${verb}' yet; nothing was done. Run it without -d to act.`, ExitCode.usage);
  }
  const config = loadConfig(ctx.configPath);
  let names = resourceArgs(command);
  if (names.length === 0 && ALL_BY_DEFAULT.has(verb)) names = ['all'];
  if (names.length === 0) throw new UdrbdError('No resource names specified', ExitCode.usage);
  const flags: DryRunFlags = { verbFlags: verbFlags(command.opts()), backendOptions: ctx.backendOptions };
  const stages: string[][] = [];
  const fromAll = names.length === 1 && names[0] === 'all';
  for (const name of expandResourceNames(config, ctx.nodeName, names)) {
    try {
      resolveVolumeArgument(config, ctx.nodeName, verb, name, fromAll);
    } catch (err) {
      // drbdadm stops at a name it cannot use: the calls of the names before it have run, a staged verb's have not.
      if (!Object.hasOwn(STAGED_PLANS, verb)) printLines(ctx, stages.flat());
      throw err;
    }
    stagesOf(verb, dryRunTarget(config, name, ctx.nodeName), flags, ctx.nodeName).forEach((lines, i) => (stages[i] ??= []).push(...lines));
  }
  printLines(ctx, stages.flat());
  throw new UdrbdError('', ExitCode.ok);
}

function printLines(ctx: CliContext, lines: readonly string[]): void {
  if (lines.length > 0) ctx.out(`${lines.join('\n')}\n`);
}
