/**
 * A flush that fails while the disk is released (detach, down) is not
 * dropped: the resource process logs DRBD's "local disk flush failed with
 * status N" and answers the verb with exit code 10 and a line saying which
 * disk and what it means, while the detach/down itself completes. Real
 * meta-data on a file (create-md), the real wiring, and a BlockDevice wrapper
 * whose flush rejects with EIO once armed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadSpec } from '../../src/daemon/config-adapter.js';
import { openMetaStore } from '../../src/daemon/meta-store.js';
import { type AttachedStore, ResourceRuntime } from '../../src/daemon/runtime.js';
import { wireReplication } from '../../src/daemon/wiring.js';
import type { BlockDevice } from '../../src/disk/block-device.js';
import { createMd } from '../../src/meta/tool.js';
import { DiskState } from '../../src/resource/states.js';
import { capturingLogger } from '../helpers/replication-helpers.js';
import { CaptureIo, sparseFile, tmpDir } from '../helpers/meta-helpers.js';

const RESOURCE = 'liflush';
const MINOR = 180;

/** The store as opened, but its data area's flush rejects with EIO while `armed.on`. */
function withFailingFlush(store: AttachedStore, armed: { on: boolean }): AttachedStore {
  const inner = store.data;
  const data: BlockDevice = {
    get sizeBytes() {
      return inner.sizeBytes;
    },
    capabilities: inner.capabilities,
    read: (buffer, offsetBytes, flags) => inner.read(buffer, offsetBytes, flags),
    write: (buffer, offsetBytes, flags) => inner.write(buffer, offsetBytes, flags),
    flush: () => (armed.on ? Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { errno: -5, code: 'EIO' })) : inner.flush()),
    trim: (offsetBytes, lengthBytes) => inner.trim(offsetBytes, lengthBytes),
    close: () => inner.close(),
  };
  return Object.create(store, { data: { value: data } }) as AttachedStore;
}

describe('a failing flush on detach/down is reported, not swallowed', () => {
  let dir: string;
  let diskPath: string;
  let configPath: string;

  beforeEach(async () => {
    dir = tmpDir();
    diskPath = sparseFile(dir, 'alpha.img', 64 * 1024 * 1024);
    configPath = path.join(dir, 'udrbd.conf');
    fs.writeFileSync(
      configPath,
      [
        `resource ${RESOURCE} {`,
        `  on alpha { device /dev/drbd${MINOR} minor ${MINOR}; disk ${diskPath}; address 127.0.0.1:8340; meta-disk internal; }`,
        `  on beta { device /dev/drbd${MINOR + 1} minor ${MINOR + 1}; disk ${diskPath}; address 127.0.0.2:8340; meta-disk internal; }`,
        '}',
        '',
      ].join('\n'),
    );
    await createMd(diskPath, new CaptureIo());
  });

  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function attached(): Promise<{ rt: ResourceRuntime; lines: string[]; armed: { on: boolean } }> {
    const { log, lines } = capturingLogger();
    const armed = { on: false };
    const spec = loadSpec(configPath, RESOURCE, 'alpha');
    const rt = new ResourceRuntime({ spec, log, openStore: async (s, l) => withFailingFlush(await openMetaStore(s, l), armed) });
    wireReplication(rt, { discardMyData: false });
    await rt.attach();
    expect(rt.snapshot.disk).toBeGreaterThan(DiskState.Diskless);
    return { rt, lines, armed };
  }

  function flushLogLines(lines: string[]): Array<{ level: number; msg: string; disk: string }> {
    return lines.map((l) => JSON.parse(l) as { level: number; msg: string; disk: string }).filter((l) => l.msg.startsWith('local disk flush failed'));
  }

  for (const verb of ['detach', 'down'] as const) {
    it(`${verb}: the flush failure is logged in DRBD's words and answered with exit code 10, and the disk is still released`, async () => {
      const { rt, lines, armed } = await attached();
      armed.on = true;
      const reply = await rt.handle({ id: 1, verb, args: {} });
      expect(reply.ok).toBe(false);
      expect(reply.exitCode).toBe(10);
      expect(reply.stderr).toBe(
        `${MINOR}: flush of ${diskPath} failed while detaching (EIO: i/o error, fdatasync): ` +
          'writes completed before it may not be on stable storage; check the disk (dmesg) before attaching it again\n',
      );
      expect(flushLogLines(lines)).toEqual([expect.objectContaining({ level: 50, msg: 'local disk flush failed with status -5', disk: diskPath })]);
      expect(rt.snapshot.disk).toBe(DiskState.Diskless);
      if (verb === 'down') await rt.stopped;
      else await rt.down();
    });
  }

  it('detach with a working flush answers exit code 0 with nothing on stderr', async () => {
    const { rt, lines } = await attached();
    const reply = await rt.handle({ id: 1, verb: 'detach', args: {} });
    expect(reply).toMatchObject({ ok: true, exitCode: 0, stderr: '' });
    expect(flushLogLines(lines)).toEqual([]);
    await rt.down();
  });
});
