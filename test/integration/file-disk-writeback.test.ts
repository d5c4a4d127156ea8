/**
 * Early write-back (disk/writeback + native/udrbd-io): FileDisk hands each
 * few MiB of completed page-cache writes, as one range, to the addon — never
 * FUA writes, never before the pages are dirty — and forgets its descriptor
 * before closing it. The addon really calls sync_file_range on its own thread:
 * a hint on a file with dirty pages completes, one on a closed descriptor
 * fails with EBADF, and bad arguments are refused.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FileDisk } from '../../src/disk/file-disk.js';
import { type WritebackAddon, type WritebackStats, loadWriteback } from '../../src/disk/writeback.js';
import { writebackHintBytesFromEnv } from '../../src/daemon/meta-store.js';

const MiB = 1024 * 1024;
const SIZE_BYTES = 32 * MiB;
const EBADF = 9;

/** Records hints instead of issuing them. */
class RecordingWriteback implements WritebackAddon {
  readonly started: Array<{ fd: number; offsetBytes: number; lengthBytes: number }> = [];
  readonly forgotten: number[] = [];
  readonly queueMax = 64;
  start(fd: number, offsetBytes: number, lengthBytes: number): boolean {
    this.started.push({ fd, offsetBytes, lengthBytes });
    return true;
  }
  forget(fd: number): void {
    this.forgotten.push(fd);
  }
  stats(): WritebackStats {
    return { queued: this.started.length, completed: 0, dropped: 0, failed: 0, lastErrno: 0 };
  }
}

let dir: string;
let file: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-writeback-'));
  file = path.join(dir, 'disk.img');
  fs.writeFileSync(file, Buffer.alloc(0));
  fs.truncateSync(file, SIZE_BYTES);
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('FileDisk write-back hints', () => {
  it('one hint per hint size of completed page-cache writes, spanning them; FUA writes and flushed data give none', async () => {
    const wb = new RecordingWriteback();
    const disk = FileDisk.open(file, { writeback: wb, writebackHintBytes: 2 * MiB });
    const fd = (disk as unknown as { fd: number }).fd; // private; the hint must name the data descriptor
    try {
      const mib = Buffer.alloc(MiB, 0x11);
      await disk.write(mib, 4 * MiB);
      expect(wb.started).toHaveLength(0);
      await disk.write(mib, 5 * MiB);
      expect(wb.started).toEqual([{ fd, offsetBytes: 4 * MiB, lengthBytes: 2 * MiB }]);
      // Small (inline) writes count too; the range spans all of them.
      for (let i = 0; i < 512; i++) await disk.write(Buffer.alloc(4096, i & 0xff), 20 * MiB + i * 8192);
      expect(wb.started).toHaveLength(2);
      expect(wb.started[1]).toEqual({ fd, offsetBytes: 20 * MiB, lengthBytes: 511 * 8192 + 4096 });
      // FUA writes are already on the device: no hint however many.
      for (let i = 0; i < 3; i++) await disk.write(mib, i * MiB, { fua: true });
      expect(wb.started).toHaveLength(2);
      // A flush covers what was written before it: the count starts again.
      await disk.write(mib, 8 * MiB);
      await disk.flush();
      await disk.write(mib, 9 * MiB);
      expect(wb.started).toHaveLength(2);
      await disk.write(mib, 10 * MiB);
      expect(wb.started[2]).toEqual({ fd, offsetBytes: 9 * MiB, lengthBytes: 2 * MiB });
      expect(disk.writebackHints).toBe(3);
    } finally {
      await disk.close();
    }
    // Forgotten before the descriptor was closed (a reused fd number must get no stale hint).
    expect(wb.forgotten).toEqual([fd]);
  });

  it('writebackHintBytes 0 and read-only disks give no hints', async () => {
    const wb = new RecordingWriteback();
    const off = FileDisk.open(file, { writeback: wb, writebackHintBytes: 0 });
    try {
      for (let i = 0; i < 8; i++) await off.write(Buffer.alloc(MiB), i * MiB);
    } finally {
      await off.close();
    }
    const ro = FileDisk.open(file, { writeback: wb, readOnly: true });
    ro.closeSync();
    expect(wb.started).toHaveLength(0);
    expect(wb.forgotten).toHaveLength(0);
    expect(() => FileDisk.open(file, { writeback: wb, writebackHintBytes: -1 })).toThrow(/writebackHintBytes/);
  });
});

describe('UDRBD_WRITEBACK_HINT_KIB', () => {
  it('unset or empty: the default; a whole number of KiB, 0 = off; anything else is refused naming the variable', () => {
    expect(writebackHintBytesFromEnv({})).toBeUndefined();
    expect(writebackHintBytesFromEnv({ UDRBD_WRITEBACK_HINT_KIB: '' })).toBeUndefined();
    expect(writebackHintBytesFromEnv({ UDRBD_WRITEBACK_HINT_KIB: '0' })).toBe(0);
    expect(writebackHintBytesFromEnv({ UDRBD_WRITEBACK_HINT_KIB: '4096' })).toBe(4 * MiB);
    for (const bad of ['-1', '1.5', '8M', 'off', '2000000']) {
      expect(() => writebackHintBytesFromEnv({ UDRBD_WRITEBACK_HINT_KIB: bad }), bad).toThrow(/UDRBD_WRITEBACK_HINT_KIB='.*' is not a whole number of KiB/);
    }
  });
});

