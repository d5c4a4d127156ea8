/**
 * Issue 16's acceptance in a real cluster: Corosync + Pacemaker on two nodes
 * in namespaces (test/helpers/pcmk-cluster: compute1 169.254.61.1, compute2
 * 169.254.61.2, netns upk1/upk2), udrbd with the user's resource (`device
 * /dev/drbd1 minor 1`, `meta-disk internal`, protocol C, port 7701, a 384 MiB
 * backing file per node), XFS made once after the initial sync, and the
 * user's crm configuration loaded by `crm configure` with only the agent's
 * name (ocf:udrbd:drbd) and the addresses changed: the ms set, the role
 * monitors, Filesystem on /dev/drbd1, IPaddr2 and the real broker
 * (ocf:rabbitmq:rabbitmq-server) in g_rabbitmq, colocation with the Master,
 * order after promote. The tests run in sequence on one cluster: start,
 * planned switchover, hard failure + reboot, link loss. The resource has
 * `fencing resource-only` with udrbd's crm fence-peer / after-resync-target
 * handlers, as the README's recipe. Root; needs pacemaker,
 * corosync, crmsh, resource-agents, rabbitmq-server, xfsprogs, kmod (fails,
 * not skips, without them). UPK_DEBUG_KEEP=1 leaves the cluster running for
 * inspection (/var/tmp/upk-pcmk; the next run removes it first).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { PcmkCluster, type MonState } from '../helpers/pcmk-cluster.js';
import { waitUntil, type NetnsNode } from '../helpers/netns-node.js';
import { rabbitmqResourceFile, rabbitmqCrmConfig, prepareRabbitmqLogDir } from '../helpers/rabbitmq-crm.js';

const BASE = '/var/tmp/upk-pcmk';
const RES = 'rabbitmq';
const MNT = '/var/lib/rabbitmq';
const DATA_DIR = `${MNT}/upk-data`;
const DISK = '/srv/udrbd/rabbitmq.img';
const DISK_BYTES = 384 * 1024 * 1024;
/** A full initial sync of 384 MiB on a loaded 2-core machine. */
const SYNC_TIMEOUT_MS = 180_000;
/** Promote, mount, address and broker start (the broker alone takes 10–15 s here). */
const GROUP_TIMEOUT_MS = 180_000;

const RESOURCE_FILE = rabbitmqResourceFile(DISK, [['compute1', '169.254.61.1'], ['compute2', '169.254.61.2']], { fencing: true });
/** The user's block; only the agent's name and the addresses differ. */
const CRM_CONFIG = rabbitmqCrmConfig('169.254.61.10');

/** What udrbd's fence-peer handler places (drbd-fence-by-handler-<res>-<ms id>). */
const FENCE_CONSTRAINT = 'drbd-fence-by-handler-rabbitmq-ms_drbd_rabbitmq';

let cluster: PcmkCluster | null = null;

function c(): PcmkCluster {
  if (cluster === null) throw new Error('cluster not started');
  return cluster;
}

async function adm(n: NetnsNode, args: string[], timeoutMs = 90_000): Promise<string> {
  return (await n.execOk('udrbdadm', args, { timeoutMs })).trim();
}

function udrbdLog(n: NetnsNode): string {
  try {
    return fs.readFileSync(path.join(n.dir, 'log', 'udrbd', `${RES}.${n.name}.log`), 'utf8');
  } catch {
    return '';
  }
}

function promotedOf(s: MonState): string[] {
  return s.resources.filter((r) => r.id === 'p_drbd_rabbitmq' && r.role === 'Promoted' && r.node !== null).map((r) => r.node!);
}

function unpromotedOf(s: MonState): string[] {
  return s.resources.filter((r) => r.id === 'p_drbd_rabbitmq' && r.role === 'Unpromoted' && r.node !== null).map((r) => r.node!);
}

