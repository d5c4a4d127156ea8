/**
 * Acceptance for issue 14's "silently ignored" list: `up` on a config holding
 * each option of the list either implements it (no message), warns (stderr
 * and the resource process's log, `up` goes on) or refuses it (exit 10, every
 * refusal printed) — each message naming the option, the file and its line.
 * Real udrbdadm and resource process, node alpha only (no peer needed).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';

let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

type Expect = 'implemented' | 'warn' | 'refuse';

/** One config line with the option it carries and what udrbd must do with it. */
interface Line {
  text: string;
  option?: string;
  expect?: Expect;
}

const L = (text: string, option?: string, expect?: Expect): Line => ({ text, option, expect });

function hosts(c: Cluster, port: number, alphaLines: Line[]): Line[] {
  return [
    L('  on alpha {'),
    ...alphaLines,
    L(`    address 127.0.0.1:${port};`),
    L('  }'),
    L('  on beta {'),
    L(`    device minor ${port - 7900}; disk ${c.disks.beta}; meta-disk internal;`),
    L(`    address 127.0.0.2:${port};`),
    L('  }'),
  ];
}

/** Every option of the issue's list, each on its own line, with the values given. */
function optionLines(values: { onCongestion: string; onIoError: string; flushes: string; noData: string }): Line[] {
  return [
    L('  net {'),
    L('    protocol C; connect-int 1;'),
    L('    csums-alg md5;', 'csums-alg', 'implemented'),
    L('    unplug-watermark 128;', 'unplug-watermark 128', 'warn'),
    L('    data-integrity-alg crc32c;', 'data-integrity-alg', 'implemented'),
    L(`    on-congestion ${values.onCongestion};`, `on-congestion ${values.onCongestion}`, 'implemented'),
    L('    sndbuf-size 512k;', 'sndbuf-size', 'implemented'),
    L('    rcvbuf-size 256k;', 'rcvbuf-size', 'implemented'),
    L('  }'),
    L('  disk {'),
    L(`    on-io-error ${values.onIoError};`, 'on-io-error', 'implemented'),
    L(`    disk-flushes ${values.flushes};`, `disk-flushes ${values.flushes}`, 'implemented'),
    L(`    md-flushes ${values.flushes};`, `md-flushes ${values.flushes}`, 'implemented'),
    L('    disk-timeout 600;', 'disk-timeout', 'implemented'),
    L('    resync-after opmeta;', 'resync-after', 'implemented'),
    L('  }'),
    L('  options {'),
    L('    cpu-mask 3;', 'cpu-mask 3', 'warn'),
    L(`    on-no-data-accessible ${values.noData};`, `on-no-data-accessible ${values.noData}`, values.noData === 'io-error' ? 'implemented' : 'refuse'),
    L('  }'),
    L('  startup {'),
    L('    become-primary-on alpha;', 'become-primary-on', 'implemented'),
    L('    wfc-timeout 30;', 'wfc-timeout', 'implemented'),
    L('    degr-wfc-timeout 20;', 'degr-wfc-timeout', 'implemented'),
    L('  }'),
    L('  handlers {'),
    L('    pri-on-incon-degr "echo pri-on-incon-degr";', 'pri-on-incon-degr', 'implemented'),
    L('    local-io-error "echo local-io-error";', 'local-io-error', 'implemented'),
    L('    out-of-sync "echo out-of-sync";', 'out-of-sync', 'implemented'),
    L('  }'),
  ];
}

/** The whole config: opmeta (external meta-disk, implemented), opflex (flexible external, implemented), opvol (volumes 0 and 1, implemented), opall (refused values), opok (allowed values). */
function configLines(c: Cluster): Line[] {
  const disk = (name: string): string => path.join(c.dir, `${name}.img`);
  return [
    L('resource opmeta {'),
    ...hosts(c, 7922, [L(`    device minor 22; disk ${disk('meta')};`), L('    meta-disk /dev/sdz9 [0];')]),
    L('}'),
    L('resource opflex {'),
    ...hosts(c, 7923, [L(`    device minor 23; disk ${disk('flex')};`), L('    flexible-meta-disk /dev/sdz8;')]),
    L('}'),
    L('resource opvol {'),
    L('  on alpha {'),
    L(`    volume 0 { device minor 24; disk ${disk('vol0')}; meta-disk internal; }`),
    L(`    volume 1 { device minor 25; disk ${disk('vol1')}; meta-disk internal; }`),
    L('    address 127.0.0.1:7924;'),
    L('  }'),
    L('  on beta {'),
    L(`    volume 0 { device minor 24; disk ${disk('bvol0')}; meta-disk internal; }`),
    L(`    volume 1 { device minor 25; disk ${disk('bvol1')}; meta-disk internal; }`),
    L('    address 127.0.0.2:7924;'),
    L('  }'),
    L('}'),
    L('resource opall {'),
    ...optionLines({ onCongestion: 'pull-ahead', onIoError: 'call-local-io-error', flushes: 'no', noData: 'suspend-io' }),
    ...hosts(c, 7926, [L(`    device minor 26; disk ${disk('all')}; meta-disk internal;`)]),
    L('}'),
    L('resource opok {'),
    ...optionLines({ onCongestion: 'block', onIoError: 'detach', flushes: 'yes', noData: 'io-error' }),
    ...hosts(c, 7921, [L(`    device minor 21; disk ${c.disks.alpha}; meta-disk internal;`)]),
    L('}'),
  ];
}

