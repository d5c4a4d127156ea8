/**
 * config/resolve — turns the parsed model into one node's typed, effective view
 * of a resource: this host's device, disk, meta-disk and address, the peer, and
 * every option the daemon uses with DRBD 8.4's default filled in, converted to
 * units named in the field (`pingIntervalMs`, `resyncRateKiBps`). Common
 * inherits into the resource, as drbdadm's expand_common does.
 */
import { ExitCode, UdrbdError } from '../util/errors.js';
import { parseScaledNumber, type Scale } from './limits.js';
import type { DrbdConfig, OptionEntry, ResourceDef, VolumeDef } from './model.js';
import { bindNode } from './hosts.js';
import { expandCommon } from './dump.js';

export type Protocol = 'A' | 'B' | 'C';
export type AfterSb0pri = 'disconnect' | 'discard-younger-primary' | 'discard-older-primary' | 'discard-zero-changes' | 'discard-least-changes' | 'discard-local' | 'discard-remote';
export type AfterSb1pri = 'disconnect' | 'consensus' | 'violently-as0p' | 'discard-secondary' | 'call-pri-lost-after-sb';
export type AfterSb2pri = 'disconnect' | 'violently-as0p' | 'call-pri-lost-after-sb';
export type RrConflict = 'disconnect' | 'violently' | 'call-pri-lost';
export type Fencing = 'dont-care' | 'resource-only' | 'resource-and-stonith';
export type OnIoError = 'pass_on' | 'call-local-io-error' | 'detach';
export type OnNoDataAccessible = 'io-error' | 'suspend-io';
export type OnCongestion = 'block' | 'pull-ahead' | 'disconnect';

export interface ResolvedAddress {
  family: 'ipv4' | 'ipv6';
  host: string;
  port: number;
}

export interface NetOptions {
  protocol: Protocol;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  connectIntervalMs: number;
  timeoutMs: number;
  koCount: number;
  maxBuffers: number;
  maxEpochSize: number;
  sndbufSizeBytes: number;
  rcvbufSizeBytes: number;
  cramHmacAlg?: string;
  sharedSecret?: string;
  afterSb0pri: AfterSb0pri | `discard-node-${string}`;
  afterSb1pri: AfterSb1pri;
  afterSb2pri: AfterSb2pri;
  rrConflict: RrConflict;
  allowTwoPrimaries: boolean;
  alwaysAsbp: boolean;
  verifyAlg?: string;
  csumsAlg?: string;
  /** csums-after-crash-only: checksum-based resync only for the resync after a Primary crash. */
  csumsAfterCrashOnly: boolean;
  dataIntegrityAlg?: string;
  useRle: boolean;
  tcpCork: boolean;
  /** on-congestion (DRBD 8.4 default block). */
  onCongestion: OnCongestion;
  /** congestion-fill in 512-byte sectors; 0 = off (the default). */
  congestionFillSectors: number;
  /** congestion-extents (default DRBD_AL_EXTENTS_DEF 1237). */
  congestionExtents: number;
}

export interface DiskOptions {
  alExtents: number;
  resyncRateKiBps: number;
  /** Dynamic resync controller planning horizon, in 0.1 s units (0 = fixed rate). */
  cPlanAheadDs: number;
  cFillTargetSectors: number;
  /** 0.1 s units. */
  cDelayTargetDs: number;
  cMaxRateKiBps: number;
  cMinRateKiBps: number;
  fencing: Fencing;
  onIoError: OnIoError;
  diskBarrier: boolean;
  diskFlushes: boolean;
  diskDrain: boolean;
  mdFlushes: boolean;
  alUpdates: boolean;
  /** 0 = use the whole backing device. */
  sizeSectors: number;
  /** 0 = off; 0.1 s units. */
  diskTimeoutDs: number;
  resyncAfter?: string;
}

export interface StartupOptions {
  wfcTimeoutS: number;
  degrWfcTimeoutS: number;
  outdatedWfcTimeoutS: number;
  becomePrimaryOn?: string[];
}

