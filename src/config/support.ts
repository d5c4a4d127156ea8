/**
 * config/support — what udrbd does with every keyword the DRBD 8.4 parser
 * accepts, in one table: `implemented`, `warn` (ignored, and ignoring it
 * cannot change the data: said so at `up`), or `refuse` (ignoring it would
 * change the data's safety: `up` and `adjust` stop with exit 10). A keyword
 * may be judged per value (`on-no-data-accessible io-error` is what udrbd
 * does). What volumes can run is config/volumes' judgement, reported here as a
 * refusal of its own. checkOptionSupport walks one node's view of one resource and returns
 * a Finding (option, file, line, message) for each option that is not simply
 * implemented. Pure: knows nothing of sockets, disks or the daemon; what the
 * running machine can do (the native addon) comes in as `SupportEnvironment`.
 */
import type { DrbdConfig, OptionEntry, SourcePos, VolumeDef } from './model.js';
import { bindNode } from './hosts.js';
import { escapeValue, expandCommon } from './dump.js';
import { blockDigest } from '../util/digest.js';
import { UdrbdError } from '../util/errors.js';
import { runnableVolumeRefusal, VOLUMES_PER_RESOURCE_MAX } from './volumes.js';

export type SupportStatus = 'implemented' | 'warn' | 'refuse';

/** Where the keyword is written (drbdadm's section), or `syntax` for words that are not options. */
export type SupportSection =
  | 'syntax' | 'global' | 'host' | 'volume' | 'net' | 'disk' | 'startup' | 'options' | 'handlers' | 'proxy';

export interface Verdict {
  status: SupportStatus;
  /** For warn/refuse: what udrbd does instead, in a few words (printed in parentheses). */
  what?: string;
  /** For warn/refuse: what the operator should do. */
  todo?: string;
}

export interface SupportRule extends Verdict {
  keyword: string;
  section: SupportSection;
  /** Verdicts for particular values (the rule's own verdict applies to every other value). */
  values?: Readonly<Record<string, Verdict>>;
  /** Why this status: what udrbd does with it, or what ignoring it does to the data. */
  why: string;
}

const OK = (why: string): Pick<SupportRule, 'status' | 'why'> => ({ status: 'implemented', why });
const ok: Verdict = { status: 'implemented' };
const REMOVE = 'remove it to silence this warning';
const LATER = 'a later udrbd release implements it';

/** Handlers udrbd runs exactly where DRBD 8.4 runs them. */
function handler(keyword: string, why: string): SupportRule {
  return { keyword, section: 'handlers', ...OK(why) };
}

