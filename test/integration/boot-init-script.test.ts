/**
 * Boot with udrbd's LSB init script (packaging/init.d/udrbd), issue 14:
 * `start` with the peer down waits wfc-timeout (a node that was Secondary)
 * or degr-wfc-timeout (a node that crashed as a disconnected Primary) or
 * outdated-wfc-timeout (its meta-data says the peer is Outdated) and
 * goes on; under a pseudo-terminal (util-linux `script`) DRBD's banner and
 * `To abort waiting enter 'yes' [ N]:` appear after 10 s and typing `yes`
 * ends a wait that would last forever; `become-primary-on` promotes only
 * the host it names. Also stop, reload, and the usage exit code.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, UDRBDADM } from '../helpers/cluster.js';
import { initScript, initScriptOnTty, oracleStatus, patchConfig, run } from '../helpers/boot-harness.js';

let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

const OUTDATED_FIXUP = 'outdated-wfc-timeout has to be shorter than degr-wfc-timeout\noutdated-wfc-timeout implicitly set to degr-wfc-timeout (3s)\n';

describe('init script start: waiting for the peer', () => {
  it('a node that was Secondary waits wfc-timeout (5 s) with the peer down, goes on, and become-primary-on <this host> promotes it', async () => {
    cluster = new Cluster({ resource: 'btboot', port: 7944, diskSizeBytes: 16 * 1024 * 1024 });
    const c = cluster;
    patchConfig(c, { minors: { alpha: 51, beta: 52 }, startup: ['wfc-timeout 5;', 'degr-wfc-timeout 3;', 'become-primary-on alpha;'] });
    await c.upSynced();
    await c.admOk('alpha', ['secondary', c.resource]);
    await c.admOk('beta', ['down', c.resource]);
    await c.admOk('alpha', ['down', c.resource]);

    const start = await initScript(c, 'alpha', 'start', 60_000);
    expect(start.exitCode, start.stderr).toBe(0);
    expect(start.elapsedMs).toBeGreaterThanOrEqual(5_000);
    expect(start.elapsedMs).toBeLessThan(5_000 + 10_000); // not the next timeout, not forever
    expect(start.stdout).toBe('Starting udrbd resources: .\n'); // no banner: the wait ended before 10 s
    expect(start.stderr).toContain(OUTDATED_FIXUP);
    expect(await c.query('alpha', 'role')).toBe('Primary/Unknown');
    expect(await c.query('alpha', 'cstate')).toBe('WFConnection');

    const status = await initScript(c, 'alpha', 'status');
    expect(status.stdout.split('\n').slice(3)).toEqual([
      'm:res      cs            ro               ds                 p  mounted  fstype',
      '51:btboot  WFConnection  Primary/Unknown  UpToDate/DUnknown  C' + ' '.repeat(11),
      '',
    ]);

    // start again while running: nothing is brought up again (same process), it waits the same 5 s
    const pid = c.pid('alpha');
    const again = await initScript(c, 'alpha', 'start', 60_000);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.elapsedMs).toBeGreaterThanOrEqual(5_000);
    expect(c.pid('alpha')).toBe(pid);
    expect(await c.query('alpha', 'role')).toBe('Primary/Unknown');

    const stop = await initScript(c, 'alpha', 'stop', 60_000);
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect(stop.stdout).toBe('Stopping all udrbd resources: .\n');
    expect(await c.query('alpha', 'role')).toBe('Unconfigured');
  });

  it('a node that crashed as a disconnected Primary waits degr-wfc-timeout (3 s, not wfc 30 s); become-primary-on <other host> does not promote it', async () => {
    cluster = new Cluster({ resource: 'btdegr', port: 7945, diskSizeBytes: 16 * 1024 * 1024 });
    const c = cluster;
    patchConfig(c, { minors: { alpha: 53, beta: 54 }, startup: ['wfc-timeout 30;', 'degr-wfc-timeout 3;', 'become-primary-on beta;'] });
    await c.upSynced();
    await c.admOk('beta', ['down', c.resource]);
    await c.waitState('alpha', 'role', 'Primary/Unknown');
    c.kill9('alpha'); // on disk: PRIMARY_IND set, CONNECTED_IND clear
    await c.waitGone('alpha');

    const start = await initScript(c, 'alpha', 'start', 60_000);
    expect(start.exitCode, start.stderr).toBe(0);
    expect(start.elapsedMs).toBeGreaterThanOrEqual(3_000);
    expect(start.elapsedMs).toBeLessThan(20_000); // well below wfc-timeout 30 s
    expect(start.stderr).toContain(OUTDATED_FIXUP);
    const info = await (await c.client('alpha')).request('startup-info');
    expect((JSON.parse(info.stdout) as { timeoutType: string }).timeoutType).toBe('UT_DEGRADED');
    expect(await c.query('alpha', 'role')).toBe('Secondary/Unknown');
    expect(await c.query('alpha', 'cstate')).toBe('WFConnection');
  });

  it('a node whose meta-data says the peer is Outdated waits outdated-wfc-timeout (2 s, not degr 20 s / wfc 30 s)', async () => {
    cluster = new Cluster({ resource: 'btoutd', port: 7953, diskSizeBytes: 16 * 1024 * 1024 });
    const c = cluster;
    patchConfig(c, { minors: { alpha: 51, beta: 52 }, startup: ['wfc-timeout 30;', 'degr-wfc-timeout 20;', 'outdated-wfc-timeout 2;'] });
    await c.upSynced();
    await c.admOk('alpha', ['secondary', c.resource]);
    await c.admOk('beta', ['down', c.resource]);
    await c.admOk('alpha', ['down', c.resource]);
    // MDF_PEER_OUT_DATED, as DRBD writes it once the peer has been fenced (get-gi's 10th field, o)
    const gi = (await c.admOk('alpha', ['get-gi', c.resource])).trim().split(':');
    expect(gi).toHaveLength(11);
    gi[9] = '1';
    await c.admOk('alpha', ['set-gi', '--force', c.resource, gi.join(':')]);

    const start = await initScript(c, 'alpha', 'start', 60_000);
    expect(start.exitCode, start.stderr).toBe(0);
    expect(start.elapsedMs).toBeGreaterThanOrEqual(2_000);
    expect(start.elapsedMs).toBeLessThan(15_000);
    expect(start.stderr).toBe(''); // 2 <= 20 <= 30: nothing to fix up
    const info = await (await c.client('alpha')).request('startup-info');
    expect((JSON.parse(info.stdout) as { timeoutType: string }).timeoutType).toBe('UT_PEER_OUTDATED');
  });

  it('wait-connect exits 5 on its timeout and 0 once connected; -t overrides the configured wfc-timeout', async () => {
    cluster = new Cluster({ resource: 'btwait', port: 7946 });
    const c = cluster;
    patchConfig(c, { minors: { alpha: 55, beta: 56 }, startup: ['wfc-timeout 60;'] });
    await c.admOk('alpha', ['up', c.resource]);
    const started = Date.now();
    const timedOut = await c.adm('alpha', ['wait-connect', '-t', '2', c.resource]);
    expect(timedOut.exitCode).toBe(5);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_000);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(timedOut.stderr).toContain('degr-wfc-timeout has to be shorter than wfc-timeout\ndegr-wfc-timeout implicitly set to wfc-timeout (2s)\n');
    const waiting = c.adm('alpha', ['wait-connect', c.resource]); // configured 60 s
    await c.admOk('beta', ['up', c.resource]);
    const connected = await waiting;
    expect(connected.exitCode, connected.stderr).toBe(0);
    expect(await c.query('alpha', 'cstate')).toBe('Connected');
  });
});

describe('wait-con-int without a terminal', () => {
  it('after 10 s prints the banner and how to abort (kill), then ends at the configured timeout without a dialog', async () => {
    cluster = new Cluster({ resource: 'btplain', port: 7952 });
    const c = cluster;
    patchConfig(c, { minors: { alpha: 51, beta: 52 }, startup: ['wfc-timeout 12;'] });
    await c.admOk('alpha', ['up', c.resource]);
    const dry = await c.adm('alpha', ['-d', 'wait-con-int']);
    expect(dry.stdout).toBe('drbdsetup-84 wait-connect 51 --wfc-timeout=12\n'); // -d: what it would run, nothing waited
    const r = await run(process.execPath, [UDRBDADM, '-c', c.configPath, '--node', 'alpha', 'wait-con-int'], c.env, { input: '', timeoutMs: 60_000 });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.elapsedMs).toBeGreaterThanOrEqual(12_000);
    expect(r.elapsedMs).toBeLessThan(30_000);
    expect(r.stdout).toMatch(
      new RegExp(
        '^\\n\\*{63}\\n DRBD\'s startup script waits for the peer node\\(s\\) to appear\\.\\n[^]*' +
          "   \\(These values are for resource 'btplain'; 0 sec -> wait forever\\)\\n" +
          ' To abort waiting for DRBD connections, kill this process: kill \\d+\\n$',
      ),
    );
    expect(r.stdout).toContain('   reboot, the timeout is 0 seconds. [degr-wfc-timeout]\n');
    expect(r.stdout).toContain('   is 12 seconds. [wfc-timeout]\n');
    expect(r.stdout).not.toContain("enter 'yes'");
    expect(r.stderr).toContain('degr-wfc-timeout implicitly set to wfc-timeout (12s)');
  });
});

describe('init script start on a terminal', () => {
  it("shows DRBD's banner after 10 s and the seconds counter; typing yes ends a wait that would last forever", async () => {
    cluster = new Cluster({ resource: 'btpty', port: 7947 });
    const c = cluster;
    patchConfig(c, { minors: { alpha: 51, beta: 52 } }); // no startup section: every timeout 0 = forever
    const check = await run('sh', ['-c', 'command -v script'], c.env, { input: '' });
    if (check.exitCode !== 0) throw new Error('test prerequisite missing: script (util-linux)');
    let typed = false;
    const start = await initScriptOnTty(
      c,
      'alpha',
      'start',
      (text, type) => {
        if (!typed && text.includes("To abort waiting enter 'yes' [ -- ]: ") && /\x1b\[31G\[ +1[0-9]\]:/.test(text)) {
          typed = true;
          type('yes\n');
        }
      },
      90_000,
    );
    expect(start.exitCode, start.stdout).toBe(0);
    expect(typed).toBe(true);
    expect(start.elapsedMs).toBeGreaterThanOrEqual(10_000);
    expect(start.elapsedMs).toBeLessThan(40_000);
    const out = start.stdout.replace(/\r\n/g, '\n');
    expect(out).toContain('Starting udrbd resources: ..........\n***************************************************************\n');
    expect(out).toContain(
      " DRBD's startup script waits for the peer node(s) to appear.\n" +
        ' - If this node was already a degraded cluster before the\n' +
        '   reboot, the timeout is 0 seconds. [degr-wfc-timeout]\n' +
        ' - If the peer was available before the reboot, the timeout\n' +
        '   is 0 seconds. [wfc-timeout]\n' +
        "   (These values are for resource 'btpty'; 0 sec -> wait forever)\n" +
        " To abort waiting enter 'yes' [ -- ]: \x1b[s\x1b[31G[  10]:\x1b[u",
    );
    expect(out).toMatch(/yes\n\n\.\n$/); // the echo of the answer, drbdadm's newline, then log_end_msg's "."
    // the wait was aborted, the resource stays up waiting for its peer
    expect(await c.query('alpha', 'cstate')).toBe('WFConnection');
  });
});

describe('init script: the other actions', () => {
  it('an unknown action prints the usage and exits 2 (LSB: invalid arguments)', async () => {
    cluster = new Cluster({ resource: 'btusage', port: 7948 });
    const r = await initScript(cluster, 'alpha', 'frobnicate');
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe('Usage: /etc/init.d/udrbd {start|stop|status|reload|restart|force-reload}\n');
  });

  it('reload runs udrbdadm adjust all, or says that this udrbdadm has no adjust verb (LSB 3)', async () => {
    cluster = new Cluster({ resource: 'btreload', port: 7949 });
    const c = cluster;
    patchConfig(c, { minors: { alpha: 51, beta: 52 } });
    const help = await run(process.execPath, [UDRBDADM, '--help'], c.env, { input: '' });
    const hasAdjust = /^  adjust( |$)/m.test(help.stdout);
    const r = await initScript(c, 'alpha', 'reload');
    if (hasAdjust) {
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toBe('Reloading udrbd configuration: .\n');
    } else {
      expect(r.exitCode).toBe(3);
      expect(r.stderr).toContain("udrbd: this udrbdadm has no 'adjust' verb: reload is not available; use ");
    }
  });

  it('status on a node without resources prints the header and an empty table, as drbd-utils does for no minors', async () => {
    cluster = new Cluster({ resource: 'btnone', port: 7954 });
    const c = cluster;
    patchConfig(c, { minors: { alpha: 51, beta: 52 } });
    const status = await initScript(c, 'gamma', 'status');
    expect(status.exitCode, status.stderr).toBe(0);
    const table = ['drbd driver loaded OK; device status:', 'version: 8.4.11 (api:1/proto:86-101)', 'srcversion: udrbd-userspace     ', 'm:res  cs  ro  ds  p  mounted  fstype', ''].join('\n');
    expect(status.stdout).toBe(table);
    const proc = (await run(process.execPath, [UDRBDADM, '-c', c.configPath, '--node', 'gamma', 'proc-drbd'], c.env, { input: '' })).stdout;
    expect(proc).toBe('version: 8.4.11 (api:1/proto:86-101)\nsrcversion: udrbd-userspace     \n');
    expect(await oracleStatus(c, 'gamma', proc)).toBe(table);
  });

  it('start with a configuration that does not parse exits 6 (LSB: not configured) with the parse error', async () => {
    cluster = new Cluster({ resource: 'btbad', port: 7950 });
    const c = cluster;
    patchConfig(c, { minors: { alpha: 51, beta: 52 }, edit: (t) => t.replace('protocol C;', 'protocol X;') });
    const r = await initScript(c, 'alpha', 'start');
    expect(r.exitCode).toBe(6);
    expect(r.stderr).toMatch(/protocol/);
  });
});
