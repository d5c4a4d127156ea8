/**
 * test/torture/torture — issue 18's seeded fault torture: two namespace nodes
 * (test/helpers/netns-node, prefix `uto`, 169.254.63.x) running one udrbd
 * resource (protocol C, FUSE + loop device /dev/drbd1, the fault layer under
 * both disks), a witness writing stamped blocks through the Primary's device
 * (test/torture/blockio.py: O_DIRECT, a write counts once write and flush
 * returned), and a nemesis that picks one fault per episode from a PRNG seeded
 * by (seed, episode), so `--seed S --episode K` replays episode K alone. After
 * each episode the pair is healed (rules removed, nodes rebooted, `up`,
 * `attach`) and the checker asserts what issue 18 lists; a violated check
 * throws TortureFailure naming the seed and the episode. Knows nothing of
 * vitest: test/torture/cli.ts (`npm run torture`) and torture.test.ts call
 * runTorture().
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { NetnsPair, waitUntil, type NetnsNode, type ExecResult } from '../helpers/netns-node.js';
import { UDRBDADM, createInternalMetaDisk } from '../helpers/cluster.js';
import { ControlClient } from '../../src/control/client.js';
import { runtimePaths } from '../../src/control/paths.js';
import { parseConnState, parseDiskState, parseRole } from '../../src/resource/states.js';

export const RESOURCE = 'totort';
const DEVICE = '/dev/drbd1';
const PREFIX = 'uto';
const SUBNET = '169.254.63';
/** udrbd's port inside each node's own network namespace (issue's range 8500-8549). */
const PORT = 8500;
const DISK_BYTES = 64 * 1024 * 1024;
const BLOCK_BYTES = 4096;
/** Blocks the witness writes (the first 8 MiB of the device). */
const BLOCKS = 2048;
const PYTHON = '/usr/bin/python3';
const BLOCKIO = path.join(path.dirname(fileURLToPath(import.meta.url)), 'blockio.py');
const BLOCKIO_SOURCE = findBlockio();
const ADM_TIMEOUT_MS = 90_000;
const HEAL_TIMEOUT_MS = 180_000;
/** Witness run per episode; the fault strikes between the two bounds after it starts. */
const WRITE_SECONDS = 4;
const FAULT_AFTER_MS_MIN = 500;
const FAULT_AFTER_MS_MAX = 2_500;
/** A partition lasts this long (longer than ping-int + ping-timeout below: both sides notice). */
const PARTITION_MS = 6_000;
/** A stalled disk request waits this long. */
const STALL_MS = 1_500;
const EPISODES_MAX = 10_000;

/** Where blockio.py is: beside this file, or in the checkout when this file runs compiled from build/. */
function findBlockio(): string {
  if (fs.existsSync(BLOCKIO)) return BLOCKIO;
  for (let dir = path.dirname(BLOCKIO); path.dirname(dir) !== dir; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'test', 'torture', 'blockio.py');
    if (fs.existsSync(candidate) && fs.existsSync(path.join(dir, 'package.json'))) return candidate;
  }
  return BLOCKIO;
}

export const FAULTS = [
  'kill-primary',
  'kill-secondary',
  'partition-both',
  'partition-one-way',
  'restart-secondary',
  'disk-eio',
  'disk-stall',
  'power-cut-primary',
  'power-cut-secondary',
  'split-brain',
  'reset-connection',
  'disk-eio-secondary',
] as const;
export type Fault = (typeof FAULTS)[number];

export interface FaultFigures {
  episodes: number;
  /** Writes acknowledged (write + flush returned) during these episodes. */
  ackedWrites: number;
  /** Blocks whose latest acknowledged stamp was found on the Primary afterwards (each holds the last of its writes). */
  ackedChecked: number;
  bytesVerified: number;
  splitBrainsBoth: number;
  splitBrainsTotal: number;
}

export interface TortureReport {
  seed: number;
  episodes: number;
  perFault: Record<Fault, FaultFigures>;
}

