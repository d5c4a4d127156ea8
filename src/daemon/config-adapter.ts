/**
 * daemon/config-adapter — turns config/'s ResourceView for this node into
 * the daemon's ResourceSpec. The only daemon file that reads config/ types.
 */
import { assertRunnableVolumes, loadConfig, metaDiskArgs, resolveResource, resolveVolumes, setupArgs, type DrbdConfig } from '../config/index.js';
import type { ResourceSpec, VolumeSpec } from './spec.js';

export function loadSpec(configPath: string, resource: string, node: string): ResourceSpec {
  const config = loadConfig(configPath);
  // A resource past the volumes one process carries is refused here, never run as some of its volumes.
  assertRunnableVolumes(config, resource, node);
  return specFromConfig(config, configPath, resource, node);
}

/** The spec of every volume of `resource` on `node`, without judging whether the process can run them all. */
export function specFromConfig(config: DrbdConfig, configPath: string, resource: string, node: string): ResourceSpec {
  const volumes = resolveVolumes(config, resource, node).map((v) => volumeSpecOf(config, resource, node, v.vnr));
  const first = volumes[0];
  if (first === undefined) throw new Error(`resource ${resource} has no volume on ${node}`);
  const view = resolveResource(config, resource, node);
  return {
    ...first,
    name: view.name,
    node,
    configPath,
    localAddress: view.localAddress,
    peer: view.peer ? { name: view.peer.name, address: view.peer.address } : undefined,
    handlers: { ...view.handlers },
    fencing: view.disk.fencing,
    volumes,
  };
}

function volumeSpecOf(config: DrbdConfig, resource: string, node: string, vnr: number): VolumeSpec {
  const view = resolveResource(config, resource, node, vnr);
  return {
    volume: view.volume,
    minor: view.minor,
    devicePath: view.devicePath,
    diskPath: view.diskPath,
    metaDisk: view.metaDisk,
    metaArgs: metaDiskArgs(view.metaDisk, view.diskPath),
    alExtents: view.disk.alExtents,
    writeOrdering: {
      diskBarrier: view.disk.diskBarrier,
      diskFlushes: view.disk.diskFlushes,
      diskDrain: view.disk.diskDrain,
      mdFlushes: view.disk.mdFlushes,
      alUpdates: view.disk.alUpdates,
    },
    configuredSizeBytes: view.disk.sizeSectors * 512,
    setupArgs: setupArgs(config, resource, node, vnr) ?? { net: [], attach: [], diskOptions: [], resource: [] },
    view,
  };
}
