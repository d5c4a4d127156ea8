// scripts/bench/cluster — udrbd nodes for the benchmarks: sparse backing
// files (create-md by the real drbdmeta), one config with hosts alpha
// (127.0.0.1) and beta (127.0.0.2) on a bench-only port, per-cluster runtime
// and log dirs, `adm()` running the built udrbdadm, control-socket io.write,
// and a destroy() registered with lib's cleanups that downs both nodes and
// kill -9s leftovers by pid file. Knows nothing of what is measured.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { computeLayout } from '../../dist/meta/superblock.js';
import { onCleanup, sleep, sparseFile, workDir } from './lib.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const UDRBDADM = path.join(ROOT, 'dist', 'cli', 'udrbdadm.js');
const DRBDMETA = '/usr/sbin/drbdmeta';
/** Not 7701 nor 774x-779x: the integration tests use those and may run at the same time. */
const BENCH_PORT = 7891;
const ADDRESSES = { alpha: '127.0.0.1', beta: '127.0.0.2' };
const ADM_TIMEOUT_MS = 120_000;
const IO_WRITE_BYTES_MAX = 4 * 1024 * 1024;
/** The resync runs as fast as the disks allow (a fixed rate far above them) and never yields to application I/O. */
const BENCH_RESYNC_DISK_LINES = ['c-plan-ahead 0;', 'resync-rate 4096M;', 'c-min-rate 0;'];

export class BenchCluster {
  /**
   * @param {object} o
   * @param {string} o.name        part name (temp dir, resource name)
   * @param {number} o.sizeBytes   backing file size per node
   * @param {string[]} [o.net]     extra net { } lines
   * @param {string[]} [o.disk]    extra disk { } lines
   * @param {number} [o.minorBase] device minors (/dev/drbdN links) for alpha, beta
   * @param {object} [o.env]       extra environment for the resource processes
   * @param {number} [o.port]      replication port (default BENCH_PORT; pairs up at once need their own)
   */
  constructor(o) {
    this.dir = workDir(o.name);
    this.resource = `bench${o.name.replace(/[^a-z0-9]/g, '')}`;
    this.disks = { alpha: path.join(this.dir, 'alpha.img'), beta: path.join(this.dir, 'beta.img') };
    this.env = {
      ...process.env,
      UDRBD_RUN_DIR: path.join(this.dir, 'run'),
      UDRBD_LOG_DIR: path.join(this.dir, 'log'),
      UDRBD_LOG_LEVEL: 'info',
      ...(o.env ?? {}),
    };
    for (const node of ['alpha', 'beta']) {
      sparseFile(this.disks[node], o.sizeBytes);
      const r = spawnSync(DRBDMETA, ['--force', '/dev/drbd9', 'v08', this.disks[node], 'internal', 'create-md'], { encoding: 'utf8', input: 'yes\n' });
      if (r.status !== 0) throw new Error(`drbdmeta create-md failed: ${r.stderr}`);
    }
    const minorBase = o.minorBase ?? 60;
    // Resync unlimited unless the part sets its own pacing: a keyword in o.disk replaces its default here.
    const keyword = (line) => line.trim().split(/\s+/)[0];
    const diskExtra = o.disk ?? [];
    const diskLines = [...BENCH_RESYNC_DISK_LINES.filter((d) => !diskExtra.some((e) => keyword(e) === keyword(d))), ...diskExtra];
    this.configPath = path.join(this.dir, 'udrbd.conf');
    const lines = [
      `resource ${this.resource} {`,
      `  net { protocol C; connect-int 1; ping-int 2; ping-timeout 10; ${(o.net ?? []).join(' ')} }`,
      `  disk { ${diskLines.join(' ')} }`,
    ];
    ['alpha', 'beta'].forEach((node, i) => {
      lines.push(
        `  on ${node} {`,
        `    device /dev/drbd${minorBase + i} minor ${minorBase + i};`,
        `    disk ${this.disks[node]};`,
        `    address ${ADDRESSES[node]}:${o.port ?? BENCH_PORT};`,
        `    meta-disk internal;`,
        `  }`,
      );
    });
    lines.push('}', '');
    fs.writeFileSync(this.configPath, lines.join('\n'));
    /** Bytes of each backing file's data area (before the internal meta-data). */
    this.dataBytes = computeLayout(o.sizeBytes).dataSizeBytes;
    this.used = new Set();
    this.controls = new Map();
    onCleanup(() => this.destroy());
  }