export interface TortureOptions {
  seconds: number;
  seed: number;
  /** Run only this episode (after the setup), for a replay. */
  episode?: number;
  baseDir: string;
  /**
   * Which namespace lane: 0 (uto1/uto2, 169.254.63.x; CI's) or 1 (utl1/utl2,
   * 169.254.64.x), so a long run can go on beside the suite's.
   */
  lane?: 0 | 1;
  log?: (line: string) => void;
}

const LANES = [
  { prefix: PREFIX, subnet: SUBNET },
  { prefix: 'utl', subnet: '169.254.64' },
] as const;

export class TortureFailure extends Error {
  constructor(
    readonly seed: number,
    readonly episode: number,
    readonly fault: Fault,
    what: string,
  ) {
    super(`torture FAILED: seed ${seed} episode ${episode} (${fault}): ${what}\nreplay: npm run torture -- --seed ${seed} --episode ${episode}`);
  }
}

/** mulberry32: a small seeded PRNG (the nemesis must replay exactly). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface EpisodePlan {
  fault: Fault;
  faultAfterMs: number;
  writerSeed: number;
}

/** Episode K of seed S: the same plan whatever ran before it. */
export function planEpisode(seed: number, episode: number): EpisodePlan {
  const rnd = prng((Math.imul(seed >>> 0, 2654435761) ^ Math.imul(episode, 40503)) >>> 0);
  const fault = FAULTS[Math.floor(rnd() * FAULTS.length)] ?? 'kill-secondary';
  const faultAfterMs = FAULT_AFTER_MS_MIN + Math.floor(rnd() * (FAULT_AFTER_MS_MAX - FAULT_AFTER_MS_MIN));
  return { fault, faultAfterMs, writerSeed: Math.floor(rnd() * 2 ** 31) };
}

/** One block's model: the last acknowledged stamp and the stamps written after it but never acknowledged. */
interface BlockModel {
  acked: Stamp | null;
  unacked: Stamp[];
}
interface Stamp {
  writer: number;
  seq: number;
}
const later = (a: Stamp, b: Stamp | null): boolean => b === null || a.writer > b.writer || (a.writer === b.writer && a.seq > b.seq);

/** Parses DRBD-style `conn( A -> B )` etc. from the msg of each pino line; checks names and continuity. */
export function checkTransitions(logText: string): string[] {
  const problems: string[] = [];
  const last = new Map<string, string>();
  let pid: unknown;
  const parsers: Record<string, (n: string) => unknown> = { role: parseRole, peer: parseRole, conn: parseConnState, disk: parseDiskState, pdsk: parseDiskState };
  for (const line of logText.split('\n')) {
    if (line === '') continue;
    let msg: string;
    try {
      const rec = JSON.parse(line) as { msg?: unknown; pid?: unknown };
      if (typeof rec.msg !== 'string') continue;
      msg = rec.msg;
      // A new resource process starts from its own first state (pids repeat: each boot is a new PID namespace).
      if (rec.pid !== pid || msg.startsWith('udrbd resource process starting')) last.clear();
      pid = rec.pid;
    } catch {
      continue;
    }
    for (const m of msg.matchAll(/\b(role|peer|conn|disk|pdsk)\( (\w+) -> (\w+) \)/g)) {
      const [, field = '', from = '', to = ''] = m;
      const parse = parsers[field];
      if (parse === undefined) continue;
      if (parse(from) === undefined || parse(to) === undefined) problems.push(`${field}( ${from} -> ${to} ): not a DRBD state name (${msg})`);
      if (from === to) problems.push(`${field}( ${from} -> ${to} ): not a change (${msg})`);
      const prev = last.get(field);
      if (prev !== undefined && prev !== from) problems.push(`${field} went ${prev} then logged ${from} -> ${to} (${msg})`);
      last.set(field, to);
    }
  }
  return problems;
}

export class Torture {
  readonly pair: NetnsPair;
  readonly configPath: string;
  private readonly log: (line: string) => void;
  private readonly model: BlockModel[] = Array.from({ length: BLOCKS }, () => ({ acked: null, unacked: [] }));
  private primary!: NetnsNode;
  private seq = 0;

