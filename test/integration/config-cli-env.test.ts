/**
 * How udrbdadm finds its configuration and its host section, through the
 * built dist/cli/udrbdadm.js, each checked against the real drbdadm-84:
 *  - UDRBD_NODE selects the `on HOST` section exactly like --node (and like
 *    drbdadm-84 run with that host name), and --node wins over it;
 *  - with no -c, /etc/drbd.conf is read: the machine's own file from
 *    drbd-utils, and a private one bind-mounted over it in a private mount
 *    namespace (unshare -m), so the real file is never modified;
 *  - a configuration error writes nothing: after a failing `up`, the run and
 *    log directories are still empty, the backing disk is unchanged and no
 *    resource process was started (a valid config, same command, does write);
 *  - an include inside an included file resolves relative to that file, from
 *    any cwd (test/corpus/config/nested, with decoys for wrong resolutions).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const CLI = path.resolve(__dirname, '../../dist/cli/udrbdadm.js');
const DRBDADM = '/usr/lib/drbd/drbdadm-84';
const ETC_CONF = '/etc/drbd.conf';
const NESTED_DIR = path.resolve(__dirname, '../corpus/config/nested');
const MiB = 1024 * 1024;

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Environment without any inherited UDRBD_NODE, plus `extra`. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, DRBD_DONT_WARN_ON_VERSION_MISMATCH: '1', ...extra };
  if (!('UDRBD_NODE' in extra)) delete env.UDRBD_NODE;
  return env;
}

function result(r: ReturnType<typeof spawnSync>): RunResult {
  return { code: r.status ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

function udrbdadm(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): RunResult {
  return result(spawnSync(process.execPath, [CLI, ...args], { cwd: opts.cwd ?? os.tmpdir(), encoding: 'utf8', env: cleanEnv(opts.env), timeout: 60_000 }));
}

const shQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** Real drbdadm-84 with host name `host` (private UTS namespace), in `cwd`. */
function drbdadm(host: string, args: string[], cwd: string = os.tmpdir()): RunResult {
  const cmd = `hostname ${shQuote(host)} && exec ${DRBDADM} ${args.map(shQuote).join(' ')}`;
  return result(spawnSync('unshare', ['-u', 'sh', '-c', cmd], { cwd, encoding: 'utf8', env: cleanEnv(), timeout: 60_000 }));
}

/** Runs `command` (argv) in a private mount namespace where `file` is bind-mounted over /etc/drbd.conf. */
function withEtcConf(file: string, host: string, command: string[]): RunResult {
  const cmd = `mount --bind ${shQuote(file)} ${ETC_CONF} && hostname ${shQuote(host)} && exec ${command.map(shQuote).join(' ')}`;
  return result(spawnSync('unshare', ['-m', '-u', 'sh', '-c', cmd], { cwd: os.tmpdir(), encoding: 'utf8', env: cleanEnv(), timeout: 60_000 }));
}

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

beforeAll(() => {
  if (!fs.existsSync(DRBDADM)) throw new Error(`${DRBDADM} missing: install Debian's drbd-utils`);
  if (spawnSync('unshare', ['-m', '-u', 'true']).status !== 0) throw new Error('unshare -m -u failed: this test needs root (util-linux unshare)');
  if (!fs.existsSync(CLI)) execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
});

let dir = '';
afterEach(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  dir = '';
});

function twoHostConfig(dirPath: string, port: number): string {
  const file = path.join(dirPath, 'r0.conf');
  fs.writeFileSync(
    file,
    `resource r0 {
  device minor 5;
  meta-disk internal;
  on alpha { disk ${path.join(dirPath, 'alpha.img')}; address 127.0.0.1:${port}; }
  on beta { disk ${path.join(dirPath, 'beta.img')}; address 127.0.0.2:${port}; }
}
`,
  );
  return file;
}

