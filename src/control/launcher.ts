/**
 * control/launcher — how udrbdadm starts a resource process: spawn
 * `node dist/daemon/udrbd.js --config F --node N --resource R --mode M`
 * detached, read its one readiness line from fd 3 ({"ready":true} once
 * attached, or {"ready":false,"exitCode":N,"message":"..."}), then let it run
 * on its own. Also waits for a stopping process to be gone. Knows nothing of
 * what the process does.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UdrbdError, ExitCode } from '../util/errors.js';
import { type RuntimePaths, isProcessAlive, readPid } from './paths.js';

/** How long `up` waits for the resource process to report attached. */
export const READY_TIMEOUT_MS = 60_000;
/** How long `down` waits for the process to exit after it acknowledged. */
export const EXIT_TIMEOUT_MS = 30_000;
const POLL_INTERVAL_MS = 50;

/** up: attach and connect; attach: attach only; new: neither (`new-resource`, the volume follows with `new-minor`). */
export type DaemonMode = 'up' | 'attach' | 'new';

export interface ReadyMessage {
  ready: boolean;
  exitCode?: number;
  message?: string;
}

/** Path of the daemon entry script (dist), also when running from TypeScript sources under vitest. */
export function daemonScriptPath(): string {
  if (process.env.UDRBD_DAEMON_SCRIPT) return process.env.UDRBD_DAEMON_SCRIPT;
  const here = fileURLToPath(import.meta.url);
  // dist/control/launcher.js → dist/daemon/udrbd.js; src/control/launcher.ts → <root>/dist/daemon/udrbd.js
  if (here.endsWith('.js')) return path.join(path.dirname(here), '..', 'daemon', 'udrbd.js');
  return path.resolve(path.dirname(here), '..', '..', 'dist', 'daemon', 'udrbd.js');
}

/**
 * UDRBD_NODE_ARGS: extra Node.js flags for the resource process, split on
 * white space (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile it;
 * NODE_OPTIONS refuses --cpu-prof). Only flags: anything not starting with
 * `-` is refused, so the script and its arguments cannot be displaced.
 */
export function nodeArgsFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  const args = (env.UDRBD_NODE_ARGS ?? '').split(/\s+/).filter((a) => a.length > 0);
  for (const arg of args) {
    if (!arg.startsWith('-')) throw new UdrbdError(`UDRBD_NODE_ARGS takes Node.js flags only, not '${arg}'`, ExitCode.usage);
  }
  return args;
}

/**
 * glibc's malloc tuning for the resource process, unless the operator set it.
 * Node allocates a fresh 64 KiB buffer for every socket read; they die young
 * and are freed in bursts after a GC, and glibc then trims the heap top back
 * to the kernel, so the next reads fault every page in again (measured with
 * perf: page faults under the socket copy were the largest kernel cost of an
 * NBD write stream, and the resource process spent 5.5 CPU s per GiB written
 * instead of 1.3). Keeping some heap as pad above the top stops that churn;
 * untouched pad costs no RSS.
 */
export const MALLOC_TOP_PAD_BYTES = 64 * 1024 * 1024;

export function daemonEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  if (env.MALLOC_TOP_PAD_ !== undefined) return env;
  return { ...env, MALLOC_TOP_PAD_: String(MALLOC_TOP_PAD_BYTES) };
}

export async function startDaemon(opts: {
  configPath: string;
  node: string;
  resource: string;
  mode: DaemonMode;
  paths: RuntimePaths;
  extraArgs?: string[];
}): Promise<number> {
  const script = daemonScriptPath();
  if (!fs.existsSync(script)) {
    throw new UdrbdError(`udrbd resource process not found at ${script} (run 'npm run build')`, ExitCode.fatal);
  }
  const child = spawn(
    process.execPath,
    [...nodeArgsFromEnv(), script, '--config', path.resolve(opts.configPath), '--node', opts.node, '--resource', opts.resource, '--mode', opts.mode, ...(opts.extraArgs ?? [])],
    { detached: true, stdio: ['ignore', 'ignore', 'pipe', 'pipe'], env: daemonEnv() },
  );
  const readyPipe = child.stdio[3] as NodeJS.ReadableStream;
  const stderrPipe = child.stderr!;
  let stderrText = '';
  stderrPipe.on('data', (chunk: Buffer) => {
    if (stderrText.length < 64 * 1024) stderrText += chunk.toString('utf8');
  });
  const message = await new Promise<ReadyMessage>((resolve) => {
    let text = '';
    const timer = setTimeout(() => finish({ ready: false, exitCode: ExitCode.fatal, message: `udrbd resource ${opts.resource} on node ${opts.node}: no readiness report within ${READY_TIMEOUT_MS} ms; see ${opts.paths.logPath}` }), READY_TIMEOUT_MS);
    let done = false;
    const finish = (m: ReadyMessage): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(m);
    };
    readyPipe.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
      const nl = text.indexOf('\n');
      if (nl < 0) return;
      try {
        finish(JSON.parse(text.slice(0, nl)) as ReadyMessage);
      } catch {
        finish({ ready: false, exitCode: ExitCode.fatal, message: `udrbd: malformed readiness report: ${text.slice(0, nl)}` });
      }
    });
    child.on('exit', (code, signal) => {
      // Let a readiness line that raced with exit win.
      setTimeout(() => finish({
        ready: false,
        exitCode: ExitCode.fatal,
        message: `udrbd resource process for ${opts.resource} on node ${opts.node} exited (${signal ?? `code ${code}`}) before it was attached${stderrText ? `:\n${stderrText.trim()}` : ''}; see ${opts.paths.logPath}`,
      }), 20);
    });
  });
  (readyPipe as unknown as { destroy(): void }).destroy();
  stderrPipe.destroy();
  child.unref();
  if (!message.ready) {
    if (child.exitCode === null) {
      // Failed but still alive (should not happen): do not leave it behind.
      try {
        child.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }
    throw new UdrbdError(message.message ?? 'udrbd: resource process failed to start', message.exitCode ?? ExitCode.fatal);
  }
  return child.pid!;
}

/** Waits until the resource process (by pid file) is gone. */
export async function waitForExit(paths: RuntimePaths, pid: number | undefined = readPid(paths), timeoutMs: number = EXIT_TIMEOUT_MS): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const socketGone = !fs.existsSync(paths.socketPath);
    const processGone = pid === undefined || !isProcessAlive(pid);
    if (socketGone && processGone) return true;
    await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS));
  }
  return false;
}