/** Node where every member of g_rabbitmq runs (Started), or null. */
function groupNode(s: MonState): string | null {
  const members = ['p_fs_rabbitmq', 'p_ip_rabbitmq', 'p_rabbitmq'].map((id) => s.resources.find((r) => r.id === id));
  const nodes = new Set(members.map((m) => (m !== undefined && m.role === 'Started' && !m.failed ? m.node : null)));
  if (nodes.size !== 1) return null;
  const [only] = [...nodes];
  return only ?? null;
}

/** Waits until `master` is the only Promoted instance and the whole group runs there. */
async function waitGroupOn(master: string, timeoutMs: number, expectSlave: string | null): Promise<MonState> {
  return c().waitMon(
    `p_drbd_rabbitmq Promoted on ${master} only, g_rabbitmq started there${expectSlave === null ? '' : `, Unpromoted on ${expectSlave}`}`,
    (s) => {
      const p = promotedOf(s);
      return p.length === 1 && p[0] === master && groupNode(s) === master && (expectSlave === null || unpromotedOf(s).includes(expectSlave));
    },
    timeoutMs,
  );
}

/** The mount of MNT inside node `n` from /proc/self/mountinfo: fstype and device number, or null. */
async function mountOf(n: NetnsNode, dir: string): Promise<{ fstype: string; majMin: string; source: string } | null> {
  const text = await n.execOk('cat', ['/proc/self/mountinfo']);
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (f[4] === dir && sep > 0) return { majMin: f[2] ?? '', fstype: f[sep + 1] ?? '', source: f[sep + 2] ?? '' };
  }
  return null;
}

/** Writes `count` random files of `sizeBytes` under DATA_DIR on `n`, each fsynced, and returns name → sha256. */
async function writeFiles(n: NetnsNode, prefix: string, count: number, sizeBytes: number): Promise<Map<string, string>> {
  const script = `mkdir -p ${DATA_DIR} && cd ${DATA_DIR} && i=0 && while [ "$i" -lt ${count} ]; do head -c ${sizeBytes} /dev/urandom > ${prefix}$i && sync ${prefix}$i || exit 1; i=$((i+1)); done && sync -f . && sha256sum ${prefix}*`;
  return parseSums(await n.execOk('sh', ['-c', script], { timeoutMs: 120_000 }));
}

async function fenced(): Promise<boolean> {
  return (await c().constraintsXml()).includes(`id="${FENCE_CONSTRAINT}"`);
}

/** The after-resync-target handler removed the constraint once both disks were UpToDate. */
async function waitUnfenced(timeoutMs = SYNC_TIMEOUT_MS): Promise<void> {
  await waitUntil(`${FENCE_CONSTRAINT} removed`, async () => !(await fenced()), timeoutMs, 500);
}

async function sums(n: NetnsNode, names: Iterable<string>): Promise<Map<string, string>> {
  const r = await n.exec('sha256sum', [...names], { timeoutMs: 120_000, env: {} });
  return parseSums(r.stdout);
}

function parseSums(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const hit = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (hit) m.set(path.basename(hit[2]!), hit[1]!);
  }
  return m;
}

async function sumsIn(n: NetnsNode, names: Iterable<string>): Promise<Map<string, string>> {
  return sums(n, [...names].map((x) => `${DATA_DIR}/${x}`));
}

