/**
 * frontend/exposure/fuse-loop-exposure — makes a BlockDevice a real Linux
 * block device on a kernel without nbd: a FUSE file (frontend/fuse) with a
 * loop device on it (frontend/loop) and the configured DRBD device path as a
 * link to that loop device (frontend/device-link). Owns the order of setup
 * and teardown, the "held open" refusal, and a small state file per device
 * in the runtime directory so `cleanupStale` can undo an exposure whose
 * process crashed. Knows nothing of roles or replication: the caller decides
 * when to expose (Primary) and when to tear down (secondary/down).
 *
 * One process may hold several exposures at once (one per volume): each is
 * keyed by its device path (the state file is `<basename>.fuse-loop.json`,
 * the caller gives each its own mount point), and the state files this
 * process exposes right now are remembered here, so a record carrying this
 * process's pid is stale only when it is not one of them (a crashed
 * predecessor whose pid was reused) and never a live sibling volume.
 *
 * Teardown order: refuse while held open; remove the device link first (so
 * nobody can open /dev/drbdN while it points at a loop number the kernel may
 * hand to someone else), then `losetup -d`, then unmount the FUSE file, then
 * forget the state file. Each step is idempotent, so a failed teardown can be
 * retried.
 *
 * The process that calls exposeVolume serves the FUSE file, so it must never
 * block its event loop on the device (no synchronous fs calls under the
 * mount, no execSync of mount/mkfs/losetup): the kernel waits for this very
 * process to answer, and a blocked loop is a deadlock.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import type { BlockDevice } from '../../disk/block-device.js';
import { UdrbdError, ExitCode } from '../../util/errors.js';
import { assert } from '../../util/assert.js';
import { silentLogger, type Logger } from '../../util/log.js';
import { mountVolumeFs, VOLUME_FILE_NAME, type VolumeFs } from '../fuse/volume-fs.js';
import { attachLoop, detachLoop, findLoopDevicesBackedBy, loopAutoclear, loopBackingFile, loopIdentity, refreshLoopCapacity, sameLoopIdentity, type LoopIdentity } from '../loop/losetup.js';
import { createDeviceLink, removeDeviceLink } from '../device-link/device-link.js';
import { heldOpenReport, describeHeldOpen, unescapeMountField, type HeldOpenReport } from '../device-link/held-open.js';

export const DEFAULT_RUNTIME_DIR = '/run/udrbd/frontend';
/** DRBD 8.4's refusal (SS_DEVICE_IN_USE) for secondary/down while the device is in use. */
export const HELD_OPEN_MESSAGE = 'State change failed: (-12) Device is held open by someone';
/** fuse-native's (libfuse 2's) attribute cache lives 1 s; a grown size is visible after it (plus slack). */
const FUSE_NATIVE_ATTR_TIMEOUT_MS = 1_200;
/** Short-lived opens (blkid, a finishing `umount`) get this long to go away before teardown refuses. */
export const HELD_OPEN_GRACE_MS = 1_000;
const HELD_OPEN_RECHECK_MS = 100;
/** fusermount / umount of a FUSE mount; bounded so a wedged kernel cannot hang teardown. */
export const UNMOUNT_TIMEOUT_MS = 30_000;
/** State files read by cleanupStale at most. */
const STATE_FILES_MAX = 1024;
const STATE_SUFFIX = '.fuse-loop.json';

/** State files of the exposures this process holds now; the one per-process record here. */
const exposedInThisProcess = new Set<string>();

/** `<runtimeDir>/<basename of devicePath>.fuse-loop.json`: the one state file of a device path's exposure. */
export function exposureStateFile(runtimeDir: string, devicePath: string): string {
  return path.join(runtimeDir, `${path.basename(path.resolve(devicePath))}${STATE_SUFFIX}`);
}

export interface ExposeOptions {
  device: BlockDevice;
  /** Directory the FUSE filesystem is mounted on (created if missing). */
  mountDir: string;
  /** The configured DRBD device path, e.g. /dev/drbd1: becomes a link to the loop device. */
  devicePath: string;
  /** Where the state file for cleanupStale lives; default /run/udrbd/frontend. */
  runtimeDir?: string;
  /** Refuse writes (never used for a Primary; available for read-only inspection). */
  readOnly?: boolean;
  /** losetup --direct-io=on (default true; falls back with a logged reason). */
  loopDirectIo?: boolean;
  /** FUSE direct_io on the volume file (default: volume-fs DIRECT_IO_DEFAULT). */
  fuseDirectIo?: boolean;
  log?: Logger;
}

