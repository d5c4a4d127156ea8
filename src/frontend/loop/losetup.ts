/**
 * frontend/loop/losetup — loop devices over a file, driven through losetup
 * (execa, never a synchronous child: the file may be served by FUSE in this
 * same process). Attach with direct I/O when the kernel and file allow it,
 * detach, and find the loop devices backed by a file by reading sysfs (no
 * stat of the file, so it works when the FUSE process behind it is dead),
 * and tell one attachment from a later one by its identity (the loop
 * device's and the backing file's device numbers and inode), which survives
 * the backing file's path going away with a dead mount namespace.
 * Knows nothing of FUSE, volumes or device links.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { execa, type ExecaError } from 'execa';
import type { Logger } from '../../util/log.js';
import { UdrbdError, ExitCode } from '../../util/errors.js';
import { assert } from '../../util/assert.js';

/** losetup answers in milliseconds; a hung one (dead FUSE below) must not hang us. */
export const LOSETUP_TIMEOUT_MS = 30_000;
/** Loop devices scanned in sysfs at most (the kernel's max_loop default is far below). */
const LOOP_SCAN_MAX = 4096;

export interface LoopAttachment {
  /** e.g. /dev/loop3 */
  readonly loopDevice: string;
  /** True when the loop driver does direct I/O on the file (sysfs loop/dio). */
  readonly directIo: boolean;
  /** The device's largest request, KiB (sysfs queue/max_sectors_kb), after any cap. */
  readonly maxRequestKiB: number | null;
}

/**
 * `losetup --find --show [--direct-io=on] FILE`; falls back to buffered I/O
 * with a logged reason. With `requestMaxBytes` (the largest request the
 * file's server takes whole, e.g. FUSE max_write), the device's max_sectors_kb
 * is set to it: the loop driver's default (1280 KiB) made every 1280 KiB
 * filesystem write a 1 MiB and a 256 KiB FUSE request. detachLoop resets it.
 */
export async function attachLoop(filePath: string, options: { directIo?: boolean; requestMaxBytes?: number; log: Logger }): Promise<LoopAttachment> {
  const wantDirectIo = options.directIo ?? true;
  let loopDevice: string;
  if (wantDirectIo) {
    try {
      loopDevice = await losetup(['--find', '--show', '--direct-io=on', filePath]);
    } catch (err) {
      options.log.warn({ file: filePath, reason: (err as Error).message }, 'losetup with direct I/O failed, attaching without it');
      loopDevice = await losetup(['--find', '--show', filePath]);
    }
  } else {
    loopDevice = await losetup(['--find', '--show', filePath]);
  }
  assert(/^\/dev\/loop\d+$/.test(loopDevice), `losetup --show printed a loop device ('${loopDevice}')`);
  const directIo = (await readSysfsLoop(loopDevice, 'dio')) === '1';
  if (wantDirectIo && !directIo) {
    options.log.warn({ loopDevice, file: filePath }, 'loop device runs without direct I/O (the kernel refused it for this file); writes are double-cached');
  }
  const maxRequestKiB = await setRequestSize(loopDevice, options.requestMaxBytes, options.log);
  options.log.info({ loopDevice, file: filePath, directIo, maxRequestKiB }, 'loop device attached');
  return { loopDevice, directIo, maxRequestKiB };
}

/**
 * Sets queue/max_sectors_kb to requestMaxBytes (bounded by max_hw_sectors_kb);
 * returns the value in force, null if unreadable. Set both ways: the kernel
 * keeps a loop device's max_sectors_kb across detach and attach, so a free
 * device may carry a previous user's limit.
 */
async function setRequestSize(loopDevice: string, requestMaxBytes: number | undefined, log: Logger): Promise<number | null> {
  const queue = `/sys/block/${path.basename(loopDevice)}/queue`;
  let currentKiB: number;
  let hardwareKiB: number;
  try {
    currentKiB = Number((await fs.readFile(`${queue}/max_sectors_kb`, 'utf8')).trim());
    hardwareKiB = Number((await fs.readFile(`${queue}/max_hw_sectors_kb`, 'utf8')).trim());
  } catch (err) {
    log.warn({ loopDevice, reason: (err as Error).message }, `cannot read ${queue}/max_sectors_kb; request size left as it is`);
    return null;
  }
  if (requestMaxBytes === undefined) return currentKiB;
  assert(Number.isSafeInteger(requestMaxBytes) && requestMaxBytes >= 4096 && requestMaxBytes % 4096 === 0, `requestMaxBytes is a multiple of 4 KiB (${requestMaxBytes})`);
  const wantKiB = Math.min(requestMaxBytes / 1024, hardwareKiB);
  if (currentKiB === wantKiB) return currentKiB;
  try {
    await fs.writeFile(`${queue}/max_sectors_kb`, String(wantKiB));
  } catch (err) {
    // Only slower (requests split in two), never wrong.
    log.warn({ loopDevice, reason: (err as Error).message }, `cannot set ${queue}/max_sectors_kb to ${wantKiB}; large writes may reach the volume file split`);
    return currentKiB;
  }
  return wantKiB;
}

/** Back to the kernel's default request size (0 = no user limit), so the next user of this loop number inherits nothing. Best effort. */
async function resetRequestSize(loopDevice: string): Promise<void> {
  await fs.writeFile(`/sys/block/${path.basename(loopDevice)}/queue/max_sectors_kb`, '0').catch(() => undefined);
}

/**
 * `losetup -d`; a device that is already free counts as detached. With
 * `expectedBackingFile`, a device now backed by another file (the kernel
 * reuses free loop numbers) is someone else's and is left alone.
 */
