/**
 * cli/resync-after-check — the check drbd_nl.c's drbd_resync_after_valid
 * makes when a device is attached or its disk options change: following
 * `resync-after` from this resource through the resources that are up on
 * this node must not come back to it (ERR_RESYNC_AFTER_CYCLE, 133: "This
 * would cause a resync-after dependency cycle"; drbdsetup prints it as
 * `MINOR: Failure: (133) …` and exits 10). The chain stops at a resource
 * that is not up, as the kernel's stops at a minor without a disk ("You are
 * free to depend on … not yet existing minors"). A name not in the
 * configuration is drbdadm's own error (config/hosts), before this runs;
 * 8.4's other refusal, ERR_RESYNC_AFTER (132), is for a minor number out of
 * range, which a resource name cannot produce.
 */
import { type DrbdConfig, loadConfig, resolveResource, resolveVolumes } from '../config/index.js';
import { ControlClient } from '../control/client.js';
import { runtimePaths } from '../control/paths.js';
import { resyncAfterDependency } from '../daemon/resync-after.js';
import { ErrCode } from '../resource/state.js';
import { ExitCode, UdrbdError } from '../util/errors.js';

export function refuseResyncAfterCycle(opts: { configPath: string; nodeName: string }, resource: string, setupVerb: 'attach' | 'disk-options'): void {
  const config = loadConfig(opts.configPath);
  // Each volume names its own device (`res` is that resource's first volume, `res/N` volume N).
  for (const volume of resolveVolumes(config, resource, opts.nodeName)) refuseCycleFrom(config, opts.nodeName, resource, volume.vnr, setupVerb);
}

function refuseCycleFrom(config: DrbdConfig, nodeName: string, resource: string, vnr: number, setupVerb: 'attach' | 'disk-options'): void {
  const start = resolveResource(config, resource, nodeName, vnr);
  // At most one hop per volume of the configuration: a longer walk has already gone round a loop.
  const hopsMax = config.resources.reduce((n, r) => n + Math.max(1, ...r.hosts.map((h) => h.volumes.length)), 0);
  let next = resyncAfterDependency(start);
  for (let hop = 0; next !== undefined && hop <= hopsMax; hop++) {
    const nextView = resolveResource(config, next.resource, nodeName, next.volume);
    if (next.resource === resource && nextView.volume === vnr) {
      throw new UdrbdError(
        `${start.minor}: Failure: (${ErrCode.resyncAfterCycle}) This would cause a resync-after dependency cycle\n` +
          `Command 'drbdsetup-84 ${setupVerb} ${start.minor}' terminated with exit code ${ExitCode.configInvalid}`,
        ExitCode.configInvalid,
      );
    }
    // Another resource that is not up ends the chain (its minors do not exist); this resource's own volumes do.
    if (next.resource !== resource && !ControlClient.isUp(runtimePaths(next.resource, nodeName))) return;
    next = resyncAfterDependency(nextView);
  }
}
