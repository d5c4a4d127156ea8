/**
 * ocf:udrbd:drbd against a live two-node udrbd pair (alpha 127.0.0.1, beta
 * 127.0.0.2, resource oc-pair, port 8043): the agent and the udrbdadm
 * wrapper installed by scripts/install.sh into a DESTDIR, then Debian's
 * ocf-tester drives alpha's agent (start, monitor, probe, notify,
 * promote/demote twice, stop, restart, double start/stop) while beta runs as
 * the peer. Root; needs resource-agents (ocf-tester), pacemaker-cli-utils
 * (crm_master: without a cluster it fails, which the agent only logs) and
 * libxml2-utils (ocf-tester's meta-data lint): fails, not skips, without them.
 */
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Cluster, ROOT } from '../helpers/cluster.js';

const RESOURCE = 'oc-pair';
const OCF_TESTER = '/usr/sbin/ocf-tester';

let cluster: Cluster | null = null;
let destDir: string | null = null;

function run(command: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} did not finish within ${timeoutMs} ms; output so far:\n${output}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, output });
    });
  });
}

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('ocf-tester test needs root (udrbd up, and ocf-tester checks the agent as user nobody)');
  for (const [what, file] of [['ocf-tester (apt-get install resource-agents)', OCF_TESTER], ['crm_master (apt-get install pacemaker-cli-utils)', '/usr/sbin/crm_master'], ['xmllint (apt-get install libxml2-utils)', '/usr/bin/xmllint']] as const) {
    if (!fs.existsSync(file)) throw new Error(`test prerequisite missing: ${what} at ${file}`);
  }
});

afterEach(async () => {
  const c = cluster;
  cluster = null;
  if (c !== null) await c.destroy();
  if (destDir !== null) fs.rmSync(destDir, { recursive: true, force: true });
  destDir = null;
});

describe('ocf-tester against a live udrbd pair', () => {
  it('the agent installed by scripts/install.sh passes ocf-tester on alpha while beta is its peer', async () => {
    cluster = new Cluster({ resource: RESOURCE, port: 8043 });
    const c = cluster;
    // ocf-tester runs meta-data as user nobody: the install tree must be world-readable.
    destDir = fs.mkdtempSync(path.join(os.tmpdir(), 'oc-dest-'));
    fs.chmodSync(destDir, 0o755);
    const install = spawnSync(path.join(ROOT, 'scripts', 'install.sh'), [], { env: { ...process.env, DESTDIR: destDir }, encoding: 'utf8' });
    expect(install.status, install.stderr).toBe(0);
    const agent = path.join(destDir, 'usr/lib/ocf/resource.d/udrbd/drbd');
    expect(fs.statSync(agent).mode & 0o777).toBe(0o755);
    expect(fs.readFileSync(agent, 'utf8')).toBe(fs.readFileSync(path.join(ROOT, 'packaging/ocf/drbd'), 'utf8'));

    // Both UpToDate, so that ocf-tester's promote can succeed; alpha then stopped, beta stays up as the peer.
    await c.admOk('alpha', ['up', RESOURCE]);
    await c.admOk('beta', ['up', RESOURCE]);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.admOk('alpha', ['primary', '--force', RESOURCE]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.admOk('alpha', ['secondary', RESOURCE]);
    await c.admOk('alpha', ['down', RESOURCE]);

    const env = {
      ...c.env,
      PATH: `${path.join(destDir, 'usr/local/sbin')}:/usr/sbin:/usr/bin:/sbin:/bin`,
      UDRBD_NODE: 'alpha',
      OCF_ROOT: '/usr/lib/ocf',
    };
    const meta = ['notify=true', 'clone_max=2', 'clone_node_max=1', 'master_max=1', 'master_node_max=1'].flatMap((m) => ['-o', `CRM_meta_${m}`]);
    const tester = await run(OCF_TESTER, ['-n', RESOURCE, '-o', `drbd_resource=${RESOURCE}`, '-o', `drbdconf=${c.configPath}`, '-o', 'wfc_timeout=10', ...meta, agent], env, 300_000);
    expect(tester.output).toContain(`${agent} passed all tests`);
    expect(tester.code).toBe(0);

    // What ocf-tester did reached udrbd: alpha was Primary (twice) and is down again; beta kept running.
    const log = c.logText('alpha');
    expect(log.match(/role\( Secondary -> Primary \)/g)?.length ?? 0).toBeGreaterThanOrEqual(3);
    expect(await c.query('alpha', 'cstate')).toBe('Unconfigured');
    expect(await c.query('beta', 'role')).toBe('Secondary/Unknown');
  }, 360_000);
});
