/**
 * test/helpers/rabbitmq-pair — issue 17's manual variant: two namespace nodes
 * (test/helpers/netns-node) running one udrbd resource as the user defines it
 * (`device /dev/drbd1 minor 1`, `meta-disk internal`, protocol C, port 7701
 * on the link-local veth), XFS on /dev/drbd1 mounted at /var/lib/rabbitmq on
 * the Primary, and Debian's rabbitmq-server on it through demo/rabbitmq/.
 * Failovers are done by hand, as an operator without Pacemaker would:
 * `plannedSwitchover()` (stop broker, umount, secondary, primary on the peer,
 * mount, start) and `hardFailover()` (power cut of the Primary's namespace
 * mid-stream, then primary + mount + start on the survivor). The publisher
 * runs in the active node's network namespace only, like a client on another
 * machine: it survives the power cut, and its record of confirmed ids is on
 * the host, off the replicated disk. `declareQueues`, `startPublisher` and
 * `drainAndCheck` are also what the Pacemaker demo (demo/rabbitmq/) runs.
 * Knows nothing of Pacemaker.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import { NetnsPair, waitUntil, type NetnsNode, type ExecResult } from './netns-node.js';
import { ROOT, UDRBDADM, DRBDMETA, createInternalMetaDisk } from './cluster.js';
import { TUNED_RESYNC_DISK_OPTIONS } from './rabbitmq-crm.js';

export const RESOURCE = 'rq-rabbitmq';
export const DEVICE = '/dev/drbd1';
export const MOUNT_DIR = '/var/lib/rabbitmq';
export const DEMO_DIR = path.join(ROOT, 'demo', 'rabbitmq');
export const PYTHON = '/usr/bin/python3';
/** mkfs.xfs needs >= 300 MiB. */
const DISK_BYTES = 512 * 1024 * 1024;
/** udrbd's port inside each network namespace (the user's resource). */
const PORT = 7701;
/** Broker log dir and pid file per node, off the replicated disk (the node's /var/log is a host dir). */
const BROKER_STATE_DIR = '/var/log/udrbd-rabbitmq';
const ADM_TIMEOUT_MS = 90_000;
const BROKER_TIMEOUT_MS = 180_000;
const CONNECT_TIMEOUT_MS = 60_000;
/** Ra writes its registry lazily: a queue declared just before a power cut can come back leaderless. */
const QUEUE_SETTLE_MS = 5_000;
/** A publisher run never lasts longer than this (it also stops on broker loss). */
const PUBLISH_DURATION_MAX_S = 120;
const PUBLISHER_EXIT_TIMEOUT_MS = 60_000;

export interface QueueCheck {
  confirmed: number;
  present: number;
  lost: number;
  duplicated: number;
  unconfirmed: number;
  other: number;
  lostIds: number[];
}
export type CheckResult = Record<'demo.quorum' | 'demo.classic', QueueCheck>;

export interface FailoverTimings {
  /** Power cut to the survivor's disconnect (cstate no longer Connected). */
  noticedMs: number;
  /** ... to `primary` done. */
  primaryMs: number;
  /** ... to XFS mounted (log replayed). */
  mountedMs: number;
  /** ... to the broker ready: the failover time. */
  brokerReadyMs: number;
}

export interface RunResult {
  run: string;
  from: string;
  to: string;
  check: CheckResult;
  timings?: FailoverTimings;
}

/** Throws naming every missing piece (the broker, pika, XFS tools, drbdmeta, the build). */
export function requireRabbitHost(): void {
  const missing: string[] = [];
  for (const [what, file] of [
    ['rabbitmq-server (apt-get install rabbitmq-server)', '/usr/lib/rabbitmq/bin/rabbitmq-server'],
    ['python3 (apt-get install python3)', PYTHON],
    ['mkfs.xfs (apt-get install xfsprogs)', '/usr/sbin/mkfs.xfs'],
    ['drbdmeta (apt-get install drbd-utils)', DRBDMETA],
    ['built udrbdadm (npm run build)', UDRBDADM],
  ] as const) {
    if (!fs.existsSync(file)) missing.push(what);
  }
  if (fs.existsSync(PYTHON)) {
    const r = execaSync(PYTHON, ['-c', 'import pika'], { reject: false });
    if (r.exitCode !== 0) missing.push('python3-pika (apt-get install python3-pika)');
  }
  if (missing.length > 0) throw new Error(`RabbitMQ-on-udrbd test prerequisites missing: ${missing.join(', ')}`);
}

