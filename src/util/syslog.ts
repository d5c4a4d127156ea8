/**
 * util/syslog — an optional second destination for a few chosen log lines:
 * syslog, through one long-lived `logger(1)` (util-linux) child fed one line
 * per message on its stdin with a `<N>` severity prefix (`--prio-prefix`).
 * Node has no unix datagram sockets, and logger already speaks /dev/log,
 * RFC 3164/5424, unix and UDP targets. Chosen by UDRBD_SYSLOG:
 *   unset, "" or "0"     off (the default)
 *   "1"                  the local syslog (/dev/log: journald, rsyslog)
 *   "unix:/PATH"         that unix datagram socket (logger -u)
 *   "udp:HOST:PORT"      that UDP syslog receiver (logger --rfc3164 -d -n HOST -P PORT)
 * UDRBD_SYSLOG_TAG sets the tag (default `kernel`, so the lines read like the
 * kernel module's in /var/log/syslog). Facility daemon: logger turns
 * userspace `kern` into `user`. Writes never block or throw: a full pipe
 * (64 KiB) drops lines and counts them, a dead logger ends syslog output
 * with one warning in the pino log. Knows nothing of DRBD's wording.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { UdrbdError, ExitCode } from './errors.js';
import type { Logger } from './log.js';

export type SyslogTarget =
  | { kind: 'local' }
  | { kind: 'unix'; socketPath: string }
  | { kind: 'udp'; host: string; port: number };

/** syslog severities (RFC 5424) used here. */
export const Severity = { err: 3, warning: 4, notice: 5, info: 6 } as const;
export type Severity = (typeof Severity)[keyof typeof Severity];

export const DEFAULT_SYSLOG_TAG = 'kernel';
/** Unwritten bytes queued to logger's stdin before lines are dropped instead. */
export const SYSLOG_QUEUE_BYTES_MAX = 64 * 1024;
/** Longest line handed to logger (it splits longer ones itself; ours are short). */
export const SYSLOG_LINE_CHARS_MAX = 1024;
/** How much of logger's stderr is kept for the warning when it dies. */
const STDERR_CHARS_MAX = 512;
/** How long close() waits for logger to drain and exit. */
const CLOSE_TIMEOUT_MS = 2_000;

const USAGE = "UDRBD_SYSLOG takes 1 (local syslog), unix:/PATH or udp:HOST:PORT; unset it or set 0 for no syslog";

/** The target UDRBD_SYSLOG names, undefined when syslog is off; a malformed value is refused. */
export function syslogTargetFromEnv(env: NodeJS.ProcessEnv = process.env): SyslogTarget | undefined {
  const value = (env.UDRBD_SYSLOG ?? '').trim();
  if (value === '' || value === '0') return undefined;
  if (value === '1') return { kind: 'local' };
  if (value.startsWith('unix:')) {
    const socketPath = value.slice('unix:'.length);
    if (!socketPath.startsWith('/')) throw new UdrbdError(`UDRBD_SYSLOG=${value}: the unix socket path must be absolute. ${USAGE}`, ExitCode.usage);
    return { kind: 'unix', socketPath };
  }
  if (value.startsWith('udp:')) {
    const rest = value.slice('udp:'.length);
    const colon = rest.lastIndexOf(':');
    const host = colon > 0 ? rest.slice(0, colon).replace(/^\[(.*)\]$/, '$1') : '';
    const port = colon > 0 ? Number(rest.slice(colon + 1)) : Number.NaN;
    if (host === '' || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw new UdrbdError(`UDRBD_SYSLOG=${value}: expected udp:HOST:PORT with a port 1..65535. ${USAGE}`, ExitCode.usage);
    }
    return { kind: 'udp', host, port };
  }
  throw new UdrbdError(`UDRBD_SYSLOG=${value} is not understood. ${USAGE}`, ExitCode.usage);
}

/** logger(1)'s arguments for a target: facility daemon, severity from each line's `<N>` prefix. */
export function loggerArgs(target: SyslogTarget, tag: string = DEFAULT_SYSLOG_TAG): string[] {
  const args = ['--prio-prefix', '-p', 'daemon.info', '-t', tag, '--socket-errors=on'];
  switch (target.kind) {
    case 'local':
      return args;
    case 'unix':
      return [...args, '-u', target.socketPath];
    case 'udp':
      // RFC 3164 (`<30>Dec  1 20:39:24 host kernel: block drbd1: …`), the form local syslog writes and
      // operators grep; logger's remote default would be RFC 5424.
      return [...args, '--rfc3164', '-d', '-n', target.host, '-P', String(target.port)];
  }
}

export interface SyslogSinkOptions {
  tag?: string;
  /** Where the sink reports its own trouble (logger missing or dead, dropped lines). */
  log: Logger;
  /** logger(1) executable (default `logger` on PATH). */
  loggerPath?: string;
}

export class SyslogSink {
  private readonly child: ChildProcess;
  private alive = true;
  private inputBroken = false;
  private droppedLines = 0;
  private stderrText = '';
  private readonly exited: Promise<void>;

  constructor(
    readonly target: SyslogTarget,
    private readonly options: SyslogSinkOptions,
  ) {
    this.child = spawn(options.loggerPath ?? 'logger', loggerArgs(target, options.tag), { stdio: ['pipe', 'ignore', 'pipe'] });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      if (this.stderrText.length < STDERR_CHARS_MAX) this.stderrText = (this.stderrText + chunk.toString('utf8')).slice(0, STDERR_CHARS_MAX);
    });
    // EPIPE when logger has gone: stop writing; 'close' (after its stderr is read) says why.
    this.child.stdin?.on('error', () => (this.inputBroken = true));
    this.exited = new Promise((resolve) => {
      this.child.once('error', (err) => {
        this.stop(`it could not be started (${err.message}); install util-linux's logger or unset UDRBD_SYSLOG`);
        resolve();
      });
      this.child.once('close', (code, signal) => {
        this.stop(`it exited (${signal ?? `code ${code}`})`);
        resolve();
      });
    });
  }

  /** Queues one line for syslog; never blocks, never throws. */
  write(severity: Severity, line: string): void {
    if (!this.alive || this.inputBroken) return;
    const stdin = this.child.stdin;
    if (!stdin || stdin.writableLength > SYSLOG_QUEUE_BYTES_MAX) {
      if (this.droppedLines++ === 0) this.options.log.warn({ queueBytes: stdin?.writableLength }, 'syslog: logger(1) is not keeping up; dropping lines for syslog (the pino log has them all)');
      return;
    }
    const text = line.replace(/[\r\n]+/g, ' ').slice(0, SYSLOG_LINE_CHARS_MAX);
    stdin.write(`<${severity}>${text}\n`);
  }

  /** Lines dropped because logger(1) did not keep up. */
  get dropped(): number {
    return this.droppedLines;
  }

  /** Ends logger's input and waits (bounded) for it to send what it has and exit. */
  async close(): Promise<void> {
    if (!this.alive) return;
    this.alive = false;
    this.child.stdin?.end();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.exited, new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_TIMEOUT_MS)))]);
    if (timer) clearTimeout(timer);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
  }

  private stop(why: string): void {
    if (!this.alive) return;
    this.alive = false;
    const stderr = this.stderrText.trim();
    this.options.log.warn(
      { syslog: this.target, loggerStderr: stderr || undefined },
      `syslog: logger(1) stopped: ${why}; no more lines go to syslog until the resource process restarts (check UDRBD_SYSLOG and the syslog socket)`,
    );
  }
}
