/**
 * control/ — the boundary between `udrbdadm` and a resource process: the
 * line-delimited JSON protocol (protocol.ts), the resource process's socket
 * server (control-server.ts) and udrbdadm's client (client.ts), where the
 * runtime files live (paths.ts), the per resource+node lock (lock.ts), and
 * how `up` starts a resource process (launcher.ts).
 *
 * Knows nothing of resource states, the data path or the peer: verbs are
 * names and JSON arguments here; daemon/ gives them meaning.
 */
export { ControlClient } from './client.js';
export { runtimePaths, type RuntimePaths } from './paths.js';
