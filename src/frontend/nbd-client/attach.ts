/**
 * frontend/nbd-client/attach — gives the kernel a /dev/nbdX backed by our NBD
 * server's unix socket, by driving Debian 12's `nbd-client` (3.24) through
 * execa: pick a free device from sysfs, make sure the nbd module and the tool
 * exist, attach (`nbd-client -unix SOCK /dev/nbdX -b 4096 -t SECS -N EXPORT`)
 * and detach (`nbd-client -d /dev/nbdX`). Process execution and sysfs reads
 * are injected so argument building and error mapping are unit-testable.
 * Knows nothing of the NBD server's internals, replication or roles.
 */
import fs from 'node:fs';
import { execa } from 'execa';
import { UdrbdError, ExitCode } from '../../util/errors.js';

/** Result of running a program; `exitCode` is null when it could not be started or was killed. */
export interface ExecResult {
  readonly exitCode: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Node error code when the program could not be started (e.g. 'ENOENT'). */
  readonly spawnErrorCode?: string;
  readonly timedOut?: boolean;
}

export type ExecFn = (file: string, args: readonly string[], timeoutMs: number) => Promise<ExecResult>;

/** The filesystem reads this module needs (sysfs, /dev). */
export interface SysFs {
  exists(path: string): boolean;
  readdir(path: string): string[];
}

export interface NbdClientDeps {
  readonly exec: ExecFn;
  readonly sysfs: SysFs;
}

export const NBD_CLIENT = 'nbd-client';
/** nbd-client 3.24 accepts 512, 1024, 2048 and 4096. */
export const NBD_BLOCK_SIZES_BYTES = [512, 1024, 2048, 4096] as const;
/** sun_path is 108 bytes including the terminating NUL. */
const UNIX_SOCKET_PATH_MAX_BYTES = 107;
/** How long one nbd-client / modprobe invocation may take. */
const EXEC_TIMEOUT_MS = 30_000;
/** Devices scanned for a free one (the module's default nbds_max is 16). */
const NBD_DEVICES_SCANNED_MAX = 256;

const MODULE_MISSING = 'the kernel has no nbd module: use the FUSE + loop frontend';

/** execa-backed ExecFn: never throws for a non-zero exit; reports spawn failures. */
export const execaExec: ExecFn = async (file, args, timeoutMs) => {
  const r = await execa(file, [...args], { reject: false, timeout: timeoutMs, stdin: 'ignore' });
  const result: ExecResult = {
    exitCode: typeof r.exitCode === 'number' ? r.exitCode : null,
    stdout: typeof r.stdout === 'string' ? r.stdout : '',
    stderr: typeof r.stderr === 'string' ? r.stderr : '',
    timedOut: r.timedOut,
  };
  return r.code !== undefined && r.exitCode === undefined ? { ...result, spawnErrorCode: r.code } : result;
};

export const realSysFs: SysFs = {
  exists: (path) => fs.existsSync(path),
  readdir: (path) => {
    try {
      return fs.readdirSync(path);
    } catch {
      return [];
    }
  },
};

export const defaultDeps: NbdClientDeps = { exec: execaExec, sysfs: realSysFs };

export interface AttachOptions {
  /** Unix socket the udrbd NBD server listens on. */
  readonly socketPath: string;
  /** /dev/nbdX to attach. */
  readonly device: string;
  readonly exportName: string;
  /** Logical block size the kernel uses; default 4096. */
  readonly blockSizeBytes?: number;
  /** Kernel request timeout, seconds; default 30. */
  readonly timeoutSeconds?: number;
  /** Connections nbd-client opens (multi-conn); default 1. */
  readonly connections?: number;
}

const DEVICE_RE = /^\/dev\/nbd(\d+)$/;

/** Argument list for `nbd-client` (3.24) attaching `device` to a unix socket. */
export function buildAttachArgs(options: AttachOptions): string[] {
  const blockSize = options.blockSizeBytes ?? 4096;
  const timeoutSeconds = options.timeoutSeconds ?? 30;
  const connections = options.connections ?? 1;
  if (!DEVICE_RE.test(options.device)) {
    throw new UdrbdError(`'${options.device}' is not an nbd device (expected /dev/nbdN)`, ExitCode.usage);
  }
  if (!(NBD_BLOCK_SIZES_BYTES as readonly number[]).includes(blockSize)) {
    throw new UdrbdError(`nbd block size must be one of ${NBD_BLOCK_SIZES_BYTES.join(', ')}, not ${blockSize}`, ExitCode.usage);
  }
  if (!Number.isSafeInteger(timeoutSeconds) || timeoutSeconds < 1) {
    throw new UdrbdError(`nbd timeout must be a whole number of seconds >= 1, not ${timeoutSeconds}`, ExitCode.usage);
  }
  if (!Number.isSafeInteger(connections) || connections < 1 || connections > 16) {
    throw new UdrbdError(`nbd connections must be between 1 and 16, not ${connections}`, ExitCode.usage);
  }
  if (!options.socketPath.startsWith('/') || Buffer.byteLength(options.socketPath) > UNIX_SOCKET_PATH_MAX_BYTES) {
    throw new UdrbdError(
      `NBD socket path '${options.socketPath}' must be absolute and at most ${UNIX_SOCKET_PATH_MAX_BYTES} bytes`,
      ExitCode.usage,
    );
  }
  if (options.exportName.length === 0) {
    // nbd-client treats a missing -N as the default export, but be explicit about what we serve.
    throw new UdrbdError('nbd export name must not be empty', ExitCode.usage);
  }
  const args = ['-unix', options.socketPath, options.device, '-b', String(blockSize), '-t', String(timeoutSeconds), '-N', options.exportName];
  if (connections > 1) args.push('-C', String(connections));
  return args;
}

