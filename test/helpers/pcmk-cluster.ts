/**
 * test/helpers/pcmk-cluster — a real two-node Corosync + Pacemaker cluster on
 * this machine, on NetnsPair nodes (test/helpers/netns-node): per node its own
 * /etc/corosync (knet over the veth, two_node), /var/lib/pacemaker with a
 * pre-seeded CIB (stonith-enabled=false, no-quorum-policy=ignore, dc-deadtime
 * 2s), /var/lib/corosync, /etc/drbd.d (udrbd's resource files), /srv (backing
 * files), and this checkout installed by scripts/install.sh into a staging
 * tree seen by every node as /usr/local/sbin/udrbdadm, /usr/local/lib/udrbd/
 * (the crm fence handlers) and /usr/lib/ocf/resource.d/udrbd/drbd (the
 * host's files of those directories copied beside them). corosync and pacemakerd run in the background without systemd;
 * `waitOnline()` waits until both nodes are members. Helpers read the cluster
 * by machine (`crm_mon --output-as=xml`, cibadmin), never by screen.
 * Knows nothing of the test's crm configuration.
 */
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { NetnsPair, waitUntil, requireNamespaceHost, type NetnsNode, type NetnsPairOptions } from './netns-node.js';
import { ROOT } from './cluster.js';

/** Both nodes join within seconds (measured 4.6–6.2 s); a loaded CI machine gets room. */
export const ONLINE_TIMEOUT_MS = 90_000;
/** pacemakerd's graceful stop stops every resource first; bounded, then the node is killed anyway. */
const STACK_STOP_TIMEOUT_MS = 90_000;

/** Install targets bound over the nodes' own: the udrbdadm wrapper, the crm handlers (/usr/local/lib/udrbd). */
const STAGED_DIRS = ['usr/local/sbin', 'usr/local/lib'];

const CIB_SEED = `<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="cib-bootstrap-options-stonith-enabled" name="stonith-enabled" value="false"/>
        <nvpair id="cib-bootstrap-options-no-quorum-policy" name="no-quorum-policy" value="ignore"/>
        <nvpair id="cib-bootstrap-options-dc-deadtime" name="dc-deadtime" value="2s"/>
      </cluster_property_set>
    </crm_config>
    <nodes/>
    <resources/>
    <constraints/>
  </configuration>
  <status/>
</cib>
`;

export function requirePacemakerHost(): void {
  requireNamespaceHost();
  const tools: [string, string][] = [
    ['/usr/sbin/corosync', 'corosync'],
    ['/usr/sbin/pacemakerd', 'pacemaker'],
    ['/usr/sbin/crm', 'crmsh'],
    ['/usr/sbin/crm_mon', 'pacemaker-cli-utils'],
    ['/usr/lib/ocf/resource.d/heartbeat/Filesystem', 'resource-agents'],
    ['/usr/sbin/modprobe', 'kmod (ocf:heartbeat:Filesystem needs modprobe)'],
    ['/usr/sbin/iptables', 'iptables'],
    ['/usr/sbin/mkfs.xfs', 'xfsprogs'],
  ];
  const missing = tools.filter(([file]) => !fs.existsSync(file)).map(([file, pkg]) => `${file} (${pkg})`);
  if (missing.length > 0) throw new Error(`cluster test prerequisites missing: ${missing.join(', ')}: run scripts/setup.sh`);
  if (!fs.existsSync(path.join(ROOT, 'dist', 'cli', 'udrbdadm.js'))) throw new Error('dist/ is not built: run `npm run build`');
}

export interface PcmkClusterOptions {
  prefix: string;
  subnet: string;
  names: readonly [string, string];
  baseDir: string;
  /** corosync totem token, ms (1000: a dead node is noticed in about a second). */
  tokenMs?: number;
  /** Files for each node's /etc/drbd.d (name → text), e.g. { 'rabbitmq.res': '...' }. */
  drbdFiles?: Record<string, string>;
  /** Extra binds (e.g. a RabbitMQ directory) per node. */
  binds?: NetnsPairOptions['binds'];
  /** Extra per-node preparation after the cluster's own. */
  prepare?: NetnsPairOptions['prepare'];
  extraHosts?: string[];
}

