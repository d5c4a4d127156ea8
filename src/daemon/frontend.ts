/**
 * daemon/frontend — ResourceFrontend, the FrontendHook of one volume of one
 * resource on this node: turns the Primary's ReplicatedVolume into a real
 * block device and undoes it on demotion. On promotion it always serves the
 * volume as an NBD export on a root-only unix socket, then gives the kernel
 * a block device — /dev/nbdX through nbd-client where the kernel has nbd,
 * otherwise the FUSE file + loop device exposure — and makes the configured
 * `device` path (/dev/drbdN) a link to it. UDRBD_FRONTEND
 * (auto | nbd | fuse | none) picks the kernel device; `none` serves the NBD
 * socket only (benchmarks of the NBD path). UDRBD_NBD_TCP=HOST:PORT makes
 * the Primary also serve the export on that TCP address; only loopback
 * (127.0.0.0/8, [::1]) is accepted, since NBD has no authentication. It is
 * torn down with the unix socket.
 *
 * One instance per volume (`volume N`), several in one process; what each
 * owns (volumeFrontendNames):
 *   volume 0:  socket `<runDir>/<res>.<node>.nbd`, export `<res>`,
 *              FUSE mount `<runDir>/frontend/<res>.<node>.fuse`, TCP PORT;
 *   volume N:  socket `<runDir>/<res>.<node>.<N>.nbd`, export `<res>/<N>`,
 *              FUSE mount `<runDir>/frontend/<res>.<node>.<N>.fuse`, TCP PORT+N;
 * and for every volume the state files `<runDir>/frontend/<basename of
 * device>.{nbd-attach,fuse-loop}.json`, keyed by its own device path. The
 * paths and addresses a live exposure holds are claimed process-wide, so a
 * second instance naming the same one is refused instead of taking it over;
 * stale cleanup at start reads only this volume's state files.
 *
 * Demotion and `down` are refused
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
  /** The configured volume number (`volume N`, 0..65535): names this volume's socket, export and mount point. */
  volume: number;
  /** The volume's minor (/dev/drbdN's N): logged with every line. */
  minor: number;
  /** The node's runtime directory (root-only), e.g. /run/udrbd. */
  runDir: string;
  /** The configured `device`, e.g. /dev/drbd1. */
  devicePath: string;
  mode: FrontendMode;
  /**
   * Also serve the NBD export on TCP loopback (UDRBD_NBD_TCP); null/absent:
   * unix socket only. This is volume 0's address: volume N listens on port + N.
   */
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
/** DRBD 8.4's volume numbers (the wire header's u16). */
const VOLUME_NUMBER_MAX = 65535;
const TCP_PORT_MAX = 65535;

/** The names one volume's frontend owns (see the header): volume 0 keeps the one-volume names. */
export interface VolumeFrontendNames {
  /** File name of the NBD unix socket in runDir. */
  readonly nbdSocketName: string;
  /** NBD export name (the server's, and nbd-client -N). */
  readonly exportName: string;
  /** Directory name of the FUSE mount point in runDir/frontend. */
  readonly fuseMountName: string;
}

export function volumeFrontendNames(resource: string, node: string, volume: number): VolumeFrontendNames {
  assert(Number.isSafeInteger(volume) && volume >= 0 && volume <= VOLUME_NUMBER_MAX, `a volume number is 0..${VOLUME_NUMBER_MAX} (${volume})`);
  if (volume === 0) return { nbdSocketName: `${resource}.${node}.nbd`, exportName: resource, fuseMountName: `${resource}.${node}.fuse` };
  return { nbdSocketName: `${resource}.${node}.${volume}.nbd`, exportName: `${resource}/${volume}`, fuseMountName: `${resource}.${node}.${volume}.fuse` };
}

/** Volume N's TCP address: volume 0's port + N (UDRBD_NBD_TCP names volume 0's). */
export function nbdTcpOfVolume(address: NbdTcpAddress, volume: number): NbdTcpAddress {
  const port = address.port + volume;
  if (port > TCP_PORT_MAX) {
    throw new UdrbdError(`UDRBD_NBD_TCP port ${address.port} + volume ${volume} is past ${TCP_PORT_MAX}; pick a lower port`, ExitCode.configInvalid);
  }
  return { host: address.host, port };
}

/**
 * What the live exposures of this process hold (socket, mount point, device
 * path, state files, TCP address) → who holds it ("r0/1"). Filled when an
 * exposure starts, emptied when it is torn down or fails to start.
 */
const claimedInProcess = new Map<string, string>();

/**
 * nbd-client attaches of this process, one at a time: two volumes choosing
 * the lowest free /dev/nbdN at once would both choose the same one.
 */
