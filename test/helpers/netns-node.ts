/**
 * test/helpers/netns-node — machines made of namespaces, for cluster tests on
 * one host: each node is a PID-1 "holder" (bash) in its own network, mount,
 * UTS, PID and IPC namespaces, with `uname -n` = its name, a private /dev
 * (tmpfs: null, zero, urandom, fuse, loop-control, loop0..N, shm, pts), a
 * fresh /run, and per-node host directories bind-mounted over /var/log, /tmp,
 * /etc/hosts and whatever the caller adds (e.g. /etc/corosync). Two nodes are
 * linked by one veth pair addressed PREFIX.1/.2 (link-local, inside the
 * namespaces only). `exec()` runs a command in a node (nsenter), `spawnDaemon()`
 * leaves one running there, `kill()` is a power cut (SIGKILL to the holder:
 * every process of the node dies, its mounts go with its mount namespace),
 * `boot()` again is the reboot. The kernel outlives a "power cut" here, so a
 * loop device udrbd had attached in the node would stay: the harness reads
 * udrbd's exposure records from the node's /run before it kills it and
 * detaches exactly those loop devices (same identity) afterwards, as a real
 * reboot would. `destroy()` and `cleanupLeftovers()` (a crashed earlier run,
 * found by the namespace prefix) leave no process, namespace, veth or loop
 * device behind. Knows nothing of Pacemaker or udrbd's configuration.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { ROOT } from './cluster.js';
import { loopIdentity, sameLoopIdentity, type LoopIdentity } from '../../src/frontend/loop/losetup.js';

/** Every tool call is bounded; a hung one fails the test instead of hanging it. */
export const TOOL_TIMEOUT_MS = 60_000;
/** A node's holder is up (mounts done, hostname set) within this. */
const BOOT_TIMEOUT_MS = 20_000;
/** After SIGKILL the holder's unshare parent exits within this. */
const KILL_TIMEOUT_MS = 20_000;
/** A detached loop device under a dead node's unmounting XFS is released within this. */
const LOOP_RELEASE_TIMEOUT_MS = 30_000;
/** Loop device nodes created in each private /dev (the kernel hands out the lowest free number). */
const LOOP_NODES = 128;
/** Where udrbd keeps its exposure records inside a node (default UDRBD_RUN_DIR + /frontend). */
const UDRBD_FRONTEND_DIR = 'run/udrbd/frontend';
/** Exposure record files read from a node at most. */
const RECORDS_MAX = 64;

export interface Bind {
  /** Directory or file on the host. */
  readonly hostPath: string;
  /** Existing path inside the node it covers. */
  readonly nodePath: string;
}

export interface NetnsPairOptions {
  /** Prefix of the network namespaces and veth names (e.g. 'upk': netns upk1/upk2, veths upk1v/upk2v). */
  readonly prefix: string;
  /** First three octets of the link-local subnet (e.g. '169.254.61'): node i gets .i/24. */
  readonly subnet: string;
  /** `uname -n` of node 1 and node 2. */
  readonly names: readonly [string, string];
  /** Host directory that holds every node's files (emptied first). */
  readonly baseDir: string;
  /** Extra bind mounts per node, given the node's host directory (created by the caller's prepare()). */
  readonly binds?: (node: NetnsNode) => Bind[];
  /** Called once per node before its first boot (write config files into node.dir). */
  readonly prepare?: (node: NetnsNode) => void;
  /** Extra lines of /etc/hosts besides localhost and the two nodes. */
  readonly extraHosts?: string[];
}

export interface ExecResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function hostTools(): string[] {
  const missing: string[] = [];
  for (const tool of ['ip', 'unshare', 'nsenter', 'losetup', 'mknod', 'setsid']) {
    const found = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => fs.existsSync(path.join(d, tool)));
    if (!found) missing.push(tool);
  }
  return missing;
}

