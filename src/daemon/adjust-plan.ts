/**
 * daemon/adjust-plan — what `adjust` must do to bring a running resource to
 * a newly read configuration, as data: a list of steps in drbdadm-84's
 * order (resource-options, attach / disk-options, disconnect, connect /
 * net-options), each with the drbdsetup-84 lines drbdadm would print for it,
 * plus the changes udrbd refuses on a running resource with the reason.
 * drbdadm's rules (drbdadm_adjust.c): changed addresses → disconnect with
 * the running addresses, then connect with all net options; otherwise any
 * changed net option → one `net-options --set-defaults` (applied live);
 * changed disk options → `disk-options --set-defaults`; a StandAlone
 * resource is connected, a diskless one attached. Pure: it compares two
 * ResourceSpecs and a few facts about the running resource; it never acts.
 */
import type { DiskOptions, NetOptions, ResourceView } from '../config/index.js';
import { type AddressSpec, type ResourceSpec, volumeSpec } from './spec.js';

/** Facts about the running resource the plan depends on (not in the spec). */
export interface RunningFacts {
  /** The connection is configured (not StandAlone): drbdsetup show would print a net section. */
  readonly netConfigured: boolean;
  /** A backing disk is attached. */
  readonly attached: boolean;
  readonly verifyRunning: boolean;
  readonly resyncRunning: boolean;
  /** The --size in force (bytes; 0 = whole disk) when a `resize` changed it since the start, else undefined. */
  readonly userSizeBytes?: number;
}

export type AdjustStepKind = 'resource-options' | 'attach' | 'disk-options' | 'disconnect' | 'connect' | 'net-options' | 'handlers';

export interface AdjustStep {
  readonly kind: AdjustStepKind;
  /** The volume an attach or disk-options step is for (drbdadm runs them per minor); absent: the first volume. */
  readonly volume?: number;
  /** DRBD option names (or handler names) whose value differs; empty for attach/connect of a fresh link. */
  readonly changed: readonly string[];
  /** What drbdadm -d prints for this step (handlers: nothing — drbdadm reads them when it runs one). */
  readonly lines: readonly string[];
}

export interface AdjustRefusal {
  /** The DRBD option or keyword that cannot change online. */
  readonly option: string;
  /** The operator's message: what, where, why, and what to run. */
  readonly message: string;
}

export interface AdjustPlan {
  readonly steps: readonly AdjustStep[];
  readonly refusals: readonly AdjustRefusal[];
}

/** Every NetOptions field with the name DRBD gives it (a new field must be named here: nothing is compared silently). */
const NET_OPTION_NAMES: Readonly<Record<keyof NetOptions, string>> = {
  protocol: 'protocol',
  pingIntervalMs: 'ping-int',
  pingTimeoutMs: 'ping-timeout',
  connectIntervalMs: 'connect-int',
  timeoutMs: 'timeout',
  koCount: 'ko-count',
  maxBuffers: 'max-buffers',
  maxEpochSize: 'max-epoch-size',
  sndbufSizeBytes: 'sndbuf-size',
  rcvbufSizeBytes: 'rcvbuf-size',
  cramHmacAlg: 'cram-hmac-alg',
  sharedSecret: 'shared-secret',
  afterSb0pri: 'after-sb-0pri',
  afterSb1pri: 'after-sb-1pri',
  afterSb2pri: 'after-sb-2pri',
  rrConflict: 'rr-conflict',
  allowTwoPrimaries: 'allow-two-primaries',
  alwaysAsbp: 'always-asbp',
  verifyAlg: 'verify-alg',
  csumsAlg: 'csums-alg',
  csumsAfterCrashOnly: 'csums-after-crash-only',
  dataIntegrityAlg: 'data-integrity-alg',
  useRle: 'use-rle',
  tcpCork: 'tcp-cork',
  onCongestion: 'on-congestion',
  congestionFillSectors: 'congestion-fill',
  congestionExtents: 'congestion-extents',
};