/** Every keyword of config/lexer, with its status in udrbd. */
export const SUPPORT_TABLE: readonly SupportRule[] = [
  // ---- structure: section words, values, address families
  ...['on', 'net', 'disk', 'syncer', 'device', 'global', 'common', 'options', 'address', 'startup', 'include',
    'handlers', 'resource', 'minor', 'skip', 'yes', 'no', 'ask', 'ipv4', 'ipv6', 'floating'].map(
    (keyword): SupportRule => ({ keyword, section: 'syntax', ...OK('configuration syntax, read as drbdadm-84 reads it') }),
  ),
  { keyword: 'ignore-on', section: 'syntax', ...OK('the resource is ignored on that host (the parser warns that the keyword is deprecated, as drbdadm does)') },
  { keyword: 'volume', section: 'volume', ...OK(`several volumes per resource (up to ${VOLUMES_PER_RESOURCE_MAX}), each its own minor, disk, meta-data, bitmap, activity log, role and disk state, all over one connection with one epoch stream, as DRBD 8.4 runs them; adding or removing one of a running resource is refused by adjust (down, then up)`) },
  { keyword: 'stacked-on-top-of', section: 'syntax', status: 'refuse', why: 'stacked resources are not supported; the parser refuses them', what: 'stacked resource', todo: 'use a plain two-node resource' },
  { keyword: 'proxy', section: 'proxy', status: 'refuse', why: 'DRBD Proxy is not supported; the parser refuses proxy sections', what: 'DRBD Proxy', todo: 'remove the proxy section' },
  ...['inside', 'outside', 'memlimit', 'read-loops', 'compression', 'bwlimit', 'plugin'].map(
    (keyword): SupportRule => ({ keyword, section: 'proxy', status: 'refuse', why: 'only valid inside a proxy section, which the parser refuses', what: 'DRBD Proxy', todo: 'remove the proxy section' }),
  ),
  ...['_this_host', '_remote_host'].map(
    (keyword): SupportRule => ({ keyword, section: 'syntax', status: 'refuse', why: 'drbdadm-internal host names; the parser refuses them', what: 'internal host section', todo: "name the host with 'on HOST'" }),
  ),
  ...['sci', 'ssocks', 'sdp'].map(
    (keyword): SupportRule => ({ keyword, section: 'host', status: 'refuse', why: 'udrbd speaks TCP only; resolving the address refuses other families', what: 'address family', todo: 'use an ipv4 or ipv6 address' }),
  ),
  {
    keyword: 'alternate-link-address', section: 'host', status: 'warn', why: 'udrbd connects over the main address only; no second path means less availability, never different data',
    what: 'only the main address is used', todo: REMOVE,
  },
  { keyword: 'meta-disk', section: 'volume', ...OK("v08 meta-data as drbdmeta writes it: 'internal' at the end of the disk, 'DEV [N]' in 128 MiB slot N of DEV, 'DEV' alone sized to DEV (flexible); on a device of its own it is flushed in the same order as internal meta-data") },
  { keyword: 'flexible-meta-disk', section: 'volume', ...OK('flexible external v08 meta-data: superblock, activity log and bitmap fill the meta device, as drbdmeta flex-external') },

  // ---- global
  { keyword: 'usage-count', section: 'global', status: 'warn', why: 'udrbd never reports usage to LINBIT: the same as usage-count no', values: { no: ok }, what: 'udrbd never takes part in the usage count', todo: "use 'usage-count no' or remove it" },
  { keyword: 'minor-count', section: 'global', status: 'warn', why: 'a kernel module parameter; udrbd has no limit on minors', what: 'udrbd has no minor limit', todo: REMOVE },
  { keyword: 'dialog-refresh', section: 'global', status: 'warn', why: 'refresh of the boot-time wait dialog; harmless to the data', what: 'the wait dialog is not refreshed', todo: REMOVE },
  { keyword: 'disable-ip-verification', section: 'global', status: 'warn', why: 'udrbd binds the configured address; the check it would disable never changes data', what: 'the address check stays on', todo: REMOVE },
  { keyword: 'udev-always-use-vnr', section: 'global', status: 'warn', why: 'udev device naming; udrbd links the configured device path itself', what: 'no udev rules', todo: REMOVE },
  ...['cmd-timeout-short', 'cmd-timeout-medium', 'cmd-timeout-long'].map(
    (keyword): SupportRule => ({ keyword, section: 'global', status: 'warn', why: 'drbdadm\'s timeouts for drbdsetup calls; udrbdadm uses its own per-verb limits', what: 'udrbdadm uses its own timeouts', todo: REMOVE }),
  ),

  // ---- disk
  { keyword: 'size', section: 'disk', ...OK('the device is limited to it (and to the smaller of both disks); a change applies online with `udrbdadm resize`') },
  { keyword: 'on-io-error', section: 'disk', ...OK('as DRBD 8.4: detach goes Failed -> Diskless and a Primary serves I/O through the peer; pass_on makes the disk Inconsistent and passes the error up when no peer has the data; call-local-io-error runs the local-io-error handler and detaches') },
  { keyword: 'fencing', section: 'disk', ...OK('as DRBD 8.4: fence-peer runs when a Primary loses its peer and before a promotion that does not know the peer outdated; its exit code sets the peer (or own) disk state; resource-and-stonith freezes the Primary\'s I/O until the handler answered') },
  { keyword: 'max-bio-bvecs', section: 'disk', status: 'warn', why: 'a kernel bio limit; udrbd sizes its own requests', what: 'kernel bio tuning', todo: REMOVE },
  { keyword: 'disk-timeout', section: 'disk', ...OK('a backing-disk request older than it detaches the disk (as on-io-error detach), whatever on-io-error says; 0 = off') },
  { keyword: 'read-balancing', section: 'disk', status: 'warn', why: 'reads are always served from the local disk when it is UpToDate: the same data', values: { 'prefer-local': ok }, what: 'reads are served locally', todo: REMOVE },
  { keyword: 'use-bmbv', section: 'disk', status: 'warn', why: 'obsolete in DRBD 8.4 itself', what: 'obsolete', todo: REMOVE },
  { keyword: 'disk-barrier', section: 'disk', ...OK('udrbd has no barriers on its backing disk: yes falls back to flushes, as DRBD 8.4 does on a device that refuses barriers (logged at attach)') },
  { keyword: 'disk-flushes', section: 'disk', ...OK("yes: the backing disk is flushed at every epoch end and after a resync; no: DRBD's drain ordering (the epoch's writes complete, unflushed), logged at attach with the warning that it is safe only with a battery-backed write cache") },
  { keyword: 'md-flushes', section: 'disk', ...OK('yes: AL transactions, bitmap pages and the superblock are written FUA / flushed; no: plain writes in the same order, logged at attach with the warning that it is safe only with a battery-backed write cache; changes at the next attach') },
  { keyword: 'disk-drain', section: 'disk', status: 'implemented', why: 'udrbd completes an epoch\'s writes before the flush that ends it', values: { no: { status: 'warn', what: 'udrbd drains anyway, which is the safer choice', todo: REMOVE } } },
  { keyword: 'no-disk-barrier', section: 'disk', ...OK("same as 'disk-barrier no': udrbd never uses barriers") },
  { keyword: 'no-disk-flushes', section: 'disk', ...OK("same as 'disk-flushes no'") },
  { keyword: 'no-md-flushes', section: 'disk', ...OK("same as 'md-flushes no'") },
  { keyword: 'no-disk-drain', section: 'disk', status: 'warn', why: "same as 'disk-drain no'", what: 'udrbd drains anyway, which is the safer choice', todo: REMOVE },
  { keyword: 'resync-rate', section: 'disk', ...OK("the resync runs at this rate with c-plan-ahead 0; the dynamic controller's first step otherwise") },
  { keyword: 'rate', section: 'disk', ...OK("8.3 syncer name of resync-rate") },
  { keyword: 'resync-after', section: 'disk', ...OK("this resource's resync waits (PausedSync*, aftr_isp) while the named resource on this node resyncs or is paused, asked over its control socket every 0.5 s; a dependency cycle among the resources that are up is refused at up/adjust (ERR_RESYNC_AFTER_CYCLE)") },
  { keyword: 'after', section: 'disk', ...OK("8.3 syncer name of resync-after") },
  { keyword: 'al-extents', section: 'disk', ...OK('size of the activity log') },
  { keyword: 'al-updates', section: 'disk', ...OK('no: no activity-log transactions, MDF_AL_DISABLED set on disk, and a crashed Primary resyncs the whole device (as DRBD 8.4); logged at attach; changes at the next attach') },
  { keyword: 'discard-zeroes-if-aligned', section: 'disk', status: 'warn', why: 'udrbd does not pass discards to the backing disk, so none is promised to zero data', what: 'no discards reach the backing disk', todo: REMOVE },
  { keyword: 'c-plan-ahead', section: 'disk', ...OK("0 = fixed rate (resync-rate); otherwise DRBD 8.4's dynamic resync controller plans this many tenths of a second ahead in 100 ms steps") },
  { keyword: 'c-max-rate', section: 'disk', ...OK('the ceiling of the dynamic resync controller, per 100 ms step') },
  { keyword: 'c-fill-target', section: 'disk', ...OK('the controller keeps this many sectors of resync requests in flight (0: use c-delay-target)') },
  { keyword: 'c-delay-target', section: 'disk', ...OK('with c-fill-target 0, the controller keeps the sectors of this many tenths of a second in flight') },
  { keyword: 'c-min-rate', section: 'disk', ...OK('while application I/O reaches the disk, the resync and online verify step back once they run faster than this (0 = never), with either pacing; a SyncSource or VerifyT whose peer is Secondary holds requests back too') },
  ...['delay-probe-volume', 'delay-probe-interval', 'throttle-threshold', 'hold-off-threshold'].map(
    (keyword): SupportRule => ({ keyword, section: 'disk', ...OK('deprecated: DRBD 8.4 ignores it too (drbdadm drops it while parsing)') }),
  ),

  // ---- net
  ...['protocol', 'timeout', 'ko-count', 'ping-int', 'ping-timeout', 'connect-int', 'max-buffers', 'max-epoch-size',
    'cram-hmac-alg', 'shared-secret', 'after-sb-0pri', 'after-sb-1pri', 'after-sb-2pri', 'rr-conflict', 'always-asbp',
    'verify-alg'].map((keyword): SupportRule => ({ keyword, section: 'net', ...OK('used as DRBD 8.4 uses it') })),
  {
    keyword: 'allow-two-primaries', section: 'net', status: 'refuse', why: 'udrbd has no detection of concurrent writes from two Primaries (DRBD\'s write conflict handling): the two copies could silently end up different',
    values: { no: ok }, what: 'no dual-primary write conflict detection', todo: "use 'allow-two-primaries no' (the default) or remove it",
  },
  { keyword: 'sndbuf-size', section: 'net', ...OK('SO_SNDBUF of the peer socket (0 = kernel auto-tuning); needs native/udrbd-io') },
  { keyword: 'rcvbuf-size', section: 'net', ...OK('SO_RCVBUF of the peer socket (0 = kernel auto-tuning); needs native/udrbd-io') },
  { keyword: 'unplug-watermark', section: 'net', status: 'warn', why: 'kernel request plugging; udrbd sends at once', what: 'no request plugging', todo: REMOVE },
  { keyword: 'data-integrity-alg', section: 'net', ...OK('every Data and resync/read reply carries the sender\'s digest of its payload; the receiver recomputes it and a mismatch ("Digest integrity check FAILED") drops the link, which reconnects and resyncs the block; both nodes must name the same digest (crc32c, md5, sha1, sha256, ...)') },
  { keyword: 'on-congestion', section: 'net', ...OK('block waits for the send buffer; pull-ahead goes Ahead/Behind (writes marked out of sync, resynced once the link drained); disconnect drops the link (StandAlone). pull-ahead / disconnect need protocol A, as in DRBD (connect fails with 155). Checked from Connected only, not during a resync') },
  { keyword: 'congestion-fill', section: 'net', ...OK('bytes sent and not yet barrier-acknowledged (DRBD ap_in_flight) that count as congestion; 0 = off; with on-congestion block DRBD ignores it too') },
  { keyword: 'congestion-extents', section: 'net', ...OK('activity-log extents of writes not yet acknowledged by the peer that count as congestion; with on-congestion block DRBD ignores it too') },
  { keyword: 'socket-check-timeout', section: 'net', status: 'warn', why: 'udrbd uses one socket per link, so there is no second socket to wait for', what: 'one socket per link', todo: REMOVE },
  { keyword: 'tcp-cork', section: 'net', status: 'warn', why: 'udrbd batches its writes itself and sets TCP_NODELAY; only latency differs', what: 'TCP_NODELAY, no cork', todo: REMOVE },
  { keyword: 'no-tcp-cork', section: 'net', ...OK('udrbd never corks the socket') },
  { keyword: 'discard-my-data', section: 'net', ...OK('a connect/up flag (--discard-my-data), not a configuration option: the parser refuses it in net { }, as drbdadm does') },
  { keyword: 'csums-alg', section: 'net', ...OK('checksum-based resync: the SyncTarget sends a digest per run (CsumRsRequest), the SyncSource sends the data only when its digest differs (else RsIsInSync); both nodes must name the same digest') },
  { keyword: 'csums-after-crash-only', section: 'net', ...OK('csums-alg is used only for the resync after a Primary crash (the crashed-primary flag); other resyncs copy in full') },
  { keyword: 'use-rle', section: 'net', status: 'warn', why: 'udrbd\'s bitmap exchange has its own compact encoding; only the bytes on the wire differ', what: 'udrbd encodes the bitmap its own way', todo: REMOVE },

  // ---- options
  { keyword: 'cpu-mask', section: 'options', status: 'warn', why: 'CPU affinity of DRBD\'s kernel threads; the resource process runs where the scheduler puts it', what: 'no CPU pinning', todo: 'pin the resource process with taskset, or remove it' },
  {
    keyword: 'on-no-data-accessible', section: 'options', status: 'refuse', why: 'with no UpToDate data reachable udrbd fails the I/O (io-error); suspend-io would promise to hold the I/O until data comes back',
    values: { 'io-error': ok }, what: 'I/O fails instead of being suspended', todo: "use 'on-no-data-accessible io-error' (the default)",
  },

  // ---- startup (the init script / wait-connect / sh-b-pri)
  { keyword: 'wfc-timeout', section: 'startup', ...OK('the init script and wait-connect wait this long for the peer') },
  { keyword: 'degr-wfc-timeout', section: 'startup', ...OK('as wfc-timeout, after a degraded shutdown') },
  { keyword: 'outdated-wfc-timeout', section: 'startup', ...OK('as wfc-timeout, when the peer is Outdated') },
  { keyword: 'become-primary-on', section: 'startup', ...OK('the init script (sh-b-pri) promotes where it names this host') },
  { keyword: 'stacked-timeouts', section: 'startup', ...OK('only for stacked resources (refused); without them DRBD ignores it too') },
  { keyword: 'wait-after-sb', section: 'startup', status: 'warn', why: 'the boot-time wait ends at StandAlone after a split brain; only how long boot waits differs', what: 'boot does not wait after a split brain', todo: REMOVE },

  // ---- handlers
  handler('pri-on-incon-degr', 'run when the node becomes Primary with neither its own nor the peer\'s disk UpToDate (after_state_ch)'),
  handler('pri-lost-after-sb', 'run by the after-sb policy call-pri-lost-after-sb'),
  handler('pri-lost', 'run by rr-conflict call-pri-lost'),
  handler('initial-split-brain', 'run when a split brain is detected, before the after-sb policies'),
  handler('split-brain', 'run when a split brain is not resolved automatically'),
  handler('before-resync-target', 'run before this node becomes SyncTarget'),
  handler('after-resync-target', 'run after this node finished a resync as SyncTarget'),
  handler('out-of-sync', 'run when an online verify ends having found out-of-sync blocks'),
  handler('fence-peer', 'run with fencing resource-only / resource-and-stonith when a Primary loses its peer and before a promotion that does not know the peer outdated; exit codes 3-7 as DRBD 8.4'),
  handler('outdate-peer', 'old name of fence-peer'),
  handler('unfence-peer', 'never run, as in DRBD 8.4 (whose kernel has no unfence call): remove the constraint from after-resync-target'),
  handler('local-io-error', 'run on a local I/O error with on-io-error call-local-io-error, before the disk detaches'),
  {
    keyword: 'before-resync-source', section: 'handlers', status: 'warn', why: 'not run before this node becomes SyncSource; usually a snapshot hook, the resync itself is the same',
    what: 'not run before a resync as SyncSource', todo: LATER,
  },
];

