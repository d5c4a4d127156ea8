/**
 * cli/render/proc-drbd — the text of DRBD 8.4's /proc/drbd and of
 * `/etc/init.d/drbd status`, rendered from status snapshots of the resource
 * processes (drbd_proc.c: drbd_seq_show; drbd-utils scripts/drbd). Pure: snapshots in, text out. Tools
 * and people that parse the kernel module's output read ours the same way. Every volume is a minor of
 * its own (StatusSnapshot.volumes): one block, one table row per minor, minors in order across resources.
 */
import { ConnState, connName, diskName, roleName } from '../../resource/states.js';
import { volumesOf, type StatusSnapshot } from '../../daemon/status.js';

/** What /proc/drbd's first two lines say about us. */
export const PROC_VERSION_LINE = 'version: 8.4.11 (api:1/proto:86-101)';
export const PROC_BUILDTAG_LINE = 'srcversion: udrbd-userspace     ';

const SYNC_STATES: ReadonlySet<ConnState> = new Set([
  ConnState.SyncSource,
  ConnState.SyncTarget,
  ConnState.VerifyS,
  ConnState.VerifyT,
]);

/** Bits of 4 KiB above which the kernel switches the progress unit to M (4 GiB of data). */
const UNIT_M_THRESHOLD_BITS = 4 * 2 ** 18;

/** The 6-character flags column: s|r, a, p, u, congestion, AL suspended. */
export function flagsText(s: StatusSnapshot): string {
  const suspended = s.susp || s.suspNod || s.suspFen;
  return `${suspended ? 's' : 'r'}${s.aftrIsp ? 'a' : '-'}${s.peerIsp ? 'p' : '-'}${s.userIsp ? 'u' : '-'}--`;
}

function isUnconfigured(s: StatusSnapshot): boolean {
  return s.conn === ConnState.StandAlone && s.disk === 0 && s.role === 2;
}

