/**
 * The install step and what it installs: scripts/install.sh into a DESTDIR
 * (the wrapper runs, the units pass `systemd-analyze verify`, --uninstall
 * removes exactly what the manifest lists), and the man page (groff finds
 * nothing to warn about; every verb `udrbdadm --help` lists and every
 * UDRBD_* variable the source reads is documented, so it stays complete).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, ROOT, UDRBDADM } from '../helpers/cluster.js';
import { runtimePaths, isProcessAlive } from '../../src/control/paths.js';
import { defaultNodeName } from '../../src/cli/context.js';

const INSTALL = path.join(ROOT, 'scripts', 'install.sh');
const MAN_PAGE = path.join(ROOT, 'packaging', 'man', 'udrbdadm.8');
const INIT_SCRIPT = path.join(ROOT, 'packaging', 'init.d', 'udrbd');
const OCF_DIR = path.join(ROOT, 'packaging', 'ocf');
const HANDLER_DIR = path.join(ROOT, 'packaging', 'handlers');
const SYSTEMD_ANALYZE = '/usr/bin/systemd-analyze';
const GROFF = '/usr/bin/groff';
let tempDir: string | undefined;
let cluster: Cluster | undefined;

afterEach(async () => {
  if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
  tempDir = undefined;
  await cluster?.destroy();
  cluster = undefined;
});

function requireFile(file: string, what: string): void {
  if (!fs.existsSync(file)) throw new Error(`test prerequisite missing: ${what} at ${file}`);
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(command, args, { encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Every file below dir, relative, sorted. */
function filesBelow(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, entry.name);
      if (entry.isDirectory()) walk(full);
      else out.push(path.relative(dir, full));
    }
  };
  walk(dir);
  return out.sort();
}

/** What install.sh puts below DESTDIR for PREFIX=/usr/local with this checkout's packaging/. */
function expectedFiles(): string[] {
  const files = [
    'usr/local/sbin/udrbdadm',
    'usr/local/share/man/man8/udrbdadm.8',
    'usr/local/share/udrbd/install-manifest',
    'lib/systemd/system/udrbd@.service',
  ];
  if (fs.existsSync(INIT_SCRIPT)) files.push('etc/init.d/udrbd', 'lib/systemd/system/udrbd.service');
  if (fs.existsSync(OCF_DIR)) {
    for (const agent of fs.readdirSync(OCF_DIR)) {
      const stat = fs.statSync(path.join(OCF_DIR, agent));
      if (stat.isFile() && (stat.mode & 0o111) !== 0) files.push(`usr/lib/ocf/resource.d/udrbd/${agent}`);
    }
  }
  if (fs.existsSync(HANDLER_DIR)) {
    for (const handler of fs.readdirSync(HANDLER_DIR)) {
      const stat = fs.statSync(path.join(HANDLER_DIR, handler));
      if (stat.isFile() && (stat.mode & 0o111) !== 0) files.push(`usr/local/lib/udrbd/${handler}`);
    }
  }
  return files.sort();
}

function install(destDir: string, ...args: string[]): { status: number; stdout: string; stderr: string } {
  return run('/bin/bash', [INSTALL, ...args], { DESTDIR: destDir, PREFIX: '/usr/local' });
}

