/**
 * cli/option-check — the configuration options udrbd refuses or ignores,
 * checked before a resource process is started (`up`, `attach`) or a changed
 * configuration is applied (`adjust`): warnings go to stderr and the verb goes
 * on; refusals are all printed and the verb stops with exit 10, like a
 * configuration error. The judgement itself is config/support's; this file
 * only adds what the machine can do (native/udrbd-io for socket buffers).
 */
import { checkOptionSupport, loadConfig, type DrbdConfig, type SupportFindings } from '../config/index.js';
import { socketBufferSupport } from '../peer/socket-buffers.js';
import { ExitCode, UdrbdError } from '../util/errors.js';

/** checkOptionSupport with this machine's environment. */
export function findOptionIssues(config: DrbdConfig, resourceName: string, nodeName: string): SupportFindings {
  const unavailable = socketBufferSupport();
  return checkOptionSupport(config, resourceName, nodeName, unavailable === undefined ? {} : { socketBuffersUnavailable: unavailable });
}

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
