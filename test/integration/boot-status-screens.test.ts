/**
 * The status screens from real two-node runs (issue 14): `udrbdadm
 * proc-drbd` (/proc/drbd's text), `udrbdadm init-status` and the init
 * script's `status` (what /etc/init.d/drbd status prints), and `sh-status`,
 * each compared character for character with a golden text in which only
 * the values that vary between runs are normalised (counters; sync
 * progress). The oracle: drbd-utils' own drbd_pretty_status, run over
 * udrbd's /proc/drbd text with `drbdadm` = udrbdadm, prints the same as
 * udrbd's init script. States: WFConnection (with a second resource that
 * is not up), SyncSource with its progress line, StandAlone after a split
 * brain. (Connected + mounted XFS: test/e2e/boot-xfs-status.test.ts.)
 */
import crypto from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { initScript, normaliseCounters, oracleStatus, patchConfig, run } from '../helpers/boot-harness.js';
import { progressBar, syncPerMilleOf } from '../../src/cli/render/proc-drbd.js';

const MiB = 1024 * 1024;
let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

/** A second resource of alpha's that is never brought up (its disk need not exist). */
function idleResource(dir: string): string {
  return [
    'resource btidle {',
    '  on alpha { device /dev/drbd59 minor 59; disk ' + dir + '/idle-alpha.img; address 127.0.0.1:7959; meta-disk internal; }',
    '  on beta { device /dev/drbd59 minor 59; disk ' + dir + '/idle-beta.img; address 127.0.0.2:7959; meta-disk internal; }',
    '}',
    '',
  ].join('\n');
}

