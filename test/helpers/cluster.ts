/**
 * test/helpers/cluster — two udrbd nodes of one resource on one machine, for
 * integration tests: a temp dir with two sparse file-backed disks (create-md
 * by the real drbdmeta; internal meta-data, or external on a meta file per
 * node with `metaDisk`), a config with hosts alpha (127.0.0.1) and beta
 * (127.0.0.2), per-node runtime/log dirs via UDRBD_RUN_DIR/UDRBD_LOG_DIR, and
 * `adm(node, ...)` running the built `udrbdadm`. `destroy()` always tears
 * everything down — down both, kill -9 leftovers by pid file, remove the
 * temp dir — and is safe to call after a failed test.
 */
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ControlClient } from '../../src/control/client.js';
import { runtimePaths, readPid, isProcessAlive, type RuntimePaths } from '../../src/control/paths.js';
import { computeLayout } from '../../src/meta/superblock.js';
import { FaultProxy } from './fault-proxy.js';

/** The checkout: the nearest directory above this file with a package.json (also from a compiled copy, e.g. build/). */
export const ROOT = findCheckout(path.dirname(fileURLToPath(import.meta.url)));
function findCheckout(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}
export const UDRBDADM = path.join(ROOT, 'dist', 'cli', 'udrbdadm.js');
export const DAEMON = path.join(ROOT, 'dist', 'daemon', 'udrbd.js');
export const DRBDMETA = '/usr/sbin/drbdmeta';