const RULES: ReadonlyMap<string, SupportRule> = new Map(SUPPORT_TABLE.map((r) => [r.keyword, r]));

/** The table entry for `keyword`, or undefined (a keyword config/lexer does not know). */
export function supportRule(keyword: string): SupportRule | undefined {
  return RULES.get(keyword);
}

/** The verdict for `keyword` written with `value` (null for bare flags). */
export function judgeOption(keyword: string, value: string | null): Verdict {
  const rule = RULES.get(keyword);
  if (!rule) return { status: 'refuse', what: 'unknown to udrbd', todo: 'remove it' };
  return (value !== null ? rule.values?.[value] : undefined) ?? rule;
}

export interface Finding {
  /** The option as written, e.g. `meta-disk /dev/sdb1 [0]`, `disk-flushes no`. */
  option: string;
  file: string;
  line: number;
  /** `FILE:LINE: option '...' (...) is not supported by udrbd; ...` */
  message: string;
}

export interface SupportFindings {
  refusals: Finding[];
  warnings: Finding[];
}

/** What the running machine can do, for options that need more than code. */
export interface SupportEnvironment {
  /** Why SO_SNDBUF / SO_RCVBUF cannot be set (the native addon is missing), or undefined when they can. */
  socketBuffersUnavailable?: string;
}