export async function detachLoop(loopDevice: string, log: Logger, expectedBackingFile?: string): Promise<void> {
  assert(/^\/dev\/loop\d+$/.test(loopDevice), `detach a loop device path ('${loopDevice}')`);
  const isOurs = (backing: string | null): boolean =>
    backing !== null && (expectedBackingFile === undefined || stripDeleted(backing) === path.resolve(expectedBackingFile));
  if (!isOurs(await loopBackingFile(loopDevice))) return;
  await resetRequestSize(loopDevice);
  try {
    await losetup(['-d', loopDevice]);
  } catch (err) {
    if (!isOurs(await loopBackingFile(loopDevice))) return;
    throw err;
  }
  log.info({ loopDevice }, 'loop device detached');
}

/**
 * Who a loop attachment is: the loop device's own major:minor and its backing
 * file's device number and inode (as the kernel keeps them, LOOP_GET_STATUS64
 * via `losetup --list`). When the mount namespace that held the backing file
 * dies, sysfs backing_file degrades to a path relative to the vanished mount
 * (e.g. "/volume") but these numbers stay; a later attachment of the same
 * loop number to another file differs in them.
 */
export interface LoopIdentity {
  /** e.g. "7:3" */
  readonly deviceNumber: string;
  /** Backing file's st_dev as "major:minor" (a FUSE mount: "0:NN"). */
  readonly backingDeviceNumber: string;
  readonly backingInode: string;
}

/** The identity of an attached loop device, or null when it is not attached (or losetup cannot say). */
export async function loopIdentity(loopDevice: string): Promise<LoopIdentity | null> {
  assert(/^\/dev\/loop\d+$/.test(loopDevice), `identity of a loop device path ('${loopDevice}')`);
  if ((await loopBackingFile(loopDevice)) === null) return null;
  let text: string;
  try {
    text = await losetup(['--list', '--noheadings', '--output', 'MAJ:MIN,BACK-MAJ:MIN,BACK-INO', loopDevice]);
  } catch {
    return null;
  }
  const [deviceNumber, backingDeviceNumber, backingInode] = text.trim().split(/\s+/);
  if (deviceNumber === undefined || backingDeviceNumber === undefined || backingInode === undefined) return null;
  if (!/^\d+:\d+$/.test(deviceNumber) || !/^\d+:\d+$/.test(backingDeviceNumber) || !/^\d+$/.test(backingInode)) return null;
  return { deviceNumber, backingDeviceNumber, backingInode };
}

export function sameLoopIdentity(a: LoopIdentity, b: LoopIdentity): boolean {
  return a.deviceNumber === b.deviceNumber && a.backingDeviceNumber === b.backingDeviceNumber && a.backingInode === b.backingInode;
}

/** Backing file of a loop device from sysfs, or null when it is not attached. */
export async function loopBackingFile(loopDevice: string): Promise<string | null> {
  const text = await readSysfsLoop(loopDevice, 'backing_file');
  return text === null || text === '' ? null : text;
}

/**
 * Autoclear is set on a loop device that `losetup -d` could not free at once
 * because it is still open (mounted): the kernel frees it on last close.
 */
export async function loopAutoclear(loopDevice: string): Promise<boolean> {
  return (await readSysfsLoop(loopDevice, 'autoclear')) === '1';
}

/** Loop devices whose backing file is `filePath` (as given at attach time), sorted. */
export async function findLoopDevicesBackedBy(filePath: string): Promise<string[]> {
  const wanted = path.resolve(filePath);
  let names: string[];
  try {
    names = await fs.readdir('/sys/block');
  } catch (err) {
    throw new UdrbdError(`cannot list /sys/block: ${(err as Error).message}`, ExitCode.fatal);
  }
  const found: string[] = [];
  let scanned = 0;
  for (const name of names) {
    if (!/^loop\d+$/.test(name)) continue;
    if (++scanned > LOOP_SCAN_MAX) break;
    const backing = await loopBackingFile(`/dev/${name}`);
    if (backing !== null && stripDeleted(backing) === wanted) found.push(`/dev/${name}`);
  }
  return found.sort((a, b) => Number(a.slice(9)) - Number(b.slice(9)));
}

/** The kernel appends " (deleted)" to backing_file when the file's dentry is gone. */
function stripDeleted(backing: string): string {
  return backing.replace(/ \(deleted\)$/, '');
}

async function readSysfsLoop(loopDevice: string, attribute: string): Promise<string | null> {
  const name = path.basename(loopDevice);
  try {
    return (await fs.readFile(`/sys/block/${name}/loop/${attribute}`, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/**
 * `losetup -c` (LOOP_SET_CAPACITY): the loop device takes its file's
 * present size, e.g. after the file grew (udrbd resize). Returns the
 * device's size in bytes afterwards (sysfs `size` × 512).
 */
export async function refreshLoopCapacity(loopDevice: string): Promise<number> {
  assert(/^\/dev\/loop\d+$/.test(loopDevice), `a loop device ('${loopDevice}')`);
  await losetup(['-c', loopDevice]);
  const sectors = Number((await fs.readFile(`/sys/block/${path.basename(loopDevice)}/size`, 'utf8')).trim());
  return sectors * 512;
}

async function losetup(args: string[]): Promise<string> {
  try {
    const result = await execa('losetup', args, { timeout: LOSETUP_TIMEOUT_MS, stdin: 'ignore' });
    return result.stdout.trim();
  } catch (err) {
    const e = err as ExecaError;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new UdrbdError("losetup not found; install util-linux ('apt-get install mount')", ExitCode.fatal);
    }
    const detail = typeof e.stderr === 'string' && e.stderr.trim() !== '' ? e.stderr.trim() : e.shortMessage ?? e.message;
    throw new UdrbdError(`losetup ${args.join(' ')} failed: ${detail}`, ExitCode.fatal);
  }
}
