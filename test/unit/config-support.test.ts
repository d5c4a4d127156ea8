/**
 * config/support: every keyword the lexer knows has a status in udrbd's
 * support table (so a future option cannot be silently ignored), and
 * checkOptionSupport names each refused or ignored option with its file and
 * line, judging values apart where udrbd does one value and not another.
 * Also: the README table is the generated one; the model keeps positions
 * without changing `dump`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { keywordNames } from '../../src/config/lexer.js';
import {
  SUPPORT_TABLE, bindNode, checkOptionSupport, dumpConfig, judgeOption, loadConfig, supportRule, supportTableMarkdown,
} from '../../src/config/index.js';

const tempDirs: string[] = [];
afterEach(() => {
  for (const d of tempDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** Writes `text` as DIR/drbd.conf and returns [path, dir]; messages name the file as given. */
function writeConfig(text: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-support-'));
  tempDirs.push(dir);
  const file = path.join(dir, 'drbd.conf');
  fs.writeFileSync(file, text);
  return file;
}

function resource(body: string[], hostAlpha: string[] = ['meta-disk internal;']): string {
  return [
    'resource opr {', // line 1
    ...body.map((l) => `  ${l}`),
    '  on alpha {',
    '    device minor 1;',
    '    disk /dev/vg/a;',
    ...hostAlpha.map((l) => `    ${l}`),
    '    address 127.0.0.1:7921;',
    '  }',
    '  on beta { device minor 1; disk /dev/vg/b; meta-disk internal; address 127.0.0.2:7921; }',
    '}',
    '',
  ].join('\n');
}

describe('support table', () => {
  it('has an entry for every keyword of the lexer (a new keyword must be judged before it can be parsed)', () => {
    const missing = keywordNames().filter((k) => supportRule(k) === undefined);
    expect(missing).toEqual([]);
  });

  it('names only keywords the lexer knows, each once', () => {
    const known = new Set(keywordNames());
    expect(SUPPORT_TABLE.map((r) => r.keyword).filter((k) => !known.has(k))).toEqual([]);
    expect(new Set(SUPPORT_TABLE.map((r) => r.keyword)).size).toBe(SUPPORT_TABLE.length);
  });

  it('says why for every entry, and what to do for every warned or refused one', () => {
    for (const r of SUPPORT_TABLE) {
      expect(r.why.length, r.keyword).toBeGreaterThan(10);
      if (r.status !== 'implemented') expect(r.what && r.todo, r.keyword).toBeTruthy();
      for (const [value, v] of Object.entries(r.values ?? {})) {
        if (v.status !== 'implemented') expect(v.what && v.todo, `${r.keyword} ${value}`).toBeTruthy();
      }
    }
  });

  it('refuses what would change the data and implements the options this issue needs', () => {
    expect(judgeOption('meta-disk', '/dev/sdb1').status).toBe('implemented');
    expect(judgeOption('meta-disk', 'internal').status).toBe('implemented');
    expect(judgeOption('flexible-meta-disk', '/dev/sdb2').status).toBe('implemented');
    for (const [k, v] of [['disk-flushes', 'no'], ['disk-flushes', 'yes'], ['md-flushes', 'no'], ['disk-barrier', 'yes'], ['al-updates', 'no']] as const) {
      expect(judgeOption(k, v).status, `${k} ${v}`).toBe('implemented');
    }
    for (const v of ['block', 'pull-ahead', 'disconnect']) expect(judgeOption('on-congestion', v).status, `on-congestion ${v}`).toBe('implemented');
    expect(judgeOption('on-no-data-accessible', 'suspend-io').status).toBe('refuse');
    expect(judgeOption('data-integrity-alg', 'crc32c').status).toBe('implemented');
    expect(judgeOption('csums-alg', 'md5').status).toBe('implemented');
    expect(judgeOption('csums-after-crash-only', 'yes').status).toBe('implemented');
    expect(judgeOption('unplug-watermark', '128').status).toBe('warn');
    expect(judgeOption('allow-two-primaries', 'yes').status).toBe('refuse');
    expect(judgeOption('allow-two-primaries', 'no').status).toBe('implemented');
    expect(judgeOption('cpu-mask', 'ff').status).toBe('warn');
    for (const k of ['sndbuf-size', 'rcvbuf-size', 'out-of-sync', 'pri-on-incon-degr', 'wfc-timeout', 'degr-wfc-timeout', 'outdated-wfc-timeout', 'become-primary-on']) {
      expect(supportRule(k)?.status, k).toBe('implemented');
    }
  });

  it('is the table README.md shows under "Options udrbd refuses or ignores"', () => {
    const readme = fs.readFileSync(path.resolve(__dirname, '../../README.md'), 'utf8');
    expect(readme).toContain(supportTableMarkdown());
  });
});