  /** Runs `udrbdadm -c CONF --node NODE ...args`; resolves { code, stdout, stderr }. */
  adm(node, args, timeoutMs = ADM_TIMEOUT_MS) {
    this.used.add(node);
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [UDRBDADM, '-c', this.configPath, '--node', node, ...args], {
        env: this.env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c) => (stdout += c));
      child.stderr.on('data', (c) => (stderr += c));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`udrbdadm ${node} ${args.join(' ')} did not finish in ${timeoutMs} ms`));
      }, timeoutMs);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
  }

  async admOk(node, args, timeoutMs) {
    const r = await this.adm(node, args, timeoutMs);
    if (r.code !== 0) {
      throw new Error(`udrbdadm --node ${node} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}\nlog tail:\n${this.logTail(node)}`);
    }
    return r.stdout;
  }

  logTail(node, lines = 15) {
    try {
      return fs.readFileSync(path.join(this.env.UDRBD_LOG_DIR, `${this.resource}.${node}.log`), 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** `status --json` over a persistent control connection (no udrbdadm process per poll). */
  async status(node) {
    const reply = await this.request(node, 'status', { json: true });
    if (!reply.ok) throw new Error(`status on ${node} failed: ${reply.stderr}`);
    return JSON.parse(reply.stdout);
  }

  /** One request on the node's control socket; one connection per node, one request at a time. */
  async request(node, verb, args = {}) {
    let c = this.controls.get(node);
    if (c === undefined || c.socket.destroyed) {
      c = await openControl(path.join(this.env.UDRBD_RUN_DIR, `${this.resource}.${node}.sock`));
      this.controls.set(node, c);
    }
    return c.request(verb, args);
  }

  pid(node) {
    try {
      const pid = Number(fs.readFileSync(path.join(this.env.UDRBD_RUN_DIR, `${this.resource}.${node}.pid`), 'utf8').trim());
      return pid > 1 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** Polls `status --json` every `pollMs` until `predicate(status)` (bounded). */
  async waitStatus(node, what, predicate, timeoutMs = 120_000, pollMs = 100) {
    const deadline = Date.now() + timeoutMs;
    let last;
    for (;;) {
      last = await this.status(node);
      if (predicate(last)) return last;
      if (Date.now() > deadline) throw new Error(`${node}: timed out waiting for ${what} (last: ${last.cstate} ${last.disk}/${last.peerDisk})\n${this.logTail(node)}`);
      await sleep(pollMs);
    }
  }

  /**
   * Watches the node's state-change events (the control socket's `events`
   * stream), so a timed section ends when the state changes rather than at
   * the next status poll (a 20 ms poll overshot a 0.2 s resync by 5% on
   * average). Open it before the timed action; see openEvents for until().
   */
  watchState(node) {
    return openEvents(path.join(this.env.UDRBD_RUN_DIR, `${this.resource}.${node}.sock`), node);
  }

  /** A verb over the control socket (no udrbdadm start-up in timed sections); throws on failure. */
  async verb(node, verb, args = {}) {
    const reply = await this.request(node, verb, args);
    if (!reply.ok) throw new Error(`${verb} on ${node} failed (${reply.exitCode}): ${reply.stderr}`);
    return reply.stdout;
  }

  /** up + disconnect + primary --force: one node alone, UpToDate, StandAlone. */
  async standalonePrimary(node = 'alpha') {
    await this.admOk(node, ['up', this.resource]);
    await this.admOk(node, ['disconnect', this.resource]);
    await this.admOk(node, ['primary', '--force', this.resource]);
    return this.status(node);
  }

  /** Writes `data` at `offsetBytes` through the node's replicated volume (control socket io.write, ≤ 4 MiB). */
  async ioWrite(node, offsetBytes, data) {
    if (data.length > IO_WRITE_BYTES_MAX) throw new Error('ioWrite: at most 4 MiB per call');
    const reply = await this.request(node, 'io.write', { offsetBytes, base64: data.toString('base64') });
    if (!reply.ok) throw new Error(`io.write failed: ${reply.stderr}`);
  }

  /** /proc/PID/status VmHWM and VmRSS in bytes. */
  memory(node) {
    const pid = this.pid(node);
    const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1]) * 1024;
    return { hwmBytes: kib('VmHWM'), rssBytes: kib('VmRSS') };
  }

  /** utime + stime of the node's resource process, seconds. */
  cpuSeconds(node) {
    const pid = this.pid(node);
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  }

  async destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const c of this.controls.values()) c.socket.destroy();
    await Promise.all(
      [...this.used].map(async (node) => {
        try {
          await this.adm(node, ['down', this.resource], 30_000);
        } catch {
          /* kill below */
        }
      }),
    );
    for (const node of this.used) {
      const pid = this.pid(node);
      if (pid === undefined || !isOurDaemon(pid)) continue;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      // the next cluster reuses the bench port: wait until this process is really gone
      for (const deadline = Date.now() + 10_000; isOurDaemon(pid) && Date.now() < deadline; ) await sleep(50);
    }
  }
}

