/**
 * cli/argv — drbdadm's argument conventions on top of commander:
 *   udrbdadm [global opts] [-- <backend opts>] <verb> [<verb opts>] <res>...
 * Backend options given after `--` and before the verb are moved behind the
 * verb, so `udrbdadm -- --force primary r0` means `udrbdadm primary --force r0`
 * (drbdadm appends them to every generated call; here the verb receives them).
 */

export interface SplitArgv {
  /** argv with the backend options moved behind the verb. */
  argv: string[];
  backendOptions: string[];
}

/** `args` excludes node and script path. */
export function moveBackendOptions(args: readonly string[]): SplitArgv {
  const dashDash = args.indexOf('--');
  if (dashDash < 0) return { argv: [...args], backendOptions: [] };
  const before = args.slice(0, dashDash);
  const after = args.slice(dashDash + 1);
  let verbIndex = 0;
  while (verbIndex < after.length && after[verbIndex]!.startsWith('-')) verbIndex++;
  const backendOptions = after.slice(0, verbIndex);
  if (verbIndex >= after.length) return { argv: [...before, ...after], backendOptions };
  const verb = after[verbIndex]!;
  const rest = after.slice(verbIndex + 1);
  return { argv: [...before, verb, ...backendOptions, ...rest], backendOptions };
}