describe('checkOptionSupport', () => {
  it('implements external meta-data: meta-disk DEV [N], meta-disk DEV and flexible-meta-disk DEV give no finding', () => {
    for (const line of ['meta-disk /dev/sdb1 [0];', 'meta-disk /dev/sdb1;', 'flexible-meta-disk /dev/sdb2;']) {
      const file = writeConfig(resource([], [line]));
      expect(checkOptionSupport(loadConfig(file), 'opr', 'alpha'), line).toEqual({ refusals: [], warnings: [] });
    }
  });

  it('judges this node only: the peer host section is the peer\'s business', () => {
    const text = resource([]).replace('address 127.0.0.2:7921;', 'address 127.0.0.2:7921; alternate-link-address 127.0.0.3:7921;');
    const file = writeConfig(text);
    expect(checkOptionSupport(loadConfig(file), 'opr', 'alpha').warnings).toEqual([]);
    expect(checkOptionSupport(loadConfig(file), 'opr', 'beta').warnings.map((r) => r.option)).toEqual(['alternate-link-address 127.0.0.3:7921']);
  });

  it('judges values apart: disk-drain yes is fine, disk-drain no and no-disk-drain are warned, each at its line', () => {
    const file = writeConfig(resource(['disk {', '  disk-drain yes;', '  disk-drain no;', '  no-disk-drain;', '  disk-flushes no;', '  no-md-flushes;', '}']));
    const { refusals, warnings } = checkOptionSupport(loadConfig(file), 'opr', 'alpha');
    expect(refusals).toEqual([]);
    expect(warnings.map((r) => [r.option, r.line])).toEqual([['disk-drain no', 4], ['disk-drain no', 5]]);
  });

  it('warns for ignored options and says so; implemented ones give nothing', () => {
    const file = writeConfig(resource(['options { cpu-mask ff; }', 'net { protocol C; unplug-watermark 128; csums-alg md5; sndbuf-size 512k; }']));
    const { refusals, warnings } = checkOptionSupport(loadConfig(file), 'opr', 'alpha');
    expect(refusals).toEqual([]);
    expect(warnings.map((w) => w.message)).toEqual([
      `${file}:2: WARN: option 'cpu-mask ff' is ignored by udrbd (no CPU pinning); pin the resource process with taskset, or remove it`,
      `${file}:3: WARN: option 'unplug-watermark 128' is ignored by udrbd (no request plugging); remove it to silence this warning`,
    ]);
  });

  it('reports options inherited from common at the line in the common section', () => {
    const file = writeConfig(['common {', '  net { allow-two-primaries yes; }', '}', resource([])].join('\n'));
    const { refusals } = checkOptionSupport(loadConfig(file), 'opr', 'alpha');
    expect(refusals.map((r) => `${r.option}@${r.line}`)).toEqual(['allow-two-primaries yes@2']);
  });

  it('implements a second volume: no finding (config-volumes has the limit past which it refuses)', () => {
    const text = [
      'resource opr {',
      '  on alpha {',
      '    volume 0 { device minor 1; disk /dev/vg/a; meta-disk internal; }',
      '    volume 1 { device minor 2; disk /dev/vg/a1; meta-disk internal; }',
      '    address 127.0.0.1:7921;',
      '  }',
      '  on beta {',
      '    volume 0 { device minor 1; disk /dev/vg/b; meta-disk internal; }',
      '    volume 1 { device minor 2; disk /dev/vg/b1; meta-disk internal; }',
      '    address 127.0.0.2:7921;',
      '  }',
      '}',
      '',
    ].join('\n');
    const file = writeConfig(text);
    expect(checkOptionSupport(loadConfig(file), 'opr', 'alpha')).toEqual({ refusals: [], warnings: [] });
    expect(supportRule('volume')?.status).toBe('implemented');
  });

  it('warns for global options at their line (usage-count no is what udrbd does anyway)', () => {
    const file = writeConfig(['global {', '  usage-count no;', '  minor-count 8;', '}', resource([])].join('\n'));
    const { warnings } = checkOptionSupport(loadConfig(file), 'opr', 'alpha');
    expect(warnings.map((w) => [w.option, w.line])).toEqual([['minor-count 8', 3]]);
  });

  it('refuses sndbuf-size / rcvbuf-size other than 0 when the native addon is missing', () => {
    const file = writeConfig(resource(['net { sndbuf-size 512k; rcvbuf-size 0; }']));
    const { refusals } = checkOptionSupport(loadConfig(file), 'opr', 'alpha', { socketBuffersUnavailable: 'native/udrbd-io/build/udrbd_io.node not built' });
    expect(refusals.map((r) => r.message)).toEqual([
      `${file}:2: option 'sndbuf-size 512k' (the socket buffer cannot be set: native/udrbd-io/build/udrbd_io.node not built) is not supported by udrbd; build the addon (native/udrbd-io/build.sh) or use 'sndbuf-size 0'`,
    ]);
  });

  it('keeps positions in the model without changing dump', () => {
    const text = resource(['net { protocol C; csums-alg md5; }', 'disk { disk-flushes no; }']);
    const file = writeConfig(text);
    const config = loadConfig(file);
    const dumped = dumpConfig(config, bindNode(config, 'alpha').bindings, { nodeName: 'alpha', expand: false, verbose: false });
    expect(dumped).not.toContain('line');
    expect(dumped).toContain('csums-alg        md5;');
    expect(config.resources[0]!.netOptions[1]!.at).toEqual({ file, line: 2 });
  });
});
