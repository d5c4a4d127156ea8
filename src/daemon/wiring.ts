/**
 * daemon/wiring — connects a ResourceRuntime to the resource state machine
 * (resource/), the peer link (peer/) and the data path (replication/):
 * defines the network and role verbs on the runtime and executes the
 * machine's actions. Filled in as those layers land.
 */
import type { ResourceRuntime } from './runtime.js';

export interface WiringOptions {
  discardMyData: boolean;
}

export function wireReplication(runtime: ResourceRuntime, options: WiringOptions): void {
  void runtime;
  void options;
}
