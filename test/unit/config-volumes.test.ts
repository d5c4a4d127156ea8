/**
 * config/volumes and cli/volume-args: this node's volumes of a resource (the
 * inheritance drbdadm-84 does: resource-level volumes into host sections, the
 * resource's disk options winning over a resource-level volume's, host-section
 * volumes keeping theirs), RES/VNR names, drbdadm's rules for which verbs take
 * a volume, and the one judgement of what the resource process can run (up to
 * VOLUMES_PER_RESOURCE_MAX volumes) — with the file:line of the volume past it and what to do, through
 * checkOptionSupport (up, attach, adjust) and daemon/config-adapter's loadSpec.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkOptionSupport, loadConfig, parseVolumeName, resolveVolumes, selectVolumes, VOLUMES_PER_RESOURCE_MAX } from '../../src/config/index.js';
import { EXCHANGED_VOLUMES_MAX } from '../../src/peer/index.js';
import { EPOCH_MEMBERS_MAX } from '../../src/replication/epochs.js';
import { resolveVolumeArgument } from '../../src/cli/volume-args.js';
import { loadSpec } from '../../src/daemon/config-adapter.js';
import { UdrbdError } from '../../src/util/errors.js';

const tempDirs: string[] = [];
afterEach(() => {
  for (const d of tempDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function writeConfig(lines: string[]): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-volumes-'));
  tempDirs.push(dir);
  const file = path.join(dir, 'drbd.conf');
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

/** mv1: two resource-level volumes; mv2: volumes 0 and 3 in host sections; mv3: one `volume 0` block; mv4: one volume 4. */
const LINES = [
  'common { disk { c-plan-ahead 0; } }', // 1
  'resource mv1 {', // 2
  '  disk { resync-rate 10M; }', // 3
  '  volume 0 { device minor 1500; disk /dev/vg/a0; meta-disk internal; }', // 4
  '  volume 1 { device /dev/drbd1501; disk /dev/vg/a1; meta-disk /dev/vg/md [2]; disk { resync-rate 20M; al-extents 3001; } }', // 5
  '  on alpha { address 127.0.0.1:9601; }', // 6
  '  on beta { address 127.0.0.2:9601; }', // 7
  '}', // 8
  'resource mv2 {', // 9
  '  on alpha { address 127.0.0.1:9602;', // 10
  '    volume 0 { device minor 1502; disk /dev/vg/a2; meta-disk internal; }', // 11
  '    volume 3 { device minor 1503; disk /dev/vg/a3; flexible-meta-disk /dev/vg/fmd; disk { resync-rate 30M; } }', // 12
  '  }', // 13
  '  on beta { address 127.0.0.2:9602;', // 14
  '    volume 0 { device minor 1502; disk /dev/vg/b2; meta-disk internal; }', // 15
  '    volume 3 { device minor 1503; disk /dev/vg/b3; meta-disk internal; }', // 16
  '  }', // 17
  '}', // 18
  'resource mv3 {', // 19
  '  volume 0 { device minor 1504; disk /dev/vg/a5; meta-disk internal; }', // 20
  '  on alpha { address 127.0.0.1:9603; }', // 21
  '  on beta { address 127.0.0.2:9603; }', // 22
  '}', // 23
  'resource mv4 {', // 24
  '  volume 4 { device minor 1505; disk /dev/vg/a6; meta-disk internal; }', // 25
  '  on alpha { address 127.0.0.1:9604; }', // 26
  '  on beta { address 127.0.0.2:9604; }', // 27
  '}', // 28
];

function thrown(fn: () => unknown): UdrbdError {
  try {
    fn();
  } catch (err) {
    if (err instanceof UdrbdError) return err;
    throw err;
  }
  throw new Error('expected a UdrbdError');
}

