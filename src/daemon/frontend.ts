/**
 * daemon/frontend — ResourceFrontend, the FrontendHook of one resource on
 * this node: turns the Primary's ReplicatedVolume into a real block device
 * and undoes it on demotion. On promotion it always serves the volume as an
 * NBD export on the root-only unix socket `<runDir>/<res>.<node>.nbd`, then
 * gives the kernel a block device — /dev/nbdX through nbd-client where the
 * kernel has nbd, otherwise the FUSE file + loop device exposure — and makes
 * the configured `device` path (/dev/drbdN) a link to it. UDRBD_FRONTEND
 * (auto | nbd | fuse | none) picks the kernel device; `none` serves the NBD
 * socket only (benchmarks of the NBD path). UDRBD_NBD_TCP=HOST:PORT makes
 * the Primary also serve the export on that TCP address; only loopback
 * (127.0.0.0/8, [::1]) is accepted, since NBD has no authentication. It is
 * torn down with the unix socket. Demotion and `down` are refused
 * with DRBD's -12 "Device is held open by someone" while the device is
 * mounted or open (or an NBD client other than our own kernel attach is
 * connected, on the unix socket or on TCP). Knows the frontend layers only through their modules and the
 * runtime only through FrontendHook; never decides roles itself.
 *
 * This process serves the FUSE file, so nothing here may block the event
 * loop on the device: every tool runs through execa, and the synchronous
 * held-open check reads only procfs/sysfs/device nodes.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { BlockDevice } from '../disk/block-device.js';
import type { Logger } from '../util/log.js';
import { assert } from '../util/assert.js';
import { SsCode } from '../resource/state.js';
import { UdrbdError, ExitCode } from '../util/errors.js';
import { NbdServer, parseNbdTcpAddress, type NbdTcpAddress } from '../frontend/nbd/index.js';
import { attachNbd, detachNbd, ensureKernelNbd, isNbdConnected, defaultDeps as nbdDefaultDeps, type NbdClientDeps } from '../frontend/nbd-client/index.js';
import { cleanupStale as cleanupStaleFuseLoop, exposeVolume as exposeFuseLoop, type VolumeExposure } from '../frontend/exposure/fuse-loop-exposure.js';
import { createDeviceLink, readDeviceLink, removeDeviceLink } from '../frontend/device-link/device-link.js';
import { heldOpenReport, heldOpenSync, describeHeldOpen, type HeldOpenOptions, type HeldOpenReport } from '../frontend/device-link/held-open.js';
import type { FrontendHook } from './runtime.js';
import { StateChangeRefused } from './runtime.js';

export type FrontendKind = 'nbd' | 'fuse' | 'none';
export type FrontendMode = 'auto' | FrontendKind;
export const FRONTEND_MODES: readonly FrontendMode[] = ['auto', 'nbd', 'fuse', 'none'];

/** What `status --json` shows as `frontend` while the volume is exposed. */
export interface FrontendStatus {
  kind: FrontendKind;
  /** The NBD export's unix socket (always served while Primary). */
  nbdSocket: string;
  /** `HOST:PORT` of the NBD export on TCP loopback; present only when UDRBD_NBD_TCP is set. */
  nbdTcp?: string;
  /** /dev/loopN or /dev/nbdN; null for kind 'none'. */
  kernelDevice: string | null;
  /** The configured device path (link to kernelDevice); null for kind 'none'. */
  devicePath: string | null;
}

export interface ResourceFrontendOptions {
  resource: string;
  node: string;
  /** The node's runtime directory (root-only), e.g. /run/udrbd. */
  runDir: string;
  /** The configured `device`, e.g. /dev/drbd1. */
  devicePath: string;
  mode: FrontendMode;
  /** Also serve the NBD export on this TCP loopback address (UDRBD_NBD_TCP); null/absent: unix socket only. */
  nbdTcp?: NbdTcpAddress | null;
  log: Logger;
  nbdDeps?: NbdClientDeps;
  /** Who uses the kernel device; default the real procfs/sysfs checks (tests of the nbd path fake /dev/nbdN). */
  heldOpen?: HeldOpenChecks;
}

/** device-link/held-open's two checks, injectable like NbdClientDeps. */
export interface HeldOpenChecks {
  /** Synchronous (procfs/sysfs only): used inside the state checks of `secondary` / `down`. */
  sync(device: string, options: HeldOpenOptions): HeldOpenReport;
  /** Complete (adds the O_EXCL probe): re-checked right before tearing down. */
  report(device: string, options: HeldOpenOptions): Promise<HeldOpenReport>;
}