function finding(option: string, at: SourcePos, verdict: Verdict): Finding {
  const where = `${at.file}:${at.line}`;
  const message =
    verdict.status === 'refuse'
      ? `${where}: option '${option}' (${verdict.what ?? 'not supported'}) is not supported by udrbd; ${verdict.todo ?? 'remove it'}`
      : `${where}: WARN: option '${option}' is ignored by udrbd (${verdict.what ?? 'no effect'}); ${verdict.todo ?? REMOVE}`;
  return { option, file: at.file, line: at.line, message };
}

function optionText(o: OptionEntry): string {
  if (o.value === null) return o.name;
  return `${o.name} ${o.isEscaped ? o.value : escapeValue(o.value)}`;
}

function metaDiskText(vol: VolumeDef): string {
  if (vol.metaIndex === 'internal') return 'meta-disk internal';
  if (vol.metaIndex === 'flexible') return `flexible-meta-disk ${escapeValue(vol.metaDisk)}`;
  return `meta-disk ${escapeValue(vol.metaDisk)} [${vol.metaIndex ?? ''}]`;
}

/**
 * The options of `resourceName` as node `nodeName` sees them (common folded in)
 * that udrbd refuses or ignores, each with its file and line. Options udrbd
 * implements give no finding. Call before starting the resource (`up`) or
 * applying a changed configuration (`adjust`): refusals mean exit 10.
 * A resource without a section for this node gives no findings (resolve
 * reports that).
 */
