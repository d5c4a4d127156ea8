/**
 * daemon/handlers — runs a configured DRBD handler (split-brain, fence-peer,
 * before-resync-target, ...) the way drbdadm dispatches them: through
 * `/bin/sh -c CMD` with DRBD's environment (DRBD_RESOURCE, DRBD_MINOR,
 * DRBD_VOLUME, DRBD_LL_DISK, DRBD_CONF, DRBD_PEER_ADDRESS, DRBD_PEER_AF,
 * DRBD_PEERS, DRBD_PEER) and a bounded run time. Knows nothing of states.
 */
import { spawn } from 'node:child_process';
import type { Logger } from '../util/log.js';

/** A handler still running after this long is killed (DRBD waits forever; we bound it). */
export const HANDLER_TIMEOUT_MS = 60_000;

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
  log.info({ handler: name }, `helper command: ${command} ${name} minor-${ctx.minor}`);
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], {
      env: { ...process.env, ...handlerEnv(ctx) },
      stdio: ['ignore', 'ignore', 'ignore'],
    });
    const timer = setTimeout(() => {
      log.warn({ handler: name }, `helper command: ${command} ${name} minor-${ctx.minor} timed out after ${HANDLER_TIMEOUT_MS} ms, killing it`);
      child.kill('SIGKILL');
    }, HANDLER_TIMEOUT_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      log.error({ handler: name, err: err.message }, `helper command: ${command} ${name} minor-${ctx.minor} could not be run`);
      resolve(-1);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const exitCode = code ?? -1;
      log.info(
        { handler: name, exitCode, signal },
        `helper command: ${command} ${name} minor-${ctx.minor} exit code ${exitCode} (0x${((exitCode & 0xff) << 8).toString(16)})`,
      );
      resolve(exitCode);
    });
  });
}
