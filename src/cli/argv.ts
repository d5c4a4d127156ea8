/**
 * cli/argv — drbdadm's argument conventions on top of commander:
 *   udrbdadm [global opts] [-- <backend opts>] <verb> [<verb opts>] <res>...
 *   udrbdadm [global opts] [<backend opts>] <verb> [<verb opts>] <res>...
 * Backend options given before the verb (after `--`, or mixed with the
 * global options as drbdadm 8.4 also accepts: `drbdadm --force primary r0`)
 * are moved behind the verb, so `udrbdadm -- --force primary r0` and
 * `udrbdadm --force primary r0` both mean `udrbdadm primary --force r0`
 * (drbdadm appends them to every generated call; here the verb receives them
 * and rejects the ones it does not know).
 */

export interface SplitArgv {
  /** argv with the backend options moved behind the verb. */
  argv: string[];
  backendOptions: string[];
}

/** udrbdadm's own global options that take a value (kept in front). */
const GLOBAL_WITH_VALUE: ReadonlySet<string> = new Set(['-c', '--config-file', '-n', '--node']);
/** udrbdadm's own global flags (kept in front). */
const GLOBAL_FLAGS: ReadonlySet<string> = new Set(['-d', '--dry-run', '-v', '--verbose', '-h', '--help', '-V', '--version']);

function isGlobalOption(arg: string): boolean {
  const name = arg.startsWith('--') ? arg.split('=', 1)[0]! : arg;
  return GLOBAL_WITH_VALUE.has(name) || GLOBAL_FLAGS.has(name);
}

/** `args` excludes node and script path. */
export function moveBackendOptions(args: readonly string[]): SplitArgv {
  const before: string[] = [];
  const backendOptions: string[] = [];
  let i = 0;
  // Leading options up to the verb (or `--`): global ones stay, the rest are backend options.
  while (i < args.length && args[i]!.startsWith('-') && args[i] !== '--') {
    const arg = args[i]!;
    if (isGlobalOption(arg)) {
      before.push(arg);
      if (GLOBAL_WITH_VALUE.has(arg) && i + 1 < args.length) before.push(args[++i]!);
    } else {
      backendOptions.push(arg);
    }
    i++;
  }
  if (args[i] === '--') {
    i++;
    while (i < args.length && args[i]!.startsWith('-')) backendOptions.push(args[i++]!);
  }
  if (i >= args.length) return { argv: [...before, ...backendOptions], backendOptions };
  const verb = args[i]!;
  const rest = args.slice(i + 1);
  return { argv: [...before, verb, ...backendOptions, ...rest], backendOptions };
}