/** What the state file records; enough to undo the exposure from another process. */
export interface ExposureRecord {
  readonly version: 1;
  readonly pid: number;
  /** /proc/PID/stat start time, so a reused pid is not mistaken for the owner. */
  readonly pidStartTicks: string;
  readonly devicePath: string;
  readonly mountDir: string;
  readonly volumeFile: string;
  readonly loopDevice: string | null;
  /**
   * The attached loop device's identity, written right after attach: how
   * cleanup recognises it once its backing path is gone with a dead mount
   * namespace (absent in records of older versions).
   */
  readonly loopIdentity?: LoopIdentity | null;
}

export class VolumeExposure {
  private tornDown = false;

  constructor(
    private readonly volumeFs: VolumeFs,
    readonly loopDevice: string,
    readonly loopDirectIo: boolean,
    readonly devicePath: string,
    private readonly stateFile: string,
    private readonly log: Logger,
  ) {}

  get volumeFile(): string {
    return this.volumeFs.volumePath;
  }

  get mountDir(): string {
    return this.volumeFs.mountDir;
  }

  get stats(): VolumeFs['stats'] {
    return this.volumeFs.stats;
  }

  /** Which libfuse serves the volume file (null once unmounted). */
  get backend(): VolumeFs['backend'] {
    return this.volumeFs.backend;
  }

  /** Mounted, held by another device, claimed exclusively, or open by a process. */
  async isHeldOpen(): Promise<boolean> {
    return (await this.heldOpenReport()).held;
  }

  async heldOpenReport(): Promise<HeldOpenReport> {
    assert(!this.tornDown, 'held-open check on an exposure that still exists');
    return heldOpenReport(this.loopDevice, { aliasPaths: [this.devicePath] });
  }

  /**
   * The volume grew (udrbd resize): the FUSE file takes the new size, a
   * stat makes the kernel re-read it (the loop driver takes the inode's
   * cached size), then `losetup -c` grows the loop device — what DRBD's
   * /dev/drbdN does by itself, so an operator's next step is xfs_growfs.
   * Resolves with the loop device's new size; throws if it did not follow.
   */
  /** The size of the FUSE file (and so of the loop device). */
  get sizeBytes(): number {
    return this.volumeFs.sizeBytes;
  }

  async grow(sizeBytes: number): Promise<number> {
    assert(!this.tornDown, 'grow() on an exposure that still exists');
    this.volumeFs.setSize(sizeBytes);
    // fuse-native (libfuse 2) answers from its 1 s attribute cache until it expires.
    if (this.volumeFs.backend === 'fuse-native') await new Promise((resolve) => setTimeout(resolve, FUSE_NATIVE_ATTR_TIMEOUT_MS));
    const seen = (await fs.stat(this.volumeFile)).size;
    const loopBytes = await refreshLoopCapacity(this.loopDevice);
    if (seen !== sizeBytes || loopBytes !== sizeBytes) {
      throw new UdrbdError(`${this.loopDevice} did not grow to ${sizeBytes} bytes (the file shows ${seen}, the loop device ${loopBytes}); run 'losetup -c ${this.loopDevice}'`, ExitCode.fatal);
    }
    this.log.info({ loopDevice: this.loopDevice, sizeBytes }, 'loop device grew (losetup -c)');
    return loopBytes;
  }

  /** Undoes the exposure; refuses with DRBD's -12 while held open. Idempotent. */
  async teardown(): Promise<void> {
    if (this.tornDown) return;
    // After a half-done teardown the loop number may already belong to someone else.
    const attached = (await loopBackingFile(this.loopDevice)) === this.volumeFile;
    if (attached) await refuseWhileHeldOpen(this.loopDevice, this.devicePath, this.log);
    await removeDeviceLink(this.devicePath, this.loopDevice);
    if (attached) {
      await detachLoop(this.loopDevice, this.log, this.volumeFile);
      if ((await loopBackingFile(this.loopDevice)) === this.volumeFile) {
        // Someone opened it between the check and losetup -d: the kernel set autoclear.
        throw heldOpenError(this.devicePath, 'opened during teardown; the loop device is freed on last close');
      }
    }
    try {
      await this.volumeFs.unmount();
    } catch (err) {
      this.log.warn({ mountDir: this.mountDir, reason: (err as Error).message }, 'FUSE unmount failed, detaching lazily');
      await unmountFuseLazily(this.mountDir);
    }
    await fs.rm(this.stateFile, { force: true });
    exposedInThisProcess.delete(this.stateFile);
    this.tornDown = true;
    this.log.info({ devicePath: this.devicePath }, 'volume exposure torn down');
  }
}