export const realHeldOpenChecks: HeldOpenChecks = { sync: heldOpenSync, report: heldOpenReport };

/** NBD requests in flight per connection (the FUSE path sends one at a time anyway). */
const NBD_INFLIGHT_MAX = 64;
/** Seconds the kernel nbd driver waits for one request before failing it. */
const NBD_KERNEL_TIMEOUT_S = 60;
const NBD_BLOCK_SIZE_BYTES = 4096;
const NBD_STATE_SUFFIX = '.nbd-attach.json';
/** nbd state files read by cleanupStale at most. */
const NBD_STATE_FILES_MAX = 1024;

/** UDRBD_FRONTEND, validated; unset means auto. */
export function frontendModeFromEnv(env: NodeJS.ProcessEnv = process.env): FrontendMode {
  const value = (env.UDRBD_FRONTEND ?? '').trim() || 'auto';
  if (!(FRONTEND_MODES as readonly string[]).includes(value)) {
    throw new UdrbdError(`UDRBD_FRONTEND must be one of ${FRONTEND_MODES.join(', ')}, not '${value}'`, ExitCode.usage);
  }
  return value as FrontendMode;
}

/** UDRBD_NBD_TCP (HOST:PORT, loopback only), validated; unset or empty means no TCP listener. */
export function nbdTcpFromEnv(env: NodeJS.ProcessEnv = process.env): NbdTcpAddress | null {
  const value = (env.UDRBD_NBD_TCP ?? '').trim();
  if (value === '') return null;
  return parseNbdTcpAddress(value, 'UDRBD_NBD_TCP');
}

/** `HOST:PORT`, with IPv6 hosts in brackets. */
function formatTcpAddress(address: NbdTcpAddress): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

interface NbdAttachRecord {
  readonly version: 1;
  readonly pid: number;
  readonly devicePath: string;
  readonly nbdDevice: string;
}

export class ResourceFrontend implements FrontendHook {
  private server: NbdServer | null = null;
  private fuseLoop: VolumeExposure | null = null;
  private nbdDevice: string | null = null;
  private kind: FrontendKind | null = null;
  private busy = false;
  private readonly deps: NbdClientDeps;
  private readonly heldOpen: HeldOpenChecks;

  constructor(private readonly options: ResourceFrontendOptions) {
    this.deps = options.nbdDeps ?? nbdDefaultDeps;
    this.heldOpen = options.heldOpen ?? realHeldOpenChecks;
  }

  /** `<runDir>/<res>.<node>.nbd` */
  get nbdSocketPath(): string {
    return path.join(this.options.runDir, `${this.options.resource}.${this.options.node}.nbd`);
  }

  /** State files of exposures and the FUSE mount points live here. */
  get frontendDir(): string {
    return path.join(this.options.runDir, 'frontend');
  }

  get fuseMountDir(): string {
    return path.join(this.frontendDir, `${this.options.resource}.${this.options.node}.fuse`);
  }

  private get nbdStateFile(): string {
    return path.join(this.frontendDir, `${path.basename(this.options.devicePath)}${NBD_STATE_SUFFIX}`);
  }

  describe(): FrontendStatus | undefined {
    if (this.kind === null) return undefined;
    const kernelDevice = this.kind === 'fuse' ? (this.fuseLoop?.loopDevice ?? null) : this.kind === 'nbd' ? this.nbdDevice : null;
    const tcp = this.options.nbdTcp ?? null;
    return {
      kind: this.kind,
      nbdSocket: this.nbdSocketPath,
      ...(tcp !== null ? { nbdTcp: formatTcpAddress(tcp) } : {}),
      kernelDevice,
      devicePath: this.kind === 'none' ? null : this.options.devicePath,
    };
  }

  /**
   * At daemon start: undo exposures left by a previous process of this node
   * that died (kill -9). One whose filesystem is still mounted stays and is
   * logged; exposing again refuses until it is unmounted.
   */
  async cleanupStale(): Promise<void> {
    const log = this.options.log;
    await fs.mkdir(this.frontendDir, { recursive: true, mode: 0o700 });
    const report = await cleanupStaleFuseLoop(this.frontendDir, log);
    for (const devicePath of report.cleaned) log.info({ devicePath }, 'removed the stale FUSE + loop exposure of a crashed resource process');
    for (const held of report.stillHeld) log.warn(held, 'stale exposure of a crashed resource process is still in use; unmount it');
    await this.cleanupStaleNbd();
  }