export function checkOptionSupport(config: DrbdConfig, resourceName: string, nodeName: string, env: SupportEnvironment = {}): SupportFindings {
  const out: SupportFindings = { refusals: [], warnings: [] };
  const seen = new Set<string>();
  const add = (option: string, at: SourcePos | undefined, verdict: Verdict): void => {
    if (verdict.status === 'implemented' || at === undefined) return;
    const key = `${at.file}:${at.line}:${option}`;
    if (seen.has(key)) return;
    seen.add(key);
    (verdict.status === 'refuse' ? out.refusals : out.warnings).push(finding(option, at, verdict));
  };
  const judgeList = (opts: readonly OptionEntry[] | undefined): void => {
    for (const o of opts ?? []) add(optionText(o), o.at, environmentVerdict(o, env) ?? digestVerdict(o) ?? judgeOption(o.name, o.value));
  };

  for (const [keyword, at] of Object.entries(config.globalPositions ?? {})) {
    add(globalText(config, keyword), at, judgeOption(keyword, globalValue(config, keyword)));
  }
  const binding = bindNode(config, nodeName).bindings.find((b) => b.resource.name === resourceName);
  if (!binding?.me) return out;
  const res = expandCommon(config).find((r) => r.name === resourceName);
  if (!res) return out;
  const me = res.hosts[binding.resource.hosts.indexOf(binding.me)];
  if (!me) return out;

  const volumeRefusal = runnableVolumeRefusal(res, me.volumes, { file: res.sourceFile, line: res.startLine });
  if (volumeRefusal) out.refusals.push({ option: volumeRefusal.option, file: volumeRefusal.at.file, line: volumeRefusal.at.line, message: volumeRefusal.message });
  for (const vol of me.volumes) {
    const metaKeyword = vol.metaIndex === 'flexible' ? 'flexible-meta-disk' : 'meta-disk';
    if (vol.metaDisk !== undefined) add(metaDiskText(vol), vol.metaDiskAt, judgeOption(metaKeyword, vol.metaDisk));
    judgeList(vol.diskOptions);
  }
  judgeList(res.diskOptions);
  judgeList(res.netOptions);
  judgeList(res.startupOptions);
  judgeList(res.handlers);
  judgeList(res.resOptions);
  judgeList(me.resOptions);
  if (me.altAddress) add(`alternate-link-address ${me.altAddress.host}:${me.altAddress.port}`, me.altAddressAt, judgeOption('alternate-link-address', null));
  const byPosition = (a: Finding, b: Finding): number => (a.file === b.file ? a.line - b.line : a.file < b.file ? -1 : 1);
  out.refusals.sort(byPosition);
  out.warnings.sort(byPosition);
  return out;
}

