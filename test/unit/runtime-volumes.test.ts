/**
 * The resource process's per-volume parts (docs/multi-volume.md steps 6–7):
 * the spec lists every volume of a two-volume configuration with its own
 * minor, disk, meta-disk and disk options; the runtime keys its volumes by
 * their configured numbers, attaches, detaches and reports each on its own,
 * changes the connection on all of them at once, and hands every hook the
 * volume it is about. The runtime is driven through its control-request
 * handler with fake stores (no disks, no peer).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ResourceRuntime, type AttachedStore } from '../../src/daemon/runtime.js';
import { specFromConfig } from '../../src/daemon/config-adapter.js';
import { volumeSpec, type ResourceSpec } from '../../src/daemon/spec.js';
import { loadConfig, type ResourceView } from '../../src/config/index.js';
import { ConnState, DiskState, Role, diskName } from '../../src/resource/states.js';
import { silentLogger } from '../../src/util/log.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-rtvol-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const CONFIG = [
  'resource mv {',
  '  net { protocol C; }',
  '  disk { resync-rate 10M; }',
  '  on alpha {',
  '    address 127.0.0.1:7789;',
  '    volume 3 { device minor 61; disk /tmp/mv-a3.img; meta-disk internal; }',
  '    volume 7 { device /dev/drbd62 minor 62; disk /tmp/mv-a7.img; meta-disk /tmp/mv-meta.img [1]; disk { resync-rate 20M; al-extents 257; disk-flushes no; } }',
  '  }',
  '  on beta {',
  '    address 127.0.0.2:7789;',
  '    volume 3 { device minor 61; disk /tmp/mv-b3.img; meta-disk internal; }',
  '    volume 7 { device minor 62; disk /tmp/mv-b7.img; meta-disk internal; }',
  '  }',
  '}',
  '',
].join('\n');

function twoVolumeSpec(): ResourceSpec {
  const file = path.join(dir, 'mv.conf');
  fs.writeFileSync(file, CONFIG);
  return specFromConfig(loadConfig(file), file, 'mv', 'alpha');
}

function fakeStore(spec: ResourceSpec, events: string[]): AttachedStore {
  return {
    diskAtAttach: DiskState.UpToDate,
    uuids: { current: 0x10n, bitmap: 0n, historyStart: 0n, historyEnd: 0n },
    sizeBytes: spec.volume === 3 ? 1 << 20 : 2 << 20,
    syncFlags: async () => undefined,
    setPrimaryBit: () => undefined,
    close: async () => {
      events.push(`close ${spec.diskPath}`);
    },
    uuidsText: () => ({ current: '10', bitmap: '0', historyStart: '0', historyEnd: '0' }),
    outOfSyncKiB: () => 0,
  } as unknown as AttachedStore;
}

describe('the spec of a two-volume resource', () => {
  it('lists each volume with its own minor, device, disks and disk options; its own fields are the first volume', () => {
    const spec = twoVolumeSpec();
    expect(spec.volumes.map((v) => v.volume)).toEqual([3, 7]);
    expect(spec.volume).toBe(3);
    expect(spec.minor).toBe(61);
    const seven = spec.volumes[1]!;
    expect(seven).toMatchObject({ minor: 62, devicePath: '/dev/drbd62', diskPath: '/tmp/mv-a7.img', alExtents: 257 });
    expect(seven.metaDisk).toEqual({ path: '/tmp/mv-meta.img', index: 1 });
    expect(seven.metaArgs).toEqual({ device: '/tmp/mv-meta.img', drbdmetaIndex: '1', attachIndex: '1' });
    expect(seven.writeOrdering.diskFlushes).toBe(false);
    expect(spec.writeOrdering.diskFlushes).toBe(true);
    expect((seven.view as ResourceView).disk.resyncRateKiBps).toBe(20 * 1024);
    expect((spec.view as ResourceView).disk.resyncRateKiBps).toBe(10 * 1024);
    expect(seven.setupArgs.attach).toContain('--resync-rate=20M');
    // volumeSpec: the resource as volume 7's layers see it.
    const as7 = volumeSpec(spec, 7);
    expect(as7).toMatchObject({ name: 'mv', volume: 7, minor: 62, diskPath: '/tmp/mv-a7.img' });
    expect(() => volumeSpec(spec, 4)).toThrow(/no volume 4 \(volumes 3, 7\)/);
  });
});

describe('a runtime with two volumes', () => {
  function runtime(): { rt: ResourceRuntime; events: string[]; hooks: string[] } {
    const events: string[] = [];
    const hooks: string[] = [];
    const rt = new ResourceRuntime({ spec: twoVolumeSpec(), log: silentLogger(), openStore: async (s) => {
      events.push(`open ${s.diskPath} minor ${s.minor}`);
      return fakeStore(s, events);
    } });
    rt.attachHooks.push((_store, vnr) => hooks.push(`attach ${vnr}`));
    rt.detachHooks.push(async (vnr) => {
      hooks.push(`detach ${vnr}`);
    });
    rt.stateHooks.push((before, after, vnr) => {
      if (before.disk !== after.disk) hooks.push(`disk ${vnr} ${diskName(after.disk)}`);
    });
    return { rt, events, hooks };
  }

  it('keys its volumes by their numbers and attaches each through its own spec', async () => {
    const { rt, events, hooks } = runtime();
    expect(rt.volumeNumbers).toEqual([3, 7]);
    expect(rt.firstVolume).toBe(3);
    // attach RES/7: only that volume.
    expect((await rt.handle({ id: 1, verb: 'attach', args: { volume: 7 } })).ok).toBe(true);
    expect(events).toEqual(['open /tmp/mv-a7.img minor 62']);
    expect(rt.volumeSnapshot(7).disk).toBe(DiskState.UpToDate);
    expect(rt.volumeSnapshot(3).disk).toBe(DiskState.Diskless);
    expect(rt.attachedStore).toBeUndefined();
    expect(rt.storeOf(7)).toBeDefined();
    // attach RES: every volume (7 is attached already).
    expect((await rt.handle({ id: 2, verb: 'attach', args: {} })).ok).toBe(true);
    expect(events).toEqual(['open /tmp/mv-a7.img minor 62', 'open /tmp/mv-a3.img minor 61']);
    expect(hooks).toEqual(['disk 7 Attaching', 'attach 7', 'disk 7 UpToDate', 'disk 3 Attaching', 'attach 3', 'disk 3 UpToDate']);
    expect(rt.deviceSizeBytes(3)).toBe(1 << 20);
    expect(rt.deviceSizeBytes(7)).toBe(2 << 20);
  });

  it('reports every volume in status, each with its own minor, device, disk and size', async () => {
    const { rt } = runtime();
    await rt.attach(7);
    const s = rt.status();
    expect(s.volume).toBe(3);
    expect(s.volumes?.map((v) => [v.volume, v.minor, v.device, diskName(v.disk), v.deviceSizeKiB])).toEqual([
      [3, 61, '/dev/drbd61', 'Diskless', 0],
      [7, 62, '/dev/drbd62', 'UpToDate', 2048],
    ]);
  });

  it('changes the connection on every volume at once, and a volume change only its own', async () => {
    const { rt } = runtime();
    await rt.attach();
    await rt.setConnState({ conn: ConnState.Unconnected }, 'test');
    expect(rt.volumeSnapshot(3).conn).toBe(ConnState.Unconnected);
    expect(rt.volumeSnapshot(7).conn).toBe(ConnState.Unconnected);
    await rt.setVolumeState(7, { role: Role.Primary }, 'test');
    expect(rt.volumeSnapshot(7).role).toBe(Role.Primary);
    expect(rt.volumeSnapshot(3).role).toBe(Role.Secondary);
    // drbdsetup role MINOR: the volume named; without one, a line per volume.
    expect((await rt.handle({ id: 1, verb: 'role', args: { volume: 7 } })).stdout).toBe('Primary/Unknown\n');
    expect((await rt.handle({ id: 2, verb: 'role', args: {} })).stdout).toBe('Secondary/Unknown\nPrimary/Unknown\n');
  });

  it('publishes one events2 batch per change: the connection once, a peer-device per volume; a volume change names its own device', async () => {
    const { rt } = runtime();
    await rt.handle({ id: 0, verb: 'attach', args: {} });
    const seen: string[] = [];
    rt.onEvent((e) => seen.push(`${e.kind} ${e.object} ${e.fields.volume ?? '-'}`));
    await rt.setConnState({ conn: ConnState.Unconnected }, 'test');
    expect(seen.filter((l) => l.includes('connection'))).toEqual(['create connection -', 'change connection -']);
    expect(seen.filter((l) => l.includes('peer-device'))).toEqual(['create peer-device 3', 'create peer-device 7', 'change peer-device 3', 'change peer-device 7']);
    seen.length = 0;
    await rt.setVolumeState(7, { disk: DiskState.Outdated }, 'test');
    expect(seen).toEqual(['change device 7']);
    seen.length = 0;
    // The role is the resource's in events2 (the highest of its volumes').
    await rt.setVolumeState(7, { role: Role.Primary }, 'test');
    expect(seen).toEqual(['change resource -']);
  });

  it('detaches the volume named, refuses a volume it does not have, and down takes every volume down', async () => {
    const { rt, events, hooks } = runtime();
    expect((await rt.handle({ id: 0, verb: 'attach', args: {} })).ok).toBe(true);
    hooks.length = 0;
    expect((await rt.handle({ id: 1, verb: 'detach', args: { volume: 3 } })).ok).toBe(true);
    expect(hooks).toEqual(['disk 3 Failed', 'detach 3', 'disk 3 Diskless']);
    expect(rt.volumeSnapshot(7).disk).toBe(DiskState.UpToDate);
    const bad = await rt.handle({ id: 2, verb: 'detach', args: { volume: 5 } });
    expect(bad.ok).toBe(false);
    expect(bad.stderr).toBe('mv: no volume 5 (volumes 3, 7)\n');
    expect((await rt.handle({ id: 3, verb: 'down', args: {} })).ok).toBe(true);
    await rt.stopped;
    expect(events.filter((e) => e.startsWith('close'))).toEqual(['close /tmp/mv-a3.img', 'close /tmp/mv-a7.img']);
    expect(rt.volumeSnapshot(7).disk).toBe(DiskState.Diskless);
  });
});