describe('volumes of a resource on this node', () => {
  it('parses RES and RES/VNR; a volume number that is not one never matches', () => {
    expect(parseVolumeName('mv1')).toEqual({ resource: 'mv1', written: 'mv1' });
    expect(parseVolumeName('mv1/1')).toEqual({ resource: 'mv1', vnr: 1, written: 'mv1/1' });
    expect(parseVolumeName('mv1/x').vnr).toBeNaN();
  });

  it('resolves every volume in volume order, with drbdadm-84\'s inheritance of disk options', () => {
    const config = loadConfig(writeConfig(LINES));
    const mv1 = resolveVolumes(config, 'mv1', 'alpha');
    expect(mv1.map((v) => [v.vnr, v.minor, v.devicePath, v.diskPath])).toEqual([
      [0, 1500, '/dev/drbd1500', '/dev/vg/a0'],
      [1, 1501, '/dev/drbd1501', '/dev/vg/a1'],
    ]);
    expect(mv1[1]!.meta).toEqual({ device: '/dev/vg/md', drbdmetaIndex: '2', attachIndex: '2' });
    // drbdadm expands the resource's disk { } into each host volume before a resource-level volume's own: 10M wins.
    expect(mv1[1]!.diskOptions.map((o) => `${o.name}=${o.value}`)).toEqual(['al-extents=3001', 'resync-rate=10M', 'c-plan-ahead=0']);
    const mv2 = resolveVolumes(config, 'mv2', 'alpha');
    expect(mv2.map((v) => v.vnr)).toEqual([0, 3]);
    expect(mv2[1]!.metaDisk).toEqual({ path: '/dev/vg/fmd', index: 'flexible' });
    expect(mv2[1]!.diskOptions.map((o) => `${o.name}=${o.value}`)).toEqual(['c-plan-ahead=0', 'resync-rate=30M']);
    expect(resolveVolumes(config, 'mv2', 'beta')[1]!.diskPath).toBe('/dev/vg/b3');
  });

  it('selects one volume by RES/VNR; one this node does not have is drbdadm\'s "not defined", exit 1', () => {
    const config = loadConfig(writeConfig(LINES));
    const mv2 = resolveVolumes(config, 'mv2', 'alpha');
    expect(selectVolumes(mv2, parseVolumeName('mv2/3')).map((v) => v.minor)).toEqual([1503]);
    const err = thrown(() => selectVolumes(mv2, parseVolumeName('mv2/1')));
    expect([err.message, err.exitCode]).toEqual(["'mv2/1' not defined in your config (for this host).", 1]);
    expect(thrown(() => resolveVolumes(config, 'nope', 'alpha')).message).toBe("'nope' not defined in your config (for this host).");
  });
});

describe("drbdadm-84's rules for RES/VNR arguments", () => {
  it('refuses a volume for a verb that acts on whole resources (exit 1)', () => {
    const config = loadConfig(writeConfig(LINES));
    for (const verb of ['connect', 'disconnect', 'down', 'status', 'adjust', 'dump']) {
      const err = thrown(() => resolveVolumeArgument(config, 'alpha', verb, 'mv1/1'));
      expect([err.message, err.exitCode]).toEqual([`${verb} operates on whole resources, but you specified a specific volume!`, 1]);
    }
    expect(resolveVolumeArgument(config, 'alpha', 'connect', 'mv1').volumes.length).toBe(2);
  });

  it('wants a volume for new-current-uuid and set-gi when there are several, not with `all` or with one volume', () => {
    const config = loadConfig(writeConfig(LINES));
    const err = thrown(() => resolveVolumeArgument(config, 'alpha', 'new-current-uuid', 'mv2'));
    expect([err.message, err.exitCode]).toEqual([
      "new-current-uuid requires a specific volume id, but none is specified.\nTry 'new-current-uuid minor-<minor_number>' or 'new-current-uuid mv2/<vnr>'",
      1,
    ]);
    expect(resolveVolumeArgument(config, 'alpha', 'new-current-uuid', 'mv2', true).volumes.length).toBe(2);
    expect(resolveVolumeArgument(config, 'alpha', 'set-gi', 'mv2/3').volumes.map((v) => v.minor)).toEqual([1503]);
    expect(resolveVolumeArgument(config, 'alpha', 'set-gi', 'mv3').volumes.map((v) => v.minor)).toEqual([1504]);
  });

  it('lets per-volume verbs take RES/VNR', () => {
    const config = loadConfig(writeConfig(LINES));
    for (const verb of ['up', 'attach', 'primary', 'create-md', 'dump-md', 'resize']) {
      expect(resolveVolumeArgument(config, 'alpha', verb, 'mv1/0').volumes.map((v) => v.vnr)).toEqual([0]);
    }
  });
});