/** Throws unless run as root with the namespace tools and /dev/fuse + loop-control. */
export function requireNamespaceHost(): void {
  if (process.getuid?.() !== 0) throw new Error('namespace nodes need root (netns, unshare, mount, losetup)');
  const missing = hostTools();
  if (missing.length > 0) throw new Error(`namespace node tools missing: ${missing.join(', ')} (apt-get install iproute2 util-linux)`);
  for (const dev of ['/dev/fuse', '/dev/loop-control']) {
    if (!fs.existsSync(dev)) throw new Error(`${dev} is missing (modprobe ${dev === '/dev/fuse' ? 'fuse' : 'loop'})`);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `predicate` every `intervalMs` until true; throws `what` after `timeoutMs`. */
export async function waitUntil(what: string, predicate: () => Promise<boolean> | boolean, timeoutMs: number, intervalMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(intervalMs);
  }
}

/** True while `pid` runs (a zombie, killed and waiting for its parent to reap it, counts as gone). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** The loop devices udrbd recorded under ROOT/run/udrbd/frontend (ROOT: a node's /proc/PID/root). */
function readLoopRecords(root: string): { loopDevice: string; identity: LoopIdentity }[] {
  const dir = path.join(root, UDRBD_FRONTEND_DIR);
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => n.endsWith('.json')).slice(0, RECORDS_MAX);
  } catch {
    return [];
  }
  const out: { loopDevice: string; identity: LoopIdentity }[] = [];
  for (const name of names) {
    try {
      const record = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')) as { loopDevice?: unknown; loopIdentity?: LoopIdentity | null };
      if (typeof record.loopDevice === 'string' && /^\/dev\/loop\d+$/.test(record.loopDevice) && record.loopIdentity) {
        out.push({ loopDevice: record.loopDevice, identity: record.loopIdentity });
      }
    } catch {
      /* a record being rewritten: the next read gets it */
    }
  }
  return out;
}

const FUSECTL_DIR = '/sys/fs/fuse/connections';

/**
 * Aborts the FUSE connection `id` (fusectl, mounted for the call if it is not),
 * as a power cut would: seen here once, a dead node's connection stayed alive
 * with a request waiting, and its loop device (autoclear set) never let go.
 */
async function abortFuseConnection(id: string): Promise<string[]> {
  const mounted = fs.readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === FUSECTL_DIR);
  if (!mounted) {
    const r = await execa('mount', ['-t', 'fusectl', 'fusectl', FUSECTL_DIR], { reject: false, timeout: TOOL_TIMEOUT_MS });
    if (r.exitCode !== 0) return [`mount -t fusectl ${FUSECTL_DIR}: ${String(r.stderr).trim()}`];
  }
  try {
    const abort = path.join(FUSECTL_DIR, id, 'abort');
    if (fs.existsSync(abort)) fs.writeFileSync(abort, '1');
    return [];
  } catch (err) {
    return [`abort FUSE connection ${id}: ${(err as Error).message}`];
  } finally {
    if (!mounted) await execa('umount', [FUSECTL_DIR], { reject: false, timeout: TOOL_TIMEOUT_MS });
  }
}

/**
 * Detaches each recorded loop device that is still the same attachment (never
 * a reused number), after aborting the dead node's FUSE connection below it.
 */
async function detachRecordedLoops(loops: Iterable<{ loopDevice: string; identity: LoopIdentity }>): Promise<string[]> {
  const problems: string[] = [];
  for (const { loopDevice, identity } of loops) {
    const now = await loopIdentity(loopDevice);
    if (now === null || !sameLoopIdentity(now, identity)) continue;
    const fuseConnection = /^0:(\d+)$/.exec(identity.backingDeviceNumber)?.[1];
    if (fuseConnection !== undefined) problems.push(...(await abortFuseConnection(fuseConnection)));
    const r = await execa('losetup', ['-d', loopDevice], { reject: false, timeout: TOOL_TIMEOUT_MS });
    if (r.exitCode !== 0) problems.push(`losetup -d ${loopDevice}: ${r.stderr.trim()}`);
  }
  return problems;
}

/** Whether `dir` lies under one of the node's private /tmp or /var/log mounts. */
function underPrivateMount(dir: string): boolean {
  return ['/tmp', '/var/log'].some((m) => dir === m || dir.startsWith(`${m}/`));
}

