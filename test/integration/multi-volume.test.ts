/**
 * Resources with several volumes, through the built udrbdadm: the meta-data
 * verbs address one volume as RES/VNR and every volume as RES, on each
 * volume's own disk (internal, indexed and flexible external meta-data), and
 * the real drbdmeta reads what udrbd wrote for each; a verb on one volume
 * leaves the other's meta-data alone. One resource process runs every volume
 * (up; detach and attach of RES/VNR; dstate from each volume's meta-data
 * after a kill -9, as drbdmeta reads it; down), an adjust that adds a volume is
 * refused; -d prints drbdadm's per-volume plan.
 * Ports 9601-9603, minors 1500-1505; every process is looked for and killed
 * by its pid file after each test, whatever happened.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { UDRBDADM } from '../helpers/cluster.js';
import { dumpBody, requireDrbdmeta, sparseFile, tmpDir, withoutFlagsLine } from '../helpers/meta-helpers.js';
import { isProcessAlive, readPid, runtimePaths } from '../../src/control/paths.js';

const MiB = 1024 * 1024;
const DATA_BYTES = 16 * MiB;
/** An indexed slot is 128 MiB; slot 1 needs 256 MiB of (sparse) meta device. */
const INDEXED_META_BYTES = 256 * MiB;
const FLEXIBLE_META_BYTES = MiB;
const RESOURCES = ['mv1', 'mv2', 'mv3'];

let dir = '';
let conf = '';
let disks: Record<string, string> = {};

interface Run {
  exitCode: number;
  stdout: string;
  stderr: string;
}

