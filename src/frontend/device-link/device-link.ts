/**
 * frontend/device-link/device-link — the configured DRBD device path (e.g.
 * /dev/drbd1) as a symlink to the kernel block device that really carries
 * the volume (/dev/loopN or /dev/nbdN), so `mount /dev/drbd1 /mnt` and
 * Pacemaker's Filesystem agent work unchanged. Only ever replaces or removes
 * a symlink; a real device node or file at that path is never touched.
 * Knows nothing of how the target device was made.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { UdrbdError, ExitCode } from '../../util/errors.js';

/** Creates (or atomically re-points) `devicePath` → `target`. */
export async function createDeviceLink(devicePath: string, target: string): Promise<void> {
  const existing = await lstatOrNull(devicePath);
  if (existing && !existing.isSymbolicLink()) {
    throw new UdrbdError(
      `${devicePath} exists and is not a link made by udrbd; remove it or change 'device' in the resource configuration`,
      ExitCode.fatal,
    );
  }
  await fs.mkdir(path.dirname(devicePath), { recursive: true });
  const temporary = `${devicePath}.udrbd-${process.pid}`;
  await fs.rm(temporary, { force: true });
  await fs.symlink(target, temporary);
  try {
    await fs.rename(temporary, devicePath);
  } catch (err) {
    await fs.rm(temporary, { force: true });
    throw err;
  }
}

/** Where the link points, or null when there is no symlink at `devicePath`. */
export async function readDeviceLink(devicePath: string): Promise<string | null> {
  const st = await lstatOrNull(devicePath);
  if (!st || !st.isSymbolicLink()) return null;
  return fs.readlink(devicePath);
}

/**
 * Removes the link; idempotent. With `expectedTarget`, a link that points
 * elsewhere (re-created for another device meanwhile) is left alone.
 * Returns true when a link was removed.
 */
export async function removeDeviceLink(devicePath: string, expectedTarget?: string): Promise<boolean> {
  const target = await readDeviceLink(devicePath);
  if (target === null) return false;
  if (expectedTarget !== undefined && path.resolve(path.dirname(devicePath), target) !== path.resolve(expectedTarget)) return false;
  await fs.rm(devicePath, { force: true });
  return true;
}

async function lstatOrNull(p: string): Promise<import('node:fs').Stats | null> {
  try {
    return await fs.lstat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
