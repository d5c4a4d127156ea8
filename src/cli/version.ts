/**
 * cli/version — what `udrbdadm --version` prints: drbdadm's eval-able
 * `NAME=value` lines (DRBDADM_BUILDTAG, DRBDADM_API_VERSION,
 * DRBD_KERNEL_VERSION_CODE, DRBD_KERNEL_VERSION, DRBDADM_VERSION_CODE,
 * DRBDADM_VERSION, in drbd-utils' order) plus UDRBD_VERSION. Scripts written
 * for DRBD 8.4 (the OCF agent, monitoring checks) `eval` these lines and gate
 * features on the version codes. The "kernel" is udrbd's resource process,
 * which speaks DRBD 8.4.11 (the same version /proc/drbd's first line names);
 * the "drbdadm" is drbd-utils 9.22's drbdadm-84, whose conventions udrbdadm
 * follows. Pure text; knows nothing of resources.
 */
import fs from 'node:fs';
import { PROC_VERSION_LINE } from './render/proc-drbd.js';
import { shellEscape } from '../util/shell-escape.js';
export { shellEscape };

/** drbd-utils release whose drbdadm-84 udrbdadm mirrors (`drbdadm-84 --version` here: 9.22.0). */
export const DRBDADM_COMPAT_VERSION = '9.22.0';
export const DRBDADM_API_VERSION = 1;

/** `8.4.11` from `version: 8.4.11 (api:1/proto:86-101)`. */
export function kernelVersion(procVersionLine: string = PROC_VERSION_LINE): string {
  const match = /^version: (\d+\.\d+\.\d+)/.exec(procVersionLine);
  if (!match) throw new Error(`cli/version: cannot read a version from '${procVersionLine}'`);
  return match[1]!;
}

/** `8.4.11` → `0x08040b`, as drbd-utils prints version codes (major<<16 | minor<<8 | patch). */
export function versionCode(version: string): string {
  const parts = version.split('.').map((p) => Number.parseInt(p, 10));
  if (parts.length !== 3 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`cli/version: '${version}' is not MAJOR.MINOR.PATCH with parts 0..255`);
  }
  const code = (parts[0]! << 16) | (parts[1]! << 8) | parts[2]!;
  return `0x${code.toString(16).padStart(6, '0')}`;
}

/** udrbd's own version, from the package.json of this checkout (dist/cli and src/cli are two levels below it). */
export function udrbdVersion(): string {
  const file = new URL('../../package.json', import.meta.url);
  const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { version?: unknown };
  if (typeof pkg.version !== 'string') throw new Error(`cli/version: no "version" in ${file.pathname}`);
  return pkg.version;
}

/** The lines `udrbdadm --version` prints, without a trailing newline. */
export function versionText(ownVersion: string = udrbdVersion()): string {
  const kernel = kernelVersion();
  return [
    `DRBDADM_BUILDTAG=${shellEscape(`udrbd ${ownVersion} userspace build`)}`,
    `DRBDADM_API_VERSION=${DRBDADM_API_VERSION}`,
    `DRBD_KERNEL_VERSION_CODE=${versionCode(kernel)}`,
    `DRBD_KERNEL_VERSION=${shellEscape(kernel)}`,
    `DRBDADM_VERSION_CODE=${versionCode(DRBDADM_COMPAT_VERSION)}`,
    `DRBDADM_VERSION=${shellEscape(DRBDADM_COMPAT_VERSION)}`,
    `UDRBD_VERSION=${shellEscape(ownVersion)}`,
  ].join('\n');
}
