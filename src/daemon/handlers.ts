/**
 * daemon/handlers — runs a configured DRBD handler (split-brain, fence-peer,
 * before-resync-target, ...) the way drbdadm dispatches them: through
 * `/bin/sh -c CMD` with DRBD's environment (DRBD_RESOURCE, DRBD_MINOR,
 * DRBD_VOLUME, DRBD_LL_DISK, DRBD_CONF, DRBD_PEER_ADDRESS, DRBD_PEER_AF,
 * DRBD_PEERS, DRBD_PEER) and a bounded run time; its output lines go to the
 * resource's log. Knows nothing of states.
 */
import { spawn } from 'node:child_process';
import type { Logger } from '../util/log.js';

/** A handler still running after this long is killed (DRBD waits forever; we bound it). */
export const HANDLER_TIMEOUT_MS = 60_000;
/**
 * fence-peer gets longer: crm-fence-peer.sh's own defaults wait up to
 * --flock-timeout 120 s for the lock, --dc-timeout 20 s for a DC and
 * --timeout 90 s for the peer's state before it answers.
 */
export const FENCE_PEER_TIMEOUT_MS = 300_000;

/** A handler's stdout/stderr lines go to the log (`helper output: ...`), at most this many per run... */
export const HANDLER_OUTPUT_LINES_MAX = 200;
/** ...each cut to this many characters. */
const HANDLER_LINE_CHARS_MAX = 1_000;
/** Output still arriving this long after the handler exited is read; then the pipes are closed. */
const HANDLER_OUTPUT_GRACE_MS = 1_000;

/** Connection helpers: DRBD names them by resource (`fence-peer r0`), the others by minor (`minor-1`). */
const CONNECTION_HELPERS: ReadonlySet<string> = new Set(['fence-peer', 'unfence-peer']);

/** How long handler `name` may run. */
export function handlerTimeoutMs(name: string): number {
  return CONNECTION_HELPERS.has(name) ? FENCE_PEER_TIMEOUT_MS : HANDLER_TIMEOUT_MS;
}

export interface HandlerContext {
  resource: string;
  minor: number;
  volume: number;
  lowerDisk: string;
  configPath: string;
  peerHost: string | undefined;
  peerAddress: string | undefined;
  peerFamily: string;
}

export function handlerEnv(ctx: HandlerContext): Record<string, string> {
  const env: Record<string, string> = {
    HOME: '/',
    TERM: 'linux',
    PATH: '/sbin:/usr/sbin:/bin:/usr/bin',
    DRBD_RESOURCE: ctx.resource,
    DRBD_MINOR: String(ctx.minor),
    DRBD_VOLUME: String(ctx.volume),
    DRBD_LL_DISK: ctx.lowerDisk,
    DRBD_CONF: ctx.configPath,
    DRBD_PEER_AF: ctx.peerFamily,
  };
  if (ctx.peerAddress) env.DRBD_PEER_ADDRESS = ctx.peerAddress;
  if (ctx.peerHost) {
    env.DRBD_PEERS = ctx.peerHost;
    env.DRBD_PEER = ctx.peerHost;
  }
  return env;
}

/** Runs `command` for handler `name`; resolves with its exit code (-1 if it could not run / timed out). */
export function runHandler(name: string, command: string, ctx: HandlerContext, log: Logger): Promise<number> {
  const target = CONNECTION_HELPERS.has(name) ? ctx.resource : `minor-${ctx.minor}`;
  const timeoutMs = handlerTimeoutMs(name);
  log.info({ handler: name }, `helper command: ${command} ${name} ${target}`);
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], {
      env: { ...process.env, ...handlerEnv(ctx) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let linesLogged = 0;
    const logOutput = (stream: NodeJS.ReadableStream | null): (() => void) => {
      let partial = '';
      const emit = (line: string): void => {
        if (line === '' || linesLogged >= HANDLER_OUTPUT_LINES_MAX) return;
        linesLogged++;
        log.info({ handler: name }, `helper output: ${line.slice(0, HANDLER_LINE_CHARS_MAX)}`);
      };
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n');
        partial = (lines.pop() ?? '').slice(-HANDLER_LINE_CHARS_MAX);
        for (const line of lines) emit(line);
      });
      return () => emit(partial);
    };
    const flushStdout = logOutput(child.stdout);
    const flushStderr = logOutput(child.stderr);
    // A background process the handler left behind may hold the pipes: stop reading soon after its exit.
    let reading = true;
    const stopReading = (): void => {
      if (!reading) return;
      reading = false;
      flushStdout();
      flushStderr();
      child.stdout?.destroy();
      child.stderr?.destroy();
    };
    const timer = setTimeout(() => {
      log.warn({ handler: name }, `helper command: ${command} ${name} ${target} timed out after ${timeoutMs} ms, killing it`);
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      log.error({ handler: name, err: err.message }, `helper command: ${command} ${name} ${target} could not be run`);
      resolve(-1);
    });
    child.on('close', stopReading);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      setTimeout(stopReading, HANDLER_OUTPUT_GRACE_MS).unref();
      const exitCode = code ?? -1;
      log.info(
        { handler: name, exitCode, signal },
        `helper command: ${command} ${name} ${target} exit code ${exitCode} (0x${((exitCode & 0xff) << 8).toString(16)})`,
      );
      resolve(exitCode);
    });
  });
}
