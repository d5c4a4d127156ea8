/**
 * The meta-data verbs through the udrbdadm binary: create-md on a resource
 * from a config file, and the refusal drbdmeta gives for a configured minor
 * ("Device '<minor>' is configured!", exit 20) while the resource process is up.
 */
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import { spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir, sparseFile } from './meta-helpers.js';

const CLI = path.resolve('dist/cli/udrbdadm.js');
const MiB = 1024 * 1024;
let dir = '';

function config(disk: string): string {
  return `resource r0 {
  device minor 3;
  disk "${disk}";
  meta-disk internal;
  on alpha { address 127.0.0.1:7790; }
  on beta { address 127.0.0.2:7790; }
}
`;
}

function udrbdadm(args: string[], runDir: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    env: { ...process.env, UDRBD_RUN_DIR: runDir, UDRBD_LOG_DIR: runDir },
    timeout: 30_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  if (!fs.existsSync(CLI)) execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
});

afterEach(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  dir = '';
});

describe('udrbdadm meta-data verbs', () => {
  it('create-md --force writes v08 meta-data that get-gi then reads as just created', () => {
    dir = tmpDir();
    const disk = sparseFile(dir, 'disk.img', 64 * MiB);
    const conf = path.join(dir, 'r0.conf');
    fs.writeFileSync(conf, config(disk));
    const run = path.join(dir, 'run');
    const created = udrbdadm(['-c', conf, '--node', 'alpha', 'create-md', '--force', 'r0'], run);
    expect(created.code).toBe(0);
    expect(created.stdout).toContain('New drbd meta data block successfully created.');
    const gi = udrbdadm(['-c', conf, '--node', 'alpha', 'get-gi', 'r0'], run);
    expect(gi.code).toBe(0);
    expect(gi.stdout.trim()).toBe('0000000000000004:0000000000000000:0000000000000000:0000000000000000:0:0:0:0:0:0:0');
  });

  it('refuses create-md, wipe-md and apply-al while the resource process is up (exit 20), writing nothing', () => {
    dir = tmpDir();
    const disk = sparseFile(dir, 'disk.img', 64 * MiB);
    const conf = path.join(dir, 'r0.conf');
    fs.writeFileSync(conf, config(disk));
    const run = path.join(dir, 'run');
    expect(udrbdadm(['-c', conf, '--node', 'alpha', 'create-md', '--force', 'r0'], run).code).toBe(0);
    const before = fs.readFileSync(disk);
    // A live process owns the pid file: this test process stands in for the resource process.
    fs.mkdirSync(run, { recursive: true });
    fs.writeFileSync(path.join(run, 'r0.alpha.pid'), `${process.pid}\n`);
    for (const args of [['create-md', '--force'], ['wipe-md', '--force'], ['apply-al']]) {
      const verb = args[0]!;
      const r = udrbdadm(['-c', conf, '--node', 'alpha', ...args, 'r0'], run);
      expect(r.code, verb).toBe(20);
      expect(r.stderr, verb).toContain("Device '3' is configured!");
    }
    expect(fs.readFileSync(disk).equals(before)).toBe(true);
    // The other node's process is not this node's: alpha's pid file does not block beta.
    expect(udrbdadm(['-c', conf, '--node', 'beta', 'get-gi', 'r0'], run).code).toBe(0);
  });
});