describe('UDRBD_NODE selects the host section like --node', () => {
  it('UDRBD_NODE=HOST gives the same -d dump and sh-ll-dev as --node HOST and as drbdadm-84 on host HOST (alpha, beta); --node wins over it', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-cfgenv-'));
    const conf = twoHostConfig(dir, 7837);
    for (const host of ['alpha', 'beta']) {
      const byEnv = udrbdadm(['-c', conf, '-d', 'dump'], { env: { UDRBD_NODE: host } });
      const byFlag = udrbdadm(['-c', conf, '--node', host, '-d', 'dump']);
      const real = drbdadm(host, ['-c', conf, '-d', 'dump']);
      expect(real.code, real.stderr).toBe(0);
      expect(byEnv.code).toBe(0);
      expect(byEnv.stdout).toBe(byFlag.stdout);
      expect(byEnv.stdout).toBe(real.stdout);
      const llEnv = udrbdadm(['-c', conf, 'sh-ll-dev', 'r0'], { env: { UDRBD_NODE: host } });
      expect(llEnv.stdout).toBe(`${path.join(dir, `${host}.img`)}\n`);
      expect(llEnv.stdout).toBe(drbdadm(host, ['-c', conf, 'sh-ll-dev', 'r0']).stdout);
    }
    // The selection is real: the two hosts' answers differ.
    expect(udrbdadm(['-c', conf, 'sh-ll-dev', 'r0'], { env: { UDRBD_NODE: 'alpha' } }).stdout).not.toBe(
      udrbdadm(['-c', conf, 'sh-ll-dev', 'r0'], { env: { UDRBD_NODE: 'beta' } }).stdout,
    );
    const both = udrbdadm(['-c', conf, '--node', 'alpha', 'sh-ll-dev', 'r0'], { env: { UDRBD_NODE: 'beta' } });
    expect(both.stdout).toBe(`${path.join(dir, 'alpha.img')}\n`);
    // A name with no section: the same refusal as drbdadm-84 on such a host.
    const none = udrbdadm(['-c', conf, 'sh-ll-dev', 'r0'], { env: { UDRBD_NODE: 'gamma' } });
    const realNone = drbdadm('gamma', ['-c', conf, 'sh-ll-dev', 'r0']);
    expect(realNone.code).not.toBe(0);
    expect(none.code).toBe(realNone.code);
    expect(none.stderr).toBe(realNone.stderr);
  });
});

describe('default configuration file /etc/drbd.conf (no -c)', () => {
  it("reads this machine's /etc/drbd.conf from drbd-utils exactly as drbdadm-84 does (dump, sh-resources, an undefined resource)", () => {
    if (!fs.existsSync(ETC_CONF)) throw new Error(`${ETC_CONF} missing: install Debian's drbd-utils`);
    const before = sha256(ETC_CONF);
    const host = os.hostname();
    // (`up r0` is not compared: drbdadm-84 says "no resources defined!" there, udrbdadm the dump wording.)
    for (const args of [['dump'], ['-d', 'dump'], ['sh-resources'], ['dump', 'r0'], ['sh-ll-dev', 'r0']]) {
      const real = drbdadm(host, args);
      const mine = udrbdadm(['--node', host, ...args]);
      expect(mine.stdout, args.join(' ')).toBe(real.stdout);
      expect(mine.stderr, args.join(' ')).toBe(real.stderr);
      expect(mine.code, args.join(' ')).toBe(real.code);
    }
    expect(drbdadm(host, ['dump']).stdout.split('\n')[0]).toBe(`# ${ETC_CONF}`);
    expect(sha256(ETC_CONF)).toBe(before);
  });

  it('reads a private config bind-mounted over /etc/drbd.conf (private mount namespace) like drbdadm-84, leaving the real file alone', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-cfgenv-'));
    const conf = twoHostConfig(dir, 7838);
    const before = sha256(ETC_CONF);
    const mine = withEtcConf(conf, 'beta', [process.execPath, CLI, '--node', 'beta', '-d', 'dump']);
    const real = withEtcConf(conf, 'beta', [DRBDADM, '-d', 'dump']);
    expect(real.code, real.stderr).toBe(0);
    expect(mine.code, mine.stderr).toBe(0);
    expect(mine.stdout).toBe(real.stdout);
    expect(mine.stdout.split('\n')[0]).toBe(`# ${ETC_CONF}`);
    expect(mine.stdout).toContain(`disk             ${path.join(dir, 'beta.img')};`);
    const shDev = withEtcConf(conf, 'beta', [process.execPath, CLI, '--node', 'beta', 'sh-ll-dev', 'r0']);
    expect(shDev.stdout).toBe(`${path.join(dir, 'beta.img')}\n`);
    expect(sha256(ETC_CONF)).toBe(before);
  });
});

