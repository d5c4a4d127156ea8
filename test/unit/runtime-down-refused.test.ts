/**
 * Regression: a `down` refused part way — the frontend's teardown answering
 * (-12) Device is held open although the up-front check saw nothing (a mount
 * copied into another mount namespace) — left the resource process marked
 * as stopping: every later `down` answered OK and did nothing. The runtime
 * is driven through its control-request handler with a fake disk and a
 * frontend whose teardown refuses until the holder lets go.
 */
import { describe, expect, it } from 'vitest';
import { ResourceRuntime, StateChangeRefused, type AttachedStore, type FrontendHook } from '../../src/daemon/runtime.js';
import type { ResourceSpec } from '../../src/daemon/spec.js';
import type { BlockDevice } from '../../src/disk/block-device.js';
import { DiskState, Role } from '../../src/resource/states.js';
import { silentLogger } from '../../src/util/log.js';

function fakeStore(closed: { count: number }): AttachedStore {
  return {
    diskAtAttach: DiskState.UpToDate,
    uuids: { current: 0x10n, bitmap: 0n, historyStart: 0n, historyEnd: 0n },
    syncFlags: async () => undefined,
    setPrimaryBit: () => undefined,
    close: async () => {
      closed.count++;
    },
    uuidsText: () => ({ current: '0', bitmap: '0', historyStart: '0', historyEnd: '0' }),
    outOfSyncKiB: () => 0,
  } as unknown as AttachedStore;
}

const spec = { name: 'sfunit', node: 'alpha', minor: 41, volume: 0, devicePath: '/dev/drbd41', volumes: [{ volume: 0, minor: 41, devicePath: '/dev/drbd41' }], handlers: {}, peer: undefined } as unknown as ResourceSpec;

async function primaryWithRefusingTeardown(): Promise<{ rt: ResourceRuntime; holder: { held: boolean }; closed: { count: number } }> {
  const holder = { held: true };
  const closed = { count: 0 };
  const frontend: FrontendHook = {
    exposeVolume: async () => undefined,
    // The up-front check sees nothing: the mount lives in another namespace.
    isHeldOpen: () => false,
    teardown: async () => {
      if (holder.held) throw new StateChangeRefused(-12, 'Device is held open by someone', 11);
    },
  };
  const rt = new ResourceRuntime({ spec, log: silentLogger(), openStore: async () => fakeStore(closed), frontend });
  await rt.attach();
  await rt.setVolumeState(0, { role: Role.Primary }, 'test');
  await rt.expose({} as BlockDevice);
  return { rt, holder, closed };
}

describe('down refused part way (regression: the process stayed marked as stopping)', () => {
  it('a refused down leaves the process as it was, and the next down tries again and succeeds once released', async () => {
    const { rt, holder, closed } = await primaryWithRefusingTeardown();
    let stopped = false;
    void rt.stopped.then(() => (stopped = true));

    const first = await rt.handle({ id: 1, verb: 'down', args: {} });
    expect(first.ok).toBe(false);
    expect(first.exitCode).toBe(11);
    expect(first.stderr).toBe('41: State change failed: (-12) Device is held open by someone\n');
    expect(rt.snapshot.role).toBe(Role.Primary);
    expect(rt.snapshot.disk).toBe(DiskState.UpToDate);
    expect(rt.exposed).toBe(true);

    // The bug: this second down answered OK and did nothing.
    const second = await rt.handle({ id: 2, verb: 'down', args: {} });
    expect(second.ok).toBe(false);
    expect(second.exitCode).toBe(11);
    expect(closed.count).toBe(0);
    await new Promise((r) => setImmediate(r));
    expect(stopped).toBe(false);

    holder.held = false;
    const third = await rt.handle({ id: 3, verb: 'down', args: {} });
    expect(third.ok).toBe(true);
    await rt.stopped;
    expect(rt.snapshot.role).toBe(Role.Secondary);
    expect(rt.snapshot.disk).toBe(DiskState.Diskless);
    expect(closed.count).toBe(1);
    // Once down, a further down (e.g. SIGTERM racing the exit) is a no-op success.
    expect((await rt.handle({ id: 4, verb: 'down', args: {} })).ok).toBe(true);
    expect(closed.count).toBe(1);
  });

  it('a down while another is in progress gets the same outcome instead of an early OK', async () => {
    const { rt, holder } = await primaryWithRefusingTeardown();
    const [a, b] = await Promise.all([rt.handle({ id: 1, verb: 'down', args: {} }), rt.handle({ id: 2, verb: 'down', args: {} })]);
    expect([a.exitCode, b.exitCode]).toEqual([11, 11]);
    holder.held = false;
    const [c, d] = await Promise.all([rt.handle({ id: 3, verb: 'down', args: {} }), rt.handle({ id: 4, verb: 'down', args: {} })]);
    expect([c.ok, d.ok]).toEqual([true, true]);
    await rt.stopped;
  });
});