/** FUSE file + loop device + device link for `device`. Undoes what it did when a step fails. */
export async function exposeVolume(options: ExposeOptions): Promise<VolumeExposure> {
  const log = (options.log ?? silentLogger()).child({ devicePath: options.devicePath });
  const runtimeDir = options.runtimeDir ?? DEFAULT_RUNTIME_DIR;
  const mountDir = path.resolve(options.mountDir);
  const devicePath = path.resolve(options.devicePath);
  const name = path.basename(devicePath);
  const stateFile = exposureStateFile(runtimeDir, devicePath);
  await checkPrerequisites();
  await fs.mkdir(runtimeDir, { recursive: true, mode: 0o700 });

  const previous = await readRecord(stateFile);
  if (previous !== null) {
    if (await ownerAlive(previous, stateFile)) {
      throw new UdrbdError(`${devicePath} is already exposed by process ${previous.pid} (state in ${stateFile})`, ExitCode.fatal);
    }
    const stillHeld = await cleanupRecord(stateFile, previous, log);
    if (stillHeld !== null) {
      // The crashed exposure's loop device is still mounted: a second one would hide it.
      throw new UdrbdError(`${devicePath}: the exposure left by crashed process ${previous.pid} is still in use (${stillHeld}); unmount it first`, ExitCode.stateChangeFailed);
    }
  }

  const volumeFile = path.join(mountDir, VOLUME_FILE_NAME);
  const record = { version: 1 as const, pid: process.pid, pidStartTicks: await startTicksOf(process.pid), devicePath, mountDir, volumeFile, loopDevice: null };
  if (exposedInThisProcess.has(stateFile)) {
    // A sibling exposure of this process holds it (its record may not be written yet).
    throw new UdrbdError(`${devicePath} is already exposed by this process (state in ${stateFile}); every volume needs its own device path`, ExitCode.fatal);
  }
  exposedInThisProcess.add(stateFile);
  await writeRecord(stateFile, record);

  let volumeFs: VolumeFs | null = null;
  let loopDevice: string | null = null;
  try {
    volumeFs = await mountVolumeFs({
      device: options.device,
      mountDir,
      fsname: `udrbd:${name}`,
      readOnly: options.readOnly,
      directIo: options.fuseDirectIo,
      log,
    });
    const attached = await attachLoop(volumeFile, { directIo: options.loopDirectIo ?? true, requestMaxBytes: volumeFs.requestMaxBytes ?? undefined, log });
    loopDevice = attached.loopDevice;
    await writeRecord(stateFile, { ...record, loopDevice, loopIdentity: await loopIdentity(loopDevice) });
    await createDeviceLink(devicePath, loopDevice);
    log.info({ loopDevice, volumeFile, loopDirectIo: attached.directIo }, 'volume exposed');
    return new VolumeExposure(volumeFs, loopDevice, attached.directIo, devicePath, stateFile, log);
  } catch (err) {
    log.error({ reason: (err as Error).message }, 'exposing the volume failed, undoing');
    if (loopDevice !== null) await detachLoop(loopDevice, log, volumeFile).catch(() => undefined);
    if (volumeFs !== null) await volumeFs.unmount().catch(() => unmountFuseLazily(mountDir).catch(() => undefined));
    await fs.rm(stateFile, { force: true });
    exposedInThisProcess.delete(stateFile);
    if (err instanceof UdrbdError) throw err;
    throw new UdrbdError(`cannot expose ${devicePath}: ${(err as Error).message}`, ExitCode.fatal);
  }
}

export interface CleanupReport {
  /** Device paths whose stale exposure was removed completely. */
  readonly cleaned: string[];
  /** Device paths still in use (e.g. a filesystem still mounted): nothing was removed. */
  readonly stillHeld: { devicePath: string; why: string }[];
  /** Device paths owned by a live process: left alone. */
  readonly live: string[];
}

/** Which records cleanupStale looks at. */
export interface CleanupScope {
  /**
   * Only the exposure of this device path (its one state file, and only if
   * the record names this path): what a resource process cleans for one of
   * its volumes. Absent: every record in runtimeDir (tests' sweeps).
   */
  readonly devicePath?: string;
}

/**
 * Start-up after a crash: undoes every exposure recorded in `runtimeDir`
 * (or only `scope.devicePath`'s) whose owning process is gone. One still in
 * use (XFS still mounted on the loop device) is left as it is and reported;
 * run again after `umount`. An exposure of this very process is live.
 */