  constructor(private readonly options: TortureOptions) {
    this.log = options.log ?? ((l) => process.stdout.write(`${l}\n`));
    this.configPath = path.join(options.baseDir, 'udrbd.conf');
    const lane = LANES[options.lane ?? 0];
    this.pair = new NetnsPair({ prefix: lane.prefix, subnet: lane.subnet, names: ['tnode1', 'tnode2'], baseDir: options.baseDir });
  }

  get nodes(): readonly [NetnsNode, NetnsNode] {
    return this.pair.nodes;
  }

  diskPath(node: NetnsNode): string {
    return path.join(this.options.baseDir, `${node.name}.img`);
  }

  private configText(): string {
    const on = this.nodes.map((n) => `  on ${n.name} {\n    disk ${this.diskPath(n)};\n    address ${n.address}:${PORT};\n  }`);
    return [
      `resource ${RESOURCE} {`,
      `  device ${DEVICE} minor 1;`,
      '  meta-disk internal;',
      // DRBD 8.4's dynamic resync controller, tuned (8.4's c-fill-target 100s keeps only 50 KiB in flight);
      // no c-min-rate throttle, so resyncs finish while the writers keep writing.
      '  disk { on-io-error detach; c-plan-ahead 20; c-fill-target 4M; c-max-rate 100M; resync-rate 100M; c-min-rate 0; }',
      '  net {',
      '    protocol C;',
      '    ping-int 2; ping-timeout 10; connect-int 2; timeout 20; ko-count 3;',
      '    after-sb-0pri discard-zero-changes; after-sb-1pri discard-secondary; after-sb-2pri disconnect;',
      '  }',
      ...on,
      '}',
      '',
    ].join('\n');
  }

  async setup(): Promise<void> {
    await this.pair.create();
    fs.writeFileSync(this.configPath, this.configText());
    for (const n of this.nodes) {
      createInternalMetaDisk(this.diskPath(n), DISK_BYTES);
      fs.writeFileSync(path.join(this.options.baseDir, `fault-${n.name}.json`), JSON.stringify({ rules: [], powerCut: true }));
    }
    await this.pair.boot();
    const [a, b] = this.nodes;
    await this.admOk(a, ['up', RESOURCE]);
    await this.admOk(b, ['up', RESOURCE]);
    await this.waitConnected(a);
    await this.admOk(a, ['new-current-uuid', '--clear-bitmap', RESOURCE]);
    await this.waitUpToDate();
    await this.admOk(a, ['primary', RESOURCE]);
    this.primary = a;
  }

  adm(node: NetnsNode, args: string[]): Promise<ExecResult> {
    return node.exec(process.execPath, [UDRBDADM, '-c', this.configPath, ...args], {
      timeoutMs: ADM_TIMEOUT_MS,
      env: { UDRBD_FRONTEND: 'fuse', UDRBD_FAULT_PLAN: path.join(this.options.baseDir, 'fault-{node}.json') },
    });
  }

  async admOk(node: NetnsNode, args: string[]): Promise<string> {
    const r = await this.adm(node, args);
    if (r.exitCode !== 0) throw new Error(`on ${node.name}: udrbdadm ${args.join(' ')} exited ${r.exitCode}\n${r.stderr}\nlog tail:\n${this.logTail(node)}`);
    return r.stdout.trim();
  }

  logPath(node: NetnsNode): string {
    return path.join(node.dir, 'log', 'udrbd', `${RESOURCE}.${node.name}.log`);
  }

  logTail(node: NetnsNode, lines = 20): string {
    try {
      return fs.readFileSync(this.logPath(node), 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no udrbd log)';
    }
  }

  private async state(node: NetnsNode, what: 'cstate' | 'dstate' | 'role'): Promise<string> {
    if (!node.running) return 'down';
    return (await this.adm(node, [what, RESOURCE])).stdout.trim();
  }

  private async waitConnected(node: NetnsNode): Promise<void> {
    await waitUntil(`${node.name} Connected\n${this.logTail(node)}`, async () => (await this.state(node, 'cstate')) === 'Connected', HEAL_TIMEOUT_MS, 200);
  }