/** Initial setup by hand, as the user did before Pacemaker: meta-data, first sync, mkfs.xfs, the broker's cookie. */
async function initialiseVolume(): Promise<void> {
  const [a, b] = c().nodes;
  for (const n of [a, b]) {
    await n.execOk('sh', ['-c', `mkdir -p /srv/udrbd && truncate -s ${DISK_BYTES} ${DISK}`]);
    await adm(n, ['create-md', '--force', RES]);
  }
  await adm(a, ['up', RES]);
  await adm(b, ['up', RES]);
  await waitUntil('compute1 Connected', async () => (await adm(a, ['cstate', RES])) === 'Connected', 60_000);
  await adm(a, ['primary', '--force', RES]);
  await waitUntil('initial sync done (UpToDate/UpToDate)', async () => (await adm(a, ['dstate', RES])) === 'UpToDate/UpToDate', SYNC_TIMEOUT_MS, 500);
  await a.execOk('mkfs.xfs', ['-q', '/dev/drbd1'], { timeoutMs: 120_000 });
  // The broker's home is the mount point: root of a fresh XFS is root-owned; the cookie is written (and synced) once here.
  const cookie = 'UPKCLUSTERTESTCOOKIE';
  await a.execOk('sh', ['-c', `mount /dev/drbd1 ${MNT} && printf %s ${cookie} > ${MNT}/.erlang.cookie && chmod 400 ${MNT}/.erlang.cookie && chown -R rabbitmq:rabbitmq ${MNT} && sync -f ${MNT} && umount ${MNT}`]);
  await adm(a, ['secondary', RES]);
  await adm(a, ['down', RES]);
  await adm(b, ['down', RES]);
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the Pacemaker cluster tests need root');
  for (const f of ['/usr/lib/ocf/resource.d/rabbitmq/rabbitmq-server', '/usr/sbin/rabbitmq-server', '/usr/lib/ocf/resource.d/heartbeat/IPaddr2']) {
    if (!fs.existsSync(f)) throw new Error(`cluster test prerequisite missing: ${f} (run scripts/setup.sh)`);
  }
  cluster = new PcmkCluster({
    prefix: 'upk',
    subnet: '169.254.61',
    names: ['compute1', 'compute2'],
    baseDir: BASE,
    drbdFiles: { [`${RES}.res`]: RESOURCE_FILE },
    prepare: (n) => prepareRabbitmqLogDir(n.dir),
  });
  await c().start();
  await initialiseVolume();
  await c().crmConfigure(CRM_CONFIG);
}, 600_000);

afterAll(async () => {
  const cl = cluster;
  cluster = null;
  if (cl === null || process.env.UPK_DEBUG_KEEP === '1') return;
  const problems = await cl.destroy();
  fs.rmSync(BASE, { recursive: true, force: true });
  if (problems.length > 0) throw new Error(`teardown problems: ${problems.join('; ')}`);
}, 300_000);

/** Files written on the Master before each step, name → sha256. */
const written = new Map<string, string>();

