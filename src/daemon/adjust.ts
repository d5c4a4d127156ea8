/**
 * daemon/adjust — the resource process's `adjust` control verb: re-reads
 * the configuration file, validates the whole change (checkWanted, the one
 * validation step), plans it (daemon/adjust-plan) and, unless asked for a
 * dry run, applies it: the new spec first (handlers, fencing, after-sb and
 * the addresses are read from it when next used), then attach /
 * disk-options / disconnect / connect / net-options on the live data path
 * and link. A refused change (exit 10) leaves the running resource exactly
 * as it was. Knows the wiring's public surface only; not the CLI.
 */
import { ExitCode, UdrbdError } from '../util/errors.js';
import { InvariantError } from '../util/assert.js';
import { ConnState } from '../resource/states.js';
import { checkNetOptions } from '../resource/admin.js';
import { ErrCode } from '../resource/state.js';
import { validateAuth } from '../peer/auth.js';
import { integrityDigest } from '../peer/integrity.js';
import type { ResourceView } from '../config/index.js';
import type { ProtocolPacket, SyncParamPacket } from '../peer/packets.js';
import { type LiveReplicationOptions, SECTOR_BYTES, blockDigest, requestTimeoutMs, resyncControllerSettings, resyncRateLimitKiBps, withDefaults } from '../replication/index.js';
import { loadSpec } from './config-adapter.js';
import { type AdjustPlan, type AdjustStep, planAdjustVolumes } from './adjust-plan.js';
import { type ResourceSpec, volumeSpec } from './spec.js';
import type { Wiring } from './wiring.js';
import type { VerbResult } from './runtime.js';

/** What the validation step found: refusals stop the whole adjust, warnings are printed and it goes on. */
export interface AdjustCheckResult {
  refusals: string[];
  warnings: string[];
}

/** The data-path options a configuration asks for (the same mapping the wiring uses at attach). */
export function liveReplicationOptions(view: ResourceView): Partial<LiveReplicationOptions> {
  return {
    protocol: view.net.protocol,
    maxBuffers: view.net.maxBuffers,
    maxEpochSize: view.net.maxEpochSize,
    requestTimeoutMs: requestTimeoutMs(view.net),
    resyncRateKiBps: resyncRateLimitKiBps({ resyncRateKiBps: view.disk.resyncRateKiBps, cPlanAheadTenthsS: view.disk.cPlanAheadDs, cMaxRateKiBps: view.disk.cMaxRateKiBps }),
    resyncController: resyncControllerSettings(view.disk),
    ...(view.net.verifyAlg ? { verifyAlg: view.net.verifyAlg } : {}),
    csumsAlg: view.net.csumsAlg ?? '',
    diskFlushes: view.disk.diskFlushes,
    onCongestion: view.net.onCongestion,
    congestionFillBytes: view.net.congestionFillSectors * SECTOR_BYTES,
    congestionExtents: view.net.congestionExtents,
  };
}

/**
 * The validation step: every check of the wanted configuration that must
 * pass before anything is applied. The option-support check (options udrbd
 * refuses or warns about, with FILE:LINE) plugs in here, and only here.
 */
export function checkWanted(wanted: ResourceSpec): AdjustCheckResult {
  const result: AdjustCheckResult = { refusals: [], warnings: [] };
  const view = wanted.view as ResourceView;
  const where = `${view.definedAt}: in resource ${wanted.name}`;
  // drbd_nl.c _check_net_options, as drbdsetup net-options reports it (exit 10).
  const netRefusal = checkNetOptions({ ...view.net, fencing: view.disk.fencing });
  if (netRefusal !== null) {
    const fix = netRefusal.code === ErrCode.stonithAndProtA ? 'use protocol B or C or another fencing policy' : 'use protocol A or on-congestion block';
    result.refusals.push(`${where}, net: Failure: (${netRefusal.code}) ${netRefusal.text}; ${fix}, and adjust again.`);
  }
  try {
    withDefaults(liveReplicationOptions(view));
  } catch (err) {
    if (!(err instanceof InvariantError)) throw err;
    result.refusals.push(`${where}: the data path refuses these options (${err.message.replace('invariant violated: ', '')}); fix the configuration and adjust again.`);
  }
  for (const [option, alg] of [['verify-alg', view.net.verifyAlg], ['csums-alg', view.net.csumsAlg]] as const) {
    if (!alg) continue;
    try {
      blockDigest(alg, option);
    } catch (err) {
      if (!(err instanceof UdrbdError)) throw err;
      result.refusals.push(`${where}, net: ${err.message}; fix the configuration and adjust again.`);
    }
  }
  try {
    integrityDigest(view.net.dataIntegrityAlg ?? '');
  } catch (err) {
    if (!(err instanceof UdrbdError)) throw err;
    result.refusals.push(`${where}, net: ${err.message}; fix the configuration and adjust again.`);
  }
  if (view.net.cramHmacAlg && view.net.sharedSecret) {
    try {
      validateAuth({ alg: view.net.cramHmacAlg, secret: view.net.sharedSecret });
    } catch (err) {
      if (!(err instanceof UdrbdError)) throw err;
      result.refusals.push(`${where}, net: ${err.message}; fix the configuration and adjust again.`);
    }
  }
  return result;
}