/** A fresh sparse backing file of `sizeBytes` with internal v08 meta-data made by the real drbdmeta. */
export function createInternalMetaDisk(diskPath: string, sizeBytes: number): void {
  fs.writeFileSync(diskPath, '');
  fs.truncateSync(diskPath, sizeBytes);
  const r = spawnSync(DRBDMETA, ['--force', '/dev/drbd9', 'v08', diskPath, 'internal', 'create-md'], { encoding: 'utf8', input: 'yes\n', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`drbdmeta create-md ${diskPath} failed (${r.status ?? r.signal}): ${r.stderr}`);
}


/**
 * The resync settings every Cluster config gets unless the test names the keyword itself
 * (configText): the fixed rate at DRBD 8.4's c-max-rate default and no c-min-rate throttle.
 */
export const TEST_RESYNC_DISK_LINES: readonly string[] = ['c-plan-ahead 0;', 'resync-rate 100M;', 'c-min-rate 0;'];

export type NodeName = 'alpha' | 'beta';
export const NODES: readonly NodeName[] = ['alpha', 'beta'];

export interface ClusterOptions {
  resource?: string;
  /** Backing file size per node (default 64 MiB). */
  diskSizeBytes?: number;
  /** Listening port on both addresses (default 7701). */
  port?: number;
  protocol?: 'A' | 'B' | 'C';
  /** Extra lines inside `net { }`; one naming connect-int, ping-int or ping-timeout replaces that default. */
  net?: string[];
  /** Extra lines inside `disk { }`; one naming c-plan-ahead, resync-rate or c-min-rate replaces that default (TEST_RESYNC_DISK_LINES). */
  disk?: string[];
  /** Handler name → command (inside `handlers { }`). */
  handlers?: Record<string, string>;
  /** Skip create-md (tests of attach failures). */
  skipCreateMd?: boolean;
  /**
   * Put a fault proxy on the link: each node gets its own config file in which
   * the peer's address is a proxy (on the peer's IP, port + 10000) that
   * forwards to the peer from this node's IP. `cut()` / `restore()` act on both.
   */
  proxy?: boolean;
  /** Extra `net { }` lines for one node only (needs `proxy: true`, which gives each node its own config). */
  netPerNode?: Partial<Record<NodeName, string[]>>;
  /** UDRBD_FRONTEND for both nodes (default 'none': NBD socket only; e2e tests use 'auto'/'fuse'). */
  frontend?: 'auto' | 'nbd' | 'fuse' | 'none';
  /** Minor (and /dev/drbdN) of alpha; beta gets the next one (default 10: drbd10/drbd11). */
  minorBase?: number;
  /**
   * External meta-data on a file per node (`<node>.md.img`): `meta-disk FILE [index]`
   * (the file is (index+1) × 128 MiB, sparse) or `flexible-meta-disk FILE` (sizeBytes, default 4 MiB).
   */
  metaDisk?: { kind: 'indexed'; index: number } | { kind: 'flexible'; sizeBytes?: number };
  /** Put each node's device, disk and meta-disk in `volume N { }` (default: no volume block, volume 0). */
  volume?: number;
  /**
   * Several volumes (internal meta-data): `volume N { }` per number, in this
   * order. The first uses `disks[node]`; volume N's disk is `<node>.vN.img`
   * (volumeDisk). Minors: alpha minorBase + 2k, beta minorBase + 2k + 1 for
   * the k-th volume. Replaces `volume`.
   */
  volumes?: number[];
}

export interface AdmResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export function requireTools(): void {
  for (const [what, file] of [['built udrbdadm (run `npm run build`)', UDRBDADM], ['built udrbd daemon (run `npm run build`)', DAEMON], ['drbdmeta from drbd-utils', DRBDMETA]] as const) {
    if (!fs.existsSync(file)) throw new Error(`test prerequisite missing: ${what} at ${file}`);
  }
}

export class Cluster {
  readonly dir: string;
  readonly resource: string;
  readonly configPath: string;
  readonly port: number;
  readonly disks: Record<NodeName, string>;
  /** The external meta-data files (options.metaDisk), else the data disks. */
  readonly metaDisks: Record<NodeName, string>;
  readonly env: NodeJS.ProcessEnv;
  readonly addresses: Record<NodeName, string> = { alpha: '127.0.0.1', beta: '127.0.0.2' };
  private readonly clients: ControlClient[] = [];
  /** proxies[X] sits in front of node X (the other node dials it). */
  readonly proxies: Partial<Record<NodeName, FaultProxy>> = {};
  readonly configPaths: Record<NodeName, string>;

  constructor(readonly options: ClusterOptions = {}) {
    requireTools();
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-'));
    this.resource = options.resource ?? 'r0';
    this.port = options.port ?? 7701;
    this.configPath = path.join(this.dir, 'udrbd.conf');
    this.disks = { alpha: path.join(this.dir, 'alpha.img'), beta: path.join(this.dir, 'beta.img') };
    this.metaDisks = options.metaDisk
      ? { alpha: path.join(this.dir, 'alpha.md.img'), beta: path.join(this.dir, 'beta.md.img') }
      : { ...this.disks };
    this.env = {
      ...process.env,
      UDRBD_RUN_DIR: path.join(this.dir, 'run'),
      UDRBD_LOG_DIR: path.join(this.dir, 'log'),
      UDRBD_LOG_LEVEL: process.env.UDRBD_LOG_LEVEL ?? 'debug',
      // Integration tests use the NBD socket only: no FUSE mount or loop device to leak on kill -9.
      UDRBD_FRONTEND: options.frontend ?? 'none',
    };
    const sizeBytes = options.diskSizeBytes ?? 64 * 1024 * 1024;
    for (const node of NODES) {
      fs.writeFileSync(this.disks[node], '');
      fs.truncateSync(this.disks[node], sizeBytes);
      const md = options.metaDisk;
      if (md) {
        fs.writeFileSync(this.metaDisks[node], '');
        fs.truncateSync(this.metaDisks[node], md.kind === 'indexed' ? (md.index + 1) * 128 * 1024 * 1024 : (md.sizeBytes ?? 4 * 1024 * 1024));
      }
      if (!options.skipCreateMd) this.createMd(node);
      for (const vnr of (options.volumes ?? []).slice(1)) {
        const disk = this.volumeDisk(node, vnr);
        fs.writeFileSync(disk, '');
        fs.truncateSync(disk, sizeBytes);
        if (!options.skipCreateMd) this.createMdOn(disk);
      }
    }
    fs.writeFileSync(this.configPath, this.configText());
    this.configPaths = { alpha: this.configPath, beta: this.configPath };
    if (options.proxy) {
      for (const node of NODES) {
        const other = node === 'alpha' ? 'beta' : 'alpha';
        this.configPaths[node] = path.join(this.dir, `${node}.conf`);
        fs.writeFileSync(this.configPaths[node], this.configText({ [other]: this.port + 10000 }, options.netPerNode?.[node] ?? []));
      }
    }
  }

  /** Both nodes up and Connected (a fresh pair: both Inconsistent); starts the proxies first when there are any. */
  async upConnected(): Promise<void> {
    await this.startProxies();
    await this.admOk('alpha', ['up', this.resource]);
    await this.admOk('beta', ['up', this.resource]);
    // cstate prints a line per volume (drbdadm-84 runs it per minor).
    const connected = (this.options.volumes ?? [0]).map(() => 'Connected').join('\n');
    await this.waitState('alpha', 'cstate', connected);
    await this.waitState('beta', 'cstate', connected);
  }

  /** The fresh connected pair most tests start from: upConnected, then primary --force on alpha and the full sync to beta done. */
  async upSynced(): Promise<void> {
    await this.upConnected();
    await this.admOk('alpha', ['primary', '--force', this.resource]);
    await this.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    await this.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await this.waitState('alpha', 'cstate', 'Connected');
  }

  /** Starts the proxies (only with `proxy: true`). */
  async startProxies(): Promise<void> {
    if (!this.options.proxy) return;
    for (const node of NODES) {
      const other = node === 'alpha' ? 'beta' : 'alpha';
      const proxy = new FaultProxy({
        listen: { host: this.addresses[node], port: this.port + 10000 },
        target: { host: this.addresses[node], port: this.port },
        sourceHost: this.addresses[other],
      });
      await proxy.start();
      this.proxies[node] = proxy;
    }
  }

  /** Cut the link: close every proxied connection and refuse new ones. */
  cut(): void {
    for (const p of Object.values(this.proxies)) p.cut();
  }

  restore(): void {
    for (const p of Object.values(this.proxies)) p.restore();
  }

  /**
   * Hold every byte `from` sends to the other node (connections stay open):
   * proxies[X] sits in front of X, so X's bytes are its 'down' direction and
   * the other proxy's 'up'. `thaw()` releases them.
   */
  freezeFrom(from: NodeName): void {
    const other = from === 'alpha' ? 'beta' : 'alpha';
    this.proxies[from]?.freeze('down');
    this.proxies[other]?.freeze('up');
  }

  thaw(): void {
    for (const p of Object.values(this.proxies)) p.thaw();
  }

  /** Bytes that crossed the proxies in both directions so far. */
  proxyBytes(): number {
    let total = 0;
    for (const p of Object.values(this.proxies)) total += p.bytesUp + p.bytesDown;
    return total;
  }

  configText(portOverride: Partial<Record<NodeName, number>> = {}, extraNet: string[] = []): string {
    const o = this.options;
    const extra = [...(o.net ?? []), ...extraNet];
    // A default the test sets itself (e.g. `ping-int 30;`) is left out rather than given twice.
    const keyword = (line: string): string => line.trim().split(/\s+/)[0] ?? '';
    const defaults = ['connect-int 1;', 'ping-int 2;', 'ping-timeout 10;'].filter((d) => !extra.some((e) => keyword(e) === keyword(d)));
    const net = [`protocol ${o.protocol ?? 'C'};`, ...defaults, ...extra];
    // DRBD 8.4's resync defaults (c-plan-ahead 20, c-fill-target 100 sectors) keep only 50 KiB in
    // flight and ramp up slowly; a test not about the controller configures the resync the way a tuned
    // operator does (fixed rate at the old ceiling, c-max-rate's 100M; no yielding to application I/O).
    // A keyword the test sets itself replaces its default here.
    const diskExtra = o.disk ?? [];
    const diskDefaults = TEST_RESYNC_DISK_LINES.filter((d) => !diskExtra.some((e) => keyword(e) === keyword(d)));
    const disk = [...diskDefaults, ...diskExtra];
    const handlers = Object.entries(o.handlers ?? {}).map(([k, v]) => `${k} "${v}";`);
    const lines = [
      `resource ${this.resource} {`,
      `  net { ${net.join(' ')} }`,
      `  disk { ${disk.join(' ')} }`,
      ...(handlers.length ? [`  handlers { ${handlers.join(' ')} }`] : []),
    ];
    const minorBase = o.minorBase ?? 10;
    NODES.forEach((node, i) => {
      const address = this.addresses[node];
      if (o.volumes !== undefined) {
        lines.push(`  on ${node} {`);
        o.volumes.forEach((vnr, k) => {
          const minor = minorBase + 2 * k + i;
          lines.push(`    volume ${vnr} {`, `      device /dev/drbd${minor} minor ${minor};`, `      disk ${this.volumeDisk(node, vnr)};`, '      meta-disk internal;', '    }');
        });
        lines.push(`    address ${address}:${portOverride[node] ?? this.port};`, `  }`);
        return;
      }
      const volumeLines = [
        `device /dev/drbd${minorBase + i} minor ${minorBase + i};`,
        `disk ${this.disks[node]};`,
        this.metaDiskLine(node),
      ];
      lines.push(
        `  on ${node} {`,
        ...(o.volume === undefined
          ? volumeLines.map((l) => `    ${l}`)
          : [`    volume ${o.volume} {`, ...volumeLines.map((l) => `      ${l}`), '    }']),
        `    address ${address}:${portOverride[node] ?? this.port};`,
        `  }`,
      );
    });
    lines.push('}', '');
    return lines.join('\n');
  }

  private metaDiskLine(node: NodeName): string {
    const md = this.options.metaDisk;
    if (!md) return 'meta-disk internal;';
    return md.kind === 'indexed' ? `meta-disk ${this.metaDisks[node]} [${md.index}];` : `flexible-meta-disk ${this.metaDisks[node]};`;
  }

  /** drbdmeta's device and index arguments for node's meta-data. */
  drbdmetaArgs(node: NodeName): [string, string] {
    const md = this.options.metaDisk;
    if (!md) return [this.disks[node], 'internal'];
    return [this.metaDisks[node], md.kind === 'indexed' ? String(md.index) : 'flex-external'];
  }

  createMd(node: NodeName): void {
    const r = spawnSync(DRBDMETA, ['--force', '/dev/drbd9', 'v08', ...this.drbdmetaArgs(node), 'create-md'], { encoding: 'utf8', input: 'yes\n' });
    if (r.status !== 0) throw new Error(`drbdmeta create-md on ${this.metaDisks[node]} failed (${r.status}): ${r.stderr}`);
  }

  private createMdOn(disk: string): void {
    const r = spawnSync(DRBDMETA, ['--force', '/dev/drbd9', 'v08', disk, 'internal', 'create-md'], { encoding: 'utf8', input: 'yes\n' });
    if (r.status !== 0) throw new Error(`drbdmeta create-md on ${disk} failed (${r.status}): ${r.stderr}`);
  }

  /** Volume vnr's backing file on node (options.volumes): the first volume's is disks[node]. */
  volumeDisk(node: NodeName, vnr: number): string {
    const first = this.options.volumes?.[0];
    return first === undefined || vnr === first ? this.disks[node] : path.join(this.dir, `${node}.v${vnr}.img`);
  }

  paths(node: NodeName): RuntimePaths {
    return runtimePaths(this.resource, node, this.env);
  }

  logPath(node: NodeName): string {
    return this.paths(node).logPath;
  }

  logText(node: NodeName): string {
    try {
      return fs.readFileSync(this.logPath(node), 'utf8');
    } catch {
      return '';
    }
  }

  /** Runs `udrbdadm -c CONF --node NODE ...args` from dist; never throws on a non-zero exit. */
  adm(node: NodeName, args: string[], timeoutMs = 90_000): Promise<AdmResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [UDRBDADM, '-c', this.configPaths[node], '--node', node, ...args], {
        env: this.env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`udrbdadm --node ${node} ${args.join(' ')} did not finish within ${timeoutMs} ms`));
      }, timeoutMs);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ exitCode: code ?? -1, stdout, stderr });
      });
    });
  }

  /** Like adm() but throws with the output when the exit code is not 0. */
  async admOk(node: NodeName, args: string[], timeoutMs?: number): Promise<string> {
    const r = await this.adm(node, args, timeoutMs);
    if (r.exitCode !== 0) {
      throw new Error(`udrbdadm --node ${node} ${args.join(' ')} exited ${r.exitCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}\nlog tail:\n${this.logText(node).split('\n').slice(-15).join('\n')}`);
    }
    return r.stdout;
  }

  async query(node: NodeName, verb: 'role' | 'cstate' | 'dstate'): Promise<string> {
    return (await this.admOk(node, [verb, this.resource])).trim();
  }

  async statusJson(node: NodeName): Promise<Record<string, unknown>> {
    const text = await this.admOk(node, ['status', '--json', this.resource]);
    return (JSON.parse(text) as Record<string, unknown>[])[0]!;
  }

  /** A control connection for diagnostic io.* requests (closed by destroy()). */
  async client(node: NodeName): Promise<ControlClient> {
    const c = await ControlClient.connect(this.paths(node));
    this.clients.push(c);
    return c;
  }

  /** Writes `data` at `offsetBytes` through node's replicated volume (diagnostic io.write). */
  async write(node: NodeName, offsetBytes: number, data: Buffer, volume?: number): Promise<void> {
    const c = await this.client(node);
    const reply = await c.request('io.write', { offsetBytes, base64: data.toString('base64'), ...(volume === undefined ? {} : { volume }) });
    if (!reply.ok) throw new Error(`io.write on ${node} failed (${reply.exitCode}): ${reply.stderr}`);
  }

  /** Polls `predicate` every 100 ms until true or `timeoutMs` passes (then throws `what`). */
  async waitFor(what: string, predicate: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await predicate()) return;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async waitState(node: NodeName, verb: 'role' | 'cstate' | 'dstate', expected: string | RegExp, timeoutMs = 30_000): Promise<void> {
    let last = '';
    try {
      await this.waitFor(`${node} ${verb} = ${String(expected)}`, async () => {
        last = await this.query(node, verb);
        return typeof expected === 'string' ? last === expected : expected.test(last);
      }, timeoutMs);
    } catch (err) {
      const tail = (n: NodeName): string => this.logText(n).split('\n').filter((l) => !l.includes('ECONNREFUSED')).slice(-20).join('\n');
      throw new Error(`${(err as Error).message} (last: ${last})\n${node} log tail:\n${tail(node)}\n${node === 'alpha' ? 'beta' : 'alpha'} log tail:\n${tail(node === 'alpha' ? 'beta' : 'alpha')}`);
    }
  }

  /** Data-area size of node's backing file (from the v08 layout). */
  dataSizeBytes(node: NodeName): number {
    const size = fs.statSync(this.disks[node]).size;
    // External meta-data: the whole data disk (whole 4 KiB blocks) is data.
    return this.options.metaDisk ? Math.floor(size / 4096) * 4096 : computeLayout(size).dataSizeBytes;
  }

  /** sha256 of the data area of node's backing file (its first `sizeBytes`, default all of it). */
  hashDataArea(node: NodeName, sizeBytes: number = this.dataSizeBytes(node), volume?: number): string {
    const size = sizeBytes;
    const fd = fs.openSync(volume === undefined ? this.disks[node] : this.volumeDisk(node, volume), 'r');
    try {
      const hash = crypto.createHash('sha256');
      const chunk = Buffer.alloc(1024 * 1024);
      for (let pos = 0; pos < size; ) {
        const n = fs.readSync(fd, chunk, 0, Math.min(chunk.length, size - pos), pos);
        if (n <= 0) throw new Error('short read hashing data area');
        hash.update(chunk.subarray(0, n));
        pos += n;
      }
      return hash.digest('hex');
    } finally {
      fs.closeSync(fd);
    }
  }

  readDisk(node: NodeName, offsetBytes: number, lengthBytes: number, volume?: number): Buffer {
    const fd = fs.openSync(volume === undefined ? this.disks[node] : this.volumeDisk(node, volume), 'r');
    try {
      const b = Buffer.alloc(lengthBytes);
      fs.readSync(fd, b, 0, lengthBytes, offsetBytes);
      return b;
    } finally {
      fs.closeSync(fd);
    }
  }

  pid(node: NodeName): number | undefined {
    return readPid(this.paths(node));
  }

  /** kill -9 the node's resource process (crash). */
  kill9(node: NodeName): void {
    const pid = this.pid(node);
    if (pid !== undefined && isProcessAlive(pid)) process.kill(pid, 'SIGKILL');
  }

  async waitGone(node: NodeName, timeoutMs = 10_000): Promise<void> {
    const pid = this.pid(node);
    await this.waitFor(`${node} resource process gone`, () => pid === undefined || !isProcessAlive(pid), timeoutMs);
  }

  /** Tear down everything, whatever state the test left it in. */
  async destroy(): Promise<void> {
    for (const c of this.clients) c.close();
    this.clients.length = 0;
    await Promise.all(
      NODES.map(async (node) => {
        try {
          await this.adm(node, ['down', this.resource], 20_000);
        } catch {
          /* fall through to kill -9 */
        }
      }),
    );
    for (const node of NODES) {
      const pid = this.pid(node);
      if (pid !== undefined && isProcessAlive(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      // a process that never wrote its pid file still holds the lock file
      try {
        const lockPid = Number(fs.readFileSync(this.paths(node).lockPath, 'utf8').trim());
        if (lockPid > 1 && isProcessAlive(lockPid)) process.kill(lockPid, 'SIGKILL');
      } catch {
        /* no lock */
      }
    }
    for (const p of Object.values(this.proxies)) await p.stop().catch(() => undefined);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