/** The lines of resource `name` (1-based line numbers in the whole file) that carry an option. */
function optionsOf(lines: Line[], name: string): Array<Line & { line: number }> {
  const start = lines.findIndex((l) => l.text === `resource ${name} {`);
  const end = lines.findIndex((l, i) => i > start && l.text === '}');
  return lines
    .map((l, i) => ({ ...l, line: i + 1 }))
    .slice(start, end)
    .filter((l) => l.option !== undefined);
}

function setUp(): { c: Cluster; file: string; lines: Line[] } {
  cluster = new Cluster({ resource: 'opok', port: 7921 });
  const c = cluster;
  const lines = configLines(c);
  const file = path.join(c.dir, 'options.conf');
  fs.writeFileSync(file, `${lines.map((l) => l.text).join('\n')}\n`);
  c.configPaths.alpha = file;
  c.configPaths.beta = file;
  return { c, file, lines };
}

/** Checks each option of `name` against `stderr`: a line naming it with its line number, or none. */
function expectJudged(stderr: string, file: string, lines: Line[], name: string): void {
  for (const o of optionsOf(lines, name)) {
    const mentions = stderr.split('\n').filter((l) => l.includes(`option '${o.option!}`));
    if (o.expect === 'implemented') {
      expect(mentions, `${o.option} is implemented: no message`).toEqual([]);
      expect(stderr).not.toContain(`${file}:${o.line}:`);
    } else if (o.expect === 'warn') {
      expect(mentions, `${o.option} warned at line ${o.line}`).toEqual([expect.stringMatching(new RegExp(`^${escapeRe(`${file}:${o.line}: WARN: option '${o.option!}`)}.* is ignored by udrbd \\(.+\\); .+`))]);
    } else {
      expect(mentions, `${o.option} refused at line ${o.line}`).toEqual([expect.stringMatching(new RegExp(`^${escapeRe(`${file}:${o.line}: option '${o.option!}`)}.*' \\(.+\\) is not supported by udrbd; .+`))]);
    }
  }
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('up on the options issue 14 found silently ignored', () => {
  it('passes a second volume, external meta-disk and flexible-meta-disk through the check', async () => {
    const { c } = setUp();
    for (const name of ['opvol', 'opmeta', 'opflex']) {
      // Past the option check, up fails only on the devices or the meta-data, which do not exist here.
      const up = await c.adm('alpha', ['up', name]);
      expect(up.exitCode, `${name}: ${up.stderr}`).not.toBe(0);
      expect(up.stderr).not.toContain('is not supported by udrbd');
      expect(up.stderr).not.toContain('udrbd runs');
    }
  });

  it('refuses every unsafe value at once (exit 10, no resource process) and warns for the harmless ones', async () => {
    const { c, file, lines } = setUp();
    const r = await c.adm('alpha', ['up', 'opall']);
    expect(r.exitCode, r.stderr).toBe(10);
    expectJudged(r.stderr, file, lines, 'opall');
    const refused = optionsOf(lines, 'opall').filter((o) => o.expect === 'refuse');
    expect(refused.map((o) => o.option)).toEqual([
      'on-no-data-accessible suspend-io',
    ]);
    expect((await c.adm('alpha', ['role', 'opall'])).stdout.trim()).toBe('Unconfigured');
  });

  it('goes up with the safe values: implemented options say nothing, warned ones are on stderr and in the log', async () => {
    const { c, file, lines } = setUp();
    const r = await c.adm('alpha', ['up', 'opok']);
    expect(r.exitCode, r.stderr).toBe(0);
    expectJudged(r.stderr, file, lines, 'opok');
    const warned = optionsOf(lines, 'opok').filter((o) => o.expect === 'warn');
    expect(warned.map((o) => o.option)).toEqual(['unplug-watermark 128', 'cpu-mask 3']);
    await c.waitState('alpha', 'cstate', 'WFConnection');
    const log = c.logText('alpha');
    for (const o of warned) expect(log, o.option).toContain(`${file}:${o.line}: WARN: option '${o.option!.replace(/"/g, '\\"')}`);
  });
});
