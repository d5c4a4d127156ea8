/**
 * daemon/resize — the `resize` control verb (drbdsetup resize --size
 * --assume-peer-has-space --assume-clean), as drbd_adm_resize runs it: the
 * refusals first (no disk 138, resync running 130, no Primary on either node
 * 131), then the backing disk is re-read and internal meta-data moved to its
 * new end (MetaStore.refreshCapacity), the new size decided
 * (device-size planResize: the smaller of both nodes' usable sizes, then
 * --size, which may be below the current size: an explicit shrink), applied,
 * and — while connected — P_SIZES sent with the new u_size so the peer grows
 * or shrinks too (PeerLink.exchangeSizes; a grown area is then
 * resynced from the Primary unless --assume-clean). The verb returns once the peer's
 * answer is handled, so `udrbdadm resize` ends with both sizes known.
 * Knows the store and the link only through their methods.
 */
import { ExitCode } from '../util/errors.js';
import { ConnState, DiskState, Role } from '../resource/states.js';
import { ErrCode, failure } from '../resource/state.js';
import { DdsFlag, SECTOR_BYTES, UNCHANGED_DISK_DID_NOT_GROW, planResize, type ResizeOptions } from './device-size.js';
import type { PeerLink } from './link.js';
import type { VolumeLink } from './volume-link.js';
import { type ResourceRuntime, StateChangeRefused, type VerbResult } from './runtime.js';

/** The verb's arguments as the control protocol carries them; anything else is refused, not ignored. */
export function resizeOptionsFrom(args: Record<string, unknown>): ResizeOptions | string {
  for (const key of Object.keys(args)) {
    if (!['sizeBytes', 'assumePeerHasSpace', 'assumeClean', 'volume'].includes(key)) return `resize: unknown argument '${key}'`;
  }
  const sizeBytes = args.sizeBytes ?? 0;
  if (typeof sizeBytes !== 'number' || !Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || sizeBytes % SECTOR_BYTES !== 0) {
    return `resize: sizeBytes must be a whole number of 512-byte sectors, not ${String(sizeBytes)}`;
  }
  for (const key of ['assumePeerHasSpace', 'assumeClean'] as const) {
    if (args[key] !== undefined && typeof args[key] !== 'boolean') return `resize: ${key} must be true or false`;
  }
  return { userSizeBytes: sizeBytes, assumePeerHasSpace: args.assumePeerHasSpace === true, assumeClean: args.assumeClean === true };
}

function refuseWith(code: number): never {
  const r = failure(code);
  throw new StateChangeRefused(r.code, r.text, r.exitCode);
}

export function defineResizeVerb(rt: ResourceRuntime, link: PeerLink): void {
  // One resize at a time, as drbd_adm_resize holds the adm_mutex: a second waits for the first.
  let running: Promise<unknown> = Promise.resolve();
  rt.defineVerb('resize', async (args) => {
    const options = resizeOptionsFrom(args);
    if (typeof options === 'string') return { exitCode: ExitCode.usage, stderr: `${options}\n` };
    // drbdsetup resize MINOR: the volume named (udrbdadm sends one request per volume), or the first.
    const vnr = rt.addressedVolume(args);
    const run = running.then(() => resize(rt, link.volume(vnr), options));
    running = run.catch(() => undefined);
    return run;
  });
}

async function resize(rt: ResourceRuntime, link: VolumeLink, options: ResizeOptions): Promise<VerbResult> {
  const vnr = link.vnr;
  const minor = rt.specOf(vnr).minor;
  const s = rt.volumeSnapshot(vnr);
  const store = rt.storeOf(vnr);
  if (!store || s.disk <= DiskState.Failed) refuseWith(ErrCode.noDisk);
  if (s.conn > ConnState.Connected) refuseWith(ErrCode.resizeResync);
  if (s.role === Role.Secondary && s.peer === Role.Secondary) refuseWith(ErrCode.noPrimary);
  if (!store.refreshCapacity || !store.applySize || store.dataAreaBytes === undefined) {
    return { exitCode: ExitCode.fatal, stderr: `${minor}: this disk cannot be resized (no meta-data store)\n` };
  }
  await store.refreshCapacity();
  const connected = link.connectedForResize;
  const verdict = planResize(
    { localMaxBytes: store.dataAreaBytes, peerDiskBytes: link.lastPeerDiskBytes, currentSizeBytes: store.sizeBytes, connected },
    options,
  );
  if (verdict.kind === 'refused') {
    for (const line of verdict.errorLines) rt.log.error(line);
    if (verdict.code === 0) return { exitCode: ExitCode.configInvalid, stderr: `${minor}: ${verdict.message ?? 'resize refused'}\n` };
    const r = failure(verdict.code);
    // drbdsetup prints the kernel's reason after the Failure line ("additional info from kernel:").
    const info = [...verdict.errorLines, ...(verdict.message === undefined ? [] : [verdict.message])].join('\n');
    return { exitCode: r.exitCode, stderr: `${minor}: Failure: (${r.code}) ${r.text}\nadditional info from kernel:\n${info}\n` };
  }
  for (const line of verdict.warnLines) rt.log.warn(line);
  const beforeBytes = store.sizeBytes;
  const grew = verdict.sizeBytes > beforeBytes;
  // drbd_determine_dev_size: the new u_size and size here (a shrink to --size too), then P_SIZES to the peer.
  await link.applyDeviceSize(options.userSizeBytes, verdict.sizeBytes, !options.assumeClean);
  if (verdict.sizeBytes !== beforeBytes) await rt.deviceSizeChanged(vnr);
  if (grew && !connected && options.assumeClean) rt.log.info('Resync of new storage suppressed with --assume-clean');
  let note = '';
  if (connected) {
    const ddsFlags = (options.assumePeerHasSpace ? DdsFlag.forced : 0) | (options.assumeClean ? DdsFlag.noResync : 0);
    const answered = await link.exchangeSizes(ddsFlags, grew);
    if (!answered) note = `${minor}: the peer did not answer the new sizes in time; the device is ${store.sizeBytes / SECTOR_BYTES} sectors (see the log)\n`;
  }
  if (options.userSizeBytes > 0 && store.sizeBytes < options.userSizeBytes && note === '') {
    note = `${minor}: --size=${options.userSizeBytes / SECTOR_BYTES}s: the device is ${store.sizeBytes / SECTOR_BYTES} sectors, what the peer's disk holds (Requested disk size is too big)\n`;
  } else if (store.sizeBytes === beforeBytes && note === '') {
    const peerBytes = link.lastPeerDiskBytes;
    const why = verdict.unchangedWhy
      ?? (peerBytes > 0 && peerBytes <= beforeBytes && store.maxSizeBytes > beforeBytes
        ? `the peer's disk holds ${peerBytes / SECTOR_BYTES} sectors; grow its backing disk too, then run resize again`
        : options.userSizeBytes === beforeBytes ? `--size is the current size` : UNCHANGED_DISK_DID_NOT_GROW);
    note = `${minor}: size unchanged at ${beforeBytes / SECTOR_BYTES} sectors: ${why}\n`;
  }
  return { exitCode: 0, stderr: note };
}