  private async cleanupStaleNbd(): Promise<void> {
    let names: string[];
    try {
      names = (await fs.readdir(this.frontendDir)).filter((n) => n.endsWith(NBD_STATE_SUFFIX)).slice(0, NBD_STATE_FILES_MAX);
    } catch {
      return;
    }
    for (const name of names) {
      const file = path.join(this.frontendDir, name);
      let record: NbdAttachRecord;
      try {
        record = JSON.parse(await fs.readFile(file, 'utf8')) as NbdAttachRecord;
      } catch {
        continue;
      }
      if (record.pid !== process.pid && pidAlive(record.pid)) continue;
      if (isNbdConnected(record.nbdDevice, this.deps)) {
        const held = await this.heldOpen.report(record.nbdDevice, { aliasPaths: [record.devicePath] }).catch((err: Error) => {
          this.options.log.warn({ nbdDevice: record.nbdDevice, err: err.message }, 'cannot tell whether a stale nbd attach is held open');
          return null;
        });
        if (held?.held) {
          this.options.log.warn({ devicePath: record.devicePath, nbdDevice: record.nbdDevice, why: describeHeldOpen(held) }, 'stale nbd attach still in use; unmount it');
          continue;
        }
        await detachNbd(record.nbdDevice, this.deps).catch((err: Error) => this.options.log.warn({ err: err.message }, 'nbd-client -d of a stale attach failed'));
      }
      await removeDeviceLink(record.devicePath, record.nbdDevice);
      await fs.rm(file, { force: true });
      this.options.log.info({ devicePath: record.devicePath, nbdDevice: record.nbdDevice }, 'removed the stale nbd attach of a crashed resource process');
    }
  }

  /** The kernel device exposeVolume will use: the mode, or for `auto` nbd when the kernel has it, else FUSE + loop. */
  async chooseKind(): Promise<FrontendKind> {
    const mode = this.options.mode;
    if (mode !== 'auto') return mode;
    try {
      await ensureKernelNbd(this.deps);
      if (this.deps.sysfs.exists('/dev/nbd0')) return 'nbd';
    } catch {
      /* no nbd module: FUSE + loop */
    }
    return 'fuse';
  }

  async exposeVolume(device: BlockDevice): Promise<void> {
    assert(this.kind === null && !this.busy, 'exposeVolume on a frontend that is already exposed');
    this.busy = true;
    const log = this.options.log;
    try {
      const kind = await this.chooseKind();
      await fs.mkdir(this.frontendDir, { recursive: true, mode: 0o700 });
      const server = new NbdServer({ device, exportName: this.options.resource, logger: log, maxInflight: NBD_INFLIGHT_MAX, description: `udrbd ${this.options.resource} on ${this.options.node}` });
      await server.listenUnix(this.nbdSocketPath);
      this.server = server;
      try {
        const tcp = this.options.nbdTcp ?? null;
        if (tcp !== null) await server.listenTcp(tcp.host, tcp.port);
        if (kind === 'fuse') {
          this.fuseLoop = await exposeFuseLoop({ device, mountDir: this.fuseMountDir, devicePath: this.options.devicePath, runtimeDir: this.frontendDir, log });
        } else if (kind === 'nbd') {
          await this.attachKernelNbd();
        }
      } catch (err) {
        this.server = null;
        // The exposure failure is what the caller sees; a failed close of the half-set-up server is logged beside it.
        await server.close().catch((closeErr: Error) => log.warn({ err: closeErr.message }, 'closing the NBD server after a failed exposure failed'));
        throw err;
      }
      this.kind = kind;
      log.info(this.describe(), `device exposed (${kind})`);
    } finally {
      this.busy = false;
    }
  }

  private async attachKernelNbd(): Promise<void> {
    const { devicePath } = this.options;
    const existing = await readDeviceLink(devicePath);
    if (existing !== null && /^\/dev\/nbd\d+$/.test(existing) && isNbdConnected(existing, this.deps)) {
      throw new UdrbdError(`${devicePath} still points at connected ${existing}; detach it first (nbd-client -d ${existing})`, ExitCode.fatal);
    }
    const nbdDevice = await attachNbd(
      { socketPath: this.nbdSocketPath, exportName: this.options.resource, blockSizeBytes: NBD_BLOCK_SIZE_BYTES, timeoutSeconds: NBD_KERNEL_TIMEOUT_S },
      this.deps,
    );
    this.nbdDevice = nbdDevice;
    const record: NbdAttachRecord = { version: 1, pid: process.pid, devicePath, nbdDevice };
    try {
      await fs.writeFile(this.nbdStateFile, `${JSON.stringify(record)}\n`, { mode: 0o600 });
      await createDeviceLink(devicePath, nbdDevice);
    } catch (err) {
      // The attach failure is what the caller sees; a failed undo is logged beside it.
      await detachNbd(nbdDevice, this.deps).catch((detachErr: Error) => this.options.log.warn({ nbdDevice, err: detachErr.message }, 'nbd-client -d after a failed attach failed'));
      await fs.rm(this.nbdStateFile, { force: true });
      this.nbdDevice = null;
      throw err;
    }
  }