/** 1234567 → "1,234,567" (the kernel's thousands grouping). */
export function groupThousands(n: number): string {
  return Math.max(0, Math.round(n)).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Per-mille done as the kernel computes it: 1000 − left·1000/(1+total). */
export function syncPerMilleOf(totalBits: number, leftBits: number): number {
  // The kernel shifts both by 10 (by 16 above 2^32 bits) to stay in 32 bits.
  const shift = totalBits > 2 ** 32 ? 16 : 10;
  const t = Math.floor(totalBits / 2 ** shift);
  const l = Math.floor(leftBits / 2 ** shift);
  return 1000 - Math.floor((l * 1000) / (1 + t));
}

/** `[=====>..............]`: 20 characters, 21 when nothing is done yet. */
export function progressBar(perMille: number): string {
  const x = Math.floor(perMille / 50);
  return `[${'='.repeat(Math.max(0, x - 1))}>${'.'.repeat(20 - x)}]`;
}

/** The two progress lines of a syncing or verifying minor, without trailing newline. */
export function progressLines(s: StatusSnapshot): string[] {
  const sync = s.sync;
  if (!sync) return [];
  const perMille = syncPerMilleOf(sync.totalBits, sync.leftBits);
  const unitM = sync.totalBits > UNIT_M_THRESHOLD_BITS;
  const toUnit = (bits: number): number => (unitM ? Math.floor((bits * 4) / 1024) : bits * 4);
  const verify = s.conn === ConnState.VerifyS || s.conn === ConnState.VerifyT;
  const pct = `${Math.floor(perMille / 10).toString().padStart(3)}.${perMille % 10}`;
  const first = `\t${progressBar(perMille)} ${verify ? 'verified:' : "sync'ed:"}${pct}% (${toUnit(sync.leftBits)}/${toUnit(sync.totalBits)})${unitM ? 'M' : 'K'}`;
  const eta = Math.max(0, Math.round(sync.etaSeconds ?? 0));
  const h = Math.floor(eta / 3600);
  const m = Math.floor((eta % 3600) / 60);
  const sec = eta % 60;
  const wantKiBps = sync.wantKiBps;
  const want = (s.conn === ConnState.SyncTarget || s.conn === ConnState.VerifyS) && wantKiBps !== undefined
    ? ` want: ${groupThousands(wantKiBps)}`
    : '';
  const second = `\tfinish: ${h}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')} speed: ${groupThousands(sync.speedKiBps)} (${groupThousands(sync.averageKiBps)})${want} K/sec`;
  return [first, second];
}

function counter(s: StatusSnapshot, name: string): number {
  return Math.max(0, Math.floor(s.counters[name] ?? 0));
}

/** The lines of one minor. */
export function minorLines(s: StatusSnapshot): string[] {
  const minor = String(s.minor).padStart(2);
  if (isUnconfigured(s)) return [`${minor}: cs:Unconfigured`];
  const proto = s.protocol ?? ' ';
  const head = `${minor}: cs:${connName(s.conn)} ro:${roleName(s.role)}/${roleName(s.peer)} ds:${diskName(s.disk)}/${diskName(s.pdsk)} ${proto} ${flagsText(s)}`;
  const c = (n: string): string => `${n}:${counter(s, n)}`;
  const counters = `    ${c('ns')} ${c('nr')} ${c('dw')} ${c('dr')} ${c('al')} ${c('bm')} ${c('lo')} ${c('pe')} ${c('ua')} ${c('ap')} ep:${Math.max(1, counter(s, 'ep'))} wo:f oos:${Math.max(0, Math.floor(s.outOfSyncKiB))}`;
  const lines = [head, counters];
  if (SYNC_STATES.has(s.conn)) lines.push(...progressLines(s));
  return lines;
}

/** Every volume of these resources as its own minor, sorted by minor (the kernel walks its minors in order). */
function minorsOf(snapshots: readonly StatusSnapshot[]): StatusSnapshot[] {
  return snapshots.flatMap(volumesOf).sort((a, b) => a.minor - b.minor);
}

/** The whole /proc/drbd text for the minors of these resources (sorted by minor). */
export function renderProcDrbd(snapshots: readonly StatusSnapshot[]): string {
  const lines = [PROC_VERSION_LINE, PROC_BUILDTAG_LINE];
  const sorted = minorsOf(snapshots);
  let previous = -1;
  for (const s of sorted) {
    if (s.minor !== previous + 1) lines.push('');
    lines.push(...minorLines(s));
    previous = s.minor;
  }
  return `${lines.join('\n')}\n`;
}

export interface MountInfo {
  mountPoint: string;
  fsType: string;
}

/**
 * `column -t` as util-linux 2.38 does it: every row has as many cells as the
 * widest row (missing ones empty), and every column but the last is padded
 * to its widest cell plus two spaces — so a short row ends in spaces.
 */
export function columnT(rows: readonly string[][]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  const last = widths.length - 1;
  return rows.map((r) => widths.map((width, i) => (i === last ? (r[i] ?? '') : (r[i] ?? '').padEnd(width + 2))).join(''));
}

/**
 * `/etc/init.d/drbd status`: the driver line, /proc/drbd's first two lines,
 * then the table. `mounts` maps a minor to its mount (by device path).
 */
export function renderInitStatus(snapshots: readonly StatusSnapshot[], mounts: ReadonlyMap<number, MountInfo>): string {
  const header = ['m:res', 'cs', 'ro', 'ds', 'p', 'mounted', 'fstype'];
  const sorted = minorsOf(snapshots);
  const resourceRows = new Map<number, string[][]>();
  const progressRows: string[][] = [];
  for (const s of sorted) {
    if (isUnconfigured(s)) {
      // The script's name substitution runs before its `cs:Unconfigured` filter, so a
      // named unconfigured minor stays in the table as `<minor>:<name>  Unconfigured`.
      resourceRows.set(s.minor, [...(resourceRows.get(s.minor) ?? []), [`${s.minor}:${s.resource}`, 'Unconfigured']]);
      continue;
    }
    const mount = mounts.get(s.minor);
    // Without a protocol letter the init script's field split moves the flags into `p`.
    const p = s.protocol ?? flagsText(s);
    const row = [`${s.minor}:${s.resource}`, connName(s.conn), `${roleName(s.role)}/${roleName(s.peer)}`, `${diskName(s.disk)}/${diskName(s.pdsk)}`, p];
    if (mount) row.push(mount.mountPoint, mount.fsType);
    const list = resourceRows.get(s.minor) ?? [];
    list.push(row);
    resourceRows.set(s.minor, list);
    if (SYNC_STATES.has(s.conn) && s.sync) {
      const perMille = syncPerMilleOf(s.sync.totalBits, s.sync.leftBits);
      const verify = s.conn === ConnState.VerifyS || s.conn === ConnState.VerifyT;
      const unitM = s.sync.totalBits > UNIT_M_THRESHOLD_BITS;
      const toUnit = (bits: number): number => (unitM ? Math.floor((bits * 4) / 1024) : bits * 4);
      progressRows.push(['...', verify ? 'verified:' : "sync'ed:", `${Math.floor(perMille / 10)}.${perMille % 10}%`, `(${toUnit(s.sync.leftBits)}/${toUnit(s.sync.totalBits)})${unitM ? 'M' : 'K'}`]);
    }
  }
  // `sort -k1,1n` reads "..." as 0: progress rows land after minor 0's rows, before the rest.
  const body: string[][] = [];
  body.push(...(resourceRows.get(0) ?? []));
  body.push(...progressRows);
  for (const [minor, rows] of resourceRows) if (minor !== 0) body.push(...rows);
  const out = ['drbd driver loaded OK; device status:', PROC_VERSION_LINE, PROC_BUILDTAG_LINE, ...columnT([header, ...body])];
  return `${out.join('\n')}\n`;
}
