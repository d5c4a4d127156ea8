/**
 * cli/resource-up — is a resource process running for this resource and
 * node? Answered from the pid file the daemon keeps in its runtime dir
 * (daemon/paths), so md-modifying verbs can refuse like drbdmeta does on a
 * configured minor ("Device '<minor>' is configured!", exit 20).
 */
import { isProcessAlive, readPid, runtimePaths } from '../control/paths.js';

export function isResourceUp(resource: string, nodeName: string): boolean {
  const pid = readPid(runtimePaths(resource, nodeName));
  return pid !== undefined && isProcessAlive(pid);
}
