/**
 * daemon/config-adapter — turns config/'s ResourceView for this node into
 * the daemon's ResourceSpec. The only daemon file that reads config/ types.
 */
import { assertRunnableVolumes, loadConfig, metaDiskArgs, resolveResource, setupArgs } from '../config/index.js';
import type { ResourceSpec } from './spec.js';

export function loadSpec(configPath: string, resource: string, node: string): ResourceSpec {
  const config = loadConfig(configPath);
  // The view carries one volume: a resource with more (or numbered other than 0) is refused, never run as volume 0.
  assertRunnableVolumes(config, resource, node);
  const view = resolveResource(config, resource, node);
  return {
    name: view.name,
    node,
    configPath,
    minor: view.minor,
    volume: view.volume,
    devicePath: view.devicePath,
    diskPath: view.diskPath,
    metaDisk: view.metaDisk,
    metaArgs: metaDiskArgs(view.metaDisk, view.diskPath),
    localAddress: view.localAddress,
    peer: view.peer ? { name: view.peer.name, address: view.peer.address } : undefined,
    handlers: { ...view.handlers },
    fencing: view.disk.fencing,
    alExtents: view.disk.alExtents,
    writeOrdering: {
      diskBarrier: view.disk.diskBarrier,
      diskFlushes: view.disk.diskFlushes,
      diskDrain: view.disk.diskDrain,
      mdFlushes: view.disk.mdFlushes,
      alUpdates: view.disk.alUpdates,
    },
    configuredSizeBytes: view.disk.sizeSectors * 512,
    setupArgs: setupArgs(config, resource, node) ?? { net: [], attach: [], diskOptions: [], resource: [] },
    view,
  };
}