/** The shell that becomes a node's PID 1: mounts, private /dev, hostname, then an idle reaper loop. */
const HOLDER_SCRIPT = `
set -e
dir="$1"; name="$2"; loops="$3"
while IFS="$(printf '\\t')" read -r src dst; do
  [ -n "$src" ] || continue
  [ -e "$dst" ] || mkdir -p "$dst"
  mount --bind "$src" "$dst"
done < "$dir/binds"
mount -t tmpfs -o mode=755,size=256m tmpfs /run
mkdir -p /run/lock && chmod 1777 /run/lock
mount -t tmpfs -o mode=755,size=16m devtmp /dev
mknod -m 666 /dev/null c 1 3; mknod -m 666 /dev/zero c 1 5; mknod -m 666 /dev/full c 1 7
mknod -m 666 /dev/random c 1 8; mknod -m 666 /dev/urandom c 1 9; mknod -m 666 /dev/tty c 5 0
mknod -m 666 /dev/fuse c 10 229; mknod -m 660 /dev/loop-control c 10 237
i=0; while [ "$i" -lt "$loops" ]; do mknod -m 660 "/dev/loop$i" b 7 "$i"; i=$((i+1)); done
mkdir /dev/shm /dev/pts /dev/mapper
mount -t tmpfs -o mode=1777,size=256m shm /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx; ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin; ln -s /proc/self/fd/1 /dev/stdout; ln -s /proc/self/fd/2 /dev/stderr
ln -s /dev/shm /run/shm
hostname "$name"
: > "$dir/booted"
exec bash -c 'while :; do sleep 1; done'
`;

export class NetnsNode {
  /** Host directory of this node (binds' sources, logs). */
  readonly dir: string;
  readonly netns: string;
  readonly veth: string;
  readonly address: string;
  private holder: ChildProcess | null = null;
  private holderPidValue: number | null = null;
  /** Loop devices read from the node before a kill and not yet detached. */
  private readonly pendingLoops: { loopDevice: string; identity: LoopIdentity }[] = [];
  /** Loop devices detached after this node's kills (destroy() checks they are gone). */
  private readonly detachedLoops: { loopDevice: string; identity: LoopIdentity }[] = [];

  constructor(
    readonly pair: NetnsPair,
    readonly index: 1 | 2,
    readonly name: string,
  ) {
    this.dir = path.join(pair.options.baseDir, name);
    this.netns = `${pair.options.prefix}${index}`;
    this.veth = `${pair.options.prefix}${index}v`;
    this.address = `${pair.options.subnet}.${index}`;
  }

  /** PID (host view) of the node's PID 1; throws when the node is down. */
  get holderPid(): number {
    if (this.holderPidValue === null || !isAlive(this.holderPidValue)) throw new Error(`node ${this.name} is not running`);
    return this.holderPidValue;
  }

  get running(): boolean {
    return this.holderPidValue !== null && isAlive(this.holderPidValue);
  }

  /** Host path of a path inside the running node (through /proc/PID/root). */
  nodePath(p: string): string {
    return path.join('/proc', String(this.holderPid), 'root', p);
  }

