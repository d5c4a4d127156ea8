/**
 * `udrbdadm --version`: drbdadm-84's eval-able lines in drbd-utils' order,
 * read back by sh's eval; the kernel version agrees with /proc/drbd's first
 * line; the drbdadm version codes match what the installed drbdadm-84 prints.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, UDRBDADM } from '../helpers/cluster.js';
import { PROC_VERSION_LINE } from '../../src/cli/render/proc-drbd.js';
import { shellEscape, versionCode, versionText } from '../../src/cli/version.js';

const DRBDADM_84 = '/usr/lib/drbd/drbdadm-84';
const packageVersion = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

function evalInSh(command: string, names: string[]): Record<string, string> {
  const script = `eval "$(${command})" || exit 99\n${names.map((n) => `printf '%s\\n' "${n}=$${n}"`).join('\n')}`;
  const r = spawnSync('/bin/sh', ['-c', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sh exited ${r.status}: ${r.stderr}`);
  return Object.fromEntries(r.stdout.trimEnd().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

describe('udrbdadm --version', () => {
  it('prints the DRBDADM_* / DRBD_KERNEL_* lines in drbdadm order plus UDRBD_VERSION, and sh eval reads them', () => {
    if (!fs.existsSync(UDRBDADM)) throw new Error(`test prerequisite missing: ${UDRBDADM} (run npm run build)`);
    const r = spawnSync(process.execPath, [UDRBDADM, '--version'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout.split('\n').map((l) => l.split('=')[0])).toEqual([
      'DRBDADM_BUILDTAG', 'DRBDADM_API_VERSION', 'DRBD_KERNEL_VERSION_CODE', 'DRBD_KERNEL_VERSION',
      'DRBDADM_VERSION_CODE', 'DRBDADM_VERSION', 'UDRBD_VERSION', '',
    ]);
    const vars = evalInSh(`'${process.execPath}' '${UDRBDADM}' --version`, [
      'DRBDADM_BUILDTAG', 'DRBDADM_API_VERSION', 'DRBD_KERNEL_VERSION_CODE', 'DRBD_KERNEL_VERSION',
      'DRBDADM_VERSION_CODE', 'DRBDADM_VERSION', 'UDRBD_VERSION',
    ]);
    expect(vars).toEqual({
      DRBDADM_BUILDTAG: `udrbd ${packageVersion} userspace build`,
      DRBDADM_API_VERSION: '1',
      DRBD_KERNEL_VERSION_CODE: '0x08040b',
      DRBD_KERNEL_VERSION: '8.4.11',
      DRBDADM_VERSION_CODE: '0x091600',
      DRBDADM_VERSION: '9.22.0',
      UDRBD_VERSION: packageVersion,
    });
    // -V is the short form, as drbdadm's
    expect(spawnSync(process.execPath, [UDRBDADM, '-V'], { encoding: 'utf8' }).stdout).toBe(r.stdout);
  });

  it("the kernel version is /proc/drbd's (PROC_VERSION_LINE) and the drbdadm codes are the installed drbdadm-84's", () => {
    expect(PROC_VERSION_LINE.startsWith(`version: ${evalInSh(`printf '%s\\n' '${versionText().replace(/'/g, "'\\''")}'`, ['DRBD_KERNEL_VERSION']).DRBD_KERNEL_VERSION} `)).toBe(true);
    if (!fs.existsSync(DRBDADM_84)) throw new Error(`test prerequisite missing: ${DRBDADM_84} (drbd-utils, scripts/setup.sh)`);
    const real = evalInSh(DRBDADM_84 + ' --version', ['DRBDADM_VERSION_CODE', 'DRBDADM_VERSION', 'DRBDADM_API_VERSION']);
    const ours = evalInSh(`printf '%s\\n' '${versionText().replace(/'/g, "'\\''")}'`, ['DRBDADM_VERSION_CODE', 'DRBDADM_VERSION', 'DRBDADM_API_VERSION']);
    expect(ours).toEqual(real);
  });

  it("shell-escapes as drbd-utils' shell_escape does and encodes version codes as major<<16|minor<<8|patch", () => {
    expect(shellEscape('GIT-hash: 4090 reproducible build, 2023-01-09 14:51:18')).toBe('GIT-hash:\\ 4090\\ reproducible\\ build\\,\\ 2023-01-09\\ 14:51:18');
    expect(shellEscape("a'b$c`d\"e")).toBe("a\\'b\\$c\\`d\\\"e");
    expect(versionCode('8.4.11')).toBe('0x08040b');
    expect(versionCode('9.22.0')).toBe('0x091600');
    expect(() => versionCode('8.4')).toThrow(/MAJOR.MINOR.PATCH/);
  });
});
