/**
 * The meta-data verbs through the udrbdadm binary on a resource from a config
 * file: create-md, dump-md, show-gi, apply-al and wipe-md, each compared with
 * the real drbdmeta on the same (or an identical) backing file, the no-TTY
 * refusal, and the refusal drbdmeta gives for a configured minor
 * ("Device '<minor>' is configured!", exit 20) while the resource process is up.
 */
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import { spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { FileDisk } from '../../src/disk/file-disk.js';
import { MetaData } from '../../src/meta/metadata.js';
import { computeLayout } from '../../src/meta/superblock.js';
import { MdFlag } from '../../src/meta/types.js';
import { copySparse, drbdmeta, dumpBody, readRange, requireDrbdmeta, tmpDir, sparseFile, withoutFlagsLine } from '../helpers/meta-helpers.js';

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
  requireDrbdmeta();
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

/** A 64 MiB backing file with udrbd meta-data, its config, and a run dir. */
function resource(): { disk: string; conf: string; run: string; alpha: (args: string[]) => ReturnType<typeof udrbdadm> } {
  dir = tmpDir();
  const disk = sparseFile(dir, 'disk.img', 64 * MiB);
  const conf = path.join(dir, 'r0.conf');
  fs.writeFileSync(conf, config(disk));
  const run = path.join(dir, 'run');
  const alpha = (args: string[]) => udrbdadm(['-c', conf, '--node', 'alpha', ...args], run);
  expect(alpha(['create-md', '--force', 'r0']).code).toBe(0);
  return { disk, conf, run, alpha };
}

/** Leaves an unclean AL naming `extents` on `disk` (a crash while Primary), UUIDs and flags set. */
async function uncleanAl(disk: string, extents: number[]): Promise<void> {
  const d = FileDisk.open(disk);
  try {
    const md = MetaData.open(d, { alExtents: 67 });
    md.attach();
    md.setUuids({ current: 0x5a5a5a5a00000001n, bitmap: 0x77n, historyStart: 0x66n, historyEnd: 0n });
    md.setFlags(MdFlag.primaryInd | MdFlag.consistent | MdFlag.wasUpToDate);
    md.writeSuperblock();
    for (const e of extents) {
      await md.activityLog!.beginWrite(e * 4 * MiB + 4096, 4096);
      md.activityLog!.endWrite(e * 4 * MiB + 4096, 4096);
    }
    md.close({ clean: false });
  } finally {
    d.closeSync();
  }
}

describe('udrbdadm meta-data verbs compared with drbdmeta', () => {
  it('dump-md RES prints what drbdmeta dump-md prints for the backing disk, with the drbdmeta command line in its header', async () => {
    const { disk, alpha } = resource();
    await uncleanAl(disk, [0, 3, 7]);
    expect(alpha(['apply-al', 'r0']).code).toBe(0);
    const mine = alpha(['dump-md', 'r0']);
    expect(mine.code).toBe(0);
    expect(mine.stdout).toContain(`> drbdmeta 3 v08 ${disk} internal dump-md\n`);
    const real = drbdmeta(disk, 'dump-md');
    expect(real.code).toBe(0);
    expect(real.stdout).toContain(`# bits-set ${3 * 1024};`);
    expect(withoutFlagsLine(dumpBody(mine.stdout))).toBe(withoutFlagsLine(dumpBody(real.stdout)));
    expect(mine.stdout).toContain('0x5A5A5A5A00000001; 0x0000000000000077; 0x0000000000000066; 0x0000000000000000;');
  });

  it('show-gi RES prints the same explained generation identifiers as drbdmeta show-gi', async () => {
    const { disk, alpha } = resource();
    expect(drbdmeta(disk, 'set-gi', '8877665544332211:1122334455667788:0000000000000ABC:0000000000000DEF:1:1:0:1:0:1:0').code).toBe(0);
    const mine = alpha(['show-gi', 'r0']);
    expect(mine.code).toBe(0);
    const real = drbdmeta(disk, 'show-gi');
    expect(real.code).toBe(0);
    expect(mine.stdout).toBe(real.stdout);
    expect(mine.stdout).toContain('8877665544332211:1122334455667788:0000000000000ABC:0000000000000DEF:1:1:0:1:0:1:0');
  });

  it('apply-al RES applies an unclean AL like drbdmeta apply-al: same messages, same meta-data bytes, then clean', async () => {
    const { disk, alpha } = resource();
    await uncleanAl(disk, [1, 2, 9, 14]);
    const theirs = `${disk}.drbdmeta`;
    copySparse(disk, theirs);
    const real = drbdmeta(theirs, 'apply-al');
    expect(real.code).toBe(0);
    const mine = alpha(['apply-al', 'r0']);
    expect(mine.code).toBe(0);
    expect(mine.stderr).toContain('Marked additional 16 MB as out-of-sync based on AL.');
    expect(real.stderr).toContain('Marked additional 16 MB as out-of-sync based on AL.');
    const layout = computeLayout(64 * MiB);
    const mdBytes = 64 * MiB - layout.bmOffsetBytes;
    expect(readRange(disk, layout.bmOffsetBytes, mdBytes).equals(readRange(theirs, layout.bmOffsetBytes, mdBytes))).toBe(true);
    const after = drbdmeta(disk, 'dump-md');
    expect(after.code).toBe(0);
    expect(after.stderr).not.toContain('unclean');
    expect(after.stdout).toContain(`# bits-set ${4 * 1024};`);
  });

  it('wipe-md --force RES wipes like drbdmeta wipe-md: same bytes, and drbdmeta dump-md then finds no valid meta data', () => {
    const { disk, alpha } = resource();
    const theirs = `${disk}.drbdmeta`;
    copySparse(disk, theirs);
    const mine = alpha(['wipe-md', '--force', 'r0']);
    expect(mine.code).toBe(0);
    expect(mine.stdout).toBe('Wiping meta data...\nDRBD meta data block successfully wiped out.\n');
    expect(mine.stderr).toContain('*** confirmation forced via --force option ***');
    const real = drbdmeta(theirs, 'wipe-md');
    expect(real.code).toBe(0);
    expect(real.stdout).toBe(mine.stdout);
    expect(fs.readFileSync(disk).equals(fs.readFileSync(theirs))).toBe(true);
    const dumpMine = drbdmeta(disk, 'dump-md');
    const dumpTheirs = drbdmeta(theirs, 'dump-md');
    expect(dumpMine.code).not.toBe(0);
    expect(dumpMine.code).toBe(dumpTheirs.code);
    expect(dumpMine.stderr).toContain('No valid meta data found');
    expect(dumpMine.stderr.replaceAll(disk, 'DISK')).toBe(dumpTheirs.stderr.replaceAll(theirs, 'DISK'));
    expect(dumpMine.stdout).toBe('');
    const ours = alpha(['dump-md', 'r0']);
    expect(ours.code).toBe(dumpTheirs.code);
    expect(ours.stderr).toContain('No valid meta data found');
  });

  it('wipe-md RES with no terminal refuses, says how to force, and writes nothing', () => {
    const { disk, alpha } = resource();
    const before = fs.readFileSync(disk);
    const r = alpha(['wipe-md', 'r0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('Do you really want to wipe out the DRBD meta data?\nstdin not a TTY, not waiting for confirmation\n');
    expect(r.stderr).toContain('Operation refused. Run with --force to wipe out the meta data without confirmation (udrbdadm wipe-md --force <resource>).');
    expect(fs.readFileSync(disk).equals(before)).toBe(true);
  });

  it('create-md RES with no terminal on existing meta-data refuses, says how to force, and writes nothing', () => {
    const { disk, alpha } = resource();
    const before = fs.readFileSync(disk);
    const r = alpha(['create-md', 'r0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('stdin not a TTY, not waiting for confirmation\nOperation refused. Run with --force to overwrite without confirmation (udrbdadm create-md --force <resource>).\n');
    expect(fs.readFileSync(disk).equals(before)).toBe(true);
  });
});