let nbdAttachQueue: Promise<unknown> = Promise.resolve();

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
  private claims: string[] = [];
  private readonly deps: NbdClientDeps;
  private readonly heldOpen: HeldOpenChecks;
  private readonly names: VolumeFrontendNames;
  private readonly nbdTcp: NbdTcpAddress | null;
  private readonly log: Logger;

  constructor(private readonly options: ResourceFrontendOptions) {
    assert(Number.isSafeInteger(options.minor) && options.minor >= 0, `a minor is a whole number (${options.minor})`);
    this.deps = options.nbdDeps ?? nbdDefaultDeps;
    this.heldOpen = options.heldOpen ?? realHeldOpenChecks;
    this.names = volumeFrontendNames(options.resource, options.node, options.volume);
    this.nbdTcp = options.nbdTcp ? nbdTcpOfVolume(options.nbdTcp, options.volume) : null;
    this.log = options.log.child({ volume: options.volume, minor: options.minor });
  }

  /** `<runDir>/<res>.<node>.nbd` for volume 0, `<runDir>/<res>.<node>.<N>.nbd` for volume N. */
  get nbdSocketPath(): string {
    return path.join(this.options.runDir, this.names.nbdSocketName);
  }

  /** The NBD export name: `<res>` for volume 0, `<res>/<N>` for volume N. */
  get exportName(): string {
    return this.names.exportName;
  }

  /** State files of exposures and the FUSE mount points live here. */
  get frontendDir(): string {
    return path.join(this.options.runDir, 'frontend');
  }

  get fuseMountDir(): string {
    return path.join(this.frontendDir, this.names.fuseMountName);
  }

  private get nbdStateFile(): string {
    return path.join(this.frontendDir, `${path.basename(path.resolve(this.options.devicePath))}${NBD_STATE_SUFFIX}`);
  }

  /** The state files' common name (`<frontendDir>/<basename of device>`), as a claim. */
  private get stateClaimKey(): string {
    return `state ${path.join(this.frontendDir, path.basename(path.resolve(this.options.devicePath)))}`;
  }

  /** Who this is in a refusal: `r0` for volume 0, `r0/1` for volume 1 (drbdadm's RES/VNR). */
  private get label(): string {
    return this.options.volume === 0 ? this.options.resource : `${this.options.resource}/${this.options.volume}`;
  }

  /** Everything a live exposure of this volume holds; none may be held by another exposure of this process. */
  private claimKeys(): string[] {
    const device = path.resolve(this.options.devicePath);
    const keys = [`socket ${this.nbdSocketPath}`, `mount ${this.fuseMountDir}`, `device ${device}`, this.stateClaimKey];
    if (this.nbdTcp !== null) keys.push(`tcp ${formatTcpAddress(this.nbdTcp)}`);
    return keys;
  }

  private claim(): void {
    assert(this.claims.length === 0, 'an exposure claims its names once');
    const keys = this.claimKeys();
    for (const key of keys) {
      const holder = claimedInProcess.get(key);
      if (holder !== undefined) {
        throw new UdrbdError(`${this.label}: cannot expose the volume: ${key} is held by ${holder} in this process; every volume needs its own volume number and device path`, ExitCode.fatal);
      }
    }
    for (const key of keys) claimedInProcess.set(key, this.label);
    this.claims = keys;
  }

  private release(): void {
    for (const key of this.claims) if (claimedInProcess.get(key) === this.label) claimedInProcess.delete(key);
    this.claims = [];
  }

  describe(): FrontendStatus | undefined {
    if (this.kind === null) return undefined;
    const kernelDevice = this.kind === 'fuse' ? (this.fuseLoop?.loopDevice ?? null) : this.kind === 'nbd' ? this.nbdDevice : null;
    const tcp = this.nbdTcp;
    return {
      kind: this.kind,
      nbdSocket: this.nbdSocketPath,
      ...(tcp !== null ? { nbdTcp: formatTcpAddress(tcp) } : {}),
      kernelDevice,
      devicePath: this.kind === 'none' ? null : this.options.devicePath,
    };
  }

  /**
   * At daemon start: undo the exposure of this volume (its device path's
   * state files) left by a previous process of this node that died
   * (kill -9). Other volumes' and resources' leftovers are theirs to clean,
   * and an exposure of this process is never touched. One whose filesystem
   * is still mounted stays and is logged; exposing again refuses until it is
   * unmounted.
   */
  async cleanupStale(): Promise<void> {
    assert(this.kind === null && !this.busy, 'cleanupStale before the volume is exposed');
    const log = this.log;
    await fs.mkdir(this.frontendDir, { recursive: true, mode: 0o700 });
    const report = await cleanupStaleFuseLoop(this.frontendDir, log, { devicePath: this.options.devicePath });
    for (const devicePath of report.cleaned) log.info({ devicePath }, 'removed the stale FUSE + loop exposure of a crashed resource process');
    for (const held of report.stillHeld) log.warn(held, 'stale exposure of a crashed resource process is still in use; unmount it');
    await this.cleanupStaleNbd();
  }

  /** This volume's nbd attach record (one file), when its process is gone. */
  private async cleanupStaleNbd(): Promise<void> {
    const file = this.nbdStateFile;
    let record: NbdAttachRecord;
    try {
      record = JSON.parse(await fs.readFile(file, 'utf8')) as NbdAttachRecord;
    } catch {
      return;
    }
    if (path.resolve(record.devicePath) !== path.resolve(this.options.devicePath)) {
      // Another device path with the same basename: not this volume's leftover.
      this.log.warn({ stateFile: file, recorded: record.devicePath }, 'nbd attach record names another device path; left alone');
      return;
    }
    // A live exposure of this process holds it (a misconfigured twin of this device); our own pid otherwise means a reused one.
    if (claimedInProcess.has(this.stateClaimKey)) return;
    if (record.pid !== process.pid && pidAlive(record.pid)) return;
    if (isNbdConnected(record.nbdDevice, this.deps)) {
      const held = await this.heldOpen.report(record.nbdDevice, { aliasPaths: [record.devicePath] }).catch((err: Error) => {
        this.log.warn({ nbdDevice: record.nbdDevice, err: err.message }, 'cannot tell whether a stale nbd attach is held open');
        return null;
      });
      if (held?.held) {
        this.log.warn({ devicePath: record.devicePath, nbdDevice: record.nbdDevice, why: describeHeldOpen(held) }, 'stale nbd attach still in use; unmount it');
        return;
      }
      await detachNbd(record.nbdDevice, this.deps).catch((err: Error) => this.log.warn({ err: err.message }, 'nbd-client -d of a stale attach failed'));
    }
    await removeDeviceLink(record.devicePath, record.nbdDevice);
    await fs.rm(file, { force: true });
    this.log.info({ devicePath: record.devicePath, nbdDevice: record.nbdDevice }, 'removed the stale nbd attach of a crashed resource process');
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
    // Before the first await: a sibling volume exposing at the same time sees the claims.
    this.claim();
    this.busy = true;
    const log = this.log;
    let exposed = false;
    try {
      const kind = await this.chooseKind();
      await fs.mkdir(this.frontendDir, { recursive: true, mode: 0o700 });
      const server = new NbdServer({ device, exportName: this.exportName, logger: log, maxInflight: NBD_INFLIGHT_MAX, description: `udrbd ${this.label} on ${this.options.node}` });
      await server.listenUnix(this.nbdSocketPath);
      this.server = server;
      try {
        const tcp = this.nbdTcp;
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
      exposed = true;
      log.info(this.describe(), `device exposed (${kind})`);
    } finally {
      this.busy = false;
      if (!exposed) this.release();
    }
  }

  private async attachKernelNbd(): Promise<void> {
    const { devicePath } = this.options;
    const existing = await readDeviceLink(devicePath);
    if (existing !== null && /^\/dev\/nbd\d+$/.test(existing) && isNbdConnected(existing, this.deps)) {
      throw new UdrbdError(`${devicePath} still points at connected ${existing}; detach it first (nbd-client -d ${existing})`, ExitCode.fatal);
    }
    const attach = nbdAttachQueue.then(() =>
      attachNbd({ socketPath: this.nbdSocketPath, exportName: this.exportName, blockSizeBytes: NBD_BLOCK_SIZE_BYTES, timeoutSeconds: NBD_KERNEL_TIMEOUT_S }, this.deps),
    );
    // The next attach waits for this one to end, whether it worked or not.
    nbdAttachQueue = attach.catch(() => undefined);
    const nbdDevice = await attach;
    this.nbdDevice = nbdDevice;
    const record: NbdAttachRecord = { version: 1, pid: process.pid, devicePath, nbdDevice };
    try {
      await fs.writeFile(this.nbdStateFile, `${JSON.stringify(record)}\n`, { mode: 0o600 });
      await createDeviceLink(devicePath, nbdDevice);
    } catch (err) {
      // The attach failure is what the caller sees; a failed undo is logged beside it.
      await detachNbd(nbdDevice, this.deps).catch((detachErr: Error) => this.log.warn({ nbdDevice, err: detachErr.message }, 'nbd-client -d after a failed attach failed'));
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
      else this.log.warn({ loopDevice: this.fuseLoop.loopDevice, sizeBytes }, `${this.fuseLoop.loopDevice} keeps its size of ${this.fuseLoop.sizeBytes} bytes; I/O past the new end at ${sizeBytes} fails (EIO); demote and promote again to see the smaller size there`);
    }
    if (this.nbdDevice !== null) {
      this.log.warn({ nbdDevice: this.nbdDevice, sizeBytes }, `${this.nbdDevice} keeps the size its nbd-client attach negotiated; demote and promote again (secondary, primary) to see ${sizeBytes} bytes there`);
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
        this.log.warn({ device: kernel, why: describeHeldOpen(report) }, 'device is held open');
        return true;
      }
    }
    // Our own kernel attach is one NBD connection; any other (unix socket or TCP) is a client using the volume.
    const own = this.kind === 'nbd' ? 1 : 0;
    const outside = (this.server?.connectionCount ?? 0) - own;
    if (outside > 0) {
      this.log.warn({ nbdSocket: this.nbdSocketPath, clients: outside }, 'device is held open by NBD clients');
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
      this.log.info({ kind: this.kind }, 'device exposure torn down');
      this.kind = null;
      this.release();
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