describe('status screens from a live node', () => {
  it('WFConnection: /proc/drbd, the init table, sh-status, and drbd_pretty_status agrees', async () => {
    cluster = new Cluster({ resource: 'btwfc', port: 7941 });
    const c = cluster;
    patchConfig(c, { minors: { alpha: 51, beta: 52 }, extraResources: idleResource(c.dir) });
    await c.admOk('alpha', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'WFConnection');

    const proc = await c.admOk('alpha', ['proc-drbd']);
    expect(normaliseCounters(proc)).toBe(
      [
        'version: 8.4.11 (api:1/proto:86-101)',
        'srcversion: udrbd-userspace     ',
        '',
        '51: cs:WFConnection ro:Secondary/Unknown ds:Inconsistent/DUnknown C r-----',
        '    ns:N nr:N dw:N dr:N al:N bm:N lo:N pe:N ua:N ap:N ep:N wo:f oos:0',
        '',
        '59: cs:Unconfigured',
        '',
      ].join('\n'),
    );

    const table = [
      'drbd driver loaded OK; device status:',
      'version: 8.4.11 (api:1/proto:86-101)',
      'srcversion: udrbd-userspace     ',
      // column -t (util-linux 2.38) pads the cells a short row lacks, all but the last column
      'm:res      cs            ro                 ds                     p  mounted  fstype',
      '51:btwfc   WFConnection  Secondary/Unknown  Inconsistent/DUnknown  C' + ' '.repeat(11),
      // drbd_pretty_status names the minor before its cs:Unconfigured filter runs, so the row stays
      '59:btidle  Unconfigured' + ' '.repeat(56),
      '',
    ].join('\n');
    expect(await c.admOk('alpha', ['init-status'])).toBe(table);
    const status = await initScript(c, 'alpha', 'status');
    expect(status.exitCode).toBe(0);
    expect(status.stdout).toBe(table);
    expect(await oracleStatus(c, 'alpha', proc)).toBe(table);

    const sh = await c.admOk('alpha', ['sh-status']);
    // drbdsetup-84 sh-status's block per minor (drbd-utils' sh_status_scmd)
    const drbdsetupBlocks: Record<string, string[]> = {
      '51': [
        '_minor=51', '_res_name=btwfc', '_volume=0', '_known=Configured', '',
        '_cstate=WFConnection', '_role=Secondary', '_peer=Unknown', '_disk=Inconsistent', '_pdsk=DUnknown', '',
        '_flags_susp=', '_flags_aftr_isp=', '_flags_peer_isp=', '_flags_user_isp=', '',
        '_resynced_percent=', '', '_sh_status_process', '', '',
      ],
      '59': [
        '_minor=59', '_res_name=btidle', '_volume=0', '_known=Unconfigured', '',
        '_cstate=Unconfigured', '_role=', '_peer=', '_disk=', '_pdsk=',
        '_flags_susp=', '_flags_aftr_isp=', '_flags_peer_isp=', '_flags_user_isp=', '_resynced_percent=',
        '', '_sh_status_process', '', '',
      ],
    };
    // drbdadm-84's own prefix lines: its dry run on the same config, pretending to be alpha
    const dry = await run('/lib/drbd/drbdadm-84', ['-c', c.configPath, '-d', 'sh-status'], { ...c.env, __DRBD_NODE__: 'alpha' }, { input: '' });
    expect(dry.exitCode).toBe(0);
    const prefixAndCalls = dry.stdout.split('\n');
    const expectedSh: string[] = [];
    for (const line of prefixAndCalls) {
      const call = /drbdsetup-84 sh-status (\d+)$/.exec(line);
      if (call) expectedSh.push(...drbdsetupBlocks[call[1]!]!);
      else expectedSh.push(line);
    }
    expect(expectedSh.filter((l) => l.startsWith('_conf_res_name='))).toEqual(['_conf_res_name=btwfc', '_conf_res_name=btidle']);
    expect(sh).toBe(expectedSh.join('\n'));
    // eval-able by sh, and the hook runs once per resource with that resource's values
    const evaluated = await run('sh', ['-c', '_sh_status_process() { echo "$_minor $_res_name $_cstate $_role/$_peer"; }; eval "$1"', 'sh', sh], c.env, { input: '' });
    expect(evaluated.stdout).toBe('51 btwfc WFConnection Secondary/Unknown\n59 btidle Unconfigured /\n');
    // one resource by name
    expect(await c.admOk('alpha', ['sh-status', c.resource])).toBe(sh.slice(0, sh.indexOf('_conf_res_name=btidle')));
  });

  it('SyncSource: the progress line in /proc/drbd, the "..." row in the table, _resynced_percent, and drbd_pretty_status agrees', async () => {
    cluster = new Cluster({ resource: 'btsync', port: 7942, proxy: true, disk: ['c-plan-ahead 0;', 'resync-rate 4M;'] });
    const c = cluster;
    // A frozen link must not look dead while the screens are read: long ping timeouts.
    patchConfig(c, { minors: { alpha: 53, beta: 54 }, edit: (t) => t.replace('ping-int 2; ping-timeout 10;', 'ping-int 30; ping-timeout 100;') });
    await c.startProxies();
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.admOk('alpha', ['primary', '--force', c.resource]);
    await c.waitState('alpha', 'cstate', 'SyncSource');
    await new Promise((r) => setTimeout(r, 1_500)); // some progress
    // Freeze the link: no acks, so the progress holds still while the screens are read.
    for (const p of Object.values(c.proxies)) p.freeze();
    await new Promise((r) => setTimeout(r, 500));
    try {
      const proc = await c.admOk('alpha', ['proc-drbd']);
      const status = await initScript(c, 'alpha', 'status');
      const sh = await c.admOk('alpha', ['sh-status', c.resource]);
      const totalKiB = c.dataSizeBytes('alpha') / 1024;
      const lines = proc.split('\n');
      expect(lines.slice(0, 4)).toEqual(['version: 8.4.11 (api:1/proto:86-101)', 'srcversion: udrbd-userspace     ', '', '53: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----']);
      expect(lines[4]).toMatch(/^    ns:\d+ nr:0 dw:\d+ dr:\d+ al:\d+ bm:\d+ lo:\d+ pe:\d+ ua:\d+ ap:\d+ ep:\d+ wo:f oos:\d+$/);
      const progress = /^\t(\[[=>.]+\]) sync'ed:([ \d]{3}\.\d)% \((\d+)\/(\d+)\)K$/.exec(lines[5]!);
      expect(progress, lines[5]).not.toBeNull();
      const [, bar, pctText, leftText, totalText] = progress!;
      expect(Number(totalText)).toBe(totalKiB);
      const leftKiB = Number(leftText);
      expect(leftKiB).toBeGreaterThan(0);
      expect(leftKiB).toBeLessThan(totalKiB);
      expect(lines[4]).toContain(`oos:${leftKiB}`);
      // percent and bar as the kernel computes them from the same numbers
      const perMille = syncPerMilleOf(totalKiB / 4, leftKiB / 4);
      expect(pctText).toBe(`${Math.floor(perMille / 10)}.${perMille % 10}`.padStart(5));
      expect(bar).toBe(progressBar(perMille));
      expect(lines[6]).toMatch(/^\tfinish: \d+:\d\d:\d\d speed: [\d,]+ \([\d,]+\) K\/sec$/);
      expect(lines.slice(7)).toEqual(['']);

      // init table: every column width is fixed by the other cells, so only the two progress values vary
      const pct = `${pctText!.trim()}%`;
      expect(status.exitCode).toBe(0);
      expect(status.stdout).toBe(
        [
          'drbd driver loaded OK; device status:',
          'version: 8.4.11 (api:1/proto:86-101)',
          'srcversion: udrbd-userspace     ',
          'm:res      cs          ro                 ds                     p  mounted  fstype',
          "...        sync'ed:    " + pct.padEnd(19) + `(${leftKiB}/${totalKiB})K`.padEnd(23) + ' '.repeat(3 + 9),
          '53:btsync  SyncSource  Primary/Secondary  UpToDate/Inconsistent  C' + ' '.repeat(11),
          '',
        ].join('\n'),
      );
      expect(await oracleStatus(c, 'alpha', proc)).toBe(status.stdout);
      expect(sh).toContain(`\n_cstate=SyncSource\n_role=Primary\n_peer=Secondary\n_disk=UpToDate\n_pdsk=Inconsistent\n`);
      expect(sh).toContain(`\n_resynced_percent=${pctText!.trim()}\n`);
    } finally {
      for (const p of Object.values(c.proxies)) p.restore();
    }
  });

  it('StandAlone after a split brain: Secondary/Unknown UpToDate/DUnknown with the flags in the p column', async () => {
    cluster = new Cluster({ resource: 'btsb', port: 7943, proxy: true });
    const c = cluster;
    patchConfig(c, { minors: { alpha: 55, beta: 56 } });
    const r = c.resource;
    await c.startProxies();
    await c.admOk('alpha', ['up', r]);
    await c.admOk('beta', ['up', r]);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.admOk('alpha', ['primary', '--force', r]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    c.cut();
    await c.waitState('alpha', 'cstate', /^(WFConnection|Unconnected)$/);
    await c.waitState('beta', 'cstate', /^(WFConnection|Unconnected)$/);
    await c.admOk('beta', ['primary', r]);
    await c.write('alpha', 4 * MiB, crypto.randomBytes(MiB));
    await c.write('beta', 20 * MiB, crypto.randomBytes(MiB));
    await c.admOk('alpha', ['secondary', r]);
    await c.admOk('beta', ['secondary', r]);
    c.restore();
    await c.waitState('alpha', 'cstate', 'StandAlone');
    expect(c.logText('alpha')).toContain('Split-Brain detected but unresolved, dropping connection!');

    const proc = await c.admOk('alpha', ['proc-drbd']);
    expect(normaliseCounters(proc)).toBe(
      [
        'version: 8.4.11 (api:1/proto:86-101)',
        'srcversion: udrbd-userspace     ',
        '',
        '55: cs:StandAlone ro:Secondary/Unknown ds:UpToDate/DUnknown   r-----',
        `    ns:N nr:N dw:N dr:N al:N bm:N lo:N pe:N ua:N ap:N ep:N wo:f oos:${(await c.statusJson('alpha')).outOfSyncKiB as number}`,
        '',
      ].join('\n'),
    );
    const table = [
      'drbd driver loaded OK; device status:',
      'version: 8.4.11 (api:1/proto:86-101)',
      'srcversion: udrbd-userspace     ',
      'm:res    cs          ro                 ds                 p       mounted  fstype',
      '55:btsb  StandAlone  Secondary/Unknown  UpToDate/DUnknown  r-----' + ' '.repeat(2 + 9),
      '',
    ].join('\n');
    const status = await initScript(c, 'alpha', 'status');
    expect(status.exitCode).toBe(0);
    expect(status.stdout).toBe(table);
    expect(await oracleStatus(c, 'alpha', proc)).toBe(table);
    const sh = await c.admOk('alpha', ['sh-status', r]);
    expect(sh).toContain('\n_cstate=StandAlone\n_role=Secondary\n_peer=Unknown\n_disk=UpToDate\n_pdsk=DUnknown\n');
    // wait-connect ends at StandAlone (exit 0) unless told to wait after a split brain (then its timeout: exit 5)
    const atOnce = Date.now();
    expect((await c.adm('alpha', ['wait-connect', '-t', '30', r])).exitCode).toBe(0);
    expect(Date.now() - atOnce).toBeLessThan(10_000);
    expect((await c.adm('alpha', ['wait-connect', '-t', '2', '--wait-after-sb', r])).exitCode).toBe(5);
  });
});