export interface ResourceInstance {
  /** Primitive id, e.g. p_drbd_rabbitmq. */
  readonly id: string;
  /** Pacemaker 2.1 role: Started, Promoted, Unpromoted, Stopped. */
  readonly role: string;
  readonly failed: boolean;
  /** Node name, or null when not running anywhere. */
  readonly node: string | null;
}

export interface MonState {
  readonly online: string[];
  readonly standby: string[];
  readonly resources: ResourceInstance[];
  readonly xml: string;
}

/** Parses `crm_mon --output-as=xml`: online/standby nodes and every resource instance with its node. */
export function parseCrmMon(xml: string): MonState {
  const online: string[] = [];
  const standby: string[] = [];
  for (const m of xml.matchAll(/<node name="([^"]+)"[^>]*\bonline="(true|false)"[^>]*\bstandby="(true|false)"/g)) {
    if (m[2] === 'true') online.push(m[1]!);
    if (m[3] === 'true') standby.push(m[1]!);
  }
  const resources: ResourceInstance[] = [];
  for (const m of xml.matchAll(/<resource id="([^"]+)"[^>]*\brole="([^"]+)"[^>]*\bfailed="(true|false)"[^>]*?(\/>|>([\s\S]*?)<\/resource>)/g)) {
    const inner = m[5] ?? '';
    const node = /<node name="([^"]+)"/.exec(inner)?.[1] ?? null;
    resources.push({ id: m[1]!, role: m[2]!, failed: m[3] === 'true', node });
  }
  return { online, standby, resources, xml };
}

export class PcmkCluster {
  readonly pair: NetnsPair;
  readonly installDir: string;
  readonly ocfDir: string;

  constructor(readonly options: PcmkClusterOptions) {
    requirePacemakerHost();
    this.installDir = path.join(options.baseDir, 'install');
    this.ocfDir = path.join(options.baseDir, 'ocf-resource.d');
    this.pair = new NetnsPair({
      prefix: options.prefix,
      subnet: options.subnet,
      names: options.names,
      baseDir: options.baseDir,
      extraHosts: options.extraHosts,
      binds: (n) => [
        { hostPath: path.join(n.dir, 'etc-corosync'), nodePath: '/etc/corosync' },
        { hostPath: path.join(n.dir, 'lib-corosync'), nodePath: '/var/lib/corosync' },
        { hostPath: path.join(n.dir, 'lib-pacemaker'), nodePath: '/var/lib/pacemaker' },
        { hostPath: path.join(n.dir, 'etc-drbd.d'), nodePath: '/etc/drbd.d' },
        { hostPath: path.join(n.dir, 'srv'), nodePath: '/srv' },
        ...STAGED_DIRS.map((d) => ({ hostPath: path.join(this.installDir, d), nodePath: `/${d}` })),
        { hostPath: this.ocfDir, nodePath: '/usr/lib/ocf/resource.d' },
        ...(options.binds?.(n) ?? []),
      ],
      prepare: (n) => {
        this.prepareNode(n);
        options.prepare?.(n);
      },
    });
  }

  get nodes(): readonly [NetnsNode, NetnsNode] {
    return this.pair.nodes;
  }

  node(name: string): NetnsNode {
    return this.pair.node(name);
  }

  /** Network, files, the install tree, both nodes booted, corosync + pacemakerd running, both online. */
  async start(): Promise<void> {
    await this.pair.create();
    await this.install();
    await this.pair.boot();
    for (const n of this.nodes) await this.startStack(n);
    await this.waitOnline(this.options.names);
  }

