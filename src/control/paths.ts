/**
 * control/paths — where a resource process keeps its runtime files. Every path
 * is per resource AND per node, so two nodes of one resource can run on one
 * machine (tests, demos): /run/udrbd/<res>.<node>.{sock,pid,lock} and
 * /var/log/udrbd/<res>.<node>.log. UDRBD_RUN_DIR / UDRBD_LOG_DIR override the
 * directories (tests use temp dirs). Knows nothing of sockets or disks.
 */
import path from 'node:path';
import fs from 'node:fs';

export const DEFAULT_RUN_DIR = '/run/udrbd';
export const DEFAULT_LOG_DIR = '/var/log/udrbd';
/** Unix socket paths are limited to 107 bytes on Linux (sun_path is 108 incl. NUL). */
export const SOCKET_PATH_BYTES_MAX = 107;

export interface RuntimePaths {
  readonly resource: string;
  readonly node: string;
  readonly runDir: string;
  readonly logDir: string;
  readonly socketPath: string;
  readonly pidPath: string;
  readonly lockPath: string;
  readonly logPath: string;
}

const NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.+-]*$/;

export function runtimePaths(resource: string, node: string, env: NodeJS.ProcessEnv = process.env): RuntimePaths {
  if (!NAME_PATTERN.test(resource)) throw new Error(`invalid resource name '${resource}'`);
  if (!NAME_PATTERN.test(node)) throw new Error(`invalid node name '${node}'`);
  const runDir = env.UDRBD_RUN_DIR || DEFAULT_RUN_DIR;
  const logDir = env.UDRBD_LOG_DIR || DEFAULT_LOG_DIR;
  const base = `${resource}.${node}`;
  const socketPath = path.join(runDir, `${base}.sock`);
  if (Buffer.byteLength(socketPath) > SOCKET_PATH_BYTES_MAX) {
    throw new Error(`control socket path too long (${Buffer.byteLength(socketPath)} > ${SOCKET_PATH_BYTES_MAX} bytes): ${socketPath}`);
  }
  return {
    resource,
    node,
    runDir,
    logDir,
    socketPath,
    pidPath: path.join(runDir, `${base}.pid`),
    lockPath: path.join(runDir, `${base}.lock`),
    logPath: path.join(logDir, `${base}.log`),
  };
}

/** Creates the run dir (0700, root-only) and the log dir. */
export function ensureRuntimeDirs(paths: RuntimePaths): void {
  fs.mkdirSync(paths.runDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(paths.runDir, 0o700);
  fs.mkdirSync(paths.logDir, { recursive: true, mode: 0o755 });
}

/** Reads the pid file; undefined when absent or garbage. */
export function readPid(paths: RuntimePaths): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(paths.pidPath, 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 1 ? pid : undefined;
}

/** True when `pid` exists and is not a zombie (a kill -9'd process not yet reaped is dead to us). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}
