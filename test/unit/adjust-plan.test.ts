/**
 * daemon/adjust-plan: which steps drbdadm adjust takes for which change
 * (drbdadm_adjust.c), and what udrbd refuses on a running resource.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSpec, specFromConfig } from '../../src/daemon/config-adapter.js';
import { loadConfig } from '../../src/config/index.js';
import { type RunningFacts, planAdjust, planAdjustVolumes, planText } from '../../src/daemon/adjust-plan.js';
import type { ResourceSpec } from '../../src/daemon/spec.js';
import { checkWanted } from '../../src/daemon/adjust.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-ajplan-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Knobs {
  net?: string;
  disk?: string;
  handlers?: string;
  startup?: string;
  diskPath?: string;
  port?: number;
  minor?: number;
}

let n = 0;
function spec(k: Knobs = {}): ResourceSpec {
  const file = path.join(dir, `c${n++}.conf`);
  fs.writeFileSync(
    file,
    [
      'resource ajp {',
      `  net { ${k.net ?? 'protocol C;'} }`,
      `  disk { ${k.disk ?? 'resync-rate 10M;'} }`,
      `  handlers { ${k.handlers ?? 'split-brain "/bin/true";'} }`,
      `  startup { ${k.startup ?? 'wfc-timeout 10;'} }`,
      `  on alpha { device minor ${k.minor ?? 4}; disk ${k.diskPath ?? '/tmp/ajp-a.img'}; meta-disk internal; address 127.0.0.1:${k.port ?? 8031}; }`,
      `  on beta { device minor ${k.minor ?? 4}; disk /tmp/ajp-b.img; meta-disk internal; address 127.0.0.2:${k.port ?? 8031}; }`,
      '}',
      '',
    ].join('\n'),
  );
  return loadSpec(file, 'ajp', 'alpha');
}

const LIVE: RunningFacts = { netConfigured: true, attached: true, verifyRunning: false, resyncRunning: false };
const kinds = (p: ReturnType<typeof planAdjust>): string[] => p.steps.map((s) => s.kind);

describe('adjust plan', () => {
  it('nothing changed (startup options are only read at boot): no steps, nothing printed', () => {
    const plan = planAdjust(spec(), spec({ startup: 'wfc-timeout 99;' }), LIVE);
    expect(plan).toEqual({ steps: [], refusals: [] });
    expect(planText(plan)).toBe('');
  });

  it('net options change live with one net-options --set-defaults carrying all configured net options', () => {
    const plan = planAdjust(spec(), spec({ net: 'protocol B; ping-int 3; ko-count 2;' }), LIVE);
    expect(plan.refusals).toEqual([]);
    expect(plan.steps).toEqual([
      { kind: 'net-options', changed: ['protocol', 'ping-int', 'ko-count'], lines: ['drbdsetup-84 net-options ipv4:127.0.0.1:8031 ipv4:127.0.0.2:8031 --set-defaults --protocol=B --ping-int=3 --ko-count=2'] },
    ]);
  });

  it('disk options change live with disk-options --set-defaults', () => {
    const plan = planAdjust(spec(), spec({ disk: 'resync-rate 20M; c-plan-ahead 0; fencing resource-only;' }), LIVE);
    expect(plan.steps).toEqual([
      { kind: 'disk-options', changed: ['resync-rate', 'c-plan-ahead', 'fencing'], lines: ['drbdsetup-84 disk-options 4 --set-defaults --fencing=resource-only --c-plan-ahead=0 --resync-rate=20M'] },
    ]);
  });

  it('a changed address: disconnect with the running addresses, then connect with the new ones (net options ride along)', () => {
    const plan = planAdjust(spec(), spec({ port: 8032, net: 'protocol A;' }), LIVE);
    expect(kinds(plan)).toEqual(['disconnect', 'connect']);
    expect(planText(plan)).toBe(
      'drbdsetup-84 disconnect ipv4:127.0.0.1:8031 ipv4:127.0.0.2:8031\n' + 'drbdsetup-84 connect ajp ipv4:127.0.0.1:8032 ipv4:127.0.0.2:8032 --protocol=A\n',
    );
  });

  it('a StandAlone resource is connected, a diskless one attached', () => {
    expect(planText(planAdjust(spec(), spec(), { ...LIVE, netConfigured: false }))).toBe('drbdsetup-84 connect ajp ipv4:127.0.0.1:8031 ipv4:127.0.0.2:8031 --protocol=C\n');
    const attach = planAdjust(spec(), spec({ disk: 'resync-rate 20M; al-extents 500;' }), { ...LIVE, attached: false });
    expect(attach.refusals).toEqual([]);
    expect(planText(attach)).toBe(
      'drbdmeta 4 v08 /tmp/ajp-a.img internal apply-al\ndrbdsetup-84 attach 4 /tmp/ajp-a.img /tmp/ajp-a.img internal --al-extents=500 --resync-rate=20M\n',
    );
  });

  it('handlers: used from their next run, no drbdsetup call', () => {
    const plan = planAdjust(spec(), spec({ handlers: 'split-brain "/bin/false"; out-of-sync "/bin/true";' }), LIVE);
    expect(plan.steps).toEqual([{ kind: 'handlers', changed: ['split-brain', 'out-of-sync'], lines: [] }]);
  });

  it('refuses what cannot change on a running resource, naming the option, the file and what to do', () => {
    const plan = planAdjust(spec(), spec({ diskPath: '/tmp/other.img', minor: 5, disk: 'resync-rate 10M; size 100M; al-extents 300;' }), LIVE);
    expect(plan.refusals.map((r) => r.option)).toEqual(['disk', 'device minor', 'device', 'size', 'al-extents']);
    for (const r of plan.refusals) {
      expect(r.message).toMatch(/c\d+\.conf:1: in resource ajp, on alpha: '/);
      if (r.option === 'size') expect(r.message).toContain("run 'udrbdadm resize ajp' on one node (it takes the new 'disk { size }' from the file), then adjust again.");
      else expect(r.message).toContain("down the resource first ('udrbdadm down ajp'), then 'udrbdadm up ajp'.");
    }
    expect(plan.refusals[0]!.message).toContain("'disk' cannot change from /tmp/ajp-a.img to /tmp/other.img on a running resource");
  });

  it('a size a resize already applied is no change for adjust (no refusal, no disk-options step)', () => {
    const plan = planAdjust(spec(), spec({ disk: 'resync-rate 10M; size 100M;' }), { ...LIVE, userSizeBytes: 100 * 1024 * 1024 });
    expect(plan.refusals).toEqual([]);
    expect(plan.steps.map((st) => st.kind)).not.toContain('disk-options');
    expect(planAdjust(spec(), spec({ disk: 'resync-rate 10M; size 100M;' }), { ...LIVE, userSizeBytes: 0 }).refusals.map((r) => r.option)).toEqual(['size']);
  });

  it('verify-alg cannot change while online verify runs (DRBD: ERR_VERIFY_RUNNING)', () => {
    const plan = planAdjust(spec({ net: 'verify-alg md5;' }), spec({ net: 'verify-alg sha1;' }), { ...LIVE, verifyRunning: true });
    expect(plan.refusals.map((r) => r.option)).toEqual(['verify-alg']);
    expect(planAdjust(spec({ net: 'verify-alg md5;' }), spec({ net: 'verify-alg sha1;' }), LIVE).refusals).toEqual([]);
  });

  it('the validation step refuses options the data path cannot take, before anything is applied', () => {
    expect(checkWanted(spec({ net: 'verify-alg sha256;' }))).toEqual({ refusals: [], warnings: [] });
    const bad = checkWanted(spec({ net: 'verify-alg nosuchhash;' }));
    expect(bad.refusals).toHaveLength(1);
    expect(bad.refusals[0]).toMatch(/c\d+\.conf:1: in resource ajp, net: verify-alg 'nosuchhash' is not a known digest/);
    const badCsums = checkWanted(spec({ net: 'csums-alg nosuchhash;' }));
    expect(badCsums.refusals[0]).toMatch(/c\d+\.conf:1: in resource ajp, net: csums-alg 'nosuchhash' is not a known digest/);
  });
});

describe('adjust plan of a resource with several volumes', () => {
  function volumesSpec(v1Disk: string, extraVolume = false): ResourceSpec {
    const file = path.join(dir, `mv${n++}.conf`);
    const host = (node: string, ip: string): string[] => [
      `  on ${node} {`,
      `    address ${ip}:8061;`,
      `    volume 0 { device minor 80; disk /tmp/mvp-${node}-0.img; meta-disk internal; }`,
      `    volume 1 { device minor 81; disk /tmp/mvp-${node}-1.img; meta-disk internal; ${v1Disk} }`,
      ...(extraVolume ? [`    volume 2 { device minor 82; disk /tmp/mvp-${node}-2.img; meta-disk internal; }`] : []),
      '  }',
    ];
    fs.writeFileSync(file, ['resource mvp {', '  disk { resync-rate 10M; }', ...host('alpha', '127.0.0.1'), ...host('beta', '127.0.0.2'), '}', ''].join('\n'));
    return specFromConfig(loadConfig(file), file, 'mvp', 'alpha');
  }

  it("a changed disk option of volume 1 is volume 1's disk-options, on its minor", () => {
    const plan = planAdjustVolumes(volumesSpec(''), volumesSpec('disk { resync-rate 20M; }'), () => LIVE);
    expect(plan.refusals).toEqual([]);
    expect(plan.steps.map((st) => [st.kind, st.volume, st.changed])).toEqual([['disk-options', 1, ['resync-rate']]]);
    expect(planText(plan)).toBe('drbdsetup-84 disk-options 81 --set-defaults --resync-rate=20M\n');
  });

  it("volume 1's refusals are its own (al-extents on a running disk), the resource's once", () => {
    const plan = planAdjustVolumes(volumesSpec(''), volumesSpec('disk { al-extents 257; }'), () => LIVE);
    expect(plan.refusals.map((r) => r.option)).toEqual(['al-extents']);
  });

  it('a volume added to or removed from the configuration is refused: down, then up', () => {
    const added = planAdjustVolumes(volumesSpec(''), volumesSpec('', true), () => LIVE);
    expect(added.steps).toEqual([]);
    expect(added.refusals.map((r) => r.message)).toEqual([expect.stringMatching(/the configuration adds volume 2; udrbd does not add or remove a volume of a running resource .*'udrbdadm down mvp'/)]);
    const removed = planAdjustVolumes(volumesSpec('', true), volumesSpec(''), () => LIVE);
    expect(removed.refusals[0]?.message).toMatch(/removes volume 2/);
  });

  it('one volume: the same plan as planAdjust', () => {
    const a = spec({ disk: 'resync-rate 10M;' });
    const b = spec({ disk: 'resync-rate 30M;' });
    expect(planAdjustVolumes(a, b, () => LIVE)).toEqual(planAdjust(a, b, LIVE));
  });
});