export interface ResourceView {
  name: string;
  configPath: string;
  /** `FILE:LINE` where the resource is defined (drbdadm's `# defined at`). */
  definedAt: string;
  minor: number;
  devicePath: string;
  volume: number;
  diskPath: string;
  metaDisk: 'internal' | { path: string; index: number | 'flexible' };
  localHost: string;
  localAddress: ResolvedAddress;
  peer?: { name: string; address: ResolvedAddress };
  net: NetOptions;
  disk: DiskOptions;
  startup: StartupOptions;
  options: { onNoDataAccessible: OnNoDataAccessible; cpuMask?: string };
  handlers: Record<string, string>;
}

/** Where a volume's meta-data is, in the words drbdadm passes to drbdmeta and drbdsetup. */
export interface MetaDiskArgs {
  /** The device holding the meta-data: the backing disk when internal. */
  device: string;
  /** drbdmeta's index argument: `internal`, `flex-external` or the slot number. */
  drbdmetaIndex: string;
  /** drbdsetup-84 attach's index argument: `internal`, `flexible` or the slot number. */
  attachIndex: string;
}

/** A volume's `meta-disk` / `flexible-meta-disk` as the view keeps it (no meta-disk statement reads as internal). */
export function volumeMetaDisk(vol: Pick<VolumeDef, 'metaDisk' | 'metaIndex'>): ResourceView['metaDisk'] {
  if (vol.metaIndex === 'internal' || vol.metaDisk === undefined) return 'internal';
  return { path: vol.metaDisk, index: vol.metaIndex === 'flexible' ? 'flexible' : Number.parseInt(vol.metaIndex ?? '0', 10) };
}

/** drbdadm-84's arguments for `meta-disk internal`, `meta-disk DEV [N]` and `flexible-meta-disk DEV` / `meta-disk DEV`. */
export function metaDiskArgs(metaDisk: ResourceView['metaDisk'], diskPath: string): MetaDiskArgs {
  if (metaDisk === 'internal') return { device: diskPath, drbdmetaIndex: 'internal', attachIndex: 'internal' };
  if (metaDisk.index === 'flexible') return { device: metaDisk.path, drbdmetaIndex: 'flex-external', attachIndex: 'flexible' };
  return { device: metaDisk.path, drbdmetaIndex: String(metaDisk.index), attachIndex: String(metaDisk.index) };
}

const MS_PER_S = 1000;
const MS_PER_DS = 100;

function lookup(opts: readonly OptionEntry[], name: string): string | undefined {
  return opts.find((o) => o.name === name)?.value ?? undefined;
}

function numberOption(opts: readonly OptionEntry[], name: string, defaultValue: number, scale: Scale = '1'): number {
  const text = lookup(opts, name);
  if (text === undefined) return defaultValue;
  const parsed = parseScaledNumber(text, scale);
  if (!parsed.ok) throw new UdrbdError(parsed.message, 20);
  return Number(parsed.value);
}

function boolOption(opts: readonly OptionEntry[], name: string, defaultValue: boolean): boolean {
  const text = lookup(opts, name);
  return text === undefined ? defaultValue : text !== 'no';
}

function enumOption<T extends string>(
  res: ResourceDef, section: string, opts: readonly OptionEntry[], name: string, allowed: readonly string[], defaultValue: T,
): T {
  const text = lookup(opts, name);
  if (text === undefined) return defaultValue;
  if (!allowed.includes(text) && !(name === 'after-sb-0pri' && text.startsWith('discard-node-'))) {
    throw new UdrbdError(
      `${res.configFile}:${res.startLine}: in resource ${res.name}, ${section} option ${name}: '${text}' is not one of ${allowed.join(', ')}`,
      10,
    );
  }
  return text as T;
}

