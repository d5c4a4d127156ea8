/**
 * daemon/wiring — connects a ResourceRuntime to the state rules
 * (resource/), the data path (replication/) and the peer link (peer/): one
 * VolumeWiring per volume (daemon/volume-wiring: its data path, its disk's
 * deadline and on-io-error, its verbs), and what is per resource — the
 * connection (daemon/link), fence-peer and fencing's I/O freeze
 * (daemon/fencing), resync-after (daemon/resync-after), the rules' context —
 * and the control verbs, each sent to the volumes it addresses (the one a
 * request names, or every volume in number order, as drbdadm runs a volume
 * verb per minor).
 */
import { ExitCode, UdrbdError } from '../util/errors.js';
import { ConnState } from '../resource/states.js';
import { type StateCtx, SsCode, defaultStateCtx, formatRefusalMessage, refusal } from '../resource/state.js';
import type { AdminResult } from '../resource/admin.js';
import type { ResourceView } from '../config/index.js';
import { PeerLink } from './link.js';
import { watchStateHandlers } from './state-handlers.js';
import { PeerFencing } from './fencing.js';
import { ListenFailedError } from './listen-failure.js';
import { DIAGNOSTIC_IO_BYTES_MAX } from '../control/protocol.js';
import { type ResourceRuntime, StateChangeRefused, type VerbResult } from './runtime.js';
import { defineMetricsVerb } from './metrics-source.js';
import { defineResizeVerb } from './resize.js';
import { installFaultLayer } from './fault-hook.js';
import { ResyncAfterWatch } from './resync-after.js';
import { type DataPath, VolumeWiring } from './volume-wiring.js';
import type { IoErrorPolicy } from './io-error.js';

type AdminPlan = Extract<AdminResult, { kind: 'ok' }>;

export type { DataPath } from './volume-wiring.js';

export interface WiringOptions {
  discardMyData: boolean;
}

export class Wiring {
  readonly link: PeerLink;
  /** fence-peer runs and the I/O freeze of `fencing resource-and-stonith` (daemon/fencing). */
  readonly fencing: PeerFencing;
  /** disk { resync-after }: this resource's aftr_isp from its dependency's state (daemon/resync-after). */
  readonly resyncAfter: ResyncAfterWatch;
  /** Each volume's data path and verbs, by volume number. */
  private readonly volumes = new Map<number, VolumeWiring>();

  constructor(
    readonly runtime: ResourceRuntime,
    options: WiringOptions,
  ) {
    this.link = new PeerLink(runtime);
    runtime.stateCtx = () => this.ctx();
    // The test fault layer stacks on the first volume's disk only (one plan file per resource).
    const faults = installFaultLayer(runtime, process.env);
    for (const vnr of runtime.volumeNumbers) this.volumes.set(vnr, new VolumeWiring(this, vnr, vnr === runtime.firstVolume ? faults : undefined));
    runtime.uuidsChanged = (vnr) => this.volume(vnr).link.sendUuids();
    this.fencing = new PeerFencing({ runtime, fencing: () => (runtime.spec.view as ResourceView).disk.fencing, ctx: () => this.ctx() });
    watchStateHandlers(runtime);
    this.resyncAfter = new ResyncAfterWatch(runtime, () => {
      for (const v of this.volumes.values()) v.link.applyPause();
    });
    this.resyncAfter.start();
    this.link.beforeResync = () => this.resyncAfter.beforeResync();
    void runtime.stopped.then(() => this.resyncAfter.stop());
    // After the link's, fencing's and the handlers' state hooks, as before volumes had their own wiring.
    for (const v of this.volumes.values()) v.install();
    runtime.disklessDeviceBytes = (vnr) => this.volume(vnr).disklessDeviceBytes();
    runtime.diskDrained = (vnr) => this.volume(vnr).diskDrained();
    runtime.attachCheck = (store, vnr) => this.volume(vnr).checkAttach(store);
    // A failed first listen fails `up` (daemon/listen-failure), and so does a net config the kernel's
    // connect refuses (drbdsetup's "Failure: (155) ...", exit 10); anything else is logged as before.
    runtime.connectHook = () =>
      this.link.connect(options.discardMyData).catch((err: Error) => {
        if (err instanceof ListenFailedError) throw err;
        if (err instanceof StateChangeRefused && err.code > 100) {
          const line = formatRefusalMessage(runtime.spec.minor, { ok: false, code: err.code, text: err.text, exitCode: err.exitCode, failure: true });
          throw new UdrbdError(line, err.exitCode);
        }
        runtime.log.error({ err }, `connect failed: ${err.message}`);
      });
    runtime.disconnectHook = () => this.link.disconnect();
    runtime.statusExtras = (vnr) => this.volume(vnr).statusExtras();
    this.defineVerbs();
    defineMetricsVerb(this);
    defineResizeVerb(runtime, this.link);
  }

  /** Volume vnr's data path and verbs. */
  volume(vnr: number): VolumeWiring {
    const v = this.volumes.get(vnr);
    if (v === undefined) throw new Error(`resource ${this.runtime.spec.name} has no volume ${vnr}`);
    return v;
  }

  /** The first volume's (the only one of a one-volume resource). */
  get first(): VolumeWiring {
    return this.volume(this.runtime.firstVolume);
  }

