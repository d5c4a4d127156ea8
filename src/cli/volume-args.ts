/**
 * cli/volume-args — drbdadm-84's rules for `RES` and `RES/VNR` arguments:
 * which verbs act on a whole resource only (connect, down, ... refuse a
 * volume: "connect operates on whole resources, but you specified a specific
 * volume!", exit 1), which need one volume when the resource has several
 * (new-current-uuid, set-gi: "... requires a specific volume id, but none is
 * specified."), and the rest, which iterate over the volumes named. Messages
 * and exit codes as drbdadm-84 prints them (checked by the dry-run oracle).
 * Knows the configuration's volumes; nothing of the daemon.
 */
import { parseVolumeName, resolveVolumes, selectVolumes, type DrbdConfig, type VolumeName, type VolumeView } from '../config/index.js';
import { ExitCode, UdrbdError } from '../util/errors.js';

/** Verbs drbdadm-84 runs once per resource (its cmd table: no volume iteration). */
const WHOLE_RESOURCE_VERBS: ReadonlySet<string> = new Set([
  'connect', 'disconnect', 'down', 'status', 'dump', 'adjust', 'new-resource', 'events', 'sh-status',
]);

/** Verbs that act on one volume's generation UUIDs and need it named when there are several. */
const ONE_VOLUME_VERBS: ReadonlySet<string> = new Set(['new-current-uuid', 'set-gi']);

/** A verb's argument resolved: the resource and the volumes it names. */
export interface VolumeArgument {
  name: VolumeName;
  volumes: VolumeView[];
  /** Every volume of the resource on this node (the ones named are `volumes`). */
  all: VolumeView[];
}

/**
 * Checks one argument of `verb` against drbdadm's rules and resolves it;
 * throws drbdadm's error (exit 1). `fromAll`: the name came from `all`, which
 * names every volume (so new-current-uuid all needs no volume number).
 */
export function resolveVolumeArgument(config: DrbdConfig, nodeName: string, verb: string, written: string, fromAll = false): VolumeArgument {
  const name = parseVolumeName(written);
  if (name.vnr !== undefined && WHOLE_RESOURCE_VERBS.has(verb)) {
    throw new UdrbdError(`${verb} operates on whole resources, but you specified a specific volume!`, ExitCode.usage);
  }
  const all = resolveVolumes(config, name.resource, nodeName);
  const volumes = selectVolumes(all, name);
  if (name.vnr === undefined && !fromAll && all.length > 1 && ONE_VOLUME_VERBS.has(verb)) {
    throw new UdrbdError(
      `${verb} requires a specific volume id, but none is specified.\nTry '${verb} minor-<minor_number>' or '${verb} ${name.resource}/<vnr>'`,
      ExitCode.usage,
    );
  }
  return { name, volumes, all };
}

/**
 * The resource a RES or RES/VNR argument of `verb` names, checked as above,
 * for verbs that talk to the resource process as a whole (it runs every volume).
 */
export function resourceOfArgument(config: DrbdConfig, nodeName: string, verb: string, written: string, fromAll = false): string {
  return resolveVolumeArgument(config, nodeName, verb, written, fromAll).name.resource;
}
