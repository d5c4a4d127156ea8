/**
 * daemon/fencing — carries out resource/fencing's rules in the resource
 * process: runs the fence-peer handler when a Primary loses its peer
 * (asynchronously, as conn_try_outdate_peer_async) and before a promotion
 * that needs it (drbd_set_role), applies the handler's answer to the state
 * (pdsk Outdated / Inconsistent, or this disk Outdated — recorded in the
 * meta-data flags by the runtime's state change), and freezes the Primary's
 * I/O (disk/io-gate) while susp_fen is set, releasing it once the peer is
 * known Outdated, the connection is back or the operator runs `resume-io`.
 * One handler run at a time: a promotion arriving while the link-loss run is
 * under way shares its answer.
 * Knows nothing of sockets or the data path beyond the gate.
 */
import type { BlockDevice } from '../disk/block-device.js';
import { GatedDevice, IoGate } from '../disk/io-gate.js';
import {
  type FenceOutcome,
  IGNORING_EXIT_CODE_LINE,
  NOT_CONSISTENT_LINE,
  fenceLogLevel,
  fenceOnConnectionLoss,
  fenceReleasesIo,
  interpretFencePeer,
  promotionAfterFence,
  promotionNeedsFencing,
} from '../resource/fencing.js';
import { type Fencing, type ResourceState, type StateCtx, type SsCode, formatRefusalLog } from '../resource/state.js';
import { ConnState, DiskState } from '../resource/states.js';
import type { ResourceRuntime } from './runtime.js';
import { runAside } from '../util/aside.js';

export interface FencingDeps {
  runtime: ResourceRuntime;
  /** The configured `disk { fencing }` (read at each use: `adjust` may change it). */
  fencing: () => Fencing;
  /** The state rules' context (soft checks of the handler's answer). */
  ctx: () => StateCtx;
}

export class PeerFencing {
  /** Closed while susp_fen is set. */
  readonly gate = new IoGate();
  private readonly gated = new WeakMap<BlockDevice, GatedDevice>();
  /** The handler run in progress (shared by a promotion that needs it meanwhile). */
  private running: Promise<FenceOutcome> | undefined;
  /** Counts connections (WFReportParams reached): a handler answer from before the last one is stale. */
  private connectCount = 0;

  constructor(private readonly deps: FencingDeps) {
    // fence-peer is the connection's; its first volume's pdsk decides (DRBD 8.4 calls it once per connection).
    deps.runtime.stateHooks.push((before, after, vnr) => {
      if (vnr === deps.runtime.firstVolume) this.onStateChange(before, after);
    });
    deps.runtime.defineVerb('resume-io', async () => {
      await this.resumeIo();
      return { exitCode: 0 };
    });
  }

  /**
   * `resume-io` (drbd_adm_resume_io): the operator releases I/O frozen by
   * fencing whatever the handler answered; a no-op when nothing is frozen.
   */
  async resumeIo(): Promise<void> {
    if (!this.deps.runtime.snapshot.suspFen) return;
    await this.deps.runtime.setConnState({ suspFen: false }, 'resume-io');
  }

  /** The device to expose (and write through) instead of `device`: frozen while susp_fen is set. */
  guard(device: BlockDevice): BlockDevice {
    let gated = this.gated.get(device);
    if (!gated) {
      gated = new GatedDevice(device, this.gate);
      this.gated.set(device, gated);
    }
    return gated;
  }

  private onStateChange(before: ResourceState, after: ResourceState): void {
    if (before.conn < ConnState.WFReportParams && after.conn >= ConnState.WFReportParams) this.connectCount++;
    if (after.suspFen && !before.suspFen) {
      this.gate.freeze();
      this.deps.runtime.log.warn('I/O suspended (fencing resource-and-stonith): waiting for the fence-peer handler');
    } else if (!after.suspFen && before.suspFen) {
      this.gate.thaw();
      this.deps.runtime.log.info('I/O resumed');
    }
    if (fenceOnConnectionLoss(before, after, this.deps.fencing())) {
      // Not awaited: DRBD runs the handler from a worker while the state machine goes on; a failure is logged.
      runAside(this.afterConnectionLoss(), this.deps.runtime.log, 'fence-peer after the lost connection');
    }
  }

  /** conn_try_outdate_peer after the link went away as Primary. */
  private async afterConnectionLoss(): Promise<void> {
    const rt = this.deps.runtime;
    if (rt.snapshot.disk < DiskState.Consistent) {
      rt.log.warn(NOT_CONSISTENT_LINE);
      return;
    }
    const count = this.connectCount;
    const outcome = await this.runFencePeer();
    if (rt.snapshot.conn >= ConnState.WFReportParams || count !== this.connectCount) {
      rt.log.info(IGNORING_EXIT_CODE_LINE);
      return;
    }
    await this.apply(outcome);
  }

  /**
   * Before `primary`: runs fence-peer when drbd_set_role would and applies
   * its answer; returns what the promotion adds (disk UpToDate for a
   * Consistent disk whose peer is now Outdated, pdsk Outdated under --force).
   */
  async beforePromote(force: boolean): Promise<Partial<ResourceState>> {
    const rt = this.deps.runtime;
    if (!promotionNeedsFencing(rt.snapshot, this.deps.fencing(), force)) return {};
    const outcome = await this.runFencePeer();
    if (rt.snapshot.conn >= ConnState.WFReportParams) return {}; // connected meanwhile: the handshake decides
    await this.apply(outcome);
    const { patch, logLines } = promotionAfterFence(rt.snapshot, force);
    for (const line of logLines) rt.log.warn(line);
    return patch;
  }

  /** One run of the handler (or the one already running); an unconfigured handler answers 0, as drbdadm does. */
  private runFencePeer(): Promise<FenceOutcome> {
    if (this.running) return this.running;
    const rt = this.deps.runtime;
    const run = (async (): Promise<FenceOutcome> => {
      const exitCode = (await rt.runHandler('fence-peer')) ?? 0;
      const outcome = interpretFencePeer(exitCode, rt.snapshot, this.deps.fencing());
      for (const line of outcome.logLines) rt.log[fenceLogLevel(line)](line);
      return outcome;
    })();
    this.running = run;
    const done = (): void => {
      if (this.running === run) this.running = undefined;
    };
    run.then(done, done); // both callbacks return undefined: this branch never rejects
    return run;
  }

  /** The handler's answer as a state change (soft-checked, as DRBD's CS_VERBOSE request), then the release of frozen I/O. */
  private async apply(outcome: FenceOutcome): Promise<void> {
    const rt = this.deps.runtime;
    const before = rt.snapshot;
    if (Object.keys(outcome.patch).length > 0) {
      // conn_try_outdate_peer: conn_request_state on every volume, refused as a whole by the first volume that refuses.
      const refused = rt.connStateRefusal(outcome.patch);
      if (refused) {
        const lines = refused.code < 0 ? formatRefusalLog(refused.code as SsCode, refused.from, refused.wanted) : [`State change failed: ${refused.text}`];
        for (const line of lines) rt.log.warn(line);
      } else {
        await rt.setConnState(outcome.patch, 'fence-peer');
      }
    }
    const after = rt.snapshot;
    if (fenceReleasesIo(before, after)) await rt.setConnState({ suspFen: false }, 'fence-peer');
  }
}
