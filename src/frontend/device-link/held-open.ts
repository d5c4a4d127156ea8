/**
 * frontend/device-link/held-open — is a kernel block device in use? The
 * question DRBD answers before `secondary`/`down` ("Device is held open by
 * someone"). A device counts as held open when any of these is true:
 *   - it is mounted (/proc/self/mountinfo major:minor, or a /proc/mounts-style
 *     source path that resolves to it);
 *   - it has holders (/sys/dev/block/MAJ:MIN/holders: dm, md, ...);
 *   - someone claims it exclusively (open O_EXCL fails with EBUSY: a mount in
 *     another namespace, mkfs, a swap);
 *   - a process has it open (/proc/PID/fd links, scan bounded in count and time).
 * Knows nothing of loop devices, FUSE or roles: works for /dev/nbdN too.
 */
import fs from 'node:fs/promises';
import fsSync, { constants as fsConstants } from 'node:fs';
import path from 'node:path';
import { UdrbdError, ExitCode } from '../../util/errors.js';

/** Processes scanned at most (pid_max defaults to 4194304 but real systems have far fewer). */
export const PID_SCAN_MAX = 65_536;
/** File descriptors scanned per process at most. */
export const FD_SCAN_PER_PROCESS_MAX = 65_536;
/** The /proc scan stops (and reports itself incomplete) after this long. */
export const PROC_SCAN_TIMEOUT_MS = 5_000;

export interface OpenByProcess {
  readonly pid: number;
  readonly command: string;
  readonly fd: number;
}

export interface HeldOpenReport {
  readonly held: boolean;
  readonly device: string;
  readonly majorMinor: string;
  readonly mountPoints: string[];
  readonly holders: string[];
  readonly exclusivelyClaimed: boolean;
  readonly openBy: OpenByProcess[];
  /** False when the /proc scan hit PID_SCAN_MAX or PROC_SCAN_TIMEOUT_MS. */
  readonly scanComplete: boolean;
}

export interface HeldOpenOptions {
  /** Other paths that name the device (e.g. the /dev/drbd1 link). */
  aliasPaths?: readonly string[];
  /** Pids not to count (never includes this process unless asked). */
  ignorePids?: readonly number[];
  scanTimeoutMs?: number;
}

