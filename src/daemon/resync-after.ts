/**
 * daemon/resync-after — `disk { resync-after RES; }`: this resource's resync
 * waits while RES (on this node) resyncs. DRBD 8.4 keeps every minor in one
 * kernel and decides in drbd_worker.c (_drbd_may_sync_now, _drbd_pause_after,
 * _drbd_resume_next): a device may sync unless the device it names is in a
 * sync state (SyncSource/SyncTarget/PausedSync*) or has a pause flag of its
 * own (aftr_isp, peer_isp, user_isp) — the last one carries the chain on,
 * since every device whose dependency is blocked gets aftr_isp too, syncing
 * or not. Each volume follows its own `resync-after` (a disk option; `res/N`
 * names volume N, `res` the first). A volume of the same resource is looked
 * at in this process; another resource's, through the control socket
 * of its process (daemon/paths: the same run dir, this node)
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
  return resyncAfterDependency(view)?.resource;
}

/** The device `resync-after` names: a resource and its volume (undefined: its first, as drbdadm takes `res`). */
export function resyncAfterDependency(view: ResourceView): { resource: string; volume: number | undefined } | undefined {
  const value = view.disk.resyncAfter;
  if (value === undefined || value === '') return undefined;
  const [resource, vnr] = value.split('/');
  return { resource: resource ?? value, volume: vnr === undefined || !/^[0-9]+$/.test(vnr) ? undefined : Number(vnr) };
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
    // The volume asked about (`res/N`), or the first (`res`); a volume the resource lacks blocks nothing, as a missing minor.
    runtime.defineVerb(RESYNC_AFTER_STATE_VERB, async (args) => {
      const vnr = typeof args.volume === 'number' ? args.volume : runtime.firstVolume;
      const state = runtime.volumeNumbers.includes(vnr) ? resyncAfterState(runtime.volumeSnapshot(vnr)) : { unconfigured: true, blocksDependents: false };
      return { exitCode: 0, stdout: `${JSON.stringify(state)}\n` };
    });
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

  /** Each volume's aftr_isp from the device its own `resync-after` names (a disk option: per volume). */
  private async look(): Promise<void> {
    const rt = this.runtime;
    let changed = false;
    for (const vnr of rt.volumeNumbers) {
      const dependency = resyncAfterDependency(rt.specOf(vnr).view as ResourceView);
      const own = rt.volumeSnapshot(vnr);
      const blocked = dependency !== undefined && !isUnconfigured(own) && (await this.dependencyBlocks(dependency));
      if (rt.volumeSnapshot(vnr).aftrIsp === blocked) continue;
      const named = dependency === undefined ? '' : `${dependency.resource}${dependency.volume === undefined ? '' : `/${dependency.volume}`}`;
      await rt.setVolumeState(vnr, { aftrIsp: blocked }, blocked ? `resync-after ${named}: it is resyncing` : 'resync-after: the dependency is done');
      if (rt.volumeSnapshot(vnr).aftrIsp === blocked) changed = true;
    }
    if (changed) this.changed();
  }

  private async dependencyBlocks(dependency: { resource: string; volume: number | undefined }): Promise<boolean> {
    const rt = this.runtime;
    if (dependency.resource === rt.spec.name) {
      // A volume of this resource: its state is here (DRBD: another minor of the same kernel).
      const vnr = dependency.volume ?? rt.firstVolume;
      if (!rt.volumeNumbers.includes(vnr)) return false;
      const state = resyncAfterState(rt.volumeSnapshot(vnr));
      return !state.unconfigured && state.blocksDependents;
    }
    return this.remoteBlocks(dependency.resource, dependency.volume);
  }

  private async remoteBlocks(dependency: string, volume: number | undefined): Promise<boolean> {
    try {
      if (this.clientFor !== dependency) this.dropClient();
      if (!this.client) {
        const paths = runtimePaths(dependency, this.runtime.spec.node);
        if (!ControlClient.isUp(paths)) return false;
        this.client = await ControlClient.connect(paths, CONNECT_TIMEOUT_MS);
        this.clientFor = dependency;
      }
      const reply = await this.client.request(RESYNC_AFTER_STATE_VERB, volume === undefined ? {} : { volume }, REPLY_TIMEOUT_MS);
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
