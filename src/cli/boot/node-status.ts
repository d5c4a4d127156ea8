/**
 * cli/boot/node-status — the live state of every resource of this node, as
 * the status screens (/proc/drbd, the init script's table, sh-status) need
 * it: one entry per resource of the configuration that has a section for
 * this node, in configuration order, each with its config view, its
 * configured volumes and the snapshot its resource process reports
 * (`startup-info` control verb). A resource whose process is not running is
 * reported as DRBD reports a minor with nothing configured (StandAlone,
 * Diskless, Secondary), one per configured volume.
 * Knows nothing of how the screens look.
 */
import type { CliContext } from '../context.js';
import { expandResourceNames, loadConfig, resolveResource, resolveVolumes, resourcesForNode, type ResourceView, type VolumeView } from '../../config/index.js';
import { runtimePaths, type RuntimePaths } from '../../control/paths.js';
import { ResourceNotUpError, callResource } from '../../control/client.js';
import { unconfiguredState } from '../../resource/state.js';
import type { StatusSnapshot } from '../../daemon/status.js';
import type { StartupInfo, TimeoutType } from '../../daemon/startup-info.js';
import { UdrbdError } from '../../util/errors.js';

/** A status query is a local socket round trip; a process that does not answer in this long is reported as an error. */
export const STATUS_QUERY_TIMEOUT_MS = 10_000;

export interface ResourceEntry {
  view: ResourceView;
  /** This node's volumes of the resource in volume order (config/volumes); the first is the view's. */
  volumes: readonly VolumeView[];
  paths: RuntimePaths;
  /** True when the resource process answered. */
  up: boolean;
  status: StatusSnapshot;
  timeoutType: TimeoutType;
}

/** What a resource that is not up looks like: an unconfigured minor per configured volume. */
export function notUpSnapshot(view: ResourceView, node: string, volumes: readonly VolumeView[] = []): StatusSnapshot {
  const first = unconfiguredMinor(view, node, view.minor, view.volume, view.devicePath);
  if (volumes.length <= 1) return first;
  return { ...first, volumes: volumes.map((v) => unconfiguredMinor(view, node, v.minor, v.vnr, v.devicePath)) };
}

function unconfiguredMinor(view: ResourceView, node: string, minor: number, volume: number, device: string): StatusSnapshot {
  return {
    ...unconfiguredState,
    resource: view.name,
    node,
    peerNode: view.peer?.name,
    minor,
    volume,
    device,
    protocol: undefined,
    uuids: undefined,
    outOfSyncKiB: 0,
    sync: undefined,
    counters: {},
    exposed: false,
    pid: 0,
  };
}

/** Asks one resource process for its startup info; a process that is not running is "not up". */
export async function queryResource(view: ResourceView, paths: RuntimePaths, node: string, volumes: readonly VolumeView[] = []): Promise<ResourceEntry> {
  try {
    const reply = await callResource(paths, 'startup-info', {}, STATUS_QUERY_TIMEOUT_MS);
    if (!reply.ok) {
      throw new UdrbdError(`udrbd resource ${view.name} on node ${node}: startup-info failed (${reply.exitCode}): ${reply.stderr.trim()}`, reply.exitCode);
    }
    const info = JSON.parse(reply.stdout) as StartupInfo;
    return { view, volumes, paths, up: true, status: info.status, timeoutType: info.timeoutType };
  } catch (err) {
    if (err instanceof ResourceNotUpError) return { view, volumes, paths, up: false, status: notUpSnapshot(view, node, volumes), timeoutType: 'UT_DEFAULT' };
    throw err;
  }
}

/**
 * The resources named (or all of this node's for none / `all`), each queried.
 * `allowNone`: a node without resources has an empty list (as /proc/drbd
 * has no minors) instead of drbdadm's "no resources" error.
 */
export async function collectNodeStatus(ctx: CliContext, names: readonly string[] = [], options: { allowNone?: boolean } = {}): Promise<ResourceEntry[]> {
  const config = loadConfig(ctx.configPath);
  const expanded = options.allowNone && names.length === 0 ? resourcesForNode(config, ctx.nodeName) : expandResourceNames(config, ctx.nodeName, names);
  const entries: ResourceEntry[] = [];
  for (const name of expanded) {
    const view = resolveResource(config, name, ctx.nodeName);
    entries.push(await queryResource(view, runtimePaths(name, ctx.nodeName), ctx.nodeName, resolveVolumes(config, name, ctx.nodeName)));
  }
  return entries;
}