const DISK_OPTION_NAMES: Readonly<Record<keyof DiskOptions, string>> = {
  alExtents: 'al-extents',
  resyncRateKiBps: 'resync-rate',
  cPlanAheadDs: 'c-plan-ahead',
  cFillTargetSectors: 'c-fill-target',
  cDelayTargetDs: 'c-delay-target',
  cMaxRateKiBps: 'c-max-rate',
  cMinRateKiBps: 'c-min-rate',
  fencing: 'fencing',
  onIoError: 'on-io-error',
  diskBarrier: 'disk-barrier',
  diskFlushes: 'disk-flushes',
  diskDrain: 'disk-drain',
  mdFlushes: 'md-flushes',
  alUpdates: 'al-updates',
  sizeSectors: 'size',
  diskTimeoutDs: 'disk-timeout',
  resyncAfter: 'resync-after',
};

const RESOURCE_OPTION_NAMES: Readonly<Record<keyof ResourceView['options'], string>> = {
  onNoDataAccessible: 'on-no-data-accessible',
  cpuMask: 'cpu-mask',
};

function changedOptions<T extends object>(names: Readonly<Record<keyof T, string>>, running: T, wanted: T): string[] {
  const changed: string[] = [];
  for (const key of Object.keys(names) as Array<keyof T>) {
    if (JSON.stringify(running[key]) !== JSON.stringify(wanted[key])) changed.push(names[key]);
  }
  return changed;
}

function viewOf(spec: ResourceSpec): ResourceView {
  return spec.view as ResourceView;
}

/** drbdsetup-84's endpoint notation: `ipv4:127.0.0.1:7789`, `ipv6:[::1]:7789`. */
export function endpointText(address: AddressSpec): string {
  return address.family === 'ipv6' ? `ipv6:[${address.host}]:${address.port}` : `${address.family}:${address.host}:${address.port}`;
}

function sameAddress(a: AddressSpec | undefined, b: AddressSpec | undefined): boolean {
  return a?.family === b?.family && a?.host === b?.host && a?.port === b?.port;
}

function endpoints(spec: ResourceSpec): string {
  return `${spec.localAddress ? endpointText(spec.localAddress) : '-'} ${spec.peer ? endpointText(spec.peer.address) : '-'}`;
}

function metaDiskText(view: ResourceView): string {
  return view.metaDisk === 'internal' ? 'internal' : `${view.metaDisk.path} ${view.metaDisk.index}`;
}

/** The lines `drbdadm -d attach` prints: AL recovery by drbdmeta, then drbdsetup attach with the disk options. */
function attachLines(spec: ResourceSpec): string[] {
  const meta = spec.metaArgs;
  return [
    `drbdmeta ${spec.minor} v08 ${meta.device} ${meta.drbdmetaIndex} apply-al`,
    [`drbdsetup-84 attach ${spec.minor} ${spec.diskPath} ${meta.device} ${meta.attachIndex}`, ...spec.setupArgs.attach].join(' '),
  ];
}

function connectLine(spec: ResourceSpec): string {
  return [`drbdsetup-84 connect ${spec.name} ${endpoints(spec)}`, ...spec.setupArgs.net].join(' ');
}

/** What `adjust` of a resource that is not up runs: drbdadm's `up` sequence. */
export function planUp(spec: ResourceSpec): AdjustPlan {
  const steps: AdjustStep[] = [
    { kind: 'attach', changed: [], lines: [`drbdsetup-84 new-resource ${spec.name}`, `drbdsetup-84 new-minor ${spec.name} ${spec.minor} ${spec.volume}`, ...attachLines(spec)] },
  ];
  if (spec.peer && spec.localAddress) steps.push({ kind: 'connect', changed: [], lines: [connectLine(spec)] });
  return { steps, refusals: [] };
}

