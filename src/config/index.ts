/**
 * config — the DRBD 8.4 configuration language, as drbdadm-84 reads it.
 * Public API for every other layer: load a file, list this node's resources,
 * and resolve one resource into this node's typed, defaulted view. Errors are
 * UdrbdError with drbdadm's wording and exit code (10 for an invalid config).
 * Knows nothing about sockets, disks or the daemon.
 */
import { UdrbdError } from '../util/errors.js';
import { ConfigParseError, Parser } from './parser.js';
import type { DrbdConfig } from './model.js';
import { bindNode } from './hosts.js';

export type { DrbdConfig, ResourceDef, HostSection, VolumeDef, OptionEntry, AddressDef, GlobalOptions, SourcePos } from './model.js';
export type {
  ResourceView, NetOptions, DiskOptions, StartupOptions, ResolvedAddress, Protocol, Fencing, OnIoError,
  AfterSb0pri, AfterSb1pri, AfterSb2pri, RrConflict, OnNoDataAccessible,
  MetaDiskArgs,
} from './resolve.js';
export { metaDiskArgs, resolveResource, volumeMetaDisk } from './resolve.js';
export { dumpConfig, expandCommon, escapeValue } from './dump.js';
export { bindNode, validateBindings, type NodeBinding } from './hosts.js';
export {
  checkOptionSupport, judgeOption, supportRule, supportTableMarkdown, SUPPORT_TABLE,
  type Finding, type SupportFindings, type SupportEnvironment, type SupportRule, type SupportStatus, type Verdict,
} from './support.js';
export { setupArgs, shellEscape, withResyncAfterMinor, type SetupArgs } from './setup-args.js';
export {
  assertRunnableVolumes, notDefinedError, parseVolumeName, resolveVolumes, runnableVolumeRefusal, selectVolumes, VOLUMES_PER_RESOURCE_MAX,
  type VolumeName, type VolumeRefusal, type VolumeView,
} from './volumes.js';

/**
 * Parse `path` (and its includes). Throws UdrbdError carrying exactly what
 * drbdadm-84 prints on stderr, with its exit code (10 for parse errors).
 * Non-fatal parse messages are in `config.warnings`.
 */
export function loadConfig(path: string): DrbdConfig {
  try {
    return new Parser(path).parse();
  } catch (err) {
    if (err instanceof ConfigParseError) throw new UdrbdError(err.stderr.replace(/\n$/, ''), err.exitCode);
    throw err;
  }
}

/**
 * The resources a verb acts on, as drbdadm-84 expands them: `all` (or no
 * name) means every resource with a section for this node; none in the
 * config at all is "no resources defined!" (whatever was named), none for this node is drbdadm's
 * two-line warning — both exit 1, before anything is done. Named resources
 * are returned as given (resolveResource judges each).
 */
export function expandResourceNames(config: DrbdConfig, nodeName: string, names: readonly string[]): string[] {
  if (config.resources.length === 0) throw new UdrbdError('no resources defined!', 1);
  const all = names.length === 0 || (names.length === 1 && names[0] === 'all');
  if (!all) return [...names];
  const mine = resourcesForNode(config, nodeName);
  if (mine.length === 0) {
    throw new UdrbdError(
      `WARN: no normal resources defined for this host (${nodeName})!?\nMisspelled name of the local machine with the 'on' keyword ?`,
      1,
    );
  }
  return mine;
}

/** Resources with a host section for `nodeName`, in file order (drbdadm sh-resources). */
export function resourcesForNode(config: DrbdConfig, nodeName: string): string[] {
  return bindNode(config, nodeName).bindings.filter((b) => !b.ignored).map((b) => b.resource.name);
}
