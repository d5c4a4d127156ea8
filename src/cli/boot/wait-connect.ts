/**
 * cli/boot/wait-connect — waiting for a resource to reach the peer, as
 * drbdsetup-84 `wait-connect` does (drbdsetup.c, its wait-connect command): the timeout is chosen
 * from wfc-timeout / degr-wfc-timeout / outdated-wfc-timeout by the timeout
 * type the resource process reports; the wait ends at Connected (or any
 * later state) of every volume (drbdadm waits on each minor in turn) and,
 * unless --wait-after-sb, at StandAlone (a split brain that dropped the
 * connection); a timeout is exit 5. Knows the control socket through
 * daemon/client only.
 */
import type { CliContext } from '../context.js';
import type { RuntimePaths } from '../../control/paths.js';
import { ControlClient } from '../../control/client.js';
import { isReplicating } from '../../daemon/events2.js';
import type { StartupInfo } from '../../daemon/startup-info.js';
import { volumesOf } from '../../daemon/status.js';
import { ConnState } from '../../resource/states.js';
import { UdrbdError, ExitCode } from '../../util/errors.js';
import { chooseWfcTimeout, type WfcTimeouts } from './wfc.js';
import { STATUS_QUERY_TIMEOUT_MS } from './node-status.js';

/** drbdsetup's exit code when wait-connect / wait-sync time out. */
export const WAIT_TIMEOUT_EXIT = 5;

export type WaitOutcome = 'connected' | 'standalone' | 'timeout' | 'aborted';

export interface WaitRequest {
  name: string;
  minor: number;
  paths: RuntimePaths;
  timeouts: WfcTimeouts;
  waitAfterSb: boolean;
  /** Ends the wait early (wait-con-int's "yes"); the outcome is then 'aborted'. */
  signal?: AbortSignal;
}

/** cstate < Unconnected: StandAlone or Disconnecting. */
const BELOW_UNCONNECTED_TEXTS: ReadonlySet<string> = new Set(['StandAlone', 'Disconnecting']);

/** Waits as drbdsetup wait-connect does; prints DRBD's fix-up messages through ctx.err. */
export async function waitConnect(ctx: CliContext, req: WaitRequest): Promise<WaitOutcome> {
  const client = await ControlClient.connect(req.paths);
  try {
    let settle: ((outcome: WaitOutcome) => void) | undefined;
    let failed: ((err: Error) => void) | undefined;
    const outcome = new Promise<WaitOutcome>((resolve, reject) => {
      settle = resolve;
      failed = reject;
    });
    // The process may go down before the wait below begins: keep that rejection handled until then.
    outcome.catch(() => undefined);
    const judgeStandAlone = (connection: string | undefined): void => {
      if (!req.waitAfterSb && connection !== undefined && BELOW_UNCONNECTED_TEXTS.has(connection)) settle!('standalone');
    };
    // The volumes to wait for (from startup-info); until it answers, any replicating volume counts, as with one.
    let volumes: string[] | undefined;
    const replicating = new Set<string>();
    const judgeConnected = (): void => {
      if (volumes === undefined ? replicating.size > 0 : volumes.every((v) => replicating.has(v))) settle!('connected');
    };
    await client.subscribe(
      (event) => {
        // events2's connection: says Connected from WFReportParams on; the handshake is done only once the
        // peer-device replicates (Established, Sync*, ...), which is drbdsetup's cstate >= Connected.
        if (event.object === 'peer-device') {
          const volume = event.fields.volume ?? '0';
          if (isReplicating(event.fields.replication)) replicating.add(volume);
          else if (event.fields.replication !== undefined) replicating.delete(volume);
          judgeConnected();
        } else if (event.object === 'connection') judgeStandAlone(event.fields.connection);
      },
      () => failed!(new UdrbdError(`udrbd resource ${req.name} on node ${req.paths.node} went down while waiting for the peer`, ExitCode.stateChangeFailed)),
    );
    const reply = await client.request('startup-info', {}, STATUS_QUERY_TIMEOUT_MS);
    if (!reply.ok) throw new UdrbdError(`${req.minor}: ${reply.stderr.trim()}`, reply.exitCode);
    const info = JSON.parse(reply.stdout) as StartupInfo;
    const chosen = chooseWfcTimeout(req.timeouts, info.timeoutType);
    for (const message of chosen.messages) ctx.err(message);
    const states = volumesOf(info.status);
    volumes = states.map((v) => String(v.volume));
    for (const v of states) if (v.conn >= ConnState.Connected) replicating.add(String(v.volume));
    judgeConnected();
    if (!req.waitAfterSb && info.status.conn < ConnState.Unconnected) settle!('standalone');
    const timer = chosen.timeoutS > 0 ? setTimeout(() => settle!('timeout'), chosen.timeoutS * 1000) : undefined;
    const onAbort = (): void => settle!('aborted');
    if (req.signal?.aborted) onAbort();
    req.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await outcome;
    } finally {
      if (timer) clearTimeout(timer);
      req.signal?.removeEventListener('abort', onAbort);
    }
  } finally {
    client.close();
  }
}