export async function cleanupStale(runtimeDir: string = DEFAULT_RUNTIME_DIR, log: Logger = silentLogger(), scope: CleanupScope = {}): Promise<CleanupReport> {
  const report: CleanupReport = { cleaned: [], stillHeld: [], live: [] };
  let names: string[];
  try {
    names = await fs.readdir(runtimeDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return report;
    throw err;
  }
  const wanted = scope.devicePath === undefined ? null : path.basename(exposureStateFile(runtimeDir, scope.devicePath));
  const stateFiles = names.filter((n) => n.endsWith(STATE_SUFFIX) && (wanted === null || n === wanted)).sort().slice(0, STATE_FILES_MAX);
  for (const name of stateFiles) {
    const stateFile = path.join(runtimeDir, name);
    const record = await readRecord(stateFile);
    if (record === null) continue;
    if (scope.devicePath !== undefined && path.resolve(record.devicePath) !== path.resolve(scope.devicePath)) {
      // Another device path with the same basename: not this volume's leftover.
      log.warn({ stateFile, recorded: record.devicePath, devicePath: scope.devicePath }, 'exposure record names another device path; left alone');
      continue;
    }
    if (await ownerAlive(record, stateFile)) {
      report.live.push(record.devicePath);
      continue;
    }
    const why = await cleanupRecord(stateFile, record, log);
    if (why === null) report.cleaned.push(record.devicePath);
    else report.stillHeld.push({ devicePath: record.devicePath, why });
  }
  return report;
}

/** Undoes one recorded exposure; returns null when done, or why it is still held. */
async function cleanupRecord(stateFile: string, record: ExposureRecord, log: Logger): Promise<string | null> {
  // loop device → the backing path it shows now (the recorded path, or what is left of it)
  const loops = new Map<string, string>();
  for (const loop of await findLoopDevicesBackedBy(record.volumeFile)) loops.set(loop, record.volumeFile);
  const recorded = await recordedLoopStillOurs(record);
  if (recorded !== null) loops.set(recorded.loopDevice, recorded.backingFile);
  for (const loop of loops.keys()) {
    const held = await heldOpenReport(loop, { aliasPaths: [record.devicePath] });
    if (held.held) {
      const why = describeHeldOpen(held);
      log.warn({ devicePath: record.devicePath, loopDevice: loop, why }, 'stale exposure still in use, left in place');
      return why;
    }
  }
  for (const loop of loops.keys()) await removeDeviceLink(record.devicePath, loop);
  for (const [loop, backingFile] of loops) {
    await detachLoop(loop, log, backingFile);
    const after = await loopBackingFile(loop);
    if (after !== null && after.replace(/ \(deleted\)$/, '') === backingFile && !(await loopAutoclear(loop))) {
      throw new UdrbdError(`${record.devicePath}: the stale loop device ${loop} is still attached after losetup -d; detach it by hand (losetup -d ${loop})`, ExitCode.fatal);
    }
  }
  if (await isMountPoint(record.mountDir)) await unmountFuseLazily(record.mountDir);
  await fs.rm(stateFile, { force: true });
  log.info({ devicePath: record.devicePath, loopDevices: [...loops.keys()], mountDir: record.mountDir }, 'stale exposure cleaned up');
  return null;
}

/**
 * The recorded loop device with its current backing path, when it is still
 * the attachment udrbd made: backed by the recorded volume file, or — the
 * owner ran in a mount namespace that died with it — by a path that is only
 * the volume file's name below a vanished mount, with the same identity
 * (loop major:minor, backing device and inode) as recorded at attach time.
 */
async function recordedLoopStillOurs(record: ExposureRecord): Promise<{ loopDevice: string; backingFile: string } | null> {
  if (record.loopDevice === null) return null;
  const backing = await loopBackingFile(record.loopDevice);
  if (backing === null) return null;
  const bare = backing.replace(/ \(deleted\)$/, '');
  if (bare === path.resolve(record.volumeFile)) return { loopDevice: record.loopDevice, backingFile: bare };
  if (record.loopIdentity === undefined || record.loopIdentity === null) return null;
  if (!bare.endsWith(`/${path.basename(record.volumeFile)}`)) return null;
  const now = await loopIdentity(record.loopDevice);
  if (now === null || !sameLoopIdentity(now, record.loopIdentity)) return null;
  return { loopDevice: record.loopDevice, backingFile: bare };
}

/** `fusermount -u -z`, and `umount -l` as the last resort. */
export async function unmountFuseLazily(mountDir: string): Promise<void> {
  try {
    await execa('fusermount', ['-u', '-z', mountDir], { timeout: UNMOUNT_TIMEOUT_MS, stdin: 'ignore' });
  } catch (first) {
    if (!(await isMountPoint(mountDir))) return;
    try {
      await execa('umount', ['-l', mountDir], { timeout: UNMOUNT_TIMEOUT_MS, stdin: 'ignore' });
    } catch (second) {
      throw new UdrbdError(
        `cannot unmount the FUSE volume at ${mountDir}: ${(first as Error).message}; ${(second as Error).message}`,
        ExitCode.fatal,
      );
    }
  }
}

/** True when `dir` is a mount point in this namespace (from mountinfo: never stats a maybe-dead FUSE). */
export async function isMountPoint(dir: string): Promise<boolean> {
  const wanted = path.resolve(dir);
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
  for (const line of text.split('\n')) {
    const mountPoint = line.split(' ')[4];
    if (mountPoint !== undefined && unescapeMountField(mountPoint) === wanted) return true;
  }
  return false;
}

async function refuseWhileHeldOpen(loopDevice: string, devicePath: string, log: Logger): Promise<void> {
  const deadline = Date.now() + HELD_OPEN_GRACE_MS;
  for (;;) {
    const report = await heldOpenReport(loopDevice, { aliasPaths: [devicePath] });
    if (!report.held) return;
    const transient = report.mountPoints.length === 0 && report.holders.length === 0;
    if (!transient || Date.now() >= deadline) {
      const why = describeHeldOpen(report);
      log.warn({ loopDevice, why }, 'teardown refused: device is held open');
      throw heldOpenError(devicePath, why);
    }
    await new Promise((resolve) => setTimeout(resolve, HELD_OPEN_RECHECK_MS));
  }
}

function heldOpenError(devicePath: string, why: string): UdrbdError {
  return new UdrbdError(`${HELD_OPEN_MESSAGE}\n${devicePath}: ${why}`, ExitCode.stateChangeFailed);
}

async function checkPrerequisites(): Promise<void> {
  try {
    await fs.access('/dev/fuse');
  } catch {
    throw new UdrbdError('/dev/fuse is missing: load the fuse module (modprobe fuse) to expose the volume', ExitCode.fatal);
  }
  try {
    await fs.access('/dev/loop-control');
  } catch {
    throw new UdrbdError('/dev/loop-control is missing: load the loop module (modprobe loop) to expose the volume', ExitCode.fatal);
  }
}

async function readRecord(stateFile: string): Promise<ExposureRecord | null> {
  let text: string;
  try {
    text = await fs.readFile(stateFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const parsed = JSON.parse(text) as Partial<ExposureRecord>;
  if (
    parsed.version !== 1 ||
    typeof parsed.pid !== 'number' ||
    typeof parsed.devicePath !== 'string' ||
    typeof parsed.mountDir !== 'string' ||
    typeof parsed.volumeFile !== 'string'
  ) {
    throw new UdrbdError(`${stateFile} is not a udrbd exposure record; remove it by hand`, ExitCode.fatal);
  }
  return parsed as ExposureRecord;
}

async function writeRecord(stateFile: string, record: ExposureRecord): Promise<void> {
  const temporary = `${stateFile}.tmp`;
  await fs.writeFile(temporary, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  await fs.rename(temporary, stateFile);
}

/** The record's process still serves it: another live process, or this one when the state file is one of its exposures now. */
async function ownerAlive(record: ExposureRecord, stateFile: string): Promise<boolean> {
  // Our own pid on a record we do not hold is a crashed predecessor's, whose pid was reused.
  if (record.pid === process.pid) return exposedInThisProcess.has(stateFile);
  try {
    const fields = await statFieldsOf(record.pid);
    // A zombie (Z) or dying (X) owner no longer serves FUSE requests.
    if (fields[0] === 'Z' || fields[0] === 'X') return false;
    return fields[19] === record.pidStartTicks;
  } catch {
    return false;
  }
}

/** /proc/PID/stat fields from field 3 (state) on; the comm field may hold spaces. */
async function statFieldsOf(pid: number): Promise<string[]> {
  const text = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

/** Field 22 of /proc/PID/stat: start time in clock ticks. */
async function startTicksOf(pid: number): Promise<string> {
  const ticks = (await statFieldsOf(pid))[19];
  assert(ticks !== undefined, `/proc/${pid}/stat has a start time`);
  return ticks;
}
