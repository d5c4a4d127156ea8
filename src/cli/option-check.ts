/**
 * cli/option-check — the configuration options udrbd refuses or ignores,
 * checked before a resource process is started (`up`, `attach`) or a changed
 * configuration is applied (`adjust`): warnings go to stderr and the verb goes
 * on; refusals are all printed and the verb stops with exit 10, like a
 * configuration error. The judgement is config/support's, with this machine's
 * abilities added by daemon/option-support.
 */
import { loadConfig, type DrbdConfig } from '../config/index.js';
import { findOptionIssues } from '../daemon/option-support.js';
import { ExitCode, UdrbdError } from '../util/errors.js';

export { findOptionIssues } from '../daemon/option-support.js';

/**
 * Prints the warnings for `resourceName` on `err`; throws UdrbdError (exit 10)
 * carrying every refusal when there is any. `config` defaults to loading `configPath`.
 */
export function enforceOptionSupport(
  opts: { configPath: string; nodeName: string; err: (text: string) => void; config?: DrbdConfig },
  resourceName: string,
): void {
  const config = opts.config ?? loadConfig(opts.configPath);
  const { refusals, warnings } = findOptionIssues(config, resourceName, opts.nodeName);
  for (const w of warnings) opts.err(`${w.message}\n`);
  if (refusals.length > 0) {
    throw new UdrbdError(refusals.map((r) => r.message).join('\n'), ExitCode.configInvalid);
  }
}
