/**
 * daemon/io-error: what each on-io-error policy (and disk-timeout) does to
 * the resource state when the data path reports a local I/O error, on a
 * ResourceRuntime with a fake store; the handler runner is observed through
 * the runtime's helper events.
 */
import { describe, expect, it } from 'vitest';
import type { OnIoError } from '../../src/config/resolve.js';
import { IoErrorPolicy } from '../../src/daemon/io-error.js';
import { ResourceRuntime, type AttachedStore } from '../../src/daemon/runtime.js';
import type { ResourceSpec } from '../../src/daemon/spec.js';
import { DiskTimeoutError } from '../../src/disk/deadline-disk.js';
import { DiskState } from '../../src/resource/states.js';
import { silentLogger } from '../../src/util/log.js';

function fakeStore(closed: boolean[]): AttachedStore {
  return {
    diskAtAttach: DiskState.UpToDate,
    uuids: { current: 0x10n, bitmap: 0n, historyStart: 0n, historyEnd: 0n },
    syncFlags: async () => undefined,
    setPrimaryBit: () => undefined,
    close: async (clean: boolean) => {
      closed.push(clean);
    },
    uuidsText: () => ({ current: '0', bitmap: '0', historyStart: '0', historyEnd: '0' }),
    outOfSyncKiB: () => 0,
  } as unknown as AttachedStore;
}

async function setUp(policy: OnIoError): Promise<{ rt: ResourceRuntime; io: IoErrorPolicy; closed: boolean[]; disks: string[]; helpers: string[] }> {
  const closed: boolean[] = [];
  // A handler that cannot run still publishes its call event, which is what the test checks.
  const spec = { name: 'ftunit', node: 'alpha', minor: 205, volume: 0, devicePath: '/dev/drbd205', volumes: [{ volume: 0, minor: 205, devicePath: '/dev/drbd205' }], handlers: { 'local-io-error': '/bin/true' }, peer: undefined } as unknown as ResourceSpec;
  const rt = new ResourceRuntime({ spec, log: silentLogger(), openStore: async () => fakeStore(closed) });
  await rt.attach();
  const disks: string[] = [];
  rt.stateHooks.push((before, after) => {
    if (before.disk !== after.disk) disks.push(`${name(before.disk)}->${name(after.disk)}`);
  });
  const helpers: string[] = [];
  rt.onEvent((event) => {
    if (event.kind === 'call') helpers.push(event.fields.helper ?? '');
  });
  return { rt, io: new IoErrorPolicy(rt, () => policy), closed, disks, helpers };
}

function name(disk: DiskState): string {
  return Object.entries(DiskState).find(([, value]) => value === disk)?.[0] ?? String(disk);
}

const EIO = Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });

describe('on-io-error', () => {
  it('detach: Failed, then Diskless; the store closes unclean; later errors are not repeated', async () => {
    const { rt, io, closed, disks, helpers } = await setUp('detach');
    io.onLocalIoError('write', 4096, EIO);
    io.onLocalIoError('write', 8192, EIO);
    await io.settled();
    expect(disks).toEqual(['UpToDate->Failed', 'Failed->Diskless']);
    expect(closed).toEqual([false]);
    expect(helpers).toEqual([]);
    expect(rt.attachedStore).toBeUndefined();
  });

  it('call-local-io-error: runs the local-io-error handler while Failed, then detaches', async () => {
    const { io, disks, helpers } = await setUp('call-local-io-error');
    io.onLocalIoError('read', 0, EIO);
    await io.settled();
    expect(helpers).toEqual(['local-io-error']);
    expect(disks).toEqual(['UpToDate->Failed', 'Failed->Diskless']);
  });

  it('pass_on: the disk goes Inconsistent and stays attached', async () => {
    const { rt, io, closed, disks } = await setUp('pass_on');
    io.onLocalIoError('write', 0, EIO);
    await io.settled();
    await new Promise((resolve) => setImmediate(resolve));
    expect(disks).toEqual(['UpToDate->Inconsistent']);
    expect(closed).toEqual([]);
    expect(rt.attachedStore).toBeDefined();
  });

  it('disk-timeout detaches even with pass_on (DRBD_FORCE_DETACH), without the handler', async () => {
    const { io, disks, helpers } = await setUp('pass_on');
    io.onLocalIoError('flush', 0, new DiskTimeoutError('flush', 500));
    await io.settled();
    expect(disks).toEqual(['UpToDate->Failed', 'Failed->Diskless']);
    expect(helpers).toEqual([]);
  });
});