/** Compares the running resource with the configuration just read; refuses what cannot change online. */
export function planAdjust(running: ResourceSpec, wanted: ResourceSpec, facts: RunningFacts): AdjustPlan {
  const was = viewOf(running);
  const now = viewOf(wanted);
  const where = `${now.definedAt}: in resource ${wanted.name}, on ${wanted.node}`;
  const downFirst = `down the resource first ('udrbdadm down ${wanted.name}'), then 'udrbdadm up ${wanted.name}'`;
  const refusals: AdjustRefusal[] = [];
  const refuse = (option: string, from: string | number, to: string | number, why: string, todo = downFirst): void => {
    refusals.push({ option, message: `${where}: '${option}' cannot change from ${from} to ${to} on a running resource: ${why}; ${todo}.` });
  };

  // The identity of the device and its backing storage: DRBD would detach, del-minor, new-minor and attach.
  const detachWhy = 'udrbd does not detach and re-attach a running resource';
  if (running.diskPath !== wanted.diskPath) refuse('disk', running.diskPath, wanted.diskPath, detachWhy);
  if (metaDiskText(was) !== metaDiskText(now)) refuse('meta-disk', metaDiskText(was), metaDiskText(now), detachWhy);
  if (running.minor !== wanted.minor) refuse('device minor', running.minor, wanted.minor, 'the device minor is fixed while the resource process runs');
  if (running.devicePath !== wanted.devicePath) refuse('device', running.devicePath, wanted.devicePath, 'the device path is fixed while the resource process runs');
  if (running.volume !== wanted.volume) refuse('volume', running.volume, wanted.volume, 'the volume number is fixed while the resource process runs');

  // A `resize` since the start already applied the size the file now names: nothing to do for it.
  const sizeInForceBytes = facts.userSizeBytes ?? was.disk.sizeSectors * 512;
  const diskChanged = changedOptions(DISK_OPTION_NAMES, was.disk, now.disk).filter((o) => o !== 'size' || sizeInForceBytes !== now.disk.sizeSectors * 512);
  if (facts.attached) {
    if (diskChanged.includes('size')) {
      refuse('size', was.disk.sizeSectors * 512, now.disk.sizeSectors * 512, 'adjust does not resize (drbdadm adjust would run resize)', `run 'udrbdadm resize ${running.name}' on one node (it takes the new 'disk { size }' from the file), then adjust again`);
    }
    if (diskChanged.includes('al-extents')) {
      refuse('al-extents', was.disk.alExtents, now.disk.alExtents, 'udrbd sizes the activity log when it attaches the disk');
    }
    const yesNo = (on: boolean): string => (on ? 'yes' : 'no');
    if (diskChanged.includes('md-flushes')) {
      refuse('md-flushes', yesNo(was.disk.mdFlushes), yesNo(now.disk.mdFlushes), 'udrbd sets how meta-data writes reach the disk when it attaches the disk');
    }
    if (diskChanged.includes('al-updates')) {
      refuse('al-updates', yesNo(was.disk.alUpdates), yesNo(now.disk.alUpdates), 'udrbd sets up the activity log (and MDF_AL_DISABLED) when it attaches the disk');
    }
  }
  const netChanged = changedOptions(NET_OPTION_NAMES, was.net, now.net);
  if (facts.verifyRunning && netChanged.includes('verify-alg')) {
    refusals.push({ option: 'verify-alg', message: `${where}: Can not change verify-alg while online verify runs; wait for it to finish (or disconnect), then adjust again.` });
  }
  if (facts.resyncRunning && netChanged.includes('csums-alg')) {
    refusals.push({ option: 'csums-alg', message: `${where}: Can not change csums-alg while resync is in progress; wait for the resync to finish, then adjust again.` });
  }

  const steps: AdjustStep[] = [];
  const resourceChanged = changedOptions(RESOURCE_OPTION_NAMES, was.options, now.options);
  if (resourceChanged.length > 0) {
    steps.push({ kind: 'resource-options', changed: resourceChanged, lines: [[`drbdsetup-84 resource-options ${wanted.name} --set-defaults`, ...wanted.setupArgs.resource].join(' ')] });
  }
  if (!facts.attached) {
    steps.push({ kind: 'attach', changed: diskChanged, lines: attachLines(wanted) });
  } else if (diskChanged.length > 0) {
    steps.push({ kind: 'disk-options', changed: diskChanged, lines: [[`drbdsetup-84 disk-options ${wanted.minor} --set-defaults`, ...wanted.setupArgs.diskOptions].join(' ')] });
  }
  const hasPeer = wanted.peer !== undefined && wanted.localAddress !== undefined;
  const addressesChanged =
    !sameAddress(running.localAddress, wanted.localAddress) || !sameAddress(running.peer?.address, wanted.peer?.address) || running.peer?.name !== wanted.peer?.name;
  if (hasPeer && (addressesChanged || !facts.netConfigured)) {
    if (facts.netConfigured) steps.push({ kind: 'disconnect', changed: [], lines: [`drbdsetup-84 disconnect ${endpoints(running)}`] });
    steps.push({ kind: 'connect', changed: netChanged, lines: [connectLine(wanted)] });
  } else if (!hasPeer && facts.netConfigured) {
    steps.push({ kind: 'disconnect', changed: [], lines: [`drbdsetup-84 disconnect ${endpoints(running)}`] });
  } else if (netChanged.length > 0) {
    steps.push({ kind: 'net-options', changed: netChanged, lines: [[`drbdsetup-84 net-options ${endpoints(wanted)} --set-defaults`, ...wanted.setupArgs.net].join(' ')] });
  }
  const handlersChanged = changedOptions(
    Object.fromEntries([...new Set([...Object.keys(running.handlers), ...Object.keys(wanted.handlers)])].map((h) => [h, h])),
    running.handlers,
    wanted.handlers,
  );
  if (handlersChanged.length > 0) steps.push({ kind: 'handlers', changed: handlersChanged, lines: [] });
  return { steps, refusals };
}

