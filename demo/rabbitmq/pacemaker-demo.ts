/**
 * demo/rabbitmq/pacemaker-demo — udrbd's headline demo (issue 17), run by
 * `npm run demo:rabbitmq` as root after `bash scripts/setup.sh`: a real
 * two-node Corosync + Pacemaker cluster on this machine (namespace nodes
 * compute1 169.254.62.1 / compute2 169.254.62.2, netns urqp1/urqp2, from
 * test/helpers/pcmk-cluster), the user's udrbd resource (/dev/drbd1 minor 1,
 * meta-disk internal, protocol C, port 7701) and the user's crm configuration
 * with ocf:udrbd:drbd, XFS at /var/lib/rabbitmq, rabbitmq-server started by
 * ocf:rabbitmq:rabbitmq-server. A publisher sends persistent, confirmed
 * messages to a quorum and a classic queue; mid-stream the active node is
 * powered off (SIGKILL to its namespace's init: no clean unmount); Pacemaker
 * promotes the other node, XFS replays its log, the broker starts there; the
 * consumer drains both queues and the demo prints, per queue, confirmed /
 * present / lost / duplicated, and the failover time, with the status table at
 * each step. Everything is removed at the end, also on failure or Ctrl-C.
 * Bounded: each wait has its limit, the whole demo DEMO_TIMEOUT_MS.
 * UDRBD_DEMO_KEEP=1 keeps /var/tmp/urq-demo (node logs, disks) after the
 * nodes are powered off.
 */
import fs from 'node:fs';
import path from 'node:path';
import { PcmkCluster, type MonState } from '../../test/helpers/pcmk-cluster.js';
import { waitUntil, type NetnsNode } from '../../test/helpers/netns-node.js';
import { Publisher, requireRabbitHost, declareQueues, startPublisher, drainAndCheck, DEMO_DIR, type CheckResult } from '../../test/helpers/rabbitmq-pair.js';
import { rabbitmqResourceFile, rabbitmqCrmConfig, prepareRabbitmqLogDir, RABBITMQ_RESOURCE, RABBITMQ_MOUNT } from '../../test/helpers/rabbitmq-crm.js';

const BASE = '/var/tmp/urq-demo';
const PREFIX = 'urqp';
const SUBNET = '169.254.62';
const NAMES = ['compute1', 'compute2'] as const;
const SERVICE_IP = `${SUBNET}.10`;
const DISK = '/srv/udrbd/rabbitmq.img';
/** mkfs.xfs needs >= 300 MiB. */
const DISK_BYTES = 384 * 1024 * 1024;
const DEMO_TIMEOUT_MS = 600_000;
/** Promote, mount, address and broker start (the broker alone takes 10-15 s here). */
const GROUP_TIMEOUT_MS = 180_000;
const REJOIN_TIMEOUT_MS = 180_000;
/** Messages confirmed (both queues together) before the power cut. */
const CONFIRMED_BEFORE_CUT = 300;
/** Ra writes its registry lazily: settle after declaring the queues, then sync. */
const QUEUE_SETTLE_MS = 5_000;

const started = Date.now();
let cluster: PcmkCluster | null = null;
let publisher: Publisher | null = null;
let cleaningUp: Promise<void> | null = null;