/** peer/wire-layout INTEGRITY_DIGEST_BYTES_MAX: the longest digest a Data frame carries (sha512). */
const INTEGRITY_DIGEST_BYTES_MAX = 64;

/**
 * A data-integrity-alg udrbd cannot compute (or that is longer than a frame
 * carries) is refused at `up` / `adjust`, with FILE:LINE, where DRBD's
 * connect would fail with ERR_INTEGRITY_ALG.
 */
function digestVerdict(o: OptionEntry): Verdict | undefined {
  if (o.name !== 'data-integrity-alg' || o.value === null) return undefined;
  const refused: Verdict = { status: 'refuse', what: "The 'data-integrity-alg' you specified is not known", todo: 'use a digest such as crc32c, md5, sha1 or sha256' };
  try {
    return blockDigest(o.value, 'data-integrity-alg').digestBytes > INTEGRITY_DIGEST_BYTES_MAX ? refused : undefined;
  } catch (err) {
    if (err instanceof UdrbdError) return refused;
    throw err;
  }
}

/** sndbuf-size / rcvbuf-size other than 0 need the native addon; without it they are refused. */
function environmentVerdict(o: OptionEntry, env: SupportEnvironment): Verdict | undefined {
  if ((o.name !== 'sndbuf-size' && o.name !== 'rcvbuf-size') || o.value === '0' || env.socketBuffersUnavailable === undefined) return undefined;
  return { status: 'refuse', what: `the socket buffer cannot be set: ${env.socketBuffersUnavailable}`, todo: `build the addon (native/udrbd-io/build.sh) or use '${o.name} 0'` };
}