  private async waitUpToDate(): Promise<void> {
    let last = '';
    try {
      await waitUntil('both UpToDate/UpToDate', async () => {
        const s = await Promise.all(this.nodes.map((n) => this.state(n, 'dstate')));
        last = s.join(', ');
        return s.every((x) => x === 'UpToDate/UpToDate');
      }, HEAL_TIMEOUT_MS, 250);
    } catch (err) {
      throw new Error(`${(err as Error).message} (last: ${last})\n${this.nodes.map((n) => `${n.name}:\n${this.logTail(n)}`).join('\n')}`);
    }
  }

  /** The resource process's pid inside the node, or null when it is not running. */
  private async daemonPid(node: NetnsNode): Promise<number | null> {
    if (!node.running) return null;
    const r = await node.exec('cat', [`/run/udrbd/${RESOURCE}.${node.name}.pid`]);
    const pid = Number(r.stdout.trim());
    if (r.exitCode !== 0 || !Number.isInteger(pid) || pid <= 1) return null;
    return (await node.exec('kill', ['-0', String(pid)])).exitCode === 0 ? pid : null;
  }

  private async control(node: NetnsNode, verb: string, args: Record<string, unknown> = {}): Promise<string> {
    const paths = runtimePaths(RESOURCE, node.name, { UDRBD_RUN_DIR: node.nodePath('/run/udrbd'), UDRBD_LOG_DIR: node.nodePath('/var/log/udrbd') });
    const client = await ControlClient.connect(paths);
    try {
      const reply = await client.request(verb, args);
      if (!reply.ok) throw new Error(`on ${node.name}: ${verb}: ${reply.stderr}`);
      return reply.stdout;
    } finally {
      client.close();
    }
  }

  private async iptables(node: NetnsNode, args: string[]): Promise<void> {
    const r = await execa('ip', ['netns', 'exec', node.netns, 'iptables', '-w', ...args], { reject: false, timeout: 30_000 });
    if (r.exitCode !== 0) throw new Error(`iptables ${args.join(' ')} in ${node.netns}: ${String(r.stderr)}`);
  }