  /** scripts/install.sh into the staging tree; the host's OCF agents copied beside udrbd's. */
  private async install(): Promise<void> {
    await execa(path.join(ROOT, 'scripts', 'install.sh'), [], { env: { ...process.env, DESTDIR: this.installDir }, timeout: 60_000 });
    fs.chmodSync(this.installDir, 0o755);
    // The staged dirs cover the host's: keep what the host has there beside what the install added.
    for (const d of STAGED_DIRS) {
      fs.mkdirSync(path.join(this.installDir, d), { recursive: true });
      if (fs.existsSync(`/${d}`)) fs.cpSync(`/${d}`, path.join(this.installDir, d), { recursive: true, verbatimSymlinks: true, force: false });
    }
    fs.cpSync('/usr/lib/ocf/resource.d', this.ocfDir, { recursive: true, verbatimSymlinks: true });
    fs.cpSync(path.join(this.installDir, 'usr', 'lib', 'ocf', 'resource.d', 'udrbd'), path.join(this.ocfDir, 'udrbd'), { recursive: true });
  }

  private prepareNode(n: NetnsNode): void {
    const d = n.dir;
    for (const sub of ['etc-corosync', 'lib-corosync', 'etc-drbd.d', 'srv', 'log/corosync', 'log/pacemaker', 'log/udrbd', 'log/crmsh']) fs.mkdirSync(path.join(d, sub), { recursive: true });
    for (const sub of ['cib', 'pengine', 'blackbox', 'cores']) fs.mkdirSync(path.join(d, 'lib-pacemaker', sub), { recursive: true, mode: 0o750 });
    fs.writeFileSync(path.join(d, 'etc-corosync', 'corosync.conf'), this.corosyncConf());
    const cib = path.join(d, 'lib-pacemaker', 'cib', 'cib.xml');
    fs.writeFileSync(cib, CIB_SEED, { mode: 0o600 });
    const { uid, gid } = hacluster();
    for (const p of [path.join(d, 'lib-pacemaker'), ...['cib', 'pengine', 'blackbox', 'cores'].map((s) => path.join(d, 'lib-pacemaker', s)), cib, path.join(d, 'log', 'pacemaker')]) fs.chownSync(p, uid, gid);
    fs.chmodSync(path.join(d, 'log', 'pacemaker'), 0o770);
    fs.writeFileSync(path.join(d, 'etc-drbd.d', 'global_common.conf'), 'global {\n\tusage-count no;\n}\ncommon {\n}\n');
    for (const [name, text] of Object.entries(this.options.drbdFiles ?? {})) fs.writeFileSync(path.join(d, 'etc-drbd.d', name), text);
  }

  corosyncConf(): string {
    const nodes = this.nodes.map((n) => `    node {\n        name: ${n.name}\n        nodeid: ${n.index}\n        ring0_addr: ${n.address}\n    }\n`).join('');
    return [
      'totem {',
      '    version: 2',
      `    cluster_name: ${this.options.prefix}`,
      '    transport: knet',
      '    crypto_cipher: none',
      '    crypto_hash: none',
      `    token: ${this.options.tokenMs ?? 1000}`,
      '}',
      'logging {',
      '    to_stderr: no',
      '    to_syslog: no',
      '    to_logfile: yes',
      '    logfile: /var/log/corosync/corosync.log',
      '    timestamp: on',
      '}',
      'quorum {',
      '    provider: corosync_votequorum',
      '    two_node: 1',
      '}',
      'nodelist {',
      `${nodes}}`,
      '',
    ].join('\n');
  }

  /** corosync, then pacemakerd, in the background inside node `n` (after a boot or a reboot). */
  async startStack(n: NetnsNode): Promise<void> {
    const { uid, gid } = hacluster();
    await n.execOk('sh', ['-c', `mkdir -p /run/crm /run/resource-agents && chown ${uid}:${gid} /run/crm && chmod 750 /run/crm && chmod 1755 /run/resource-agents`]);
    await n.spawnDaemon('corosync', ['-f'], '/var/log/corosync/corosync.out');
    await waitUntil(`corosync on ${n.name} answers`, async () => (await n.exec('corosync-cfgtool', ['-s'])).exitCode === 0, 30_000);
    await n.spawnDaemon('/usr/sbin/pacemakerd', [], '/var/log/pacemaker/pacemakerd.out', { PCMK_logfile: '/var/log/pacemaker/pacemaker.log' });
  }

