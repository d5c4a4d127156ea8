/**
 * meta/resource-up — the one question the meta-data verbs ask of the running
 * system: is this resource attached (its resource process up)? drbdmeta
 * refuses md-modifying commands on a configured minor ("Device '<minor>' is
 * configured!", exit 20); udrbdadm does the same through this hook.
 * Knows nothing of how the daemon is found; the daemon layer replaces the body.
 */

/**
 * True while the resource process for `resource` on `nodeName` is up.
 * HOOK: returns false until daemon/ provides a liveness check (control socket
 * in /run/udrbd). Callers: src/cli/commands/meta.ts.
 */
export function isResourceUp(resource: string, nodeName: string): boolean {
  void resource;
  void nodeName;
  return false;
}