describe('native/udrbd-io', () => {
  let addon: WritebackAddon;
  beforeAll(() => {
    const loaded = loadWriteback();
    if (loaded.addon === null) throw new Error(`udrbd-io addon missing: ${loaded.reason} (scripts/setup.sh builds it)`);
    addon = loaded.addon;
  });

  async function settled(until: (s: WritebackStats) => boolean): Promise<WritebackStats> {
    const deadlineMs = Date.now() + 10_000;
    for (;;) {
      const s = addon.stats();
      if (until(s) || Date.now() > deadlineMs) return s;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  it('starts write-back of dirty pages on its own thread; a closed descriptor fails with EBADF', async () => {
    const fd = fs.openSync(file, 'r+');
    try {
      fs.writeSync(fd, Buffer.alloc(4 * MiB, 0x42), 0, 4 * MiB, 0);
      const before = addon.stats();
      expect(addon.start(fd, 0, 4 * MiB)).toBe(true);
      const after = await settled((s) => s.completed + s.failed > before.completed + before.failed);
      expect(after.queued).toBe(before.queued + 1);
      expect(after.completed).toBe(before.completed + 1);
      expect(after.failed).toBe(before.failed);
      addon.forget(fd);
    } finally {
      fs.closeSync(fd);
    }
    // The descriptor number is closed now (nothing else opens files in this test meanwhile).
    const before = addon.stats();
    expect(addon.start(fd, 0, MiB)).toBe(true);
    const after = await settled((s) => s.failed > before.failed);
    expect(after.failed).toBe(before.failed + 1);
    expect(after.lastErrno).toBe(EBADF);
  });

  it('refuses negative or missing arguments', () => {
    expect(() => addon.start(-1, 0, 0)).toThrow(/>= 0/);
    expect(() => addon.start(3, -4096, 0)).toThrow(/>= 0/);
    expect(() => (addon.start as unknown as (fd: number) => boolean)(3)).toThrow(/start\(fd, offsetBytes, lengthBytes\)/);
  });

  it('forget drops queued hints of that descriptor and returns once none runs on it', async () => {
    const fd = fs.openSync(file, 'r+');
    try {
      fs.writeSync(fd, Buffer.alloc(8 * MiB, 0x24), 0, 8 * MiB, 0);
      const before = addon.stats();
      // Non-adjacent ranges do not coalesce: several entries queue up behind the first.
      for (let i = 0; i < 8; i++) addon.start(fd, i * 2 * MiB, MiB / 2);
      addon.forget(fd);
      const s = addon.stats();
      // Whatever ran before forget completed; nothing for fd runs or waits now.
      await new Promise((r) => setTimeout(r, 50));
      const later = addon.stats();
      expect(later.completed + later.failed).toBe(s.completed + s.failed);
      expect(later.completed - before.completed).toBeLessThanOrEqual(8);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('alignedBuffer: memory O_DIRECT accepts (where Node memory is refused), 1 MiB and more advised into huge pages, sizes checked', () => {
    const aligned = addon as unknown as {
      alignedBuffer(bytes: number): Buffer;
      alignedBufferStats(): { hugeAdvised: number; hugeRefused: number };
    };
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_DIRECT);
    try {
      const node = Buffer.alloc(MiB + 512).subarray(512); // Node memory: no alignment promised
      expect(() => fs.writeSync(fd, node, 0, MiB, 0)).toThrow(/EINVAL/);
      const before = aligned.alignedBufferStats();
      const small = aligned.alignedBuffer(64 * 1024);
      const big = aligned.alignedBuffer(MiB + 16 * 1024);
      expect([small.length, small.byteOffset, big.length, big.byteOffset]).toEqual([64 * 1024, 0, MiB + 16 * 1024, 0]);
      const after = aligned.alignedBufferStats();
      expect(after.hugeAdvised + after.hugeRefused).toBe(before.hugeAdvised + before.hugeRefused + 1); // the big one only
      big.fill(0x6b);
      expect(fs.writeSync(fd, big, 0, MiB, 2 * MiB)).toBe(MiB);
      small.fill(0);
      expect(fs.readSync(fd, small, 0, small.length, 2 * MiB)).toBe(small.length);
      expect(small.equals(Buffer.alloc(small.length, 0x6b))).toBe(true);
    } finally {
      fs.closeSync(fd);
    }
    expect(() => aligned.alignedBuffer(0)).toThrow(/1 \.\. 64 MiB/);
    expect(() => aligned.alignedBuffer(65 * MiB)).toThrow(/1 \.\. 64 MiB/);
  });
});
