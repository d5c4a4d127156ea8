/**
 * cli/boot/mounts — which udrbd device is mounted where, from /proc/mounts,
 * for the init script's table (`mounted`, `fstype`) and its `stop`.
 * udrbd's /dev/drbdN is a symbolic link to the kernel device that carries
 * the volume (a loop device on the FUSE file, or /dev/nbdN), and mount(8)
 * records the link's target, so a mount matches when its source is the
 * configured device path or the path the link resolves to. Knows nothing
 * of resources beyond their device paths.
 */
import fs from 'node:fs';
import type { MountInfo } from '../render/proc-drbd.js';

export interface MountEntry {
  source: string;
  mountPoint: string;
  fsType: string;
}

/** /proc/mounts escapes space, tab, newline and backslash as \ooo. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

export function parseMounts(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    if (fields.length < 3 || !fields[0]) continue;
    entries.push({ source: unescapeMountField(fields[0]), mountPoint: unescapeMountField(fields[1]!), fsType: fields[2]! });
  }
  return entries;
}

export function readMounts(mountsPath = '/proc/mounts'): MountEntry[] {
  return parseMounts(fs.readFileSync(mountsPath, 'utf8'));
}

/** The device path and, when it is a link that resolves, where it leads. */
export function deviceNames(devicePath: string): string[] {
  const names = [devicePath];
  try {
    const resolved = fs.realpathSync(devicePath);
    if (resolved !== devicePath) names.push(resolved);
  } catch {
    /* not exposed on this node: no link */
  }
  return names;
}

/** Every mount of this device (by its path or its link's target), in /proc/mounts order. */
export function mountsOfDevice(devicePath: string, mounts: readonly MountEntry[]): MountEntry[] {
  const names = new Set(deviceNames(devicePath));
  return mounts.filter((m) => names.has(m.source));
}

/** minor → its first mount, for renderInitStatus. */
export function mountsByMinor(devices: ReadonlyArray<{ minor: number; devicePath: string }>, mounts: readonly MountEntry[]): Map<number, MountInfo> {
  const byMinor = new Map<number, MountInfo>();
  for (const d of devices) {
    const first = mountsOfDevice(d.devicePath, mounts)[0];
    if (first) byMinor.set(d.minor, { mountPoint: first.mountPoint, fsType: first.fsType });
  }
  return byMinor;
}