  /** Stops pacemakerd (which stops the node's resources first) and then corosync; bounded. */
  async stopStack(n: NetnsNode): Promise<void> {
    for (const [name, timeoutMs] of [['pacemakerd', STACK_STOP_TIMEOUT_MS], ['corosync', 30_000]] as const) {
      const pid = (await n.exec('pidof', ['-s', name])).stdout.trim();
      if (pid === '') continue;
      await n.exec('kill', ['-TERM', pid]);
      await waitUntil(`${name} on ${n.name} stopped`, async () => (await n.exec('kill', ['-0', pid])).exitCode !== 0, timeoutMs, 250);
    }
  }

  async mon(on: NetnsNode = this.nodes[0]): Promise<MonState> {
    const r = await on.exec('crm_mon', ['-1', '--output-as=xml']);
    if (r.exitCode !== 0) throw new Error(`crm_mon on ${on.name} exited ${r.exitCode}: ${r.stderr}`);
    return parseCrmMon(r.stdout);
  }

  /** Waits until `predicate(crm_mon state)` holds, as seen from node `on`. */
  async waitMon(what: string, predicate: (s: MonState) => boolean, timeoutMs: number, on?: NetnsNode): Promise<MonState> {
    let last: MonState | null = null;
    try {
      await waitUntil(
        what,
        async () => {
          try {
            last = await this.mon(on ?? this.runningNode());
          } catch {
            return false;
          }
          return predicate(last);
        },
        timeoutMs,
        250,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\nlast crm_mon:\n${last === null ? '(none)' : (last as MonState).xml}`);
    }
    if (last === null) throw new Error(`no crm_mon state for ${what}`);
    return last;
  }

  async waitOnline(names: readonly string[], on?: NetnsNode): Promise<void> {
    await this.waitMon(`nodes ${names.join(', ')} online`, (s) => names.every((x) => s.online.includes(x)), ONLINE_TIMEOUT_MS, on);
  }

  /** A node that is running (for cluster queries). */
  runningNode(): NetnsNode {
    const n = this.nodes.find((x) => x.running);
    if (n === undefined) throw new Error('no cluster node is running');
    return n;
  }

  /** `crm configure` with `text` on stdin (crmsh), on node `on`. */
  async crmConfigure(text: string, on: NetnsNode = this.nodes[0]): Promise<string> {
    const r = await on.exec('crm', ['configure'], { input: text, timeoutMs: 120_000 });
    if (r.exitCode !== 0) throw new Error(`crm configure on ${on.name} exited ${r.exitCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r.stdout + r.stderr;
  }

  /** The constraints section of the CIB (cibadmin). */
  async constraintsXml(on?: NetnsNode): Promise<string> {
    return (on ?? this.runningNode()).execOk('cibadmin', ['--query', '--scope', 'constraints']);
  }

  /** Power cut of node `n` (see NetnsNode.kill). */
  async crash(n: NetnsNode): Promise<string[]> {
    return n.kill();
  }

  /** Boots node `n` again and starts its stack (it rejoins with the CIB it had on disk). */
  async reboot(n: NetnsNode): Promise<void> {
    await n.boot();
    await this.startStack(n);
  }

  /**
   * Graceful stop of both stacks (resources stopped by Pacemaker), then
   * everything killed and removed whatever happened; returns problems.
   */
  async destroy(): Promise<string[]> {
    const problems: string[] = [];
    await Promise.all(
      this.nodes.map(async (n) => {
        if (!n.running) return;
        try {
          await this.stopStack(n);
        } catch (err) {
          problems.push(`graceful stop of ${n.name}: ${(err as Error).message}`);
        }
      }),
    );
    problems.push(...(await this.pair.destroy()));
    return problems;
  }
}

function hacluster(): { uid: number; gid: number } {
  const passwd = fs.readFileSync('/etc/passwd', 'utf8');
  const m = /^hacluster:[^:]*:(\d+):(\d+):/m.exec(passwd);
  if (m === null) throw new Error('user hacluster is missing (apt-get install pacemaker)');
  return { uid: Number(m[1]), gid: Number(m[2]) };
}