function globalValue(config: DrbdConfig, keyword: string): string | null {
  const g = config.global;
  switch (keyword) {
    case 'usage-count':
      return g.usageCount;
    case 'minor-count':
      return String(g.minorCount);
    case 'dialog-refresh':
      return String(g.dialogRefresh);
    case 'cmd-timeout-short':
      return String(g.cmdTimeoutShortS);
    case 'cmd-timeout-medium':
      return String(g.cmdTimeoutMediumS);
    case 'cmd-timeout-long':
      return String(g.cmdTimeoutLongS);
    default:
      return null;
  }
}

function globalText(config: DrbdConfig, keyword: string): string {
  const value = globalValue(config, keyword);
  return value === null ? keyword : `${keyword} ${value}`;
}

/** The table as README's markdown rows (README.md holds exactly this; a unit test keeps them in sync). */
export function supportTableMarkdown(): string {
  const lines = ['| keyword | section | status | values judged apart | why |', '|---|---|---|---|---|'];
  for (const r of SUPPORT_TABLE) {
    if (r.section === 'syntax' && r.status === 'implemented') continue;
    const values = Object.entries(r.values ?? {}).map(([v, verdict]) => `\`${v}\`: ${verdict.status}`).join(', ');
    lines.push(`| \`${r.keyword}\` | ${r.section} | ${r.status} | ${values} | ${r.why.replace(/\|/g, '\\|')} |`);
  }
  return `${lines.join('\n')}\n`;
}