/** The JSON the verb answers with: the plan as data (the CLI prints its lines under -d). */
export interface AdjustReply {
  steps: AdjustStep[];
  applied: boolean;
}

/**
 * The peer ran net-options (P_PROTOCOL_UPDATE): adopt its protocol and
 * split-brain policies as DRBD 8.4's receive_protocol does, in the running
 * spec (status shows them; a later adjust compares against them) and in the
 * data path.
 */
function adoptPeerProtocol(wiring: Wiring, packet: ProtocolPacket): void {
  const rt = wiring.runtime;
  const view = rt.spec.view as ResourceView;
  const net = {
    ...view.net,
    protocol: packet.protocol,
    afterSb0pri: packet.afterSb0pri,
    afterSb1pri: packet.afterSb1pri,
    afterSb2pri: packet.afterSb2pri,
    allowTwoPrimaries: packet.allowTwoPrimaries,
  };
  if (JSON.stringify(net) === JSON.stringify(view.net)) return;
  rt.log.info({ protocol: net.protocol, afterSb0pri: net.afterSb0pri, afterSb1pri: net.afterSb1pri, afterSb2pri: net.afterSb2pri }, `peer changed the net options: protocol ${view.net.protocol} -> ${net.protocol}`);
  // Net options are the connection's: every volume's view takes them.
  rt.replaceSpec(withViews(rt.spec, () => true, (v) => ({ ...v, net: { ...v.net, ...net } })));
  for (const dp of wiring.dataPaths()) dp.applyOptions({ protocol: net.protocol });
}

/** `net` with the verify-alg and csums-alg of `from` (absent when `from` has none). */
function algsOf(net: ResourceView['net'], from: ResourceView['net']): ResourceView['net'] {
  const next = { ...net };
  if (from.verifyAlg) next.verifyAlg = from.verifyAlg;
  else delete next.verifyAlg;
  if (from.csumsAlg) next.csumsAlg = from.csumsAlg;
  else delete next.csumsAlg;
  return next;
}

/** The spec with `change` applied to the view of every volume `which` selects (the spec's own view is the first volume's). */
function withViews(spec: ResourceSpec, which: (vnr: number) => boolean, change: (view: ResourceView, vnr: number) => ResourceView): ResourceSpec {
  const volumes = spec.volumes.map((v) => (which(v.volume) ? { ...v, view: change(v.view as ResourceView, v.volume) } : v));
  const first = volumes.find((v) => v.volume === spec.volume);
  return { ...spec, view: first?.view ?? spec.view, volumes };
}

/**
 * The peer ran disk-options / net-options (P_SYNC_PARAM): adopt its
 * resync-rate and c-* settings for the volume the packet is about, and its
 * verify-alg and csums-alg for the connection, as DRBD 8.4's
 * receive_SyncParam does (disk_conf per device, net_conf per connection), so
 * an online verify or a resync uses the same parameters on both nodes.
 */
function adoptPeerSyncParam(wiring: Wiring, packet: SyncParamPacket): void {
  const rt = wiring.runtime;
  const vnr = rt.volumeNumbers.includes(packet.volume) ? packet.volume : rt.firstVolume;
  const view = rt.specOf(vnr).view as ResourceView;
  const disk = {
    ...view.disk,
    resyncRateKiBps: packet.resyncRateKiBps,
    cPlanAheadDs: packet.cPlanAheadDs,
    cDelayTargetDs: packet.cDelayTargetDs,
    cFillTargetSectors: packet.cFillTargetSectors,
    cMaxRateKiBps: packet.cMaxRateKiBps,
  };
  const net = { ...view.net };
  if (packet.verifyAlg) net.verifyAlg = packet.verifyAlg;
  else delete net.verifyAlg;
  if (packet.csumsAlg) net.csumsAlg = packet.csumsAlg;
  else delete net.csumsAlg;
  if (JSON.stringify({ disk, net }) === JSON.stringify({ disk: view.disk, net: view.net })) return;
  const next: ResourceView = { ...view, disk, net };
  const check = checkWanted({ ...volumeSpec(rt.spec, vnr), view: next });
  if (check.refusals.length > 0) {
    rt.log.warn({ refusals: check.refusals }, 'peer sent resync parameters this node cannot use; keeping its own');
    return;
  }
  rt.log.info(
    { volume: vnr, resyncRateKiBps: disk.resyncRateKiBps, cPlanAheadDs: disk.cPlanAheadDs, cMaxRateKiBps: disk.cMaxRateKiBps, verifyAlg: net.verifyAlg ?? null, csumsAlg: net.csumsAlg ?? null },
    `peer changed the resync parameters: resync-rate ${disk.resyncRateKiBps}K verify-alg ${net.verifyAlg ?? '(none)'} csums-alg ${net.csumsAlg ?? '(none)'}`,
  );
  rt.replaceSpec(withViews(rt.spec, () => true, (v, n) => ({ ...v, disk: n === vnr ? disk : v.disk, net: algsOf(v.net, net) })));
  for (const n of rt.volumeNumbers) wiring.volume(n).dataPath?.applyOptions(liveReplicationOptions(rt.specOf(n).view as ResourceView));
}