  /** Runs the witness on `node` for `seconds`; resolves with its output when it ends (on its own, on EIO, or with the node). */
  private startWriter(node: NetnsNode, writer: number, seconds: number, seed: number): { logPath: string; done: Promise<string> } {
    const logPath = path.join(node.dir, 'tmp', `writer-${writer}.log`);
    fs.copyFileSync(BLOCKIO_SOURCE, path.join(node.dir, 'tmp', 'blockio.py'));
    const seq0 = this.seq;
    this.seq += 1_000_000;
    const child = spawn('nsenter', ['-t', String(node.holderPid), '-m', '-u', '-n', '-p', '-i', '--', PYTHON, '/tmp/blockio.py', 'write', DEVICE, `/tmp/writer-${writer}.log`, String(writer), String(seq0), String(seconds), String(BLOCKS), String(seed)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const done = new Promise<string>((resolve) => child.on('close', () => resolve(out.trim())));
    return { logPath, done };
  }

  /** Folds a witness log into the model; returns how many writes it acknowledged. */
  private absorb(logPath: string): number {
    let text = '';
    try {
      text = fs.readFileSync(logPath, 'utf8');
    } catch {
      return 0;
    }
    let acked = 0;
    for (const line of text.split('\n')) {
      const [kind, b, w, s] = line.split(' ');
      const block = this.model[Number(b)];
      if (block === undefined || (kind !== 'S' && kind !== 'A')) continue;
      const stamp = { writer: Number(w), seq: Number(s) };
      if (kind === 'S') block.unacked.push(stamp);
      else {
        block.acked = stamp;
        block.unacked = block.unacked.filter((u) => later(u, stamp));
        acked++;
      }
    }
    return acked;
  }

  private async readDevice(node: NetnsNode): Promise<Map<number, Stamp | 'zero' | 'bad'>> {
    fs.copyFileSync(BLOCKIO_SOURCE, path.join(node.dir, 'tmp', 'blockio.py'));
    const out = await node.execOk(PYTHON, ['/tmp/blockio.py', 'read', DEVICE, String(BLOCKS)], { timeoutMs: 120_000 });
    const map = new Map<number, Stamp | 'zero' | 'bad'>();
    for (const line of out.trim().split('\n')) {
      const [b, w, s] = line.split(' ');
      map.set(Number(b), w === 'zero' || w === 'bad' ? w : { writer: Number(w), seq: Number(s) });
    }
    return map;
  }

  /** sha256 of the first `bytes` of a node's backing file (its data area). */
  private hashDisk(node: NetnsNode, bytes: number): string {
    const fd = fs.openSync(this.diskPath(node), 'r');
    try {
      const h = crypto.createHash('sha256');
      const buf = Buffer.alloc(1024 * 1024);
      for (let off = 0; off < bytes; off += buf.length) {
        const n = fs.readSync(fd, buf, 0, Math.min(buf.length, bytes - off), off);
        h.update(buf.subarray(0, n));
      }
      return h.digest('hex');
    } finally {
      fs.closeSync(fd);
    }
  }

  private splitBrainReported(node: NetnsNode, from: number): boolean {
    try {
      return fs.readFileSync(this.logPath(node)).subarray(from).toString('utf8').includes('Split-Brain detected');
    } catch {
      return false;
    }
  }

  private logSize(node: NetnsNode): number {
    try {
      return fs.statSync(this.logPath(node)).size;
    } catch {
      return 0;
    }
  }

  /** Power-cycles a node whose resource process is gone (kill() also detaches its loop devices), then `up`. */
  private async reboot(node: NetnsNode): Promise<void> {
    const problems = await node.kill();
    if (problems.length > 0) throw new Error(`power cycle of ${node.name}: ${problems.join('; ')}`);
    await node.boot();
    await this.admOk(node, ['up', RESOURCE]);
  }

  private async failover(from: NetnsNode): Promise<NetnsNode> {
    const to = this.pair.other(from);
    await waitUntil(`${to.name} notices ${from.name} is gone`, async () => (await this.state(to, 'cstate')) !== 'Connected', HEAL_TIMEOUT_MS, 100);
    await this.admOk(to, ['primary', RESOURCE]);
    this.primary = to;
    return to;
  }

  /** Runs episode `k`; throws TortureFailure on a violated check. */
  async episode(k: number, figures: Record<Fault, FaultFigures>): Promise<void> {
    const plan = planEpisode(this.options.seed, k);
    const f = figures[plan.fault];
    const fail = (what: string): TortureFailure => new TortureFailure(this.options.seed, k, plan.fault, what);
    const p = this.primary;
    const s = this.pair.other(p);
    const pidsBefore = new Map([[p, await this.daemonPid(p)], [s, await this.daemonPid(s)]]);
    const killedByNemesis = new Set<NetnsNode>();
    const logStart = new Map(this.nodes.map((n) => [n, this.logSize(n)]));
    this.log(`episode ${k}: ${plan.fault} after ${plan.faultAfterMs} ms (primary ${p.name})`);
    /** Writers 3k+1 (Primary), 3k+2 (the survivor, or the split brain's victim), 3k+3: stamps order by writer. */
    const writer = 3 * k + 1;
    const w1 = this.startWriter(p, writer, WRITE_SECONDS, plan.writerSeed);
    const writerLogs = [w1.logPath];
    await sleep(plan.faultAfterMs);
    let splitBrain = false;
    switch (plan.fault) {
      case 'kill-primary':
      case 'kill-secondary': {
        const victim = plan.fault === 'kill-primary' ? p : s;
        const pid = pidsBefore.get(victim);
        if (pid === null || pid === undefined) throw fail(`no resource process on ${victim.name} to kill`);
        await victim.execOk('kill', ['-9', String(pid)]);
        killedByNemesis.add(victim);
        break;
      }
      case 'power-cut-primary':
      case 'power-cut-secondary': {
        const victim = plan.fault === 'power-cut-primary' ? p : s;
        await this.control(victim, 'fault.power-cut');
        await victim.kill();
        killedByNemesis.add(victim);
        break;
      }
      case 'partition-both':
        for (const n of this.nodes) await this.iptables(n, ['-A', 'INPUT', '-s', this.pair.other(n).address, '-j', 'DROP']);
        await sleep(PARTITION_MS);
        for (const n of this.nodes) await this.iptables(n, ['-F', 'INPUT']);
        break;
      case 'partition-one-way':
        await this.iptables(s, ['-A', 'INPUT', '-s', p.address, '-j', 'DROP']);
        await sleep(PARTITION_MS);
        await this.iptables(s, ['-F', 'INPUT']);
        break;
      case 'restart-secondary':
        await this.admOk(s, ['down', RESOURCE]);
        killedByNemesis.add(s);
        await this.admOk(s, ['up', RESOURCE]);
        break;
      case 'disk-eio':
        await this.control(p, 'fault.plan', { plan: { rules: [{ op: 'write', effect: 'eio', count: 1 }], powerCut: true } });
        break;
      case 'disk-stall':
        await this.control(p, 'fault.plan', { plan: { rules: [{ op: 'write', effect: 'stall', count: 5, stallMs: STALL_MS }], powerCut: true } });
        break;
      case 'reset-connection': {
        // Both TCP connections (data and meta) reset under the running writer, as a middlebox or
        // `conntrack`-driven firewall reset would: ss -K sends the RST from the Primary's namespace.
        const out = await p.execOk('ss', ['-K', '-t', 'state', 'established', `( sport = :${PORT} or dport = :${PORT} )`]);
        if (!out.includes(`:${PORT}`)) throw fail(`ss -K found no established connection on port ${PORT}:\n${out}`);
        break;
      }
      case 'disk-eio-secondary':
        await this.control(s, 'fault.plan', { plan: { rules: [{ op: 'write', effect: 'eio', count: 1 }], powerCut: true } });
        break;
      case 'split-brain': {
        const w = await w1.done;
        this.log(`  writer ${writer}: ${w}`);
        for (const n of this.nodes) await this.iptables(n, ['-A', 'INPUT', '-s', this.pair.other(n).address, '-j', 'DROP']);
        await waitUntil('both sides lose the link', async () => (await Promise.all(this.nodes.map((n) => this.state(n, 'cstate')))).every((c) => c !== 'Connected'), HEAL_TIMEOUT_MS, 200);
        await this.admOk(s, ['primary', RESOURCE]);
        const wS = this.startWriter(s, writer + 1, 1, plan.writerSeed + 1);
        const sOut = await wS.done;
        this.log(`  writer ${writer + 1} on ${s.name} (split brain, to be discarded): ${sOut}`);
        const w2 = this.startWriter(p, writer + 2, 1, plan.writerSeed + 2);
        writerLogs.push(w2.logPath);
        this.log(`  writer on ${p.name}: ${await w2.done}`);
        await this.admOk(s, ['secondary', RESOURCE]);
        for (const n of this.nodes) await this.iptables(n, ['-F', 'INPUT']);
        await waitUntil('split brain detected on both nodes', () => this.nodes.every((n) => this.splitBrainReported(n, logStart.get(n) ?? 0)), HEAL_TIMEOUT_MS, 250).catch((err: unknown) => {
          throw fail(`split brain not reported on both nodes: ${(err as Error).message}\n${this.nodes.map((n) => this.logTail(n)).join('\n')}`);
        });
        splitBrain = true;
        // The seed's recovery: the victim (s) discards its changes.
        await this.waitStandAloneOrConnected(s);
        await this.adm(s, ['disconnect', RESOURCE]);
        await this.admOk(s, ['secondary', RESOURCE]);
        await this.admOk(s, ['connect', '--discard-my-data', RESOURCE]);
        await this.adm(p, ['connect', RESOURCE]);
        break;
      }
      default: {
        const never: never = plan.fault;
        throw new Error(`unknown fault ${String(never)}`);
      }
    }
    const w1Out = await w1.done;
    this.log(`  writer ${writer} on ${p.name}: ${w1Out}`);
    // Fail over when the Primary died, and write on the survivor before the old Primary returns.
    if (plan.fault === 'kill-primary' || plan.fault === 'power-cut-primary') {
      const to = await this.failover(p);
      const w2 = this.startWriter(to, writer + 1, 1, plan.writerSeed + 1);
      writerLogs.push(w2.logPath);
      this.log(`  failover to ${to.name}; writer ${writer + 1}: ${await w2.done}`);
    }
    // Heal.
    if (plan.fault === 'disk-eio' || plan.fault === 'disk-stall') {
      await this.control(p, 'fault.plan', { plan: { rules: [], powerCut: true } });
    }
    if (plan.fault === 'disk-eio-secondary') {
      await this.control(s, 'fault.plan', { plan: { rules: [], powerCut: true } });
      await waitUntil(`${s.name} detached after the EIO`, async () => (await this.state(s, 'dstate')).startsWith('Diskless'), HEAL_TIMEOUT_MS, 200).catch((err: unknown) => {
        throw fail(`on-io-error detach on the Secondary: ${(err as Error).message}\n${this.logTail(s)}`);
      });
      await this.admOk(s, ['attach', RESOURCE]);
    }
    for (const n of killedByNemesis) if (plan.fault !== 'restart-secondary') await this.reboot(n);
    if (plan.fault === 'disk-eio') {
      await waitUntil(`${p.name} detached after the EIO`, async () => (await this.state(p, 'dstate')).startsWith('Diskless'), HEAL_TIMEOUT_MS, 200).catch((err: unknown) => {
        throw fail(`on-io-error detach: ${(err as Error).message}\n${this.logTail(p)}`);
      });
      await this.admOk(p, ['attach', RESOURCE]);
    }
    try {
      await this.waitConnected(this.primary);
      await this.waitUpToDate();
    } catch (err) {
      throw fail(`no heal: ${(err as Error).message}`);
    }
    // Check: no unexpected death.
    for (const [n, pid] of pidsBefore) {
      if (killedByNemesis.has(n)) continue;
      const now = await this.daemonPid(n);
      if (now !== pid) throw fail(`resource process on ${n.name} died (pid ${String(pid)} -> ${String(now)}) though the nemesis did not kill it\n${this.logTail(n)}`);
    }
    // Check: every acknowledged write is on the Primary with its latest acknowledged content.
    let ackedInEpisode = 0;
    for (const l of writerLogs) ackedInEpisode += this.absorb(l);
    const seen = await this.readDevice(this.primary);
    let checked = 0;
    for (let b = 0; b < BLOCKS; b++) {
      const m = this.model[b];
      const got = seen.get(b);
      if (m === undefined || got === undefined) throw fail(`block ${b} not read`);
      if (got === 'bad') throw fail(`block ${b} on ${this.primary.name} is torn or not a stamp`);
      if (got === 'zero') {
        if (m.acked !== null) throw fail(`block ${b}: acknowledged (${m.acked.writer}, ${m.acked.seq}) but zero on ${this.primary.name}`);
        continue;
      }
      const isAcked = m.acked !== null && got.writer === m.acked.writer && got.seq === m.acked.seq;
      const isLaterUnacked = m.unacked.some((u) => u.writer === got.writer && u.seq === got.seq) && later(got, m.acked);
      if (!isAcked && !isLaterUnacked) {
        throw fail(`block ${b}: ${this.primary.name} has (${got.writer}, ${got.seq}); last acknowledged ${m.acked === null ? 'none' : `(${m.acked.writer}, ${m.acked.seq})`}`);
      }
      if (m.acked !== null) checked++;
      m.acked = got;
      m.unacked = [];
    }
    // Check: both data areas identical (both are UpToDate).
    const dataBytes = Number((await this.primary.execOk('blockdev', ['--getsize64', DEVICE])).trim());
    const hashes = this.nodes.map((n) => this.hashDisk(n, dataBytes));
    if (hashes[0] !== hashes[1]) throw fail(`both UpToDate/UpToDate but the data areas differ: ${hashes.join(' vs ')}`);
    // Check: split brain reported exactly when made, on both nodes.
    const reported = this.nodes.filter((n) => this.splitBrainReported(n, logStart.get(n) ?? 0)).length;
    if (!splitBrain && reported > 0) throw fail(`split brain reported on ${reported} node(s) in an episode that made none`);
    if (splitBrain && reported !== 2) throw fail(`split brain reported on ${reported} of 2 nodes`);
    // Check: every logged transition is legal.
    for (const n of this.nodes) {
      const problems = checkTransitions(fs.readFileSync(this.logPath(n), 'utf8'));
      if (problems.length > 0) throw fail(`illegal transitions on ${n.name}: ${problems.slice(0, 5).join('; ')}`);
    }
    f.episodes++;
    f.ackedWrites += ackedInEpisode;
    f.ackedChecked += checked;
    f.bytesVerified += BLOCKS * BLOCK_BYTES + 2 * dataBytes;
    if (splitBrain) {
      f.splitBrainsTotal++;
      if (reported === 2) f.splitBrainsBoth++;
    }
    this.log(`  ok: ${ackedInEpisode} acknowledged this episode, ${checked} blocks checked, primary ${this.primary.name}`);
  }

  private async waitStandAloneOrConnected(node: NetnsNode): Promise<void> {
    await waitUntil(`${node.name} StandAlone after split brain`, async () => ['StandAlone', 'Connected', 'WFConnection'].includes(await this.state(node, 'cstate')), HEAL_TIMEOUT_MS, 200);
  }

  async destroy(): Promise<string[]> {
    return this.pair.destroy();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function emptyFigures(): Record<Fault, FaultFigures> {
  const out = {} as Record<Fault, FaultFigures>;
  for (const f of FAULTS) out[f] = { episodes: 0, ackedWrites: 0, ackedChecked: 0, bytesVerified: 0, splitBrainsBoth: 0, splitBrainsTotal: 0 };
  return out;
}

export function formatReport(r: TortureReport): string {
  const lines = [`seed ${r.seed}: ${r.episodes} episodes`, 'fault                 episodes  acked-writes  blocks-checked  bytes-verified  split-brains(both/total)'];
  for (const f of FAULTS) {
    const x = r.perFault[f];
    lines.push(`${f.padEnd(22)}${String(x.episodes).padStart(8)}${String(x.ackedWrites).padStart(14)}${String(x.ackedChecked).padStart(16)}${String(x.bytesVerified).padStart(16)}  ${x.splitBrainsBoth}/${x.splitBrainsTotal}`);
  }
  return lines.join('\n');
}

/** Sets up the pair, runs episodes until `seconds` or EPISODES_MAX (or only `episode`), tears down. */
export async function runTorture(options: TortureOptions): Promise<TortureReport> {
  const log = options.log ?? ((l: string) => process.stdout.write(`${l}\n`));
  log(`torture: seed ${options.seed}, ${options.seconds} s${options.episode === undefined ? '' : `, episode ${options.episode} only`}`);
  const t = new Torture(options);
  const report: TortureReport = { seed: options.seed, episodes: 0, perFault: emptyFigures() };
  const deadline = Date.now() + options.seconds * 1000;
  let failure: unknown = null;
  try {
    await t.setup();
    if (options.episode !== undefined) {
      await t.episode(options.episode, report.perFault);
      report.episodes = 1;
    } else {
      for (let k = 1; k <= EPISODES_MAX && Date.now() < deadline; k++) {
        await t.episode(k, report.perFault);
        report.episodes = k;
      }
    }
  } catch (err) {
    failure = err;
  } finally {
    const problems = await t.destroy();
    if (process.env.UDRBD_TORTURE_KEEP === undefined && failure === null) fs.rmSync(options.baseDir, { recursive: true, force: true });
    if (problems.length > 0 && failure === null) failure = new Error(`teardown problems: ${problems.join('; ')}`);
  }
  if (failure !== null) {
    if (failure instanceof TortureFailure) throw failure;
    throw new Error(`torture: seed ${options.seed}: ${(failure as Error).message}\nreplay: npm run torture -- --seed ${options.seed}`, { cause: failure });
  }
  log(formatReport(report));
  return report;
}