describe('a configuration error writes nothing', () => {
  const PORT = 7839;
  let started: number[] = [];

  /** Pids of processes whose command line names `needle`. */
  function processesNaming(needle: string): number[] {
    const pids: number[] = [];
    for (const entry of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      let cmdline = '';
      try {
        cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      } catch {
        continue; // exited meanwhile
      }
      if (cmdline.split('\0').includes(needle)) pids.push(Number(entry));
    }
    return pids;
  }

  afterEach(() => {
    // Only processes this test started (the positive control's resource process).
    for (const pid of started) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    started = [];
  });

  function setup(): { disk: string; run: string; log: string; env: Record<string, string>; valid: string } {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-cfgenv-'));
    const disk = path.join(dir, 'disk.img');
    fs.writeFileSync(disk, '');
    fs.truncateSync(disk, 64 * MiB);
    const run = path.join(dir, 'run');
    const log = path.join(dir, 'log');
    fs.mkdirSync(run);
    fs.mkdirSync(log);
    const valid = `global { usage-count no; }
resource r0 {
  device minor 6;
  disk ${disk};
  meta-disk internal;
  on alpha { address 127.0.0.1:${PORT}; }
  on beta { address 127.0.0.2:${PORT}; }
}
`;
    return { disk, run, log, env: { UDRBD_RUN_DIR: run, UDRBD_LOG_DIR: log }, valid };
  }

  it('after a failing up (parse error, bad value, unknown option, duplicate minor/address, no host section) the run and log dirs stay empty, the disk is unchanged, no process started', () => {
    const { disk, run, log, env, valid } = setup();
    const created = udrbdadm(['-c', path.join(dir, 'none.conf'), '--node', 'alpha', 'create-md', '--force', 'r0'], { env });
    expect(created.code).not.toBe(0); // the config does not exist yet: nothing to create on
    fs.writeFileSync(path.join(dir, 'valid.conf'), valid);
    expect(udrbdadm(['-c', path.join(dir, 'valid.conf'), '--node', 'alpha', 'create-md', '--force', 'r0'], { env }).code).toBe(0);
    const diskHash = sha256(disk);
    const second = (extra: string) => `resource r1 {
  device minor ${extra === 'minor' ? 6 : 7};
  disk ${disk}-r1;
  meta-disk internal;
  on alpha { address 127.0.0.1:${extra === 'address' ? PORT : PORT - 1}; }
  on beta { address 127.0.0.2:${extra === 'address' ? PORT : PORT - 1}; }
}
`;
    const broken: { name: string; text: string; node: string }[] = [
      { name: 'parse-error', text: valid.replace('resource r0 {', 'rource r0 {'), node: 'alpha' },
      { name: 'out-of-range', text: valid.replace('  meta-disk internal;', '  meta-disk internal;\n  net { ping-int 1000; }'), node: 'alpha' },
      { name: 'unknown-option', text: valid.replace('  meta-disk internal;', '  meta-disk internal;\n  disk { no-such-option yes; }'), node: 'alpha' },
      { name: 'duplicate-minor', text: valid + second('minor'), node: 'alpha' },
      { name: 'duplicate-address', text: valid + second('address'), node: 'alpha' },
      { name: 'no-host-section', text: valid, node: 'gamma' },
    ];
    for (const b of broken) {
      const conf = path.join(dir, `${b.name}.conf`);
      fs.writeFileSync(conf, b.text);
      for (const target of ['r0', 'all']) {
        const r = udrbdadm(['-c', conf, '--node', b.node, 'up', target], { env });
        expect(r.code, `${b.name} up ${target}: ${r.stderr}`).not.toBe(0);
        expect(r.stderr.length, `${b.name} up ${target} says why`).toBeGreaterThan(0);
        expect(fs.readdirSync(run), `${b.name} up ${target}: run dir`).toEqual([]);
        expect(fs.readdirSync(log), `${b.name} up ${target}: log dir`).toEqual([]);
        expect(processesNaming(conf), `${b.name} up ${target}: processes`).toEqual([]);
      }
    }
    expect(sha256(disk)).toBe(diskHash);
    expect(fs.existsSync(`${disk}-r1`)).toBe(false);

    // Positive control: the same command on the valid config does start a process and write its files.
    const validConf = path.join(dir, 'valid.conf');
    const up = udrbdadm(['-c', validConf, '--node', 'alpha', 'up', 'r0'], { env });
    started = processesNaming(validConf);
    expect(up.code, up.stderr).toBe(0);
    expect(started.length).toBe(1);
    expect(fs.readdirSync(run)).toContain('r0.alpha.pid');
    expect(fs.readdirSync(log)).toContain('r0.alpha.log');
    expect(udrbdadm(['-c', validConf, '--node', 'alpha', 'down', 'r0'], { env }).code).toBe(0);
  });
});

