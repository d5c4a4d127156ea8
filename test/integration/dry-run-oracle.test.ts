/**
 * Oracle: `udrbdadm -d VERB` prints exactly the calls drbd-utils' own
 * drbdadm-84 -d prints for the same configuration and host (run in a UTS
 * namespace whose hostname is the node; its helper path /lib/drbd/drbdsetup-84
 * shortened to drbdsetup-84, as /usr/sbin/drbdadm prints it). The config has
 * common options, a quoted secret with shell metacharacters, flags, startup
 * options and two resources, so option order, escaping, backend options and
 * drbdadm's staging of `up all` are all compared, and external meta-data
 * (indexed and flexible) in the drbdmeta and attach arguments, resize
 * with `disk { size }` and its options, and resources with several volumes
 * (resource-level and in host sections, numbered 0/1 and 0/3) addressed as
 * RES and RES/VNR, with drbdadm's exit-1 refusals of a name. Nothing runs: no process,
 * no disk is opened (the image files do not even exist).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UDRBDADM } from '../helpers/cluster.js';

const DRBDADM_84 = '/lib/drbd/drbdadm-84';
let dir = '';
let conf = '';

beforeAll(() => {
  for (const tool of [DRBDADM_84, '/usr/bin/unshare']) {
    if (!fs.existsSync(tool)) throw new Error(`test prerequisite missing: ${tool} (drbd-utils / util-linux)`);
  }
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-oracle-'));
  conf = path.join(dir, 'or.conf');
  fs.writeFileSync(conf, `global { usage-count no; }
common {
  net { max-buffers 8000; after-sb-1pri discard-secondary; }
  disk { c-plan-ahead 0; on-io-error detach; }
  startup { wfc-timeout 5; }
}
resource sfor0 {
  net { protocol A; allow-two-primaries; cram-hmac-alg sha1; shared-secret "a b$c'd,e~f"; ko-count 4; }
  disk { resync-rate 40M; al-extents 1237; fencing resource-only; }
  startup { degr-wfc-timeout 3; become-primary-on alpha; }
  handlers { split-brain "/usr/lib/drbd/notify-split-brain.sh root"; }
  on alpha { device /dev/drbd43 minor 43; disk ${dir}/a0.img; address 127.0.0.1:7914; meta-disk internal; }
  on beta { device /dev/drbd44 minor 44; disk ${dir}/b0.img; address 127.0.0.2:7914; meta-disk internal; }
}
resource sfor1 {
  disk { size 40M; }
  on alpha { device minor 45; disk ${dir}/a1.img; address 127.0.0.1:7915; meta-disk internal; }
  on beta { device minor 46; disk ${dir}/b1.img; address 127.0.0.2:7915; meta-disk internal; }
}
resource mvor3 {
  disk { resync-rate 10M; }
  volume 0 { device minor 1500; disk ${dir}/v0.img; meta-disk internal; }
  volume 1 { device /dev/drbd1501; disk ${dir}/v1.img; meta-disk ${dir}/md.img [3]; disk { al-extents 3001; size 20M; } }
  on alpha { address 127.0.0.1:9601; }
  on beta { address 127.0.0.2:9601; }
}
resource mvor4 {
  startup { become-primary-on both; }
  net { allow-two-primaries; }
  on alpha { address 127.0.0.1:9602;
    volume 0 { device minor 1502; disk ${dir}/a4.img; meta-disk internal; }
    volume 3 { device minor 1503; disk ${dir}/a43.img; flexible-meta-disk ${dir}/fmd4.img; disk { resync-rate 30M; } }
  }
  on beta { address 127.0.0.2:9602;
    volume 0 { device minor 1502; disk ${dir}/b4.img; meta-disk internal; }
    volume 3 { device minor 1503; disk ${dir}/b43.img; meta-disk internal; }
  }
}
resource xmor2 {
  on alpha { device minor 140; disk ${dir}/a2.img; address 127.0.0.1:8250; meta-disk ${dir}/md.img [1]; }
  on beta { device minor 141; disk ${dir}/b2.img; address 127.0.0.2:8250; flexible-meta-disk ${dir}/fmd.img; }
}
`);
});

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

interface Run {
  exitCode: number;
  stdout: string;
}

function theirs(host: string, args: string[]): Run {
  const quoted = args.map((a) => `'${a}'`).join(' ');
  const r = spawnSync('unshare', ['-u', 'sh', '-c', `hostname ${host} && exec ${DRBDADM_84} -d -c '${conf}' ${quoted}`], {
    encoding: 'utf8',
    env: { ...process.env, DRBD_DONT_WARN_ON_VERSION_MISMATCH: '1' },
    timeout: 30_000,
  });
  return { exitCode: r.status ?? -1, stdout: r.stdout.replaceAll('/lib/drbd/drbdsetup-84', 'drbdsetup-84') };
}

function mine(host: string, args: string[]): Run {
  const r = spawnSync(process.execPath, [UDRBDADM, '-d', '-c', conf, '--node', host, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { exitCode: r.status ?? -1, stdout: r.stdout };
}

const CASES: string[][] = [
  ['up', 'sfor0'], ['up', 'all'], ['up', 'sfor1'], ['--', '--foo', 'up', 'sfor0'],
  ['down', 'sfor0'], ['down', 'all'], ['attach', 'sfor0'], ['attach', 'all'], ['detach', 'sfor0'],
  ['connect', 'sfor0'], ['connect', '--discard-my-data', 'sfor0'], ['--', '--discard-my-data', 'connect', 'sfor0'],
  ['disconnect', 'sfor0'], ['primary', 'sfor0'], ['primary', '--force', 'sfor0'], ['--', '--force', 'primary', 'sfor0'],
  ['secondary', 'all'], ['invalidate', 'sfor0'], ['invalidate-remote', 'sfor0'], ['verify', 'sfor0'],
  ['pause-sync', 'sfor0'], ['resume-sync', 'sfor0'], ['resume-io', 'sfor0'], ['outdate', 'all'], ['new-current-uuid', 'sfor0'],
  ['new-current-uuid', '--clear-bitmap', 'sfor0'], ['role', 'sfor0'], ['cstate', 'all'], ['dstate', 'sfor0'],
  ['get-gi', 'sfor0'], ['show-gi', 'sfor0'], ['create-md', 'sfor0'], ['create-md', '--force', 'all'],
  ['--', '--force', 'create-md', 'sfor0'], ['dump-md', 'sfor0'], ['apply-al', 'sfor0'], ['wipe-md', 'sfor0'],
  ['wait-connect', 'all'], ['status', 'sfor0'],
  // a diskless node's way in: the resource and its minor without attach (then connect)
  ['new-resource', 'sfor0'], ['new-resource', 'all'], ['new-minor', 'sfor0'], ['new-minor', 'all'],
  // external meta-data: indexed on alpha, flexible on beta
  ['up', 'xmor2'], ['attach', 'xmor2'], ['create-md', 'xmor2'], ['dump-md', 'xmor2'], ['apply-al', 'xmor2'],
  ['wipe-md', 'xmor2'], ['get-gi', 'xmor2'], ['show-gi', 'xmor2'], ['dstate', 'xmor2'],
  // resize: `disk { size }` (sfor1) goes first as --size; drbdadm-84 takes resize's options only after `--`
  ['resize', 'sfor0'], ['resize', 'sfor1'], ['resize', 'all'], ['resize', 'xmor2'], ['--', '--size=100M', 'resize', 'sfor0'],
  ['--', '--size=100M', 'resize', 'sfor1'], ['--', '--assume-peer-has-space', 'resize', 'sfor0'],
  ['--', '--assume-clean', '--assume-peer-has-space', 'resize', 'sfor1'], ['--', '--size=2G', '--assume-clean', 'resize', 'all'],
  // several volumes: one new-minor / apply-al / attach / drbdmeta call per volume, one connect; RES/VNR names one
  ['up', 'mvor3'], ['up', 'mvor4'], ['up', 'mvor3/1'], ['up', 'mvor4/3', 'mvor3/0'], ['attach', 'mvor3'], ['attach', 'mvor4/3'],
  ['create-md', 'mvor3'], ['create-md', 'mvor3/1'], ['create-md', '--force', 'mvor4'], ['connect', 'mvor3'], ['down', 'mvor4'],
  ['disconnect', 'mvor3'], ['status', 'mvor3'], ['detach', 'mvor3'], ['detach', 'mvor4/0'], ['primary', 'mvor3'],
  ['primary', '--force', 'mvor4/3'], ['secondary', 'mvor4'], ['dump-md', 'mvor3'], ['dump-md', 'mvor4/3'],
  ['apply-al', 'mvor3'], ['wipe-md', 'mvor3/0'], ['get-gi', 'mvor3'], ['show-gi', 'mvor4/3'], ['dstate', 'mvor4'],
  ['invalidate', 'mvor3/1'], ['outdate', 'mvor4'], ['verify', 'mvor3'], ['role', 'mvor4'], ['cstate', 'mvor3/1'],
  ['new-current-uuid', 'mvor3/1'], ['new-current-uuid', 'all'], ['wait-connect', 'mvor4'], ['sh-b-pri', 'mvor4'],
  ['sh-b-pri', 'mvor4/3'], ['resize', 'mvor3'], ['resize', 'mvor3/1'], ['--', '--size=10M', 'resize', 'mvor4'],
];

/**
 * drbdadm's refusals of a name (exit 1): a volume this node does not have, a volume given to a verb that acts on
 * whole resources, no volume for a verb that needs one; the calls of the names before it are printed, a staged
 * verb's (up) are not.
 */