describe('what the resource process runs: every volume, up to VOLUMES_PER_RESOURCE_MAX', () => {
  it('runs two volumes, resource-level or in host sections: no refusal, the spec carries each in number order', () => {
    const file = writeConfig(LINES);
    expect(checkOptionSupport(loadConfig(file), 'mv1', 'alpha').refusals).toEqual([]);
    expect(checkOptionSupport(loadConfig(file), 'mv2', 'beta').refusals).toEqual([]);
    const spec = loadSpec(file, 'mv2', 'alpha');
    expect(spec.volumes.map((v) => [v.volume, v.minor, v.diskPath])).toEqual([
      [0, 1502, '/dev/vg/a2'],
      [3, 1503, '/dev/vg/a3'],
    ]);
    // The spec's own fields are the first volume's.
    expect([spec.volume, spec.minor]).toEqual([0, 1502]);
  });

  it('bounds the volumes of one resource by what one connection exchanges and orders', () => {
    expect(VOLUMES_PER_RESOURCE_MAX).toBe(EXCHANGED_VOLUMES_MAX);
    expect(VOLUMES_PER_RESOURCE_MAX).toBe(EPOCH_MEMBERS_MAX);
  });

  it('refuses one volume more than that at its line, saying what, where and what to do (exit 10 at up and in loadSpec)', () => {
    const n = VOLUMES_PER_RESOURCE_MAX + 1;
    const volumes = Array.from({ length: n }, (_, v) => `  volume ${v} { device minor ${2000 + v}; disk /dev/vg/big${v}; meta-disk internal; }`);
    const file = writeConfig(['resource big {', ...volumes, '  on alpha { address 127.0.0.1:9605; }', '  on beta { address 127.0.0.2:9605; }', '}']);
    const { refusals } = checkOptionSupport(loadConfig(file), 'big', 'alpha');
    // Line 1 is `resource big {`, volume v is on line v + 2.
    expect(refusals.map((r) => [r.option, r.line])).toEqual([[`volume ${VOLUMES_PER_RESOURCE_MAX}`, VOLUMES_PER_RESOURCE_MAX + 2]]);
    expect(refusals[0]!.message).toBe(
      `${file}:${VOLUMES_PER_RESOURCE_MAX + 2}: resource big has ${n} volumes; udrbd runs at most ${VOLUMES_PER_RESOURCE_MAX} per resource ` +
        '(one connection carries their parameters and epochs): split the volumes over several resources, each with its own port',
    );
    const err = thrown(() => loadSpec(file, 'big', 'alpha'));
    expect([err.exitCode, err.message]).toEqual([10, refusals[0]!.message]);
  });

  it('runs a single volume of any number: no refusal, the spec carries the number', () => {
    const file = writeConfig(LINES);
    expect(checkOptionSupport(loadConfig(file), 'mv4', 'alpha').refusals).toEqual([]);
    expect(loadSpec(file, 'mv4', 'alpha').volume).toBe(4);
  });

  it('runs one explicit volume 0 block as it runs the implicit one', () => {
    const file = writeConfig(LINES);
    expect(checkOptionSupport(loadConfig(file), 'mv3', 'alpha').refusals).toEqual([]);
    const spec = loadSpec(file, 'mv3', 'alpha');
    expect([spec.volume, spec.minor, spec.diskPath]).toEqual([0, 1504, '/dev/vg/a5']);
  });
});