/** Refusals about one volume's device and backing storage (the rest are the resource's: net, handlers, options). */
const VOLUME_REFUSALS: ReadonlySet<string> = new Set(['disk', 'meta-disk', 'device minor', 'device', 'volume', 'size', 'al-extents', 'md-flushes', 'al-updates']);
const VOLUME_STEPS: ReadonlySet<AdjustStepKind> = new Set(['attach', 'disk-options']);

/**
 * planAdjust for every volume: the resource's steps (resource-options,
 * connect, net-options, handlers) once, from the first volume's plan; each
 * volume's attach / disk-options and refusals from its own, in volume order
 * where drbdadm puts them (after resource-options, before the network).
 * Adding or removing a volume is refused: udrbd does not run new-minor /
 * del-minor on a running resource. `facts(vnr)`: the volume's own facts
 * (attached, u_size); the connection's are the same for all.
 */
export function planAdjustVolumes(running: ResourceSpec, wanted: ResourceSpec, facts: (vnr: number) => RunningFacts): AdjustPlan {
  const was = running.volumes.map((v) => v.volume);
  const now = wanted.volumes.map((v) => v.volume);
  if (was.join() !== now.join()) {
    const where = `${viewOf(wanted).definedAt}: in resource ${wanted.name}, on ${wanted.node}`;
    const added = now.filter((v) => !was.includes(v));
    const removed = was.filter((v) => !now.includes(v));
    const what = [...added.map((v) => `adds volume ${v}`), ...removed.map((v) => `removes volume ${v}`)].join(' and ');
    return {
      steps: [],
      refusals: [{ option: 'volume', message: `${where}: the configuration ${what}; udrbd does not add or remove a volume of a running resource (drbdadm's new-minor / del-minor); down the resource first ('udrbdadm down ${wanted.name}'), then 'udrbdadm up ${wanted.name}'.` }],
    };
  }
  const first = planAdjust(running, wanted, facts(running.volume));
  if (running.volumes.length === 1) return first;
  const perVolume = running.volumes.slice(1).map((v) => ({ vnr: v.volume, plan: planAdjust(volumeSpec(running, v.volume), volumeSpec(wanted, v.volume), facts(v.volume)) }));
  const volumeSteps = perVolume.flatMap(({ vnr, plan }) => plan.steps.filter((st) => VOLUME_STEPS.has(st.kind)).map((st) => ({ ...st, volume: vnr })));
  const volumeRefusals = perVolume.flatMap(({ plan }) => plan.refusals.filter((r) => VOLUME_REFUSALS.has(r.option)));
  // drbdadm's order: resource-options, then every minor's attach / disk-options, then the network and handlers.
  const lastVolumeStep = first.steps.reduce((at, st, i) => (st.kind === 'resource-options' || VOLUME_STEPS.has(st.kind) ? i + 1 : at), 0);
  const steps = [...first.steps.slice(0, lastVolumeStep), ...volumeSteps, ...first.steps.slice(lastVolumeStep)];
  return { steps, refusals: [...first.refusals, ...volumeRefusals] };
}

/** The text `-d adjust` prints: the drbdsetup-84 / drbdmeta lines, one per line (nothing when nothing changed). */
export function planText(plan: AdjustPlan): string {
  const lines = plan.steps.flatMap((s) => s.lines);
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}