  /** The first volume's data path (adjust, metrics: the one-volume view). */
  get dataPath(): DataPath | undefined {
    return this.first.dataPath;
  }

  get ioErrors(): IoErrorPolicy {
    return this.first.ioErrors;
  }

  /** Every volume's data path that exists. */
  dataPaths(): DataPath[] {
    return [...this.volumes.values()].flatMap((v) => (v.dataPath ? [v.dataPath] : []));
  }

  /** `adjust` (disk-options): every attached disk's requests from now on get the new disk-timeout. */
  applyDiskTimeout(): void {
    for (const v of this.volumes.values()) v.applyDiskTimeout();
  }

  /** The rules' view of the configuration and of volume vnr's device (the first's without one). */
  ctx(vnr: number = this.runtime.firstVolume): StateCtx {
    const view = this.runtime.specOf(vnr).view as ResourceView;
    const runtime = this.runtime;
    return {
      ...defaultStateCtx,
      fencing: view.disk.fencing,
      allowTwoPrimaries: view.net.allowTwoPrimaries,
      // Read only by is_valid_state's "Secondary while open" rule, which requests alone check: a
      // getter, so an internal change does not scan /proc/*/fd (~5 ms a transition on a Primary).
      get deviceOpen(): boolean {
        return runtime.frontendHeldOpen(vnr);
      },
      hasNetConfig: this.runtime.snapshot.conn !== ConnState.StandAlone,
      verifyAlg: view.net.verifyAlg ?? null,
    };
  }

  /** `primary` of every volume, in number order (tests and the one-volume callers). */
  async primary(force: boolean): Promise<void> {
    for (const v of this.volumes.values()) await v.primary(force);
  }

  private defineVerbs(): void {
    const rt = this.runtime;
    const ok = (): VerbResult => ({ exitCode: 0 });
    /** A volume verb: the volume the request names (udrbdadm's RES/VNR, one request per minor), or every one. */
    const eachVolume = (name: string, fn: (v: VolumeWiring, args: Record<string, unknown>) => Promise<void>): void => {
      rt.defineVerb(name, async (args) => {
        for (const vnr of rt.addressedVolumes(args)) await fn(this.volume(vnr), args);
        return ok();
      });
    };
    eachVolume('primary', (v, args) => v.primary(Boolean(args.force)));
    eachVolume('secondary', (v) => v.secondary());
    rt.defineVerb('connect', async (args) => {
      // drbd_adm_connect needs no disk: a diskless node connects and works through the peer's.
      if (!rt.minorAllocated) {
        throw new UdrbdError(`${rt.spec.name}: udrbd connects a resource together with its volume, which does not exist yet: run 'udrbdadm new-minor ${rt.spec.name}' first`, ExitCode.configInvalid);
      }
      await this.link.connect(Boolean(args.discardMyData));
      return ok();
    });
    rt.defineVerb('disconnect', async () => {
      await this.link.disconnect();
      return ok();
    });
    eachVolume('new-current-uuid', (v, args) => v.newCurrentUuid(Boolean(args.clearBitmap)));
    eachVolume('outdate', (v) => v.outdate());
    eachVolume('invalidate', (v) => v.invalidate());
    eachVolume('invalidate-remote', (v) => v.invalidateRemote());
    eachVolume('verify', (v) => v.verify());
    for (const [verb, pause] of [['pause-sync', true], ['resume-sync', false]] as const) {
      eachVolume(verb, (v) => v.pauseSync(pause, verb));
    }
    rt.defineVerb('io.write', async (args) => {
      const dp = this.volume(rt.addressedVolume(args)).requirePrimaryDataPath();
      const data = Buffer.from(String(args.base64 ?? ''), 'base64');
      if (data.length === 0 || data.length > DIAGNOSTIC_IO_BYTES_MAX) return { exitCode: ExitCode.usage, stderr: 'io.write: bad length\n' };
      await this.fencing.guard(dp.volume).write(data, Number(args.offsetBytes), { fua: Boolean(args.fua) });
      return ok();
    });
    rt.defineVerb('io.flush', async (args) => {
      await this.fencing.guard(this.volume(rt.addressedVolume(args)).requirePrimaryDataPath().volume).flush();
      return ok();
    });
  }

  /** Applies resource/admin's verdict: throws DRBD's refusal, or returns the accepted plan (states, effects). */
  admin(result: AdminResult): AdminPlan {
    if (result.kind === 'refused') {
      for (const line of result.logLines) this.runtime.log.warn(line);
      throw new StateChangeRefused(result.refusal.code, result.refusal.text, result.refusal.exitCode);
    }
    // daemon/fencing runs fence-peer before the request (beforePromote), so a plan never asks for it; if one did, refuse.
    if (result.kind === 'fence-peer') throw new StateChangeRefused(SsCode.primaryNop, refusal(SsCode.primaryNop).text, ExitCode.stateChangeFailed);
    for (const line of result.logLines) {
      if (line.startsWith('Forced')) this.runtime.log.warn(line);
      else this.runtime.log.info(line);
    }
    return result;
  }

  /** The first volume's Primary data path (the one-volume diagnostic callers). */
  requirePrimaryDataPath(): DataPath {
    return this.first.requirePrimaryDataPath();
  }
}

export function wireReplication(runtime: ResourceRuntime, options: WiringOptions): Wiring {
  return new Wiring(runtime, options);
}
