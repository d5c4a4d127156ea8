/**
 * daemon/startup-info — what the boot-time verbs (wait-connect,
 * wait-con-int, proc-drbd, init-status, sh-status) ask a resource process:
 * the raw status snapshot plus the kernel's "timeout type" for
 * wait-connect (drbd_nl.c: drbd_adm_get_timeout_type). The type is decided from the meta-data
 * flags as they were on disk at attach: PRIMARY_IND set and CONNECTED_IND
 * clear (a disconnected Primary before the restart) → UT_DEGRADED; the peer
 * known Outdated → UT_PEER_OUTDATED; else UT_DEFAULT. Registers one control
 * verb, `startup-info`; knows nothing of how the CLI uses the answer.
 */
import { DiskState } from '../resource/states.js';
import { diskStateFromMdFlags } from '../resource/md-flags.js';
import type { ResourceRuntime } from './runtime.js';
import type { StatusSnapshot } from './status.js';

export type TimeoutType = 'UT_DEFAULT' | 'UT_DEGRADED' | 'UT_PEER_OUTDATED';

export interface StartupInfo {
  status: StatusSnapshot;
  timeoutType: TimeoutType;
  /** The MDF flags word read at attach (before this process changed it); null while never attached. */
  mdFlagsAtAttach: number | null;
}

/** The kernel's choice (drbd_adm_get_timeout_type): peer Outdated first, then the degraded indication. */
export function timeoutTypeOf(pdsk: DiskState, mdFlagsAtAttach: number | null): TimeoutType {
  if (pdsk === DiskState.Outdated) return 'UT_PEER_OUTDATED';
  if (mdFlagsAtAttach === null) return 'UT_DEFAULT';
  const derived = diskStateFromMdFlags(mdFlagsAtAttach, 'dont-care');
  if (derived.pdsk === DiskState.Outdated) return 'UT_PEER_OUTDATED';
  return derived.useDegrWfcTimeout ? 'UT_DEGRADED' : 'UT_DEFAULT';
}

export function registerStartupInfo(runtime: ResourceRuntime): void {
  let mdFlagsAtAttach: number | null = null;
  // Attach hooks run right after the meta-data is read, before the first state change rewrites the flags.
  runtime.attachHooks.push((store, vnr) => {
    if (vnr === runtime.firstVolume) mdFlagsAtAttach = store.mdFlags;
  });
  runtime.defineVerb('startup-info', async () => {
    const status = runtime.status();
    const info: StartupInfo = { status, timeoutType: timeoutTypeOf(status.pdsk, mdFlagsAtAttach), mdFlagsAtAttach };
    return { exitCode: 0, stdout: `${JSON.stringify(info)}\n` };
  });
}