describe('scripts/install.sh', () => {
  it('installs the wrapper, man page, units (and init script, OCF agents when present) into DESTDIR; the installed udrbdadm runs; --uninstall leaves nothing', () => {
    requireFile(UDRBDADM, 'built udrbdadm (run `npm run build`)');
    tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'in-install-'));
    const dest = path.join(tempDir, 'root');
    fs.mkdirSync(dest);

    const first = install(dest);
    expect(first.status, first.stderr).toBe(0);
    expect(filesBelow(dest)).toEqual(expectedFiles());
    if (!fs.existsSync(INIT_SCRIPT)) expect(first.stderr).toContain('packaging/init.d/udrbd is not in this checkout');

    // the wrapper runs this checkout's build
    const wrapper = path.join(dest, 'usr/local/sbin/udrbdadm');
    expect(fs.statSync(wrapper).mode & 0o777).toBe(0o755);
    const installed = run(wrapper, ['--version']);
    expect(installed.status, installed.stderr).toBe(0);
    expect(installed.stdout).toBe(run(process.execPath, [UDRBDADM, '--version']).stdout);
    expect(installed.stdout).toContain('DRBD_KERNEL_VERSION_CODE=0x08040b\n');
    const evaluated = run('/bin/sh', ['-c', `eval "$('${wrapper}' --version)" && printf '%s %s' "$DRBD_KERNEL_VERSION" "$UDRBD_VERSION"`]);
    expect(evaluated.stdout).toBe(`8.4.11 ${(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version}`);
    // units name the installed binary; no placeholder left
    const unit = fs.readFileSync(path.join(dest, 'lib/systemd/system/udrbd@.service'), 'utf8');
    expect(unit).toContain('ExecStart=/usr/local/sbin/udrbdadm up %i\n');
    expect(unit).not.toContain('@SBINDIR@');
    expect(fs.readFileSync(path.join(dest, 'usr/local/share/man/man8/udrbdadm.8'), 'utf8')).toBe(fs.readFileSync(MAN_PAGE, 'utf8'));
    // the installed unfence handler finds the fence handler beside it (it does the work in unfence mode)
    const unfence = path.join(dest, 'usr/local/lib/udrbd/udrbd-crm-unfence-peer.sh');
    const noResource = spawnSync(unfence, ['--logfacility=none'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
    expect(noResource.status).toBe(1);
    expect(noResource.stderr).toContain('Environment variable $DRBD_RESOURCE not found');

    // installing again replaces the earlier install
    const again = install(dest);
    expect(again.status, again.stderr).toBe(0);
    expect(filesBelow(dest)).toEqual(expectedFiles());

    const removed = install(dest, '--uninstall');
    expect(removed.status, removed.stderr).toBe(0);
    expect(fs.readdirSync(dest)).toEqual([]);
    // nothing installed: --uninstall says so
    const nothing = install(dest, '--uninstall');
    expect(nothing.status).toBe(1);
    expect(nothing.stderr).toContain('nothing to uninstall: no manifest at');
  });

  it('regression: a DESTDIR that does not exist yet is created instead of recursing forever at "/"', () => {
    requireFile(UDRBDADM, 'built udrbdadm (run `npm run build`)');
    tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'in-install-'));
    const dest = path.join(tempDir, 'not', 'there');
    const r = spawnSync('/bin/bash', [INSTALL], { env: { ...process.env, DESTDIR: dest, PREFIX: '/usr/local' }, encoding: 'utf8', timeout: 60_000 });
    expect(r.error, 'install.sh did not finish within 60 s').toBeUndefined();
    expect(r.status, r.stderr).toBe(0);
    expect(filesBelow(dest)).toEqual(expectedFiles());
    const removed = install(dest, '--uninstall');
    expect(removed.status, removed.stderr).toBe(0);
    expect(fs.readdirSync(dest)).toEqual([]);
  });

  it('does not overwrite a file it did not install (unless --force) and keeps an installed file changed since', () => {
    requireFile(UDRBDADM, 'built udrbdadm (run `npm run build`)');
    tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'in-install-'));
    const dest = path.join(tempDir, 'root');
    const foreign = path.join(dest, 'usr/local/sbin/udrbdadm');
    fs.mkdirSync(path.dirname(foreign), { recursive: true });
    fs.writeFileSync(foreign, 'someone else\n');
    const refused = install(dest);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain(`${foreign} exists and was not installed by this script; move it away or pass --force`);
    expect(fs.readFileSync(foreign, 'utf8')).toBe('someone else\n');
    expect(fs.existsSync(path.join(dest, 'usr/local/share/udrbd/install-manifest'))).toBe(false);

    const forced = install(dest, '--force');
    expect(forced.status, forced.stderr).toBe(0);
    const unit = path.join(dest, 'lib/systemd/system/udrbd@.service');
    fs.appendFileSync(unit, '# local change\n');
    const removed = install(dest, '--uninstall');
    expect(removed.status, removed.stderr).toBe(0);
    expect(removed.stderr).toContain('/lib/systemd/system/udrbd@.service changed since it was installed; left in place');
    expect(filesBelow(dest)).toEqual(['lib/systemd/system/udrbd@.service']);
  });
});