  /**
   * The volume grew or shrank (resize, a connect): the NBD export serves
   * the new size (new clients are told it; every client's requests past it
   * are refused); a grown FUSE file grows the loop device with it (losetup
   * -c), as /dev/drbdN would. The FUSE file does not shrink (the addon only
   * grows a mounted file): the loop device keeps its size and I/O past the
   * new end fails (EIO). A kernel nbd attach keeps the size it negotiated
   * (nbd-client cannot change it). Both are logged, with what to do.
   */
  async deviceResized(sizeBytes: number): Promise<void> {
    if (this.kind === null) return;
    this.server?.resize();
    if (this.fuseLoop !== null) {
      if (sizeBytes >= this.fuseLoop.sizeBytes) await this.fuseLoop.grow(sizeBytes);
      else this.options.log.warn({ loopDevice: this.fuseLoop.loopDevice, sizeBytes }, `${this.fuseLoop.loopDevice} keeps its size of ${this.fuseLoop.sizeBytes} bytes; I/O past the new end at ${sizeBytes} fails (EIO); demote and promote again to see the smaller size there`);
    }
    if (this.nbdDevice !== null) {
      this.options.log.warn({ nbdDevice: this.nbdDevice, sizeBytes }, `${this.nbdDevice} keeps the size its nbd-client attach negotiated; demote and promote again (secondary, primary) to see ${sizeBytes} bytes there`);
    }
  }

  /** Synchronous (the state checks are): mounted, held by a holder, open by a process, or an outside NBD client. */
  isHeldOpen(): boolean {
    if (this.kind === null) return false;
    if (this.busy) return true;
    const kernel = this.kind === 'fuse' ? (this.fuseLoop?.loopDevice ?? null) : this.nbdDevice;
    if (kernel !== null) {
      const report = this.heldOpen.sync(kernel, { aliasPaths: [this.options.devicePath] });
      if (report.held) {
        this.options.log.warn({ device: kernel, why: describeHeldOpen(report) }, 'device is held open');
        return true;
      }
    }
    // Our own kernel attach is one NBD connection; any other (unix socket or TCP) is a client using the volume.
    const own = this.kind === 'nbd' ? 1 : 0;
    const outside = (this.server?.connectionCount ?? 0) - own;
    if (outside > 0) {
      this.options.log.warn({ nbdSocket: this.nbdSocketPath, clients: outside }, 'device is held open by NBD clients');
      return true;
    }
    return false;
  }

  /** Undoes the exposure; refuses with DRBD's -12 (exit 11) while held open. Idempotent. */
  async teardown(): Promise<void> {
    if (this.kind === null) return;
    if (this.isHeldOpen()) throw heldOpen();
    this.busy = true;
    try {
      if (this.fuseLoop !== null) {
        try {
          await this.fuseLoop.teardown();
        } catch (err) {
          if (err instanceof UdrbdError && err.exitCode === ExitCode.stateChangeFailed) throw heldOpen();
          throw err;
        }
        this.fuseLoop = null;
      }
      if (this.nbdDevice !== null) {
        const nbdDevice = this.nbdDevice;
        const report = await this.heldOpen.report(nbdDevice, { aliasPaths: [this.options.devicePath] });
        if (report.held) throw heldOpen();
        await removeDeviceLink(this.options.devicePath, nbdDevice);
        await detachNbd(nbdDevice, this.deps);
        await fs.rm(this.nbdStateFile, { force: true });
        this.nbdDevice = null;
      }
      if (this.server !== null) {
        await this.server.close();
        this.server = null;
      }
      this.options.log.info({ kind: this.kind }, 'device exposure torn down');
      this.kind = null;
    } finally {
      this.busy = false;
    }
  }
}

function heldOpen(): StateChangeRefused {
  return new StateChangeRefused(SsCode.deviceInUse, 'Device is held open by someone', ExitCode.stateChangeFailed);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