/** glibc's gnu_dev_major / gnu_dev_minor on a stat rdev. */
export function majorMinorOf(rdev: number): { major: number; minor: number } {
  const major = (Math.floor(rdev / 256) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | (Math.floor(rdev / 4096) & 0xfff00);
  return { major, minor };
}

/** Mount points in /proc/self/mountinfo text whose device is `majorMinor` or whose source is in `sources`. */
export function mountPointsOf(mountinfo: string, majorMinor: string, sources: ReadonlySet<string>): string[] {
  const found: string[] = [];
  for (const line of mountinfo.split('\n')) {
    if (line === '') continue;
    const fields = line.split(' ');
    const separator = fields.indexOf('-');
    if (separator < 6) continue;
    const source = unescapeMountField(fields[separator + 2] ?? '');
    if (fields[2] === majorMinor || sources.has(source)) found.push(unescapeMountField(fields[4] ?? ''));
  }
  return found;
}

/** /proc/*mount* fields escape space, tab, newline and backslash as \ooo. */
export function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Everything known about who uses `device`; see the module header for the rules. */
export async function heldOpenReport(device: string, options: HeldOpenOptions = {}): Promise<HeldOpenReport> {
  let st: import('node:fs').Stats;
  try {
    st = await fs.stat(device);
  } catch (err) {
    throw new UdrbdError(`cannot check whether ${device} is in use: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, ExitCode.fatal);
  }
  if (!st.isBlockDevice()) throw new UdrbdError(`${device} is not a block device`, ExitCode.fatal);
  const { major, minor } = majorMinorOf(st.rdev);
  const majorMinor = `${major}:${minor}`;
  const canonical = await fs.realpath(device);
  const names = new Set<string>([device, canonical, ...(options.aliasPaths ?? [])]);

  const mountPoints = mountPointsOf(await fs.readFile('/proc/self/mountinfo', 'utf8'), majorMinor, names);
  const holders = await listOrEmpty(`/sys/dev/block/${majorMinor}/holders`);
  const exclusivelyClaimed = await isExclusivelyClaimed(canonical);
  const scan = await processesWithDeviceOpen(st.rdev, names, new Set(options.ignorePids ?? []), options.scanTimeoutMs ?? PROC_SCAN_TIMEOUT_MS);
  return {
    held: mountPoints.length > 0 || holders.length > 0 || exclusivelyClaimed || scan.openBy.length > 0,
    device: canonical,
    majorMinor,
    mountPoints,
    holders,
    exclusivelyClaimed,
    openBy: scan.openBy,
    scanComplete: scan.complete,
  };
}

/** One line for logs and operator messages, e.g. "mounted on /mnt; open by pid 12 (dd)". */
export function describeHeldOpen(report: HeldOpenReport): string {
  const parts: string[] = [];
  if (report.mountPoints.length > 0) parts.push(`mounted on ${report.mountPoints.join(', ')}`);
  if (report.holders.length > 0) parts.push(`held by ${report.holders.join(', ')}`);
  if (report.openBy.length > 0) parts.push(`open by ${report.openBy.map((o) => `pid ${o.pid} (${o.command})`).join(', ')}`);
  if (report.exclusivelyClaimed && report.mountPoints.length === 0 && report.holders.length === 0) parts.push('claimed exclusively');
  return parts.length > 0 ? parts.join('; ') : 'not in use';
}

async function isExclusivelyClaimed(device: string): Promise<boolean> {
  let handle: import('node:fs/promises').FileHandle;
  try {
    handle = await fs.open(device, fsConstants.O_RDONLY | fsConstants.O_EXCL | fsConstants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EBUSY') return true;
    // ENXIO: a loop device without a backing file; nobody can hold it.
    if (code === 'ENXIO' || code === 'ENOENT') return false;
    throw err;
  }
  await handle.close();
  return false;
}

async function processesWithDeviceOpen(
  rdev: number,
  names: ReadonlySet<string>,
  ignorePids: ReadonlySet<number>,
  timeoutMs: number,
): Promise<{ openBy: OpenByProcess[]; complete: boolean }> {
  const deadline = Date.now() + timeoutMs;
  const openBy: OpenByProcess[] = [];
  const entries = await fs.readdir('/proc');
  let scanned = 0;
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (ignorePids.has(pid)) continue;
    if (++scanned > PID_SCAN_MAX || Date.now() > deadline) return { openBy, complete: false };
    const fdDir = `/proc/${pid}/fd`;
    const fds = await listOrEmpty(fdDir);
    const fdCount = Math.min(fds.length, FD_SCAN_PER_PROCESS_MAX);
    for (let i = 0; i < fdCount; i++) {
      const fd = fds[i] as string;
      const link = await readlinkOrNull(path.join(fdDir, fd));
      if (link === null) continue;
      // Only device nodes can be the device: never stat other fds (they may be on FUSE).
      let match = names.has(link);
      if (!match && link.startsWith('/dev/')) match = (await statRdevOrNull(path.join(fdDir, fd))) === rdev;
      if (match) openBy.push({ pid, command: await commandOf(pid), fd: Number(fd) });
    }
  }
  return { openBy, complete: true };
}

async function statRdevOrNull(p: string): Promise<number | null> {
  try {
    const st = await fs.stat(p);
    return st.isBlockDevice() ? st.rdev : null;
  } catch {
    return null;
  }
}

async function readlinkOrNull(p: string): Promise<string | null> {
  try {
    return await fs.readlink(p);
  } catch {
    return null; // process or fd gone meanwhile, or not ours to read
  }
}

async function listOrEmpty(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch {
    return [];
  }
}

async function commandOf(pid: number): Promise<string> {
  try {
    return (await fs.readFile(`/proc/${pid}/comm`, 'utf8')).trim();
  } catch {
    return '?';
  }
}

/**
 * The same question answered synchronously, for callers that must decide
 * inside a synchronous state check (`secondary`, `down`). Reads only procfs,
 * sysfs and device nodes — never anything that could be a FUSE file — so it
 * is safe in the process that serves the FUSE volume. It leaves out the
 * O_EXCL probe (an open of the device itself); callers re-check with
 * heldOpenReport before tearing down.
 */
export function heldOpenSync(device: string, options: HeldOpenOptions = {}): HeldOpenReport {
  let st: import('node:fs').Stats;
  try {
    st = fsSync.statSync(device);
  } catch (err) {
    throw new UdrbdError(`cannot check whether ${device} is in use: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, ExitCode.fatal);
  }
  if (!st.isBlockDevice()) throw new UdrbdError(`${device} is not a block device`, ExitCode.fatal);
  const { major, minor } = majorMinorOf(st.rdev);
  const majorMinor = `${major}:${minor}`;
  const canonical = fsSync.realpathSync(device);
  const names = new Set<string>([device, canonical, ...(options.aliasPaths ?? [])]);
  const mountPoints = mountPointsOf(fsSync.readFileSync('/proc/self/mountinfo', 'utf8'), majorMinor, names);
  const holders = listOrEmptySync(`/sys/dev/block/${majorMinor}/holders`);
  const deadline = Date.now() + (options.scanTimeoutMs ?? PROC_SCAN_TIMEOUT_MS);
  const ignore = new Set(options.ignorePids ?? []);
  const openBy: OpenByProcess[] = [];
  let complete = true;
  let scanned = 0;
  for (const entry of listOrEmptySync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (ignore.has(pid)) continue;
    if (++scanned > PID_SCAN_MAX || Date.now() > deadline) {
      complete = false;
      break;
    }
    const fdDir = `/proc/${pid}/fd`;
    const fds = listOrEmptySync(fdDir);
    const fdCount = Math.min(fds.length, FD_SCAN_PER_PROCESS_MAX);
    for (let i = 0; i < fdCount; i++) {
      const fd = fds[i] as string;
      let link: string;
      try {
        link = fsSync.readlinkSync(path.join(fdDir, fd));
      } catch {
        continue; // gone meanwhile
      }
      // Only device nodes can be the device: never stat other fds (they may be on FUSE).
      let match = names.has(link);
      if (!match && link.startsWith('/dev/')) {
        try {
          const fst = fsSync.statSync(path.join(fdDir, fd));
          match = fst.isBlockDevice() && fst.rdev === st.rdev;
        } catch {
          match = false;
        }
      }
      if (match) openBy.push({ pid, command: commandOfSync(pid), fd: Number(fd) });
    }
  }
  return {
    held: mountPoints.length > 0 || holders.length > 0 || openBy.length > 0,
    device: canonical,
    majorMinor,
    mountPoints,
    holders,
    exclusivelyClaimed: false,
    openBy,
    scanComplete: complete,
  };
}

function listOrEmptySync(dir: string): string[] {
  try {
    return fsSync.readdirSync(dir);
  } catch {
    return [];
  }
}

function commandOfSync(pid: number): string {
  try {
    return fsSync.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}
