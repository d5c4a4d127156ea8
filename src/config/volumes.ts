/**
 * config/volumes — the volumes of a resource as one node sees them, and the
 * `RES/VNR` names drbdadm-84 takes for one volume: each `volume N { }` of this
 * node's host section (resource-level volumes and disk options inherited, common
 * folded in, as drbdadm's expand_common does) with its minor, device, backing
 * disk, meta-disk and disk { } options. Also the one judgement of what the
 * running resource can carry (`runnableVolumeRefusal`): up to
 * VOLUMES_PER_RESOURCE_MAX volumes, of any numbers. Pure; knows nothing of daemons.
 */
import type { DrbdConfig, OptionEntry, SourcePos, VolumeDef } from './model.js';
import { bindNode } from './hosts.js';
import { expandCommon } from './dump.js';
import { metaDiskArgs, volumeMetaDisk, type MetaDiskArgs, type ResourceView } from './resolve.js';
import { ExitCode, UdrbdError } from '../util/errors.js';

/** A name as drbdadm-84 takes it: `r0` (the whole resource) or `r0/1` (volume 1 of r0). */
export interface VolumeName {
  resource: string;
  /** undefined: every volume of the resource. */
  vnr?: number;
  /** As the operator wrote it (drbdadm's messages quote it). */
  written: string;
}

/** One volume of a resource on this node, with everything drbdadm passes to drbdsetup and drbdmeta for it. */
export interface VolumeView {
  vnr: number;
  minor: number;
  devicePath: string;
  diskPath: string;
  metaDisk: ResourceView['metaDisk'];
  /** drbdmeta's and drbdsetup attach's device / index words for this volume. */
  meta: MetaDiskArgs;
  /** disk { } options in drbdadm's expanded order (resource and common options folded in). */
  diskOptions: readonly OptionEntry[];
  /** Where `volume N {` was written (undefined for the implicit volume 0). */
  at?: SourcePos;
}

/** Volumes one resource process runs: peer/handshake's EXCHANGED_VOLUMES_MAX and replication/epochs' EPOCH_MEMBERS_MAX are this number. */
export const VOLUMES_PER_RESOURCE_MAX = 256;

/** drbdadm's names: a resource name never holds '/' (the parser refuses it), so `r0/1` is volume 1 of r0. */
export function parseVolumeName(written: string): VolumeName {
  const slash = written.indexOf('/');
  if (slash < 0) return { resource: written, written };
  const vnrText = written.slice(slash + 1);
  const vnr = /^[0-9]+$/.test(vnrText) ? Number.parseInt(vnrText, 10) : Number.NaN;
  return { resource: written.slice(0, slash), vnr, written };
}

/** drbdadm's message for a name (resource or volume) this node has no section for; exit 1. */
export function notDefinedError(written: string): UdrbdError {
  return new UdrbdError(`'${written}' not defined in your config (for this host).`, ExitCode.usage);
}

/**
 * This node's volumes of `resourceName`, by volume number. A resource with no
 * section for this node is drbdadm's "not defined" (exit 1); host sections that
 * do not bind are exit 10, as resolveResource says.
 */
export function resolveVolumes(config: DrbdConfig, resourceName: string, nodeName: string): VolumeView[] {
  const { bindings, errors } = bindNode(config, nodeName);
  if (errors.length > 0) throw new UdrbdError(errors.join('').trimEnd(), ExitCode.configInvalid);
  const binding = bindings.find((b) => b.resource.name === resourceName);
  if (!binding || binding.ignored || !binding.me) throw notDefinedError(resourceName);
  const res = expandCommon(config).find((r) => r.name === resourceName)!;
  const me = res.hosts[binding.resource.hosts.indexOf(binding.me)]!;
  return me.volumes.map((vol) => volumeView(res.configFile, res.startLine, res.name, nodeName, vol));
}

function volumeView(file: string, line: number, resource: string, nodeName: string, vol: VolumeDef): VolumeView {
  // The parser reports a volume without disk or meta-disk (exit 10); an expanded volume always has a device.
  if (vol.disk === undefined || vol.metaDisk === undefined) {
    throw new UdrbdError(`${file}:${line}: in resource ${resource}: volume ${vol.vnr} has no disk on ${nodeName}`, ExitCode.configInvalid);
  }
  const metaDisk = volumeMetaDisk(vol);
  return {
    vnr: vol.vnr,
    minor: vol.minor,
    devicePath: vol.device ?? `/dev/drbd${vol.minor}`,
    diskPath: vol.disk,
    metaDisk,
    meta: metaDiskArgs(metaDisk, vol.disk),
    diskOptions: vol.diskOptions,
    ...(vol.at ? { at: vol.at } : {}),
  };
}

/** The volumes `name` addresses: all of them, or the one numbered `name.vnr` ("not defined" when there is none). */
export function selectVolumes(volumes: readonly VolumeView[], name: VolumeName): VolumeView[] {
  if (name.vnr === undefined) return [...volumes];
  const vol = volumes.find((v) => v.vnr === name.vnr);
  if (!vol) throw notDefinedError(name.written);
  return [vol];
}

/** What the resource process can run: exactly one volume, of any number (README "Multiple volumes"). */
export interface VolumeRefusal {
  /** `volume 1` — what the refusal is about, as written. */
  option: string;
  at: SourcePos;
  message: string;
}

/**
 * The one place that decides whether this node's volumes of a resource can
 * run: checkOptionSupport reports it, so `up`, `attach`, `adjust` and the
 * resource process's own start stop on it with exit 10, and
 * assertRunnableVolumes (daemon/config-adapter, the resource process's only
 * way from the configuration to its volumes) throws it. One resource process
 * runs every volume of its resource over one connection, as DRBD 8.4 does
 * (docs/multi-volume.md); what bounds it is the connect exchange and the
 * epoch stream, which carry at most VOLUMES_PER_RESOURCE_MAX volumes.
 * Undefined: it runs.
 */
export function runnableVolumeRefusal(resource: { readonly name: string }, volumes: readonly VolumeDef[], resourceAt: SourcePos): VolumeRefusal | undefined {
  if (volumes.length <= VOLUMES_PER_RESOURCE_MAX) return undefined;
  const extra = volumes[VOLUMES_PER_RESOURCE_MAX]!;
  const at = extra.at ?? resourceAt;
  const where = `${at.file}:${at.line}`;
  return {
    option: `volume ${extra.vnr}`,
    at,
    message:
      `${where}: resource ${resource.name} has ${volumes.length} volumes; udrbd runs at most ${VOLUMES_PER_RESOURCE_MAX} per resource ` +
      '(one connection carries their parameters and epochs): split the volumes over several resources, each with its own port',
  };
}

/**
 * For daemon/config-adapter: throws the refusal above as a UdrbdError (exit
 * 10) unless this node's volumes of the resource can run, so a resource
 * process never runs volume 0 of several.
 */
export function assertRunnableVolumes(config: DrbdConfig, resourceName: string, nodeName: string): void {
  const { bindings } = bindNode(config, nodeName);
  const binding = bindings.find((b) => b.resource.name === resourceName);
  if (!binding?.me) return;
  const refusal = runnableVolumeRefusal(binding.resource, binding.me.volumes, { file: binding.resource.sourceFile, line: binding.resource.startLine });
  if (refusal) throw new UdrbdError(refusal.message, ExitCode.configInvalid);
}
