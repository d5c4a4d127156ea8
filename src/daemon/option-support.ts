/**
 * daemon/option-support — the resource process's own check of the options
 * udrbd refuses or ignores (config/support via cli/option-check), run before
 * attach: each warning is logged, a refusal stops the process with exit 10 (so
 * a process started without `udrbdadm up` cannot run on them either).
 */
import { loadConfig } from '../config/index.js';
import { findOptionIssues } from '../cli/option-check.js';
import { ExitCode, UdrbdError } from '../util/errors.js';
import type { Logger } from '../util/log.js';

export function checkOptionsAtStart(configPath: string, resource: string, node: string, log: Logger): void {
  const { refusals, warnings } = findOptionIssues(loadConfig(configPath), resource, node);
  for (const w of warnings) log.warn({ option: w.option, file: w.file, line: w.line }, w.message);
  if (refusals.length > 0) throw new UdrbdError(refusals.map((r) => r.message).join('\n'), ExitCode.configInvalid);
}
