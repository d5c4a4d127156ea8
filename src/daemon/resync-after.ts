/**
 * daemon/resync-after — `disk { resync-after RES; }`: this resource's resync
 * waits while RES (on this node) resyncs. DRBD 8.4 keeps every minor in one
 * kernel and decides in drbd_worker.c (_drbd_may_sync_now, _drbd_pause_after,
 * _drbd_resume_next): a device may sync unless the device it names is in a
 * sync state (SyncSource/SyncTarget/PausedSync*) or has a pause flag of its
 * own (aftr_isp, peer_isp, user_isp) — the last one carries the chain on,
 * since every device whose dependency is blocked gets aftr_isp too, syncing
 * or not. udrbd runs one process per resource, so each process asks its
 * dependency's control socket (daemon/paths: the same run dir, this node)
 * for those flags, every RESYNC_AFTER_POLL_MS, and sets or clears its own
 * aftr_isp through the state machine (Sync* ⇄ PausedSync* follows in
 * sanitize). The socket, not a shared runtime file: it is already there,
 * answers only while the process lives (a dead dependency must not block
 * for ever), and needs no file to keep consistent. A dependency that is not
 * up, or Unconfigured, blocks nothing (DRBD: "You are free to depend on
 * diskless, non-existing, or not yet/no longer existing minors").
 * Also answers that question for resources that depend on this one
 * (verb `resync-after.state`). Cycles are refused by udrbdadm before `up`
 * (cli/commands/runtime), as drbd_nl.c's drbd_resync_after_valid does at attach.
 */
import type { ResourceView } from '../config/index.js';
import { ConnState } from '../resource/states.js';
import type { ResourceState } from '../resource/state.js';
import { runAside } from '../util/aside.js';
import { ControlClient } from '../control/client.js';
import { runtimePaths } from '../control/paths.js';
import type { ResourceRuntime } from './runtime.js';
import { isUnconfigured } from './status.js';

/**
 * How often a dependency is asked. DRBD decides at the dependency's state
 * change itself; here a resync may start (or resume) up to this late.
 */
export const RESYNC_AFTER_POLL_MS = 500;
const CONNECT_TIMEOUT_MS = 1_000;
const REPLY_TIMEOUT_MS = 2_000;
export const RESYNC_AFTER_STATE_VERB = 'resync-after.state';

/** What a dependent resource needs to know of this one. */
export interface ResyncAfterState {
  /** Not up in DRBD's sense (StandAlone, Diskless, Secondary): blocks nothing. */
  unconfigured: boolean;
  /** In a sync state or paused by any flag: whoever depends on this resource must wait. */
  blocksDependents: boolean;
}

const SYNC_STATES: ReadonlySet<ConnState> = new Set([ConnState.SyncSource, ConnState.SyncTarget, ConnState.PausedSyncS, ConnState.PausedSyncT]);

/** _drbd_may_sync_now's question about one device of the chain. */
export function resyncAfterState(s: ResourceState): ResyncAfterState {
  const unconfigured = isUnconfigured(s);
  return { unconfigured, blocksDependents: !unconfigured && (SYNC_STATES.has(s.conn) || s.aftrIsp || s.peerIsp || s.userIsp) };
}

/** The resource `resync-after` names ("res" or drbdadm's "res/volume"), or undefined. */
export function resyncAfterTarget(view: ResourceView): string | undefined {
  const value = view.disk.resyncAfter;
  return value === undefined || value === '' ? undefined : value.split('/')[0];
}

export class ResyncAfterWatch {
  private timer: NodeJS.Timeout | undefined;
  private client: ControlClient | undefined;
  private clientFor: string | undefined;
  private inFlight: Promise<void> | undefined;

  constructor(
    private readonly runtime: ResourceRuntime,
    /** Called after aftr_isp changed: the resync target pauses or resumes, the peer hears it. */
    private readonly changed: () => void,
  ) {
    runtime.defineVerb(RESYNC_AFTER_STATE_VERB, async () => ({ exitCode: 0, stdout: `${JSON.stringify(resyncAfterState(runtime.snapshot))}\n` }));
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (this.inFlight) return; // one look at a time; a slow dependency only delays the next one
      runAside(this.poll(), this.runtime.log, 'resync-after poll');
    }, RESYNC_AFTER_POLL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.dropClient();
  }

  /** One look at the dependency (the one in progress, if any); sets or clears this resource's aftr_isp. */
  poll(): Promise<void> {
    this.inFlight ??= this.look().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  /**
   * A fresh look, just before a resync starts: drbd_start_resync sets aftr_isp
   * at once when the dependency syncs, so not one request goes out before the pause.
   */
  async beforeResync(): Promise<void> {
    await this.inFlight;
    await this.poll();
  }

  private async look(): Promise<void> {
    const rt = this.runtime;
    const dependency = resyncAfterTarget(rt.spec.view as ResourceView);
    const blocked = dependency !== undefined && !isUnconfigured(rt.snapshot) && (await this.dependencyBlocks(dependency));
    if (rt.snapshot.aftrIsp === blocked) return;
    await rt.setVolumeState(rt.firstVolume, { aftrIsp: blocked }, blocked ? `resync-after ${dependency ?? ''}: it is resyncing` : 'resync-after: the dependency is done');
    if (rt.snapshot.aftrIsp === blocked) this.changed();
  }

  private async dependencyBlocks(dependency: string): Promise<boolean> {
    try {
      if (this.clientFor !== dependency) this.dropClient();
      if (!this.client) {
        const paths = runtimePaths(dependency, this.runtime.spec.node);
        if (!ControlClient.isUp(paths)) return false;
        this.client = await ControlClient.connect(paths, CONNECT_TIMEOUT_MS);
        this.clientFor = dependency;
      }
      const reply = await this.client.request(RESYNC_AFTER_STATE_VERB, {}, REPLY_TIMEOUT_MS);
      if (!reply.ok) return false;
      const state = JSON.parse(reply.stdout || '{}') as Partial<ResyncAfterState>;
      return state.unconfigured === false && state.blocksDependents === true;
    } catch {
      // Not up (any more), or not answering: as a minor that does not exist, it blocks nothing.
      this.dropClient();
      return false;
    }
  }

  private dropClient(): void {
    this.client?.close();
    this.client = undefined;
    this.clientFor = undefined;
  }
}