const REFUSED: string[][] = [
  ['up', 'mvor3/7'], ['create-md', 'mvor3/2'], ['create-md', 'mvor4', 'mvor3/7'], ['create-md', 'mvor3/7', 'mvor4'],
  ['up', 'mvor4', 'mvor3/7'], ['attach', 'mvor4', 'mvor3/7'], ['connect', 'mvor3/1'], ['down', 'mvor3/0'],
  ['disconnect', 'mvor4/3'], ['status', 'mvor3/1'], ['connect', 'mvor4', 'mvor3/1'], ['new-current-uuid', 'mvor3'],
  ['new-current-uuid', 'mvor4/3', 'mvor3'],
];

describe('udrbdadm -d against drbdadm-84 -d', () => {
  for (const host of ['alpha', 'beta']) {
    for (const args of CASES) {
      it(`on ${host}: -d ${args.join(' ')}`, () => {
        const real = theirs(host, args);
        expect(real.exitCode).toBe(0);
        expect(real.stdout).not.toBe('');
        expect(mine(host, args)).toEqual(real);
      });
    }
    for (const args of REFUSED) {
      it(`on ${host}: -d ${args.join(' ')} is refused with exit 1`, () => {
        const real = theirs(host, args);
        expect(real.exitCode).toBe(1);
        expect(mine(host, args)).toEqual(real);
      });
    }
  }
});
