/**
 * util/log — the one pino logger factory. Structured, one event per state
 * change; messages use DRBD's kernel-log vocabulary (`conn( A -> B )`).
 * Level from UDRBD_LOG_LEVEL (default info); destination stderr unless the
 * daemon passes a file descriptor.
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export function createLogger(bindings: Record<string, unknown> = {}, dest?: DestinationStream): Logger {
  const level = process.env.UDRBD_LOG_LEVEL ?? 'info';
  const destination = dest ?? pino.destination({ fd: 2, sync: false });
  return pino({ level, base: { pid: process.pid, ...bindings } }, destination);
}

/** A logger that drops everything; for unit tests of code that requires one. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