export interface RabbitPairOptions {
  /** Namespace / veth prefix (netns PREFIX1, PREFIX2). */
  prefix: string;
  /** Link-local subnet, first three octets. */
  subnet: string;
  /** Host directory for everything (emptied first). */
  baseDir: string;
}

/** A publisher running in a node's network namespace. */
export class Publisher {
  private stdout = '';
  readonly exited: Promise<number>;

  constructor(
    readonly run: string,
    readonly recordPath: string,
    private readonly child: ChildProcess,
  ) {
    child.stdout?.on('data', (c: Buffer) => (this.stdout += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (this.stdout += c.toString()));
    this.exited = new Promise((resolve) => child.on('close', (code) => resolve(code ?? -1)));
  }

  get output(): string {
    return this.stdout;
  }

  /** Confirmed ids recorded so far (lines of the record file). */
  confirmedCount(): number {
    try {
      return fs.readFileSync(this.recordPath, 'utf8').split('\n').filter((l) => l !== '').length;
    } catch {
      return 0;
    }
  }

  async waitConfirmed(count: number, timeoutMs: number): Promise<void> {
    await waitUntil(`${count} confirmed messages in run ${this.run} (output: ${this.stdout})`, () => this.confirmedCount() >= count, timeoutMs, 100);
  }

  /** Waits for the publisher to exit (it does on broker loss); SIGKILL after the limit. */
  async finish(): Promise<void> {
    const timer = setTimeout(() => this.child.kill('SIGKILL'), PUBLISHER_EXIT_TIMEOUT_MS);
    try {
      const code = await this.exited;
      if (code !== 0) throw new Error(`publisher of run ${this.run} exited ${code}: ${this.stdout}`);
    } finally {
      clearTimeout(timer);
    }
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

/** One of the demo's Python programs in the node's network namespace only (a client on "another machine"). */
async function python(node: NetnsNode, args: string[]): Promise<string> {
  const r = await execa('ip', ['netns', 'exec', node.netns, PYTHON, ...args], { cwd: DEMO_DIR, reject: false, timeout: BROKER_TIMEOUT_MS });
  if (r.exitCode !== 0) throw new Error(`on ${node.name}: ${args.join(' ')} exited ${r.exitCode}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** Declares the durable quorum and classic queues on the broker of `node`. */
export async function declareQueues(node: NetnsNode): Promise<void> {
  await python(node, ['publisher.py', 'declare']);
}

/** Starts a publisher of run `run` against the broker of `node`, its record in `dir`; resolves once it publishes. */
export async function startPublisher(node: NetnsNode, dir: string, run: string): Promise<Publisher> {
  const recordPath = path.join(dir, `${run}.confirmed`);
  const child = spawn('ip', ['netns', 'exec', node.netns, PYTHON, 'publisher.py', 'publish', '--run', run, '--record', recordPath, '--duration-s', String(PUBLISH_DURATION_MAX_S)], {
    cwd: DEMO_DIR,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const publisher = new Publisher(run, recordPath, child);
  try {
    await waitUntil(`publisher of ${run} started`, () => publisher.output.includes('publishing'), 30_000, 50);
  } catch (err) {
    publisher.kill();
    throw new Error(`${(err as Error).message}; its output: ${publisher.output}`);
  }
  return publisher;
}

/** Drains both queues on `node` and checks run `run` against its record (both files in `dir`). */
export async function drainAndCheck(node: NetnsNode, dir: string, run: string): Promise<CheckResult> {
  const drained = path.join(dir, `${run}.drained`);
  await python(node, ['consumer.py', '--out', drained]);
  const out = await execa(PYTHON, ['checker.py', '--json', '--run', run, '--record', path.join(dir, `${run}.confirmed`), '--drained', drained], { cwd: DEMO_DIR, timeout: 60_000 });
  const last = out.stdout.trim().split('\n').pop() ?? '';
  return (JSON.parse(last) as { queues: CheckResult }).queues;
}

export class RabbitPair {
  readonly pair: NetnsPair;
  readonly configPath: string;
  private readonly publishers: Publisher[] = [];
  private runCount = 0;

  constructor(readonly options: RabbitPairOptions) {
    this.configPath = path.join(options.baseDir, 'udrbd.conf');
    this.pair = new NetnsPair({ prefix: options.prefix, subnet: options.subnet, names: ['node1', 'node2'], baseDir: options.baseDir });
  }

  get nodes(): readonly [NetnsNode, NetnsNode] {
    return this.pair.nodes;
  }

  diskPath(node: NetnsNode): string {
    return path.join(this.options.baseDir, `${node.name}.img`);
  }

  /** The user's resource, with this pair's addresses and disk files. */
  configText(): string {
    const on = this.nodes.map((n) => `  on ${n.name} {\n    disk ${this.diskPath(n)};\n    address ${n.address}:${PORT};\n  }`);
    return [`resource ${RESOURCE} {`, `  device ${DEVICE} minor 1;`, '  meta-disk internal;', '  net { protocol C; }', `  disk { ${TUNED_RESYNC_DISK_OPTIONS} }`, ...on, '}', ''].join('\n');
  }

  /**
   * Both nodes up and connected, the fresh pair's initial sync skipped
   * (`new-current-uuid --clear-bitmap`: both disks are zeroes), node1
   * Primary with XFS mounted and the broker running with both queues
   * declared and settled. Returns the active node.
   */
  async setup(): Promise<NetnsNode> {
    await this.pair.create();
    fs.writeFileSync(this.configPath, this.configText());
    for (const n of this.nodes) {
      createInternalMetaDisk(this.diskPath(n), DISK_BYTES);
    }
    await this.pair.boot();
    const [a, b] = this.nodes;
    await this.admOk(a, ['up', RESOURCE]);
    await this.admOk(b, ['up', RESOURCE]);
    await this.waitCstate(a, (s) => s === 'Connected', CONNECT_TIMEOUT_MS);
    await this.admOk(a, ['new-current-uuid', '--clear-bitmap', RESOURCE]);
    await this.waitDstate(b, 'UpToDate/UpToDate', CONNECT_TIMEOUT_MS);
    await this.admOk(a, ['primary', RESOURCE]);
    await a.execOk('mkfs.xfs', ['-q', DEVICE], { timeoutMs: 120_000 });
    await this.mount(a);
    await this.broker(a, 'prepare');
    await this.broker(a, 'start');
    await declareQueues(a);
    await new Promise((r) => setTimeout(r, QUEUE_SETTLE_MS));
    await a.execOk('sync', ['-f', MOUNT_DIR]);
    return a;
  }

  /** udrbdadm in the node (its /run/udrbd, its /var/log/udrbd, FUSE + loop for /dev/drbd1). */
  adm(node: NetnsNode, args: string[]): Promise<ExecResult> {
    return node.exec(process.execPath, [UDRBDADM, '-c', this.configPath, ...args], { timeoutMs: ADM_TIMEOUT_MS, env: { UDRBD_FRONTEND: 'fuse' } });
  }

  async admOk(node: NetnsNode, args: string[]): Promise<string> {
    const r = await this.adm(node, args);
    if (r.exitCode !== 0) throw new Error(`on ${node.name}: udrbdadm ${args.join(' ')} exited ${r.exitCode}\n${r.stderr}\nlog tail:\n${this.logTail(node)}`);
    return r.stdout.trim();
  }

  logTail(node: NetnsNode, lines = 15): string {
    try {
      return fs.readFileSync(path.join(node.dir, 'log', 'udrbd', `${RESOURCE}.${node.name}.log`), 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no udrbd log)';
    }
  }

  async waitCstate(node: NetnsNode, ok: (cstate: string) => boolean, timeoutMs: number): Promise<string> {
    let last = '';
    try {
      await waitUntil(`${node.name} cstate`, async () => {
        last = (await this.adm(node, ['cstate', RESOURCE])).stdout.trim();
        return ok(last);
      }, timeoutMs, 50);
    } catch (err) {
      throw new Error(`${(err as Error).message} (last: ${last})\n${this.logTail(node)}`);
    }
    return last;
  }

  async waitDstate(node: NetnsNode, expected: string, timeoutMs: number): Promise<void> {
    await waitUntil(`${node.name} dstate ${expected}`, async () => (await this.adm(node, ['dstate', RESOURCE])).stdout.trim() === expected, timeoutMs, 200);
  }

  async mount(node: NetnsNode): Promise<void> {
    await node.execOk('mount', [DEVICE, MOUNT_DIR], { timeoutMs: 120_000 });
  }

  async umount(node: NetnsNode): Promise<void> {
    await node.execOk('umount', [MOUNT_DIR], { timeoutMs: 120_000 });
  }

  /** demo/rabbitmq/broker.sh VERB in the node. */
  async broker(node: NetnsNode, verb: 'prepare' | 'start' | 'stop'): Promise<void> {
    await node.execOk(path.join(DEMO_DIR, 'broker.sh'), [verb], { timeoutMs: BROKER_TIMEOUT_MS, env: { RQ_DATA: MOUNT_DIR, RQ_STATE: BROKER_STATE_DIR } });
  }

  /** Starts a publisher against the broker of `node`; resolves once it is publishing. */
  async startPublisher(node: NetnsNode): Promise<Publisher> {
    this.runCount += 1;
    const publisher = await startPublisher(node, this.options.baseDir, `run${this.runCount}`);
    this.publishers.push(publisher);
    return publisher;
  }

  drainAndCheck(node: NetnsNode, run: string): Promise<CheckResult> {
    return drainAndCheck(node, this.options.baseDir, run);
  }

  /** Stop broker, umount, secondary; primary on the peer, mount, start; drain and check. */
  async plannedSwitchover(from: NetnsNode, confirmedBefore: number): Promise<RunResult> {
    const to = this.pair.other(from);
    const publisher = await this.startPublisher(from);
    await publisher.waitConfirmed(confirmedBefore, 60_000);
    await this.broker(from, 'stop');
    await publisher.finish();
    await this.umount(from);
    await this.admOk(from, ['secondary', RESOURCE]);
    await this.admOk(to, ['primary', RESOURCE]);
    await this.mount(to);
    await this.broker(to, 'start');
    return { run: publisher.run, from: from.name, to: to.name, check: await this.drainAndCheck(to, publisher.run) };
  }

  /**
   * Power cut of `from` (SIGKILL to its namespace's init: broker, udrbd and
   * mounts die with it) once `confirmedBefore` messages are confirmed, then by
   * hand on the survivor: primary, mount (XFS log replay), broker start,
   * drain, check. `from` is rebooted and rejoins as SyncTarget afterwards.
   */
  async hardFailover(from: NetnsNode, confirmedBefore: number): Promise<RunResult> {
    const to = this.pair.other(from);
    const publisher = await this.startPublisher(from);
    await publisher.waitConfirmed(confirmedBefore, 60_000);
    const cutAt = Date.now();
    const problems = await from.kill();
    if (problems.length > 0) throw new Error(`power cut of ${from.name}: ${problems.join('; ')}`);
    await this.waitCstate(to, (s) => s !== 'Connected', CONNECT_TIMEOUT_MS);
    const noticedMs = Date.now() - cutAt;
    // The survivor is UpToDate: DRBD would promote it without --force.
    await this.admOk(to, ['primary', RESOURCE]);
    const primaryMs = Date.now() - cutAt;
    await this.mount(to);
    const mountedMs = Date.now() - cutAt;
    await this.broker(to, 'start');
    const brokerReadyMs = Date.now() - cutAt;
    await publisher.finish();
    const check = await this.drainAndCheck(to, publisher.run);
    await this.rejoin(from);
    return { run: publisher.run, from: from.name, to: to.name, check, timings: { noticedMs, primaryMs, mountedMs, brokerReadyMs } };
  }

  /** Reboots a powered-off node and brings its resource up: it resyncs from the Primary. */
  async rejoin(node: NetnsNode): Promise<void> {
    await node.boot();
    await this.admOk(node, ['up', RESOURCE]);
    await this.waitDstate(node, 'UpToDate/UpToDate', 180_000);
  }

  /**
   * Kills every publisher, both nodes (mounts, broker, udrbd go with them),
   * loops, namespaces; removes baseDir unless UDRBD_RABBITMQ_KEEP is set (disks
   * and logs kept for a post-mortem). Returns problems.
   */
  async destroy(): Promise<string[]> {
    for (const p of this.publishers) p.kill();
    const problems = await this.pair.destroy();
    if (problems.length === 0 && process.env.UDRBD_RABBITMQ_KEEP === undefined) fs.rmSync(this.options.baseDir, { recursive: true, force: true });
    return problems;
  }
}