describe('the user\'s RabbitMQ-on-DRBD crm configuration with ocf:udrbd:drbd in a real two-node cluster', () => {
  it('promotes exactly one node; Filesystem mounts XFS on /dev/drbd1 there; crm_mon shows Promoted/Unpromoted', async () => {
    const s = await c().waitMon('one Promoted, one Unpromoted, g_rabbitmq started', (x) => promotedOf(x).length === 1 && unpromotedOf(x).length === 1 && groupNode(x) !== null, GROUP_TIMEOUT_MS);
    const master = promotedOf(s)[0]!;
    expect(groupNode(s)).toBe(master);
    expect(unpromotedOf(s)).toEqual([c().pair.other(c().node(master)).name]);
    expect(s.xml).toMatch(/<clone id="ms_drbd_rabbitmq" multi_state="true"/);
    // The CIB keeps the user's vocabulary (ms, Master role).
    const shown = await c().nodes[0].execOk('crm', ['configure', 'show', 'ms_drbd_rabbitmq', 'c_rabbitmq_on_drbd']);
    expect(shown).toContain('ms ms_drbd_rabbitmq p_drbd_rabbitmq');
    expect(shown).toContain('ms_drbd_rabbitmq:Master');
    const m = c().node(master);
    const mount = await mountOf(m, MNT);
    expect(mount?.fstype).toBe('xfs');
    const dev = (await m.execOk('stat', ['-L', '-c', '%t:%T', '/dev/drbd1'])).trim().split(':').map((h) => parseInt(h, 16)).join(':');
    expect(mount?.majMin).toBe(dev);
    expect(await adm(m, ['role', RES])).toBe('Primary/Secondary');
    expect(await adm(m, ['dstate', RES])).toBe('UpToDate/UpToDate');
    expect(await mountOf(c().pair.other(m), MNT)).toBeNull();
    for (const [k, v] of await writeFiles(m, 'before-standby-', 8, 1024 * 1024)) written.set(k, v);
  }, GROUP_TIMEOUT_MS + 60_000);

  it('planned switchover: `crm node standby` of the Master promotes the other, same data, resync from the bitmap only', async () => {
    const s0 = await c().mon();
    const oldMaster = c().node(promotedOf(s0)[0]!);
    const newMaster = c().pair.other(oldMaster);
    const logBefore = udrbdLog(newMaster).length;
    const oldLogBefore = udrbdLog(oldMaster).length;
    await newMaster.execOk('crm', ['node', 'standby', oldMaster.name]);
    await waitGroupOn(newMaster.name, GROUP_TIMEOUT_MS, null);
    expect(await sumsIn(newMaster, written.keys())).toEqual(written);
    expect(await mountOf(oldMaster, MNT)).toBeNull();
    for (const [k, v] of await writeFiles(newMaster, 'after-standby-', 4, 1024 * 1024)) written.set(k, v);

    await newMaster.execOk('crm', ['node', 'online', oldMaster.name]);
    await waitGroupOn(newMaster.name, GROUP_TIMEOUT_MS, oldMaster.name);
    await waitUntil('UpToDate/UpToDate after the rejoin', async () => (await adm(newMaster, ['dstate', RES])) === 'UpToDate/UpToDate', SYNC_TIMEOUT_MS, 500);
    const log = udrbdLog(newMaster).slice(logBefore);
    const began = [...log.matchAll(/Began resync as SyncSource \(will sync (\d+) KB/g)].map((x) => Number(x[1]));
    expect(began.length).toBeGreaterThanOrEqual(1);
    // Only what changed while the peer was away (a few MiB of files and XFS log), never the device (384 MiB).
    for (const kb of began) expect(kb).toBeLessThan((DISK_BYTES / 1024) / 8);
    expect(log + udrbdLog(oldMaster).slice(oldLogBefore)).not.toMatch(/full sync/);
    await waitUnfenced();
    console.log(`switchover: rejoin resync ${began.join(', ')} KB of ${DISK_BYTES / 1024} KB`);
  }, 2 * GROUP_TIMEOUT_MS + SYNC_TIMEOUT_MS);

  it('hard failure: the Master\'s namespace init killed; the other is promoted, data intact; the killed node reboots, rejoins as Slave, UpToDate/UpToDate', async () => {
    const s0 = await c().mon();
    const victim = c().node(promotedOf(s0)[0]!);
    const survivor = c().pair.other(victim);
    for (const [k, v] of await writeFiles(victim, 'before-kill-', 8, 512 * 1024)) written.set(k, v);
    const t0 = Date.now();
    const problems = await c().crash(victim);
    expect(problems).toEqual([]);
    await c().waitMon(`${survivor.name} Promoted`, (s) => promotedOf(s).length === 1 && promotedOf(s)[0] === survivor.name, GROUP_TIMEOUT_MS, survivor);
    const promotedMs = Date.now() - t0;
    await waitGroupOn(survivor.name, GROUP_TIMEOUT_MS, null);
    const groupMs = Date.now() - t0;
    console.log(`hard failure: ${survivor.name} Promoted ${(promotedMs / 1000).toFixed(1)} s after the kill, g_rabbitmq (XFS mounted, broker up) after ${(groupMs / 1000).toFixed(1)} s`);
    expect((await mountOf(survivor, MNT))?.fstype).toBe('xfs');
    // The survivor did not know its peer outdated: fence-peer ran before the promotion and fenced the dead node.
    expect(await fenced()).toBe(true);
    expect(await sumsIn(survivor, written.keys())).toEqual(written);

    const t1 = Date.now();
    const survivorLogBefore = udrbdLog(survivor).length;
    await c().reboot(victim);
    await waitGroupOn(survivor.name, GROUP_TIMEOUT_MS, victim.name);
    await waitUntil('UpToDate/UpToDate after the reboot', async () => (await adm(survivor, ['dstate', RES])) === 'UpToDate/UpToDate', SYNC_TIMEOUT_MS, 500);
    expect(await adm(victim, ['dstate', RES])).toBe('UpToDate/UpToDate');
    expect(await adm(victim, ['role', RES])).toBe('Secondary/Primary');
    // What the survivor wrote alone (XFS log recovery, the broker) went back by resync, from the bitmap.
    const resynced = [...udrbdLog(survivor).slice(survivorLogBefore).matchAll(/Began resync as SyncSource \(will sync (\d+) KB/g)].map((x) => Number(x[1]));
    expect(resynced.length).toBeGreaterThanOrEqual(1);
    await waitUnfenced();
    expect(udrbdLog(victim)).toMatch(/helper command: .*after-resync-target/);
    console.log(`reboot: ${victim.name} back as Slave and UpToDate/UpToDate ${((Date.now() - t1) / 1000).toFixed(1)} s after boot`);
  }, 3 * GROUP_TIMEOUT_MS + SYNC_TIMEOUT_MS);

  it('link loss with fencing resource-only: the constraint appears, the outdated peer cannot be promoted, it is removed after the resync', async () => {
    const s0 = await c().mon();
    const master = c().node(promotedOf(s0)[0]!);
    const slave = c().pair.other(master);
    expect(await fenced()).toBe(false);
    // Only the replication link (port 7701) goes, inside the Slave's namespace: Corosync keeps one membership.
    for (const [chain, dir] of [['INPUT', '--dport'], ['INPUT', '--sport'], ['OUTPUT', '--dport'], ['OUTPUT', '--sport']] as const) {
      await slave.execOk('iptables', ['-A', chain, '-p', 'tcp', dir, '7701', '-j', 'DROP']);
    }
    const t0 = Date.now();
    await waitUntil(`${FENCE_CONSTRAINT} placed`, fenced, 120_000, 500);
    console.log(`link loss: constraint placed ${((Date.now() - t0) / 1000).toFixed(1)} s after the cut`);
    await waitUntil('the Master sees its peer Outdated', async () => (await adm(master, ['dstate', RES])) === 'UpToDate/Outdated', 60_000, 500);
    const constraint = await c().constraintsXml();
    const location = new RegExp(`<rsc_location [^>]*id="${FENCE_CONSTRAINT}"[^>]*>`).exec(constraint)?.[0] ?? '';
    expect(location).toContain('rsc="ms_drbd_rabbitmq"');
    expect(constraint).toMatch(new RegExp(`role="Master"[^>]*score="-INFINITY"|score="-INFINITY"[^>]*role="Master"`));
    expect(constraint).toMatch(new RegExp(`attribute="#uname" operation="ne" value="${master.name}"`));
    // Pacemaker cannot promote the outdated peer: its promotion score is -INFINITY ...
    const sim = await master.execOk('crm_simulate', ['-Ls']);
    expect(sim).toMatch(new RegExp(`p_drbd_rabbitmq:\\d promotion score on ${slave.name}: -INFINITY`));
    // ... and udrbd itself refuses it there: its fence-peer cannot outdate a Primary it cannot reach.
    const refused = await slave.exec('udrbdadm', ['primary', RES], { timeoutMs: 200_000 });
    expect(refused.stderr).toContain('(-7) Refusing to be Primary while peer is not outdated');
    expect(refused.exitCode).toBe(11);
    expect(await adm(slave, ['role', RES])).toBe('Secondary/Unknown');
    for (const [k, v] of await writeFiles(master, 'while-cut-', 4, 1024 * 1024)) written.set(k, v);

    await slave.execOk('iptables', ['-F']);
    const t1 = Date.now();
    await waitUntil('UpToDate/UpToDate after the link healed', async () => (await adm(master, ['dstate', RES])) === 'UpToDate/UpToDate', SYNC_TIMEOUT_MS, 500);
    await waitUnfenced();
    console.log(`link loss: healed, resynced and unfenced ${((Date.now() - t1) / 1000).toFixed(1)} s after the flush`);
    expect(udrbdLog(slave)).toMatch(/helper command: .*after-resync-target/);
    const s1 = await c().mon();
    expect(promotedOf(s1)).toEqual([master.name]);
    expect(unpromotedOf(s1)).toEqual([slave.name]);
    expect(await sumsIn(master, written.keys())).toEqual(written);
  }, 2 * SYNC_TIMEOUT_MS + 400_000);
});