function say(text: string): void {
  console.log(`\n\x1b[1m== ${text}\x1b[0m  (t=${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

function c(): PcmkCluster {
  if (cluster === null) throw new Error('the cluster is not running');
  return cluster;
}

async function adm(n: NetnsNode, args: string[]): Promise<string> {
  return (await n.execOk('udrbdadm', args, { timeoutMs: 90_000 })).trim();
}

function roleOf(s: MonState, id: string, node: string): string {
  const r = s.resources.find((x) => x.id === id && x.node === node);
  return r === undefined ? '-' : `${r.role}${r.failed ? ' (failed)' : ''}`;
}

/** One line per node: what Pacemaker says, what udrbd says, the mount, the broker. */
async function statusTable(): Promise<void> {
  let mon: MonState | null = null;
  try {
    mon = await c().mon(c().runningNode());
  } catch {
    mon = null;
  }
  const rows: string[][] = [['node', 'pacemaker', 'p_drbd', 'g_rabbitmq', 'udrbd role', 'cstate', 'dstate', 'xfs', 'broker']];
  for (const n of c().nodes) {
    if (!n.running) {
      rows.push([n.name, 'powered off', '', '', '', '', '', '', '']);
      continue;
    }
    const q = async (verb: string): Promise<string> => (await n.exec('udrbdadm', [verb, RABBITMQ_RESOURCE])).stdout.trim() || '-';
    const mounted = (await n.exec('grep', ['-q', ` ${RABBITMQ_MOUNT} `, '/proc/self/mountinfo'])).exitCode === 0;
    const broker = (await brokerPid(n)) !== '-';
    rows.push([
      n.name,
      mon === null ? '?' : mon.online.includes(n.name) ? 'online' : 'offline',
      mon === null ? '?' : roleOf(mon, 'p_drbd_rabbitmq', n.name),
      mon === null ? '?' : roleOf(mon, 'p_rabbitmq', n.name),
      await q('role'),
      await q('cstate'),
      await q('dstate'),
      mounted ? 'mounted' : '-',
      broker ? 'running' : '-',
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) console.log(`  ${r.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ')}`);
}

/** The running broker's pid inside node `n` (from ocf:rabbitmq:rabbitmq-server's pid file), or '-'. */
async function brokerPid(n: NetnsNode): Promise<string> {
  const r = await n.exec('sh', ['-c', 'p=$(cat /var/run/rabbitmq/pid 2>/dev/null) && kill -0 "$p" 2>/dev/null && echo "$p"']);
  return r.stdout.trim() || '-';
}

function promotedNode(s: MonState): string | null {
  const p = s.resources.filter((r) => r.id === 'p_drbd_rabbitmq' && r.role === 'Promoted' && r.node !== null);
  return p.length === 1 ? (p[0]?.node ?? null) : null;
}

/** The node where p_rabbitmq (the last of g_rabbitmq) is Started and not failed, or null. */
function brokerNode(s: MonState): string | null {
  const r = s.resources.find((x) => x.id === 'p_rabbitmq' && x.role === 'Started' && !x.failed && x.node !== null);
  return r?.node ?? null;
}

/** By hand, once, as the user did before Pacemaker: meta-data, both up, skip the initial sync of zeroes, XFS, the broker's cookie. */
async function initialiseVolume(): Promise<void> {
  const [a, b] = c().nodes;
  for (const n of [a, b]) {
    await n.execOk('sh', ['-c', `mkdir -p ${path.dirname(DISK)} && truncate -s ${DISK_BYTES} ${DISK}`]);
    await adm(n, ['create-md', '--force', RABBITMQ_RESOURCE]);
    await adm(n, ['up', RABBITMQ_RESOURCE]);
  }
  await waitUntil('compute1 Connected', async () => (await adm(a, ['cstate', RABBITMQ_RESOURCE])) === 'Connected', 60_000);
  // Both backing files are fresh zeroes: DRBD's way to skip the initial sync.
  await adm(a, ['new-current-uuid', '--clear-bitmap', RABBITMQ_RESOURCE]);
  await waitUntil('UpToDate/UpToDate', async () => (await adm(a, ['dstate', RABBITMQ_RESOURCE])) === 'UpToDate/UpToDate', 60_000);
  await adm(a, ['primary', RABBITMQ_RESOURCE]);
  await a.execOk('mkfs.xfs', ['-q', '/dev/drbd1'], { timeoutMs: 120_000 });
  await a.execOk('mount', ['/dev/drbd1', RABBITMQ_MOUNT]);
  await a.execOk(path.join(DEMO_DIR, 'broker.sh'), ['prepare'], { env: { RQ_DATA: RABBITMQ_MOUNT } });
  await a.execOk('umount', [RABBITMQ_MOUNT]);
  await adm(a, ['secondary', RABBITMQ_RESOURCE]);
  for (const n of [a, b]) await adm(n, ['down', RABBITMQ_RESOURCE]);
}

function printCheck(check: CheckResult): void {
  console.log(`  ${'queue'.padEnd(14)}${'confirmed'.padStart(10)}${'present'.padStart(9)}${'lost'.padStart(6)}${'duplicated'.padStart(11)}  in flight at the cut, also delivered`);
  for (const [queue, r] of Object.entries(check)) {
    console.log(`  ${queue.padEnd(14)}${String(r.confirmed).padStart(10)}${String(r.present).padStart(9)}${String(r.lost).padStart(6)}${String(r.duplicated).padStart(11)}  ${r.unconfirmed}`);
  }
}

async function cleanup(): Promise<void> {
  cleaningUp ??= (async () => {
    say('cleaning up: both nodes powered off, loop devices detached, namespaces removed');
    publisher?.kill();
    const cl = cluster;
    cluster = null;
    if (cl === null) return;
    const problems = await cl.pair.destroy();
    if (problems.length > 0) console.error(`cleanup problems: ${problems.join('; ')}`);
    else if (process.env.UDRBD_DEMO_KEEP === undefined) fs.rmSync(BASE, { recursive: true, force: true });
    else console.log(`  kept ${BASE} (logs, disks) for inspection: UDRBD_DEMO_KEEP is set`);
  })();
  return cleaningUp;
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error('run as root (namespaces, FUSE, loop devices, mounts)');
  requireRabbitHost();
  say(`two Pacemaker nodes in namespaces: ${NAMES[0]} ${SUBNET}.1, ${NAMES[1]} ${SUBNET}.2`);
  cluster = new PcmkCluster({
    prefix: PREFIX,
    subnet: SUBNET,
    names: NAMES,
    baseDir: BASE,
    drbdFiles: { [`${RABBITMQ_RESOURCE}.res`]: rabbitmqResourceFile(DISK, [[NAMES[0], `${SUBNET}.1`], [NAMES[1], `${SUBNET}.2`]]) },
    prepare: (n) => prepareRabbitmqLogDir(n.dir),
  });
  await c().start();
  say('udrbd resource "rabbitmq" by hand: create-md, up, new-current-uuid --clear-bitmap, mkfs.xfs, cookie');
  await initialiseVolume();
  say('crm configure: the user\'s ms / Filesystem / IPaddr2 / rabbitmq-server block with ocf:udrbd:drbd');
  await c().crmConfigure(rabbitmqCrmConfig(SERVICE_IP));
  const s0 = await c().waitMon('one node Promoted and g_rabbitmq started there', (s) => promotedNode(s) !== null && brokerNode(s) === promotedNode(s), GROUP_TIMEOUT_MS);
  const active = c().node(brokerNode(s0) ?? '');
  const survivor = c().pair.other(active);
  await statusTable();

  say(`publishing persistent messages with confirms on ${active.name} (quorum queue + classic queue)`);
  await declareQueues(active);
  await new Promise((r) => setTimeout(r, QUEUE_SETTLE_MS));
  await active.execOk('sync', ['-f', RABBITMQ_MOUNT]);
  publisher = await startPublisher(active, BASE, 'demo');
  await publisher.waitConfirmed(CONFIRMED_BEFORE_CUT, 120_000);
  console.log(`  ${publisher.confirmedCount()} confirmed so far`);

  say(`power cut of ${active.name} mid-stream (SIGKILL to its namespace's init: broker, udrbd, XFS die with it)`);
  const cutAt = Date.now();
  const problems = await c().crash(active);
  if (problems.length > 0) throw new Error(`power cut: ${problems.join('; ')}`);
  await publisher.finish();
  console.log(`  the publisher lost its broker after ${publisher.confirmedCount()} confirmed messages`);
  await statusTable();

  say(`Pacemaker fails over to ${survivor.name}: promote, mount (XFS log replay), IPaddr2, rabbitmq-server`);
  await c().waitMon(`${survivor.name} Promoted`, (s) => promotedNode(s) === survivor.name, GROUP_TIMEOUT_MS, survivor);
  const promotedMs = Date.now() - cutAt;
  await c().waitMon(`g_rabbitmq started on ${survivor.name}`, (s) => brokerNode(s) === survivor.name, GROUP_TIMEOUT_MS, survivor);
  const failoverMs = Date.now() - cutAt;
  console.log(`  ${survivor.name} Promoted ${(promotedMs / 1000).toFixed(1)} s after the power cut; broker running there after ${(failoverMs / 1000).toFixed(1)} s (the failover time)`);
  await statusTable();

  say(`draining both queues on ${survivor.name} and comparing with the publisher's record`);
  const check = await drainAndCheck(survivor, BASE, publisher.run);
  printCheck(check);

  say(`${active.name} boots again and rejoins as the Slave (resync from the bitmap)`);
  const brokerPidBefore = await brokerPid(survivor);
  await c().reboot(active);
  await c().waitMon(
    `${active.name} Unpromoted, g_rabbitmq started on ${survivor.name}`,
    (s) => s.resources.some((r) => r.id === 'p_drbd_rabbitmq' && r.role === 'Unpromoted' && r.node === active.name) && brokerNode(s) === survivor.name,
    REJOIN_TIMEOUT_MS,
    survivor,
  );
  await waitUntil('UpToDate/UpToDate', async () => (await adm(survivor, ['dstate', RABBITMQ_RESOURCE])) === 'UpToDate/UpToDate', REJOIN_TIMEOUT_MS);
  const brokerPidAfter = await brokerPid(survivor);
  if (brokerPidAfter !== brokerPidBefore) console.log(`  note: Pacemaker restarted the broker on ${survivor.name} while ${active.name} rejoined (pid ${brokerPidBefore} -> ${brokerPidAfter})`);
  await statusTable();

  const quorum = check['demo.quorum'];
  const classic = check['demo.classic'];
  say(`result: quorum queue ${quorum.lost} of ${quorum.confirmed} confirmed lost, classic queue ${classic.lost} of ${classic.confirmed}; failover ${(failoverMs / 1000).toFixed(1)} s`);
  return quorum.lost === 0 && quorum.confirmed > 0 ? 0 : 1;
}

const timer = setTimeout(() => {
  console.error(`demo: took longer than ${DEMO_TIMEOUT_MS / 1000} s; stopping`);
  void cleanup().then(() => process.exit(1)); // the timeout path ends the process itself
}, DEMO_TIMEOUT_MS);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    console.error(`\ndemo: ${signal}`);
    void cleanup().then(() => process.exit(130)); // a signal ends the demo after the cleanup
  });
}

let code = 1;
try {
  code = await main();
} catch (err) {
  console.error(`demo failed: ${(err as Error).message}`);
  code = 1;
} finally {
  await cleanup();
  clearTimeout(timer);
}
process.exit(code);