describe('nested include relative to the including file, from any cwd', () => {
  let cwd = '';
  beforeAll(() => {
    // A cwd holding decoys a cwd-relative resolution would read instead.
    cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-cfgcwd-'));
    fs.mkdirSync(path.join(cwd, 'sub', 'res'), { recursive: true });
    fs.mkdirSync(path.join(cwd, 'res'));
    fs.writeFileSync(path.join(cwd, 'sub', 'common.inc'), 'global { usage-count yes; }\n');
    fs.writeFileSync(path.join(cwd, 'res', 'cwd-decoy.res'), 'resource cwddecoy { on alpha { device minor 30; disk /dev/x; meta-disk internal; address 127.0.0.1:7830; } }\n');
    fs.writeFileSync(path.join(cwd, 'missing.inc'), '# decoy\n');
  });
  afterAll(() => {
    if (cwd) fs.rmSync(cwd, { recursive: true, force: true });
  });

  for (const how of ['absolute', 'relative'] as const) {
    it(`main.conf -> sub/common.inc -> res/*.res (${how} -c from another cwd): the same dump as drbdadm-84, r0 found, no decoys`, () => {
      const conf = how === 'absolute' ? path.join(NESTED_DIR, 'main.conf') : path.relative(cwd, path.join(NESTED_DIR, 'main.conf'));
      for (const host of ['alpha', 'beta']) {
        const real = drbdadm(host, ['-c', conf, '-d', 'dump'], cwd);
        expect(real.code, real.stderr).toBe(0);
        const mine = udrbdadm(['-c', conf, '--node', host, '-d', 'dump'], { cwd });
        expect(mine.code, mine.stderr).toBe(0);
        expect(mine.stdout).toBe(real.stdout);
        expect(mine.stdout).toContain('resource r0 {');
        expect(mine.stdout).toContain('ping-int           7;');
        expect(mine.stdout).not.toContain('decoy');
        expect(mine.stdout).not.toContain('usage-count yes');
        const one = drbdadm(host, ['-c', conf, 'dump', 'r0'], cwd);
        expect(udrbdadm(['-c', conf, '--node', host, 'dump', 'r0'], { cwd }).stdout).toBe(one.stdout);
        expect(one.stdout).toContain(`# defined at ${path.join(NESTED_DIR, 'sub', 'res', 'r0.res')}:1`);
      }
    });
  }

  it('a missing include inside sub/bad.inc is reported against sub/bad.inc like drbdadm-84 (exit 10), despite a missing.inc next to the main file', () => {
    const conf = path.join(NESTED_DIR, 'bad-main.conf');
    const real = drbdadm('alpha', ['-c', conf, 'dump'], cwd);
    const mine = udrbdadm(['-c', conf, '--node', 'alpha', 'dump'], { cwd });
    expect(real.code).toBe(10);
    expect(mine.code).toBe(10);
    expect(mine.stderr).toBe(real.stderr);
    expect(mine.stderr).toBe("sub/bad.inc:3: Failed to open include file 'missing.inc'.\n");
    expect(mine.stdout).toBe(real.stdout);
  });
});

describe('which resources a verb acts on: the same refusals as drbdadm-84', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-select-'));
    fs.writeFileSync(path.join(dir, 'empty.conf'), 'global { usage-count no; }\n');
    fs.renameSync(twoHostConfig(dir, 7838), path.join(dir, 'two.conf'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const cases: { conf: string; host: string; args: string[] }[] = [
    { conf: 'two.conf', host: 'gamma', args: ['up', 'all'] },
    { conf: 'two.conf', host: 'gamma', args: ['up', 'r0'] },
    { conf: 'two.conf', host: 'gamma', args: ['primary', 'all'] },
    { conf: 'two.conf', host: 'gamma', args: ['role', 'r0'] },
    { conf: 'two.conf', host: 'gamma', args: ['create-md', 'all'] },
    { conf: 'two.conf', host: 'alpha', args: ['up', 'nosuch'] },
    { conf: 'empty.conf', host: 'alpha', args: ['up', 'all'] },
    { conf: 'empty.conf', host: 'alpha', args: ['up', 'r0'] },
    { conf: 'empty.conf', host: 'alpha', args: ['status'] },
  ];
  for (const c of cases) {
    it(`${c.conf} on ${c.host}: ${c.args.join(' ')} — same stderr and exit code, nothing done`, () => {
      const conf = path.join(dir, c.conf);
      const theirs = drbdadm(c.host, ['-c', conf, '-d', ...c.args]);
      const mine = udrbdadm(['-c', conf, '--node', c.host, '-d', ...c.args]);
      expect(theirs.code).toBe(1);
      expect(mine.stderr).toBe(theirs.stderr);
      expect(mine.code).toBe(theirs.code);
      expect(mine.stdout).toBe('');
    });
  }
});
