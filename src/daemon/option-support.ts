/**
 * daemon/option-support — the options udrbd refuses or ignores (config/support)
 * judged with what this machine can do (native/udrbd-io for socket buffers).
 * findOptionIssues is shared with udrbdadm (cli/option-check, before `up` and
 * `adjust`); checkOptionsAtStart is the resource process's own check before
 * attach: each warning is logged, a refusal stops the process with exit 10 (so
 * a process started without `udrbdadm up` cannot run on them either).
 */
import { checkOptionSupport, loadConfig, type DrbdConfig, type SupportFindings } from '../config/index.js';
import { socketBufferSupport } from '../peer/socket-buffers.js';
import { ExitCode, UdrbdError } from '../util/errors.js';
import type { Logger } from '../util/log.js';

/** checkOptionSupport with this machine's environment. */
export function findOptionIssues(config: DrbdConfig, resourceName: string, nodeName: string): SupportFindings {
  const unavailable = socketBufferSupport();
  return checkOptionSupport(config, resourceName, nodeName, unavailable === undefined ? {} : { socketBuffersUnavailable: unavailable });
}

export function checkOptionsAtStart(configPath: string, resource: string, node: string, log: Logger): void {
  const { refusals, warnings } = findOptionIssues(loadConfig(configPath), resource, node);
  for (const w of warnings) log.warn({ option: w.option, file: w.file, line: w.line }, w.message);
  if (refusals.length > 0) throw new UdrbdError(refusals.map((r) => r.message).join('\n'), ExitCode.configInvalid);
}