function adm(args: string[]): Run {
  const r = spawnSync(process.execPath, [UDRBDADM, '-c', conf, '--node', 'alpha', ...args], {
    encoding: 'utf8',
    input: '',
    timeout: 60_000,
    env: { ...process.env, UDRBD_RUN_DIR: path.join(dir, 'run'), UDRBD_LOG_DIR: path.join(dir, 'log'), UDRBD_FRONTEND: 'none' },
  });
  return { exitCode: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function pathsOf(resource: string) {
  return runtimePaths(resource, 'alpha', { UDRBD_RUN_DIR: path.join(dir, 'run'), UDRBD_LOG_DIR: path.join(dir, 'log') });
}

/** drbdmeta on one volume's meta-data as drbdadm-84 calls it (the minor, the device, the index). */
function theirs(minor: number, device: string, index: string, ...args: string[]): Run {
  const r = spawnSync('/usr/sbin/drbdmeta', ['--force', String(minor), 'v08', device, index, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { exitCode: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => requireDrbdmeta());

function setUp(): void {
  dir = tmpDir();
  disks = {
    a0: sparseFile(dir, 'a0.img', DATA_BYTES),
    a1: sparseFile(dir, 'a1.img', DATA_BYTES),
    md: sparseFile(dir, 'md.img', INDEXED_META_BYTES),
    a2: sparseFile(dir, 'a2.img', DATA_BYTES),
    a3: sparseFile(dir, 'a3.img', DATA_BYTES),
    fmd: sparseFile(dir, 'fmd.img', FLEXIBLE_META_BYTES),
    a4: sparseFile(dir, 'a4.img', DATA_BYTES),
  };
  conf = path.join(dir, 'mv.conf');
  fs.writeFileSync(conf, [
    'resource mv1 {', // 1
    '  disk { c-plan-ahead 0; }', // 2
    `  volume 0 { device minor 1500; disk ${disks.a0}; meta-disk internal; }`, // 3
    `  volume 1 { device minor 1501; disk ${disks.a1}; meta-disk ${disks.md} [1]; }`, // 4
    '  on alpha { address 127.0.0.1:9601; }', // 5
    '  on beta { address 127.0.0.2:9601; }', // 6
    '}', // 7
    'resource mv2 {', // 8
    '  on alpha { address 127.0.0.1:9602;', // 9
    `    volume 0 { device minor 1502; disk ${disks.a2}; meta-disk internal; }`, // 10
    `    volume 3 { device minor 1503; disk ${disks.a3}; flexible-meta-disk ${disks.fmd}; }`, // 11
    '  }', // 12
    '  on beta { address 127.0.0.2:9602;', // 13
    `    volume 0 { device minor 1502; disk ${path.join(dir, 'b2.img')}; meta-disk internal; }`, // 14
    `    volume 3 { device minor 1503; disk ${path.join(dir, 'b3.img')}; meta-disk internal; }`, // 15
    '  }', // 16
    '}', // 17
    'resource mv3 {', // 18
    `  volume 2 { device minor 1504; disk ${disks.a4}; meta-disk internal; }`, // 19
    '  on alpha { address 127.0.0.1:9603; }', // 20
    '  on beta { address 127.0.0.2:9603; }', // 21
    '}', // 22
    '',
  ].join('\n'));
}

afterEach(() => {
  // A resource process a test started must not outlive it.
  for (const resource of RESOURCES) {
    if (!dir) break;
    const pid = readPid(pathsOf(resource));
    if (pid !== undefined && isProcessAlive(pid)) process.kill(pid, 'SIGKILL');
  }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  dir = '';
});

describe('meta-data verbs per volume (no resource process)', () => {
  it('create-md RES/VNR writes that volume only; create-md RES writes each; drbdmeta reads every volume', () => {
    setUp();
    const one = adm(['create-md', '--force', 'mv1/1']);
    expect(one.exitCode, one.stderr).toBe(0);
    expect(theirs(1501, disks.md!, '1', 'dump-md').exitCode).toBe(0);
    // volume 0's disk was not touched: drbdmeta finds no meta-data there
    const none = theirs(1500, disks.a0!, 'internal', 'dump-md');
    expect(none.exitCode).not.toBe(0);
    expect(none.stderr).toContain('No valid meta data found');

    const all = adm(['create-md', '--force', 'mv1']);
    expect(all.exitCode, all.stderr).toBe(0);
    expect(all.stdout.match(/New drbd meta data block successfully created\./g)?.length).toBe(2);
    const gi = adm(['get-gi', 'mv1']);
    expect(gi.exitCode, gi.stderr).toBe(0);
    expect(gi.stdout).toBe(theirs(1500, disks.a0!, 'internal', 'get-gi').stdout + theirs(1501, disks.md!, '1', 'get-gi').stdout);
    for (const [name, minor, device, index] of [['mv1/0', 1500, disks.a0!, 'internal'], ['mv1/1', 1501, disks.md!, '1']] as const) {
      const mine = adm(['dump-md', name]);
      expect(mine.exitCode, mine.stderr).toBe(0);
      // the header names the drbdmeta call of this volume, as drbdadm-84 -d prints it
      expect(mine.stdout).toContain(`> drbdmeta ${minor} v08 ${device} ${index} dump-md\n`);
      expect(withoutFlagsLine(dumpBody(mine.stdout))).toBe(withoutFlagsLine(dumpBody(theirs(minor, device, index, 'dump-md').stdout)));
    }
  });

  it('flexible external meta-data on volume 3: create-md, show-gi and apply-al as drbdmeta flex-external', () => {
    setUp();
    expect(adm(['create-md', '--force', 'mv2']).exitCode).toBe(0);
    expect(theirs(1503, disks.fmd!, 'flex-external', 'dump-md').exitCode).toBe(0);
    expect(theirs(1502, disks.a2!, 'internal', 'dump-md').exitCode).toBe(0);
    const show = adm(['show-gi', 'mv2/3']);
    expect(show.exitCode, show.stderr).toBe(0);
    expect(show.stdout).toBe(theirs(1503, disks.fmd!, 'flex-external', 'show-gi').stdout);
    const applied = adm(['apply-al', 'mv2']);
    expect(applied.exitCode, applied.stderr).toBe(0);
    expect(adm(['get-gi', 'mv2/3']).stdout).toBe(theirs(1503, disks.fmd!, 'flex-external', 'get-gi').stdout);
  });

  it('set-gi needs the volume when there are several; on RES/VNR it changes that volume only', () => {
    setUp();
    expect(adm(['create-md', '--force', 'mv1']).exitCode).toBe(0);
    const before0 = theirs(1500, disks.a0!, 'internal', 'get-gi').stdout;
    const refused = adm(['set-gi', '--force', 'mv1', '1234:::::1:1:1:1:0:0']);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toBe("set-gi requires a specific volume id, but none is specified.\nTry 'set-gi minor-<minor_number>' or 'set-gi mv1/<vnr>'\n");
    const set = adm(['set-gi', '--force', 'mv1/1', '1234:::::1:1:1:1:0:0']);
    expect(set.exitCode, set.stderr).toBe(0);
    expect(theirs(1501, disks.md!, '1', 'get-gi').stdout).toMatch(/^0000000000001234:/);
    expect(theirs(1500, disks.a0!, 'internal', 'get-gi').stdout).toBe(before0);
  });

  it('wipe-md RES/VNR wipes that volume and leaves the other valid; an unknown volume is "not defined", exit 1', () => {
    setUp();
    expect(adm(['create-md', '--force', 'mv1']).exitCode).toBe(0);
    const wiped = adm(['wipe-md', '--force', 'mv1/0']);
    expect(wiped.exitCode, wiped.stderr).toBe(0);
    expect(theirs(1500, disks.a0!, 'internal', 'dump-md').exitCode).not.toBe(0);
    expect(theirs(1501, disks.md!, '1', 'dump-md').exitCode).toBe(0);
    const unknown = adm(['dump-md', 'mv1/7']);
    expect([unknown.exitCode, unknown.stderr]).toEqual([1, "'mv1/7' not defined in your config (for this host).\n"]);
  });
});

describe('one resource process runs every volume of its resource', () => {
  it('up attaches each volume on its own meta-data; RES/VNR detaches and attaches one; down stops it; drbdmeta reads both', () => {
    setUp();
    expect(adm(['create-md', '--force', 'mv1']).exitCode).toBe(0);
    try {
      const up = adm(['up', 'mv1']);
      expect(up.exitCode, up.stderr).toBe(0);
      const pid = readPid(pathsOf('mv1'));
      expect(pid).toBeDefined();
      // role, cstate and dstate print a line per minor, as drbdadm-84 runs them per volume.
      expect(adm(['dstate', 'mv1']).stdout).toBe('Inconsistent/DUnknown\nInconsistent/DUnknown\n');
      expect(adm(['cstate', 'mv1']).stdout).toMatch(/^(WFConnection|Unconnected)\n(WFConnection|Unconnected)\n$/);
      const events = adm(['events', '--now', 'mv1']);
      expect(events.stdout).toMatch(/exists device name:mv1 volume:0 minor:1500 /);
      expect(events.stdout).toMatch(/exists device name:mv1 volume:1 minor:1501 /);
      expect(events.stdout.match(/exists connection /g)?.length).toBe(1);

      // One volume leaves and comes back; the other stays attached; one process throughout.
      const detach = adm(['detach', 'mv1/1']);
      expect(detach.exitCode, detach.stderr).toBe(0);
      expect(adm(['dstate', 'mv1']).stdout).toBe('Inconsistent/DUnknown\nDiskless/DUnknown\n');
      expect(adm(['dstate', 'mv1/0']).stdout).toBe('Inconsistent/DUnknown\n');
      const attach = adm(['attach', 'mv1/1']);
      expect(attach.exitCode, attach.stderr).toBe(0);
      expect(adm(['dstate', 'mv1/1']).stdout).toBe('Inconsistent/DUnknown\n');
      expect(readPid(pathsOf('mv1'))).toBe(pid);

      // Adding a volume to the running resource is refused (new-minor), at the new volume's line.
      const grown = fs.readFileSync(conf, 'utf8').replace(
        '  on alpha { address 127.0.0.1:9601; }',
        `  volume 2 { device minor 1509; disk ${sparseFile(dir, 'a9.img', DATA_BYTES)}; meta-disk internal; }\n  on alpha { address 127.0.0.1:9601; }`,
      );
      const before = fs.readFileSync(conf, 'utf8');
      fs.writeFileSync(conf, grown);
      const adjust = adm(['adjust', 'mv1']);
      expect(adjust.exitCode).toBe(10);
      expect(adjust.stderr).toContain("udrbd does not add or remove a volume of a running resource (drbdadm's new-minor / del-minor)");
      fs.writeFileSync(conf, before);
      expect(adm(['dstate', 'mv1']).stdout).toBe('Inconsistent/DUnknown\nInconsistent/DUnknown\n');

      // The process dies: dstate falls back to each volume's on-disk state, line for line what drbdmeta reads there.
      process.kill(pid!, 'SIGKILL');
      for (let i = 0; i < 100 && isProcessAlive(pid!); i++) spawnSync('sleep', ['0.05']);
      const offline = adm(['dstate', 'mv1']);
      expect(offline.exitCode, offline.stderr).toBe(0);
      const drbdmetaSays = [theirs(1500, disks.a0!, 'internal', 'dstate'), theirs(1501, disks.md!, '1', 'dstate')];
      expect(offline.stdout).toBe(drbdmetaSays.map((r) => r.stdout).join(''));
      expect(offline.stdout.split('\n').filter((l) => l !== '').length).toBe(2);

      const down = adm(['down', 'mv1']);
      expect(down.exitCode, down.stderr).toBe(0);
      expect(readPid(pathsOf('mv1'))).toBeUndefined();
    } finally {
      adm(['down', 'mv1']);
    }
    // Each volume's meta-data closed clean, where drbdmeta looks for it.
    expect(theirs(1500, disks.a0!, 'internal', 'dump-md').exitCode).toBe(0);
    expect(theirs(1501, disks.md!, '1', 'dump-md').exitCode).toBe(0);
  });

  it('volumes in host sections, numbered 0 and 3, on internal and flexible meta-data, run too', () => {
    setUp();
    expect(adm(['create-md', '--force', 'mv2']).exitCode).toBe(0);
    try {
      const up = adm(['up', 'mv2']);
      expect(up.exitCode, up.stderr).toBe(0);
      expect(adm(['dstate', 'mv2']).stdout).toBe('Inconsistent/DUnknown\nInconsistent/DUnknown\n');
      expect(adm(['dstate', 'mv2/3']).stdout).toBe('Inconsistent/DUnknown\n');
      expect(adm(['events', '--now', 'mv2']).stdout).toMatch(/exists device name:mv2 volume:3 minor:1503 /);
    } finally {
      adm(['down', 'mv2']);
    }
    expect(readPid(pathsOf('mv2'))).toBeUndefined();
  });

  it("RES/VNR follows drbdadm's rules outside -d too: whole-resource verbs refuse a volume, an unknown one is not defined", () => {
    setUp();
    const down = adm(['down', 'mv1/0']);
    expect([down.exitCode, down.stderr]).toEqual([1, 'down operates on whole resources, but you specified a specific volume!\n']);
    const adjust = adm(['adjust', 'mv2/3']);
    expect([adjust.exitCode, adjust.stderr]).toEqual([1, 'adjust operates on whole resources, but you specified a specific volume!\n']);
    const up = adm(['up', 'mv1/7']);
    expect([up.exitCode, up.stderr]).toEqual([1, "'mv1/7' not defined in your config (for this host).\n"]);
    const events = adm(['events', '--now', 'mv1/0']);
    expect([events.exitCode, events.stderr]).toEqual([1, 'events operates on whole resources, but you specified a specific volume!\n']);
    const waitSync = adm(['wait-sync', 'mv2/9']);
    expect([waitSync.exitCode, waitSync.stderr]).toEqual([1, "'mv2/9' not defined in your config (for this host).\n"]);
    // a per-volume query on a volume of a resource that is not up: what drbdadm prints for an unconfigured minor
    const role = adm(['role', 'mv1/1']);
    expect([role.exitCode, role.stdout]).toEqual([0, 'Unconfigured\n']);
  });

  it('-d up still prints the per-volume plan drbdadm-84 prints, and starts nothing', () => {
    setUp();
    const r = adm(['-d', 'up', 'mv1']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.split('\n').filter((l) => l.includes('new-minor'))).toEqual(['drbdsetup-84 new-minor mv1 1500 0', 'drbdsetup-84 new-minor mv1 1501 1']);
    expect(r.stdout.split('\n').filter((l) => l.includes(' attach '))).toHaveLength(2);
    expect(readPid(pathsOf('mv1'))).toBeUndefined();
  });
});
