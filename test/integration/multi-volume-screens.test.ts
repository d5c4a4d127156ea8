/**
 * The status screens of a live node with a two-volume resource in its
 * configuration (docs/multi-volume.md step 11). The resource process runs
 * one volume today, so the two-volume resource is one that is not up: each
 * of its configured volumes is an unconfigured minor in /proc/drbd, in the
 * init script's table, in sh-status and in role/dstate, next to a running
 * one-volume resource. Oracles: drbdadm-84's dry run of sh-status / role on
 * the same config (its prefix and one drbdsetup call per minor), and
 * drbd-utils' drbd_pretty_status from /etc/init.d/drbd over udrbd's
 * /proc/drbd text with `drbdadm` = udrbdadm. Ports 9980–9981, minors
 * 1790–1795.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { normaliseCounters, oracleStatus, patchConfig, run } from '../helpers/boot-harness.js';

let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

/** A resource of two volumes that is never brought up (its disks need not exist). */
function twoVolumeResource(dir: string): string {
  return [
    'resource mvidle {',
    '  on alpha { address 127.0.0.1:9981;',
    `    volume 0 { device /dev/drbd1792 minor 1792; disk ${dir}/mv0-alpha.img; meta-disk internal; }`,
    `    volume 1 { device /dev/drbd1793 minor 1793; disk ${dir}/mv1-alpha.img; meta-disk internal; } }`,
    '  on beta { address 127.0.0.2:9981;',
    `    volume 0 { device /dev/drbd1794 minor 1794; disk ${dir}/mv0-beta.img; meta-disk internal; }`,
    `    volume 1 { device /dev/drbd1795 minor 1795; disk ${dir}/mv1-beta.img; meta-disk internal; } }`,
    '}',
    '',
  ].join('\n');
}

/** drbdsetup-84 sh-status's block for a minor with nothing configured. */
function unconfiguredBlock(minor: number, volume: number): string[] {
  return [
    `_minor=${minor}`, '_res_name=mvidle', `_volume=${volume}`, '_known=Unconfigured', '',
    '_cstate=Unconfigured', '_role=', '_peer=', '_disk=', '_pdsk=',
    '_flags_susp=', '_flags_aftr_isp=', '_flags_peer_isp=', '_flags_user_isp=', '_resynced_percent=',
    '', '_sh_status_process', '', '',
  ];
}

describe('status screens with a two-volume resource', () => {
  it('every configured volume is a minor of its own in /proc/drbd, the init table, sh-status and role/dstate', async () => {
    cluster = new Cluster({ resource: 'mvup', port: 9980, minorBase: 1790 });
    const c = cluster;
    patchConfig(c, { minors: { alpha: 1790, beta: 1791 }, extraResources: twoVolumeResource(c.dir) });
    await c.admOk('alpha', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'WFConnection');

    const proc = await c.admOk('alpha', ['proc-drbd']);
    expect(normaliseCounters(proc)).toBe([
      'version: 8.4.11 (api:1/proto:86-101)',
      'srcversion: udrbd-userspace     ',
      '',
      '1790: cs:WFConnection ro:Secondary/Unknown ds:Inconsistent/DUnknown C r-----',
      '    ns:N nr:N dw:N dr:N al:N bm:N lo:N pe:N ua:N ap:N ep:N wo:f oos:0',
      '',
      '1792: cs:Unconfigured',
      '1793: cs:Unconfigured',
      '',
    ].join('\n'));

    const table = [
      'drbd driver loaded OK; device status:',
      'version: 8.4.11 (api:1/proto:86-101)',
      'srcversion: udrbd-userspace     ',
      'm:res        cs            ro                 ds                     p  mounted  fstype',
      '1790:mvup    WFConnection  Secondary/Unknown  Inconsistent/DUnknown  C' + ' '.repeat(11),
      '1792:mvidle  Unconfigured' + ' '.repeat(56),
      '1793:mvidle  Unconfigured' + ' '.repeat(56),
      '',
    ].join('\n');
    expect(await c.admOk('alpha', ['init-status'])).toBe(table);
    expect(await oracleStatus(c, 'alpha', proc)).toBe(table);

    // sh-status: drbdadm-84's prefix and calls on the same config, each call replaced by drbdsetup's block.
    const sh = await c.admOk('alpha', ['sh-status', 'mvidle']);
    const dry = await run('/lib/drbd/drbdadm-84', ['-c', c.configPath, '-d', 'sh-status'], { ...c.env, __DRBD_NODE__: 'alpha' }, { input: '' });
    expect(dry.exitCode).toBe(0);
    const idleDry = dry.stdout.slice(dry.stdout.indexOf('_conf_res_name=mvidle')).split('\n');
    expect(idleDry.filter((l) => l.includes('drbdsetup-84 sh-status'))).toEqual(['/lib/drbd/drbdsetup-84 sh-status 1792', '/lib/drbd/drbdsetup-84 sh-status 1793']);
    const expected = idleDry.flatMap((line) => {
      const call = /drbdsetup-84 sh-status (\d+)$/.exec(line);
      return call ? unconfiguredBlock(Number(call[1]), Number(call[1]) - 1792) : [line];
    });
    expect(sh).toBe(expected.join('\n'));

    // role / dstate: drbdadm-84 runs drbdsetup once per minor, so one line per volume; RES/VNR one.
    const roleDry = await run('/lib/drbd/drbdadm-84', ['-c', c.configPath, '-d', 'role', 'mvidle'], { ...c.env, __DRBD_NODE__: 'alpha' }, { input: '' });
    expect(roleDry.stdout.trim().split('\n')).toHaveLength(2);
    expect(await c.admOk('alpha', ['role', 'mvidle'])).toBe('Unconfigured\nUnconfigured\n');
    expect(await c.admOk('alpha', ['dstate', 'mvidle/1'])).toBe('Unconfigured\n');
    // the running one-volume resource: one line, as before
    expect(await c.admOk('alpha', ['dstate', c.resource])).toBe('Inconsistent/DUnknown\n');
  });
});