function resolveAddress(a: { family: string; host: string; port: string }): ResolvedAddress {
  if (a.family !== 'ipv4' && a.family !== 'ipv6') {
    throw new UdrbdError(`udrbd: address family '${a.family}' is not supported (ipv4 or ipv6)`, ExitCode.configInvalid);
  }
  return { family: a.family, host: a.host, port: Number.parseInt(a.port, 10) };
}

/**
 * This node's view of `resourceName` through one of its volumes: the one
 * numbered `vnr`, or the first (lowest-numbered) when vnr is undefined. The
 * resource-level parts (net, startup, handlers, addresses) are the same for
 * every volume; minor, device, disks and disk { } options are the volume's.
 */
export function resolveResource(config: DrbdConfig, resourceName: string, nodeName: string, vnr?: number): ResourceView {
  const { bindings, errors } = bindNode(config, nodeName);
  if (errors.length > 0) throw new UdrbdError(errors.join('').trimEnd(), ExitCode.configInvalid);
  const binding = bindings.find((b) => b.resource.name === resourceName);
  // drbdadm-84 (drbd-utils 9.22) looks resources up among this node's only: one without a section for this host is "not defined".
  if (!binding || binding.ignored || !binding.me) {
    throw new UdrbdError(`'${resourceName}' not defined in your config (for this host).`, 1);
  }
  const res = expandCommon(config).find((r) => r.name === resourceName)!;
  const meIndex = binding.resource.hosts.indexOf(binding.me);
  const me = res.hosts[meIndex]!;
  const vol = vnr === undefined ? me.volumes[0] : me.volumes.find((v) => v.vnr === vnr);
  if (vnr !== undefined && !vol) throw new UdrbdError(`'${resourceName}/${vnr}' not defined in your config (for this host).`, 1);
  if (!vol || vol.disk === undefined || vol.metaDisk === undefined) {
    throw new UdrbdError(`${res.configFile}:${res.startLine}: in resource ${res.name}: no volume for ${nodeName}`, ExitCode.configInvalid);
  }
  if (!me.address) throw new UdrbdError(`${res.configFile}:${me.configLine}: in resource ${res.name}, on ${nodeName}: 'address' keyword missing.`, ExitCode.configInvalid);
  let peer: ResourceView['peer'];
  if (binding.peer) {
    const p = res.hosts[binding.resource.hosts.indexOf(binding.peer)]!;
    if (p.address) peer = { name: p.names[0]!, address: resolveAddress(p.address) };
  }
  const net = res.netOptions;
  const disk = vol.diskOptions.length > 0 ? vol.diskOptions : res.diskOptions;
  const startup = res.startupOptions;
  const handlers: Record<string, string> = {};
  for (const h of res.handlers) if (h.value !== null) handlers[h.name] = h.value;
  const metaDisk = volumeMetaDisk(vol);
  const protocol = lookup(net, 'protocol') ?? 'C';
  return {
    name: res.name,
    configPath: config.canonicalPath,
    definedAt: `${binding.resource.sourceFile}:${res.startLine}`,
    minor: vol.minor,
    devicePath: vol.device ?? `/dev/drbd${vol.minor}`,
    volume: vol.vnr,
    diskPath: vol.disk,
    metaDisk,
    localHost: nodeName,
    localAddress: resolveAddress(me.address),
    peer,
    net: {
      protocol: protocol as Protocol,
      pingIntervalMs: numberOption(net, 'ping-int', 10) * MS_PER_S,
      pingTimeoutMs: numberOption(net, 'ping-timeout', 5) * MS_PER_DS,
      connectIntervalMs: numberOption(net, 'connect-int', 10) * MS_PER_S,
      timeoutMs: numberOption(net, 'timeout', 60) * MS_PER_DS,
      koCount: numberOption(net, 'ko-count', 7),
      maxBuffers: numberOption(net, 'max-buffers', 2048),
      maxEpochSize: numberOption(net, 'max-epoch-size', 2048),
      sndbufSizeBytes: numberOption(net, 'sndbuf-size', 0),
      rcvbufSizeBytes: numberOption(net, 'rcvbuf-size', 0),
      cramHmacAlg: lookup(net, 'cram-hmac-alg'),
      sharedSecret: lookup(net, 'shared-secret'),
      afterSb0pri: enumOption(res, 'net', net, 'after-sb-0pri',
        ['disconnect', 'discard-younger-primary', 'discard-older-primary', 'discard-zero-changes', 'discard-least-changes', 'discard-local', 'discard-remote'], 'disconnect'),
      afterSb1pri: enumOption(res, 'net', net, 'after-sb-1pri', ['disconnect', 'consensus', 'violently-as0p', 'discard-secondary', 'call-pri-lost-after-sb'], 'disconnect'),
      afterSb2pri: enumOption(res, 'net', net, 'after-sb-2pri', ['disconnect', 'violently-as0p', 'call-pri-lost-after-sb'], 'disconnect'),
      rrConflict: enumOption(res, 'net', net, 'rr-conflict', ['disconnect', 'violently', 'call-pri-lost'], 'disconnect'),
      allowTwoPrimaries: boolOption(net, 'allow-two-primaries', false),
      alwaysAsbp: boolOption(net, 'always-asbp', false),
      verifyAlg: lookup(net, 'verify-alg'),
      csumsAlg: lookup(net, 'csums-alg'),
      csumsAfterCrashOnly: boolOption(net, 'csums-after-crash-only', false),
      dataIntegrityAlg: lookup(net, 'data-integrity-alg'),
      useRle: boolOption(net, 'use-rle', true),
      tcpCork: boolOption(net, 'tcp-cork', true),
      onCongestion: enumOption(res, 'net', net, 'on-congestion', ['block', 'pull-ahead', 'disconnect'], 'block'),
      congestionFillSectors: numberOption(net, 'congestion-fill', 0, 's'),
      congestionExtents: numberOption(net, 'congestion-extents', 1237),
    },
    disk: {
      alExtents: numberOption(disk, 'al-extents', 1237),
      resyncRateKiBps: numberOption(disk, 'resync-rate', 250, 'k'),
      cPlanAheadDs: numberOption(disk, 'c-plan-ahead', 20),
      cFillTargetSectors: numberOption(disk, 'c-fill-target', 100, 's'),
      cDelayTargetDs: numberOption(disk, 'c-delay-target', 10),
      cMaxRateKiBps: numberOption(disk, 'c-max-rate', 102400, 'k'),
      cMinRateKiBps: numberOption(disk, 'c-min-rate', 250, 'k'),
      fencing: enumOption(res, 'disk', disk, 'fencing', ['dont-care', 'resource-only', 'resource-and-stonith'], 'dont-care'),
      onIoError: enumOption(res, 'disk', disk, 'on-io-error', ['pass_on', 'call-local-io-error', 'detach'], 'detach'),
      diskBarrier: boolOption(disk, 'disk-barrier', false),
      diskFlushes: boolOption(disk, 'disk-flushes', true),
      diskDrain: boolOption(disk, 'disk-drain', true),
      mdFlushes: boolOption(disk, 'md-flushes', true),
      alUpdates: boolOption(disk, 'al-updates', true),
      sizeSectors: numberOption(disk, 'size', 0, 's'),
      diskTimeoutDs: numberOption(disk, 'disk-timeout', 0),
      resyncAfter: lookup(disk, 'resync-after'),
    },
    startup: {
      wfcTimeoutS: numberOption(startup, 'wfc-timeout', 0),
      degrWfcTimeoutS: numberOption(startup, 'degr-wfc-timeout', 0),
      outdatedWfcTimeoutS: numberOption(startup, 'outdated-wfc-timeout', 0),
      becomePrimaryOn: res.becomePrimaryOn,
    },
    options: {
      onNoDataAccessible: enumOption(res, 'options', res.resOptions, 'on-no-data-accessible', ['io-error', 'suspend-io'], 'io-error'),
      cpuMask: lookup(res.resOptions, 'cpu-mask'),
    },
    handlers,
  };
}