  /** Creates the namespaces' mounts and the holder; the network namespace must exist. */
  async boot(): Promise<void> {
    if (this.running) throw new Error(`node ${this.name} is already running`);
    const binds = [
      { hostPath: path.join(this.dir, 'log'), nodePath: '/var/log' },
      { hostPath: path.join(this.dir, 'tmp'), nodePath: '/tmp' },
      { hostPath: path.join(this.dir, 'hosts'), nodePath: '/etc/hosts' },
      // A checkout under /tmp or /var/log (a CI clone, say) would vanish under the private mounts above.
      ...(underPrivateMount(ROOT) ? [{ hostPath: ROOT, nodePath: ROOT }] : []),
      ...(this.pair.options.binds?.(this) ?? []),
    ];
    for (const b of binds) {
      if (/[\t\n]/.test(b.hostPath + b.nodePath)) throw new Error(`bind path with a tab or newline: ${b.hostPath} -> ${b.nodePath}`);
    }
    fs.writeFileSync(path.join(this.dir, 'binds'), binds.map((b) => `${b.hostPath}\t${b.nodePath}\n`).join(''));
    const booted = path.join(this.dir, 'booted');
    fs.rmSync(booted, { force: true });
    const out = fs.openSync(path.join(this.dir, 'holder.out'), 'a');
    try {
      this.holder = spawn(
        'ip',
        ['netns', 'exec', this.netns, 'unshare', '-m', '-u', '-p', '-i', '-f', '--mount-proc', '--propagation', 'private', 'bash', '-c', HOLDER_SCRIPT, 'holder', this.dir, this.name, String(LOOP_NODES)],
        { stdio: ['ignore', out, out], detached: true },
      );
    } finally {
      fs.closeSync(out);
    }
    const unsharePid = this.holder.pid;
    if (unsharePid === undefined) throw new Error(`node ${this.name}: could not start unshare`);
    fs.writeFileSync(path.join(this.dir, 'unshare.pid'), `${unsharePid}\n`);
    let holderPid: number | null = null;
    try {
      await waitUntil(`node ${this.name} booted`, () => {
        if (this.holder?.exitCode !== null) throw new Error(`node ${this.name} failed to boot:\n${fs.readFileSync(path.join(this.dir, 'holder.out'), 'utf8')}`);
        if (!fs.existsSync(booted)) return false;
        const children = fs.readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, 'utf8').trim().split(/\s+/);
        holderPid = Number(children[0]);
        return Number.isInteger(holderPid) && holderPid > 1;
      }, BOOT_TIMEOUT_MS, 50);
    } catch (err) {
      this.holder.kill('SIGKILL');
      throw err;
    }
    this.holderPidValue = holderPid;
    fs.writeFileSync(path.join(this.dir, 'holder.pid'), `${String(holderPid)}\n`);
  }

  /** Runs a command inside the node (all its namespaces); never throws on a non-zero exit. */
  async exec(command: string, args: readonly string[] = [], options: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<ExecResult> {
    const envArgs = Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`);
    const r = await execa('nsenter', ['-t', String(this.holderPid), '-m', '-u', '-n', '-p', '-i', '--', ...(envArgs.length > 0 ? ['env', ...envArgs] : []), command, ...args], {
      reject: false,
      timeout: options.timeoutMs ?? TOOL_TIMEOUT_MS,
      input: options.input,
      stdin: options.input === undefined ? 'ignore' : 'pipe',
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', HOME: '/root' },
      extendEnv: false,
    });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  /** Like exec() but throws with the output on a non-zero exit; returns stdout. */
  async execOk(command: string, args: readonly string[] = [], options: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<string> {
    const r = await this.exec(command, args, options);
    if (r.exitCode !== 0) throw new Error(`on ${this.name}: ${command} ${args.join(' ')} exited ${r.exitCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r.stdout;
  }

  /** Starts a long-running program in the node in its own session, output to logFile (a path inside the node). */
  async spawnDaemon(command: string, args: readonly string[], logFile: string, env: Record<string, string> = {}): Promise<void> {
    const envText = Object.entries(env).map(([k, v]) => `${k}=${shq(v)} `).join('');
    const line = `${envText}setsid -f ${[command, ...args].map(shq).join(' ')} >> ${shq(logFile)} 2>&1 < /dev/null`;
    await this.execOk('sh', ['-c', line]);
  }

  /** Records the loop devices udrbd exposes in this node right now (for the detach after a kill). */
  private snapshotLoops(): void {
    for (const l of readLoopRecords(this.nodePath('/'))) {
      if (!this.pendingLoops.some((p) => p.loopDevice === l.loopDevice && sameLoopIdentity(p.identity, l.identity))) this.pendingLoops.push(l);
    }
  }

  /**
   * Power cut: SIGKILL the node's PID 1 (the kernel kills every process of
   * the PID namespace; the mount namespace and its mounts go with them), then
   * detach the loop devices udrbd had attached there and drop the addresses
   * a service added at run time (IPaddr2's), as a power cut and reboot would.
   */
  async kill(): Promise<string[]> {
    if (!this.running) return this.detachPendingLoops();
    this.snapshotLoops();
    const pid = this.holderPid;
    const holder = this.holder;
    process.kill(pid, 'SIGKILL');
    await waitUntil(`node ${this.name} holder gone`, () => !isAlive(pid) && (holder === null || holder.exitCode !== null || holder.signalCode !== null), KILL_TIMEOUT_MS, 50);
    this.holderPidValue = null;
    this.holder = null;
    return [...(await this.dropRuntimeAddresses()), ...(await this.detachPendingLoops())];
  }

  /**
   * The network namespace outlives the node's processes: without this, the
   * service address stays on the dead node's veth (a duplicate of the
   * survivor's), and after the reboot Pacemaker's probe finds it "active"
   * there and restarts the group to move it back.
   */
  private async dropRuntimeAddresses(): Promise<string[]> {
    const problems: string[] = [];
    const shown = await execa('ip', ['-n', this.netns, '-o', '-4', 'addr', 'show', 'dev', this.veth], { reject: false, timeout: TOOL_TIMEOUT_MS });
    for (const line of String(shown.stdout).split('\n')) {
      const cidr = /\binet (\S+)/.exec(line)?.[1];
      if (cidr === undefined || cidr === `${this.address}/24`) continue;
      const r = await execa('ip', ['-n', this.netns, 'addr', 'del', cidr, 'dev', this.veth], { reject: false, timeout: TOOL_TIMEOUT_MS });
      if (r.exitCode !== 0) problems.push(`ip -n ${this.netns} addr del ${cidr}: ${String(r.stderr).trim()}`);
    }
    return problems;
  }

  private async detachPendingLoops(): Promise<string[]> {
    // The dead namespace's XFS unmount finishes asynchronously; a busy loop device gets autoclear instead.
    const problems = await detachRecordedLoops(this.pendingLoops);
    this.detachedLoops.push(...this.pendingLoops);
    this.pendingLoops.length = 0;
    return problems;
  }

  /** Loop devices detached after kills that are still the same attachment (autoclear not done yet). */
  async loopsStillAttached(): Promise<string[]> {
    const left: string[] = [];
    for (const { loopDevice, identity } of this.detachedLoops) {
      const now = await loopIdentity(loopDevice);
      if (now !== null && sameLoopIdentity(now, identity)) left.push(loopDevice);
    }
    return left;
  }
}

/** Quotes one word for sh. */
export function shq(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export class NetnsPair {
  readonly nodes: readonly [NetnsNode, NetnsNode];

  constructor(readonly options: NetnsPairOptions) {
    if (!/^[a-z][a-z0-9]{1,8}$/.test(options.prefix)) throw new Error(`netns prefix '${options.prefix}': 2-9 lowercase letters/digits`);
    if (!/^169\.254\.\d{1,3}$/.test(options.subnet)) throw new Error(`subnet '${options.subnet}': only link-local 169.254.X`);
    this.nodes = [new NetnsNode(this, 1, options.names[0]), new NetnsNode(this, 2, options.names[1])];
  }

  node(name: string): NetnsNode {
    const n = this.nodes.find((x) => x.name === name);
    if (n === undefined) throw new Error(`no node named ${name} (nodes: ${this.nodes.map((x) => x.name).join(', ')})`);
    return n;
  }

  other(node: NetnsNode): NetnsNode {
    return node === this.nodes[0] ? this.nodes[1] : this.nodes[0];
  }

  /**
   * Removes what a crashed earlier run with the same prefix left (its
   * processes, recorded loop devices, namespaces), empties baseDir, then
   * creates both network namespaces, the veth pair and every node's files.
   */
  async create(): Promise<void> {
    const problems = await NetnsPair.cleanupLeftovers(this.options.prefix);
    if (problems.length > 0) throw new Error(`leftovers of an earlier run could not be removed: ${problems.join('; ')}`);
    fs.rmSync(this.options.baseDir, { recursive: true, force: true });
    fs.mkdirSync(this.options.baseDir, { recursive: true, mode: 0o755 });
    const ip = async (args: string[]): Promise<void> => {
      await execa('ip', args, { timeout: TOOL_TIMEOUT_MS });
    };
    const [a, b] = this.nodes;
    await ip(['netns', 'add', a.netns]);
    await ip(['netns', 'add', b.netns]);
    await ip(['link', 'add', a.veth, 'netns', a.netns, 'type', 'veth', 'peer', 'name', b.veth, 'netns', b.netns]);
    for (const n of this.nodes) {
      await ip(['-n', n.netns, 'link', 'set', 'lo', 'up']);
      await ip(['-n', n.netns, 'addr', 'add', `${n.address}/24`, 'dev', n.veth]);
      await ip(['-n', n.netns, 'link', 'set', n.veth, 'up']);
      fs.mkdirSync(path.join(n.dir, 'log'), { recursive: true });
      fs.mkdirSync(path.join(n.dir, 'tmp'), { recursive: true });
      fs.chmodSync(path.join(n.dir, 'tmp'), 0o1777);
      const hosts = ['127.0.0.1 localhost', ...this.nodes.map((x) => `${x.address} ${x.name}`), ...(this.options.extraHosts ?? [])];
      fs.writeFileSync(path.join(n.dir, 'hosts'), `${hosts.join('\n')}\n`);
      this.options.prepare?.(n);
    }
  }

  async boot(): Promise<void> {
    for (const n of this.nodes) await n.boot();
  }

  /** Kills both nodes, detaches their loop devices, deletes the namespaces; returns problems (empty: clean). */
  async destroy(): Promise<string[]> {
    const problems: string[] = [];
    for (const n of this.nodes) {
      try {
        problems.push(...(await n.kill()));
      } catch (err) {
        problems.push(`kill ${n.name}: ${(err as Error).message}`);
      }
    }
    problems.push(...(await NetnsPair.cleanupLeftovers(this.options.prefix)));
    let left: string[] = [];
    try {
      await waitUntil('loop devices of killed nodes released', async () => {
        left = (await Promise.all(this.nodes.map((n) => n.loopsStillAttached()))).flat();
        return left.length === 0;
      }, LOOP_RELEASE_TIMEOUT_MS, 250);
    } catch {
      problems.push(`loop devices still attached after the nodes died: ${left.join(', ')}`);
    }
    return problems;
  }

  /**
   * Everything of network namespaces named PREFIX<digits>: SIGKILL to each
   * process in them (after reading udrbd's loop records from their roots),
   * detach those loop devices, delete the namespaces (their veths go too).
   */
  static async cleanupLeftovers(prefix: string): Promise<string[]> {
    const problems: string[] = [];
    const list = await execa('ip', ['netns', 'list'], { reject: false, timeout: TOOL_TIMEOUT_MS });
    const names = String(list.stdout)
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter((n) => new RegExp(`^${prefix}\\d+$`).test(n));
    const loops: { loopDevice: string; identity: LoopIdentity }[] = [];
    for (const ns of names) {
      const pids = await namespacePids(ns);
      for (const pid of pids) loops.push(...readLoopRecords(`/proc/${pid}/root`));
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      try {
        await waitUntil(`processes of netns ${ns} gone`, async () => (await namespacePids(ns)).length === 0, KILL_TIMEOUT_MS);
      } catch (err) {
        problems.push((err as Error).message);
      }
    }
    problems.push(...(await detachRecordedLoops(loops)));
    for (const ns of names) {
      const r = await execa('ip', ['netns', 'del', ns], { reject: false, timeout: TOOL_TIMEOUT_MS });
      if (r.exitCode !== 0) problems.push(`ip netns del ${ns}: ${String(r.stderr).trim()}`);
    }
    return problems;
  }
}

async function namespacePids(ns: string): Promise<number[]> {
  const r = await execa('ip', ['netns', 'pids', ns], { reject: false, timeout: TOOL_TIMEOUT_MS });
  return String(r.stdout)
    .split('\n')
    .map(Number)
    .filter((p) => Number.isInteger(p) && p > 1 && p !== process.pid);
}