describe('systemd units', () => {
  it('pass systemd-analyze verify as installed (udrbd.service around /etc/init.d/udrbd, udrbd@.service), man page found', () => {
    requireFile(SYSTEMD_ANALYZE, 'systemd-analyze (Debian package systemd)');
    requireFile(UDRBDADM, 'built udrbdadm (run `npm run build`)');
    tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'in-units-'));
    const dest = path.join(tempDir, 'dest');
    fs.mkdirSync(dest);
    const r = install(dest);
    expect(r.status, r.stderr).toBe(0);
    // verify needs systemd's own units (sysinit.target, ...) below --root: a copy of this machine's, plus the install
    const root = path.join(tempDir, 'root');
    fs.cpSync('/lib/systemd/system', path.join(root, 'lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
    fs.cpSync(dest, root, { recursive: true });
    if (!fs.existsSync(INIT_SCRIPT)) {
      // This checkout has no init script yet, so install.sh left udrbd.service out: verify the unit as it would be
      // installed, with an executable standing in at the init script's path.
      const text = fs.readFileSync(path.join(ROOT, 'packaging/systemd/udrbd.service'), 'utf8').replaceAll('@SBINDIR@', '/usr/local/sbin');
      fs.writeFileSync(path.join(root, 'lib/systemd/system/udrbd.service'), text);
      fs.mkdirSync(path.join(root, 'etc/init.d'), { recursive: true });
      fs.writeFileSync(path.join(root, 'etc/init.d/udrbd'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    }
    const verify = run(SYSTEMD_ANALYZE, ['verify', `--root=${root}`, 'udrbd.service', 'udrbd@inr0.service'], {
      MANPATH: path.join(root, 'usr/local/share/man'),
    });
    expect(`${verify.stdout}${verify.stderr}`).toBe('');
    expect(verify.status).toBe(0);
  });
});

describe('udrbd@.service as Type=forking', () => {
  it("names the pid file the resource process writes (PIDFile with %i and %H = daemon/paths for this host's node name)", () => {
    const unit = fs.readFileSync(path.join(ROOT, 'packaging/systemd/udrbd@.service'), 'utf8');
    const pidFile = /^PIDFile=(.*)$/m.exec(unit)?.[1];
    expect(pidFile).toBe('/run/udrbd/%i.%H.pid');
    const { UDRBD_NODE: _node, UDRBD_RUN_DIR: _run, ...envWithoutOverrides } = process.env;
    const expanded = pidFile!.replace('%i', 'inr0').replace('%H', os.hostname());
    expect(expanded).toBe(runtimePaths('inr0', os.hostname(), envWithoutOverrides).pidPath);
    // the node name udrbdadm uses without --node / UDRBD_NODE is the host name systemd's %H expands to
    const saved = process.env.UDRBD_NODE;
    delete process.env.UDRBD_NODE;
    try {
      expect(defaultNodeName()).toBe(os.hostname());
    } finally {
      if (saved !== undefined) process.env.UDRBD_NODE = saved;
    }
  });

  it('`up` returns only after the resource process wrote its pid file (what forking needs); `down` ends that process', async () => {
    cluster = new Cluster({ resource: 'inpf', port: 7966 });
    const c = cluster;
    await c.admOk('alpha', ['up', c.resource]);
    const pidPath = c.paths('alpha').pidPath;
    expect(fs.existsSync(pidPath)).toBe(true);
    const pid = Number(fs.readFileSync(pidPath, 'utf8').trim());
    expect(isProcessAlive(pid)).toBe(true);
    expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toContain('dist/daemon/udrbd.js');
    await c.admOk('alpha', ['down', c.resource]);
    expect(isProcessAlive(pid)).toBe(false);
    expect(fs.existsSync(pidPath)).toBe(false);
  });
});

describe('man page udrbdadm(8)', () => {
  it('groff -man -ww reports no warnings', () => {
    requireFile(GROFF, 'groff (Debian package groff-base)');
    const r = run(GROFF, ['-man', '-ww', '-z', MAN_PAGE]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('has a COMMANDS entry for every verb `udrbdadm --help` lists', () => {
    requireFile(UDRBDADM, 'built udrbdadm (run `npm run build`)');
    const help = run(process.execPath, [UDRBDADM, '--help']).stdout;
    const commandsPart = help.slice(help.indexOf('Commands:'));
    const verbs = [...commandsPart.matchAll(/^ {2}([a-z][a-z0-9-]*)/gm)].map((m) => m[1]!);
    expect(verbs.length).toBeGreaterThan(30);
    const man = fs.readFileSync(MAN_PAGE, 'utf8');
    const commands = man.slice(man.indexOf('.SH COMMANDS'), man.indexOf('.SH ENVIRONMENT'));
    // a .TP entry's tag line, fonts and roff escapes removed: its first word is the verb
    const entries = new Set(
      [...commands.matchAll(/^\.TP\n(.*)$/gm)].map((m) => m[1]!.replace(/^\.(B|BR|BI)\s+/, '').replace(/\\f[BIRP]/g, '').replace(/\\-/g, '-').split(/[\s[]/)[0]!),
    );
    const missing = verbs.filter((v) => !entries.has(v));
    expect(missing, `verbs without an entry in ${MAN_PAGE}`).toEqual([]);
  });

  it('documents every UDRBD_* environment variable the source reads', () => {
    const names = new Set<string>();
    const walk = (dir: string): void => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(full);
        else if (entry.name.endsWith('.ts')) for (const m of fs.readFileSync(full, 'utf8').matchAll(/env\.(UDRBD_[A-Z0-9_]+)/g)) names.add(m[1]!);
      }
    };
    walk(path.join(ROOT, 'src'));
    expect(names.size).toBeGreaterThan(8);
    const man = fs.readFileSync(MAN_PAGE, 'utf8');
    const environment = man.slice(man.indexOf('.SH ENVIRONMENT'), man.indexOf('.SH FILES')).replace(/\\-/g, '-');
    const missing = [...names].filter((n) => !environment.includes(n)).sort();
    expect(missing, `variables without an entry under ENVIRONMENT in ${MAN_PAGE}`).toEqual([]);
  });
});