export function buildDetachArgs(device: string): string[] {
  if (!DEVICE_RE.test(device)) {
    throw new UdrbdError(`'${device}' is not an nbd device (expected /dev/nbdN)`, ExitCode.usage);
  }
  return ['-d', device];
}

/** True when the kernel has the nbd driver (sysfs) — loading it with modprobe if needed. */
export async function ensureKernelNbd(deps: NbdClientDeps = defaultDeps): Promise<void> {
  if (deps.sysfs.exists('/sys/module/nbd')) return;
  const r = await deps.exec('modprobe', ['nbd'], EXEC_TIMEOUT_MS);
  if (r.exitCode === 0 && deps.sysfs.exists('/sys/module/nbd')) return;
  const detail = r.spawnErrorCode ? `modprobe could not run (${r.spawnErrorCode})` : lastLine(r.stderr) || `modprobe nbd exited ${r.exitCode}`;
  throw new UdrbdError(`${MODULE_MISSING} (${detail})`, ExitCode.fatal);
}

/** Lowest-numbered /dev/nbdN that no client has connected (no /sys/block/nbdN/pid). */
export function findFreeNbdDevice(deps: NbdClientDeps = defaultDeps): string {
  const indexes = deps.sysfs
    .readdir('/sys/block')
    .map((name) => /^nbd(\d+)$/.exec(name))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b)
    .slice(0, NBD_DEVICES_SCANNED_MAX);
  if (indexes.length === 0) throw new UdrbdError(MODULE_MISSING + ' (no /sys/block/nbd* devices)', ExitCode.fatal);
  for (const i of indexes) {
    if (!deps.sysfs.exists(`/sys/block/nbd${i}/pid`) && deps.sysfs.exists(`/dev/nbd${i}`)) return `/dev/nbd${i}`;
  }
  throw new UdrbdError(
    `all ${indexes.length} nbd devices are in use; load the module with more (modprobe nbd nbds_max=N) or detach one`,
    ExitCode.fatal,
  );
}

/** True when `device` is connected (sysfs pid file present). */
export function isNbdConnected(device: string, deps: NbdClientDeps = defaultDeps): boolean {
  const m = DEVICE_RE.exec(device);
  if (!m) return false;
  return deps.sysfs.exists(`/sys/block/nbd${m[1]}/pid`);
}

/**
 * Attaches `options.device` (or a free one when omitted) to the server's
 * socket. Returns the device path. Errors are UdrbdErrors an operator can act on.
 */
export async function attachNbd(
  options: Omit<AttachOptions, 'device'> & { device?: string },
  deps: NbdClientDeps = defaultDeps,
): Promise<string> {
  await ensureKernelNbd(deps);
  const device = options.device ?? findFreeNbdDevice(deps);
  if (isNbdConnected(device, deps)) {
    throw new UdrbdError(`${device} is already connected; detach it first (nbd-client -d ${device})`, ExitCode.fatal);
  }
  const args = buildAttachArgs({ ...options, device });
  const r = await deps.exec(NBD_CLIENT, args, EXEC_TIMEOUT_MS);
  checkResult(r, `attach ${device} to ${options.socketPath}`, device);
  if (!isNbdConnected(device, deps)) {
    throw new UdrbdError(`nbd-client reported success but ${device} is not connected (no /sys/block pid file)`, ExitCode.fatal);
  }
  return device;
}

/** Disconnects `device` (done on demotion). A device that is not connected is left alone. */
export async function detachNbd(device: string, deps: NbdClientDeps = defaultDeps): Promise<void> {
  const args = buildDetachArgs(device);
  if (!isNbdConnected(device, deps)) return;
  const r = await deps.exec(NBD_CLIENT, args, EXEC_TIMEOUT_MS);
  checkResult(r, `detach ${device}`, device);
}

/** Maps an nbd-client run to an operator error. */
function checkResult(r: ExecResult, what: string, device: string): void {
  if (r.spawnErrorCode === 'ENOENT') {
    throw new UdrbdError(`${NBD_CLIENT} is not installed (apt-get install nbd-client), cannot ${what}`, ExitCode.fatal);
  }
  if (r.spawnErrorCode) {
    throw new UdrbdError(`cannot run ${NBD_CLIENT} to ${what}: ${r.spawnErrorCode}`, ExitCode.fatal);
  }
  if (r.timedOut) {
    throw new UdrbdError(`${NBD_CLIENT} did not finish within ${EXEC_TIMEOUT_MS / 1000}s trying to ${what}`, ExitCode.fatal);
  }
  if (r.exitCode === 0) return;
  const text = `${r.stderr}\n${r.stdout}`;
  const last = lastLine(r.stderr) || lastLine(r.stdout) || `exit code ${r.exitCode}`;
  let hint = '';
  if (/module is loaded|nbd netlink family|Cannot open NBD: No such (file|device)/i.test(text)) {
    hint = `; ${MODULE_MISSING}`;
  } else if (/Connection refused|No such file or directory/i.test(text) && /Socket failed/i.test(text)) {
    hint = '; is the resource up and its NBD server listening?';
  } else if (/Device or resource busy|already/i.test(text)) {
    hint = `; ${device} is in use`;
  } else if (/Permission denied|Operation not permitted/i.test(text)) {
    hint = '; run as root';
  } else if (/unknown export|export .*not|Unknown export/i.test(text)) {
    hint = '; the export name does not match the resource';
  }
  throw new UdrbdError(`${NBD_CLIENT} could not ${what}: ${last}${hint}`, ExitCode.fatal);
}

function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  return lines.length > 0 ? lines[lines.length - 1]! : '';
}