export function defineAdjust(wiring: Wiring): void {
  const rt = wiring.runtime;
  wiring.link.onPeerProtocolUpdate = (packet) => adoptPeerProtocol(wiring, packet);
  wiring.link.onPeerSyncParam = (packet) => adoptPeerSyncParam(wiring, packet);
  let inProgress = false;
  rt.defineVerb('adjust', async (args): Promise<VerbResult> => {
    if (inProgress) return { exitCode: ExitCode.stateChangeFailed, stderr: `udrbd resource ${rt.spec.name}: another adjust is still running; try again when it has finished\n` };
    inProgress = true;
    try {
      return await adjust(wiring, args);
    } finally {
      inProgress = false;
    }
  });
}

/** One adjust: read, validate, plan; apply unless it is a dry run. */
async function adjust(wiring: Wiring, args: Record<string, unknown>): Promise<VerbResult> {
  const rt = wiring.runtime;
  const configPath = typeof args.configPath === 'string' ? args.configPath : rt.spec.configPath;
  const dryRun = Boolean(args.dryRun);
  let wanted: ResourceSpec;
  try {
    wanted = loadSpec(configPath, rt.spec.name, rt.spec.node);
  } catch (err) {
    if (err instanceof UdrbdError) return { exitCode: err.exitCode, stderr: `${err.message}\n` };
    throw err;
  }
  const check = checkWanted(wanted);
  const verifying = (vnr: number): boolean => [ConnState.VerifyS, ConnState.VerifyT].some((c) => c === rt.volumeSnapshot(vnr).conn);
  const verifyRunning = rt.volumeNumbers.some(verifying);
  const plan = planAdjustVolumes(rt.spec, wanted, (vnr) => {
    const store = rt.storeOf(vnr);
    return {
      netConfigured: wiring.link.isRunning,
      attached: store !== undefined,
      verifyRunning,
      resyncRunning: wiring.link.resyncRunning,
      ...(store?.userSizeBytes === undefined ? {} : { userSizeBytes: store.userSizeBytes }),
    };
  });
  const warnings = check.warnings.map((w) => `${w}\n`).join('');
  const refusals = [...check.refusals, ...plan.refusals.map((r) => r.message)];
  if (refusals.length > 0) {
    for (const line of refusals) rt.log.warn({ configPath }, `adjust refused: ${line}`);
    return { exitCode: ExitCode.configInvalid, stderr: `${warnings}${refusals.join('\n')}\n` };
  }
  if (!dryRun) await apply(wiring, wanted, plan);
  const reply: AdjustReply = { steps: [...plan.steps], applied: !dryRun };
  return { exitCode: 0, stdout: JSON.stringify(reply), stderr: warnings };
}

/** Every volume's data path takes the options its own configuration asks for (disk options are per volume). */
function applyOptionsEverywhere(wiring: Wiring): void {
  for (const vnr of wiring.runtime.volumeNumbers) wiring.volume(vnr).dataPath?.applyOptions(liveReplicationOptions(wiring.runtime.specOf(vnr).view as ResourceView));
}

/** Executes a validated plan, in drbdadm's order. */
async function apply(wiring: Wiring, wanted: ResourceSpec, plan: AdjustPlan): Promise<void> {
  const rt = wiring.runtime;
  if (plan.steps.length === 0) {
    rt.replaceSpec(wanted); // e.g. startup options only: nothing to run, but the process reads the new file from now on
    return;
  }
  rt.log.info({ configPath: wanted.configPath, steps: plan.steps.map((s) => ({ kind: s.kind, changed: s.changed })) }, 'adjust: applying the new configuration');
  rt.replaceSpec(wanted);
  for (const step of plan.steps) {
    for (const line of step.lines) rt.log.info(`adjust: ${line}`);
    switch (step.kind) {
      case 'resource-options':
      case 'handlers':
        // read from the spec when next used
        break;
      case 'attach':
        await rt.attach(step.volume ?? rt.firstVolume);
        break;
      case 'disk-options': {
        const volume = wiring.volume(step.volume ?? rt.firstVolume);
        volume.dataPath?.applyOptions(liveReplicationOptions(rt.specOf(volume.vnr).view as ResourceView));
        volume.applyDiskTimeout(); // on-io-error is read at each error
        volume.link.sendSyncParam();
        break;
      }
      case 'disconnect':
        await wiring.link.disconnect();
        break;
      case 'connect':
        applyOptionsEverywhere(wiring);
        await wiring.link.connect(false);
        break;
      case 'net-options':
        applyOptionsEverywhere(wiring);
        wiring.link.applyNetOptions();
        wiring.link.sendProtocolUpdate();
        wiring.link.sendSyncParam();
        break;
    }
    if (step.changed.length > 0) rt.log.info({ changed: step.changed }, `adjust: ${step.kind} changed ${step.changed.join(', ')}`);
  }
}
