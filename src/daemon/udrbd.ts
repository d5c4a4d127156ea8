#!/usr/bin/env node
/**
 * daemon/udrbd — the resource process entry point:
 *   node dist/daemon/udrbd.js --config F --node N --resource R [--mode up|attach|new] [--discard-my-data]
 * Takes the per resource+node lock, logs (pino JSON) to the log file, attaches
 * (open disk + meta-data + apply AL), opens the control socket, reports ready
 * on fd 3 to the `udrbdadm up` that started it once its first listen on the
 * configured address succeeded (a failed one fails `up`, exit 10), and goes on
 * connecting to the peer.
 * SIGTERM behaves like `udrbdadm down`. A crash (kill -9) leaves the
 * meta-data unclean; the next attach recovers from the activity log.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { createLogger, type Logger } from '../util/log.js';
import { UdrbdError, ExitCode } from '../util/errors.js';
import { acquireLock } from '../control/lock.js';
import { ensureRuntimeDirs, runtimePaths, type RuntimePaths } from '../control/paths.js';
import { ControlServer } from '../control/control-server.js';
import { ResourceRuntime } from './runtime.js';
import { downEvents } from './events2.js';
import { loadSpec } from './config-adapter.js';
import { checkOptionsAtStart } from './option-support.js';
import { openMetaStore } from './meta-store.js';
import { wireReplication } from './wiring.js';
import { defineAdjust } from './adjust.js';
import { registerStartupInfo } from './startup-info.js';
import { ResourceFrontend, frontendModeFromEnv, nbdTcpFromEnv } from './frontend.js';
import type { ReadyMessage } from '../control/launcher.js';
import { SyslogSink, syslogTargetFromEnv } from '../util/syslog.js';
import { stateChangeToSyslog } from './kernel-log.js';

const READY_FD = 3;

function report(message: ReadyMessage): void {
  try {
    fs.writeSync(READY_FD, `${JSON.stringify(message)}\n`);
    fs.closeSync(READY_FD);
  } catch {
    /* started by hand without fd 3 */
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string' },
      node: { type: 'string' },
      resource: { type: 'string' },
      mode: { type: 'string', default: 'up' },
      'discard-my-data': { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (!values.config || !values.node || !values.resource) {
    report({ ready: false, exitCode: ExitCode.usage, message: 'usage: udrbd --config FILE --node NAME --resource RES [--mode up|attach|new]' });
    return ExitCode.usage;
  }
  // 'new': `new-resource` — the process without its volume (no attach, no connect) until `new-minor`.
  const mode = values.mode === 'attach' ? 'attach' : values.mode === 'new' ? 'new' : 'up';
  let paths: RuntimePaths;
  try {
    paths = runtimePaths(values.resource, values.node);
    ensureRuntimeDirs(paths);
  } catch (err) {
    report({ ready: false, exitCode: ExitCode.fatal, message: (err as Error).message });
    return ExitCode.fatal;
  }
  const lock = acquireLock(paths.lockPath);
  if (!lock.ok) {
    report({ ready: false, exitCode: ExitCode.configInvalid, message: `udrbd resource ${values.resource} is already up on node ${values.node} (pid ${lock.ownerPid})` });
    return ExitCode.configInvalid;
  }
  const log: Logger = createLogger(
    { resource: values.resource, node: values.node },
    pino.destination({ dest: paths.logPath, sync: true, mkdir: true }),
  );
  let server: ControlServer | undefined;
  let runtime: ResourceRuntime | undefined;
  let syslog: SyslogSink | undefined;
  const cleanup = async (): Promise<void> => {
    await server?.close().catch((err: Error) => log.warn({ err: err.message }, 'closing the control socket failed'));
    await syslog?.close();
    try {
      fs.unlinkSync(paths.pidPath);
    } catch {
      /* gone */
    }
    lock.release();
  };
  try {
    const spec = loadSpec(values.config, values.resource, values.node);
    checkOptionsAtStart(values.config, values.resource, values.node, log);
    log.info({ mode, config: values.config, pid: process.pid }, `udrbd resource process starting (${mode})`);
    // One block device per volume (/dev/drbdN per minor); each names its socket, mount and state files by its volume.
    const frontends = new Map(
      spec.volumes.map((v) => [v.volume, new ResourceFrontend({ resource: spec.name, node: spec.node, volume: v.volume, minor: v.minor, runDir: paths.runDir, devicePath: v.devicePath, mode: frontendModeFromEnv(), nbdTcp: nbdTcpFromEnv(), log })]),
    );
    // A previous process of this node killed -9 may have left its FUSE mounts, loop devices and links.
    for (const f of frontends.values()) await f.cleanupStale();
    const frontend = frontends.get(spec.volume);
    runtime = new ResourceRuntime({ spec, log, openStore: openMetaStore, frontend, frontends });
    const rt = runtime;
    // UDRBD_SYSLOG: state changes also go to syslog in the kernel module's wording (util/syslog).
    const syslogTarget = syslogTargetFromEnv();
    if (syslogTarget) {
      syslog = new SyslogSink(syslogTarget, { log, tag: process.env.UDRBD_SYSLOG_TAG || undefined });
      const sink = syslog;
      // One kernel-log writer per volume: each line names that volume's minor, as drbd's dev_info does.
      const writers = new Map(spec.volumes.map((v) => [v.volume, stateChangeToSyslog(sink, { resource: spec.name, minor: v.minor })]));
      rt.stateHooks.push((before, after, vnr) => writers.get(vnr)?.(before, after));
    }
    server = new ControlServer(paths.socketPath, (req) => rt.handle(req), log, () => rt.existingEvents());
    const srv = server;
    rt.onEvent((event) => srv.publish(event));
    defineAdjust(wireReplication(rt, { discardMyData: values['discard-my-data'] }));
    registerStartupInfo(rt);
    if (mode === 'new') rt.minorAllocated = false;
    else for (const vnr of rt.volumeNumbers) await rt.attach(vnr);
    await srv.listen();
    fs.writeFileSync(paths.pidPath, `${process.pid}\n`, { mode: 0o600 });
    // `up` waits for the first listen: an address not on this host or a port in use fails `up` (exit 10).
    if (mode === 'up') await rt.startConnecting();
  } catch (err) {
    const exitCode = err instanceof UdrbdError ? err.exitCode : ExitCode.fatal;
    log.error({ err }, `${mode} failed: ${(err as Error).message}`);
    // Close the meta-data clean if attach got that far; the process leaves nothing behind.
    await runtime?.down().catch((downErr: Error) => log.error({ err: downErr }, `down after a failed ${mode}: ${downErr.message}`));
    // Clean up before reporting: `up` SIGKILLs a process that reported failure and is still alive,
    // so a cleanup after the report raced with that kill and could leave the pid file behind.
    await cleanup();
    report({ ready: false, exitCode, message: (err as Error).message });
    log.flush?.();
    return exitCode;
  }
  report({ ready: true });
  const rt = runtime;
  process.on('SIGTERM', () => {
    log.info('SIGTERM: going down');
    rt.down().catch((err: Error) => log.error({ err }, `down on SIGTERM refused: ${err.message}`));
  });
  process.on('SIGINT', () => {
    rt.down().catch((err: Error) => log.error({ err }, `down on SIGINT refused: ${err.message}`));
  });
  process.on('uncaughtException', (err) => {
    // A bug: crash like a kernel oops would — meta-data stays unclean, the AL recovers it.
    log.fatal({ err }, `udrbd: internal error, resource process exits: ${err.stack ?? err.message}`);
    process.exit(ExitCode.fatal);
  });
  await rt.stopped;
  for (const event of downEvents(rt.status())) rt.publish(event);
  await cleanup();
  return ExitCode.ok;
}

const code = await main();
process.exit(code);