function isOurDaemon(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('udrbd.js');
  } catch {
    return false;
  }
}

const CONTROL_REPLY_TIMEOUT_MS = 60_000;

/** A line-JSON control connection: request(verb, args) → reply, strictly one at a time. */
function openControl(socketPath) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    socket.setEncoding('utf8');
    let buf = '';
    let waiting = null;
    let nextId = 1;
    let chain = Promise.resolve();
    socket.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const w = waiting;
        waiting = null;
        w?.resolve(JSON.parse(line));
      }
    });
    socket.on('error', (err) => {
      waiting?.reject(err);
      reject(err);
    });
    socket.on('close', () => waiting?.reject(new Error(`control socket ${socketPath} closed`)));
    socket.on('connect', () =>
      resolve({
        socket,
        request(verb, args) {
          const p = chain.then(
            () =>
              new Promise((res, rej) => {
                const timer = setTimeout(() => rej(new Error(`control request ${verb} timed out`)), CONTROL_REPLY_TIMEOUT_MS);
                waiting = {
                  resolve: (v) => (clearTimeout(timer), res(v)),
                  reject: (e) => (clearTimeout(timer), rej(e)),
                };
                socket.write(JSON.stringify({ id: nextId++, verb, args }) + '\n');
              }),
          );
          chain = p.catch(() => undefined);
          return p;
        },
      }),
    );
  });
}

/**
 * A subscription to a node's state events. `state` mirrors the events'
 * fields: { role, peerRole, connection, replication, disk, peerDisk }.
 * `until(predicate, what, timeoutMs)` resolves performance.now() at the
 * event after which predicate(state) holds, having first seen it not hold
 * (the starting state may already match: UpToDate/UpToDate before an
 * invalidate-remote). Resolves once the initial `exists` events are in.
 */
function openEvents(socketPath, node) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    socket.setEncoding('utf8');
    const state = {};
    let buf = '';
    let onEvent = null;
    let ready = false;
    const watch = {
      state,
      until(predicate, what, timeoutMs) {
        return new Promise((res, rej) => {
          let seenUnmatched = !predicate(state);
          const timer = setTimeout(() => {
            onEvent = null;
            rej(new Error(`${node}: timed out after ${timeoutMs} ms waiting for ${what} (state ${JSON.stringify(state)})`));
          }, timeoutMs);
          onEvent = (atMs) => {
            if (!predicate(state)) seenUnmatched = true;
            else if (seenUnmatched) {
              clearTimeout(timer);
              onEvent = null;
              res(atMs);
            }
          };
        });
      },
      close() {
        socket.destroy();
      },
    };
    socket.on('data', (d) => {
      const atMs = performance.now();
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const message = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (message.event === undefined) {
          if (!message.ok) reject(new Error(`events on ${node} refused: ${message.stderr}`));
          continue;
        }
        const { object, kind, fields } = message.event;
        if (object === 'resource') state.role = fields.role;
        else if (object === 'connection') Object.assign(state, { connection: fields.connection, peerRole: fields.role });
        else if (object === 'device') state.disk = fields.disk;
        else if (object === 'peer-device') Object.assign(state, { replication: fields.replication, peerDisk: fields['peer-disk'] });
        // the peer-device event is the last of the initial set
        if (!ready && kind === 'exists' && object === 'peer-device') {
          ready = true;
          resolve(watch);
        }
        onEvent?.(atMs);
      }
    });
    socket.on('error', reject);
    socket.on('connect', () => socket.write(`${JSON.stringify({ id: 1, verb: 'events', args: {} })}\n`));
  });
}

