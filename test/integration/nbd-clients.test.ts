/**
 * The NBD server against real clients (libnbd's nbdinfo/nbdcopy/nbdsh,
 * qemu-img, fio's nbd engine), serving a FileDisk on a sparse temp file.
 * These are the acceptance oracles of issue 5's NBD bullet.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it, expect, afterEach } from 'vitest';
import { execa } from 'execa';
import { NBDSH_ENV, fioVerify, requireTool, serveSparseFile, waitFor, type ServedFile } from '../helpers/nbd-helpers.js';

const MiB = 1024 * 1024;
const IMAGE_BYTES = 256 * MiB;

let served: ServedFile | null = null;
afterEach(async () => {
  const s = served;
  served = null;
  if (s) await s.cleanup();
});

/** Writes `sizeBytes` of random data to `file` in 4 MiB pieces. */
function writeRandomFile(file: string, sizeBytes: number): void {
  const fd = fs.openSync(file, 'w');
  try {
    const piece = Buffer.allocUnsafe(4 * MiB);
    for (let at = 0; at < sizeBytes; at += piece.length) {
      crypto.randomFillSync(piece);
      fs.writeSync(fd, piece, 0, Math.min(piece.length, sizeBytes - at), at);
    }
  } finally {
    fs.closeSync(fd);
  }
}

function sha256(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const piece = Buffer.allocUnsafe(4 * MiB);
    for (;;) {
      const n = fs.readSync(fd, piece, 0, piece.length, null);
      if (n === 0) break;
      h.update(piece.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

describe('NBD server with real clients', () => {
  it('nbdinfo shows the export name, size, block sizes and flags', async () => {
    await requireTool('nbdinfo');
    served = await serveSparseFile(64 * MiB, 'rabbitmq');
    const r = await execa('nbdinfo', ['--json', served.uri]);
    const info = JSON.parse(r.stdout) as { protocol: string; exports: Record<string, unknown>[] };
    expect(info.protocol).toBe('newstyle-fixed');
    expect(info.exports).toHaveLength(1);
    const e = info.exports[0]!;
    expect(e['export-name']).toBe('rabbitmq');
    expect(e['export-size']).toBe(64 * MiB);
    expect(e['block_size_minimum']).toBe(512);
    expect(e['block_size_preferred']).toBe(4096);
    expect(e['block_size_maximum']).toBe(32 * MiB);
    expect(e['can_flush']).toBe(true);
    expect(e['can_fua']).toBe(true);
    expect(e['can_zero']).toBe(true);
    expect(e['can_multi_conn']).toBe(true);
    // FileDisk declares canTrim: false, so trim is not advertised.
    expect(e['can_trim']).toBe(false);
    expect(e['is_read_only']).toBe(false);

    const list = await execa('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${served.socketPath}`]);
    const names = (JSON.parse(list.stdout) as { exports: { 'export-name': string }[] }).exports.map((x) => x['export-name']);
    expect(names).toEqual(['rabbitmq']);
  });

  it('also serves on TCP loopback', async () => {
    await requireTool('nbdinfo');
    served = await serveSparseFile(8 * MiB, 'r0');
    const port = await served.server.listenTcp('127.0.0.1', 0);
    const r = await execa('nbdinfo', ['--size', `nbd://127.0.0.1:${port}/r0`]);
    expect(Number(r.stdout.trim())).toBe(8 * MiB);
  });

  it('nbdcopy round-trips a random 256 MiB image bit-exactly (large reads bypass the page cache) and qemu-img compare agrees, also after a change behind the server', async () => {
    await requireTool('nbdcopy');
    await requireTool('qemu-img');
    served = await serveSparseFile(IMAGE_BYTES, 'r0');
    const source = path.join(served.dir, 'source.img');
    const copyBack = path.join(served.dir, 'copy-back.img');
    writeRandomFile(source, IMAGE_BYTES);
    const sourceHash = sha256(source);

    await execa('nbdcopy', [source, served.uri], { timeout: 120_000 });
    // The backing file now holds exactly the source image.
    expect(sha256(served.imagePath)).toBe(sourceHash);

    fs.writeFileSync(copyBack, '');
    fs.truncateSync(copyBack, IMAGE_BYTES);
    const directBefore = served.disk.directTransfers.reads;
    await execa('nbdcopy', ['--request-size=262144', served.uri, copyBack], { timeout: 120_000 });
    expect(sha256(copyBack)).toBe(sourceHash);
    // Every 256 KiB read was O_DIRECT into an aligned buffer.
    expect(served.disk.directTransfers.offReason).toBeNull();
    expect(served.disk.directTransfers.reads - directBefore).toBe(IMAGE_BYTES / (256 * 1024));

    const same = await execa('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, served.uri], { reject: false, timeout: 120_000 });
    expect(same.stdout).toContain('Images are identical');
    expect(same.exitCode).toBe(0);

    // Change one sector behind the server's back (a dirty page-cache page, not yet written back):
    // qemu-img must now see it through NBD, whether its reads take the page cache or O_DIRECT.
    const fd = fs.openSync(served.imagePath, 'r+');
    try {
      const sector = Buffer.alloc(512, 0xa5);
      fs.writeSync(fd, sector, 0, 512, 200 * MiB);
    } finally {
      fs.closeSync(fd);
    }
    const differs = await execa('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, served.uri], { reject: false, timeout: 120_000 });
    expect(differs.exitCode).toBe(1);
    expect(differs.stdout).toContain(`Content mismatch at offset ${200 * MiB}`);
  });

  it('fio nbd engine with verify=crc32c at iodepth 16 reports zero verify errors', async () => {
    await requireTool('fio');
    served = await serveSparseFile(64 * MiB, 'r0');
    const r = await fioVerify(served.uri, 'nbd-verify', served.dir, 120_000);
    expect(r.stderr).not.toMatch(/verify: bad|crc32c: verify failed|bad magic/i);
    expect(r.exitCode).toBe(0);
    expect(r.error).toBe(0);
    expect(r.writeBytes).toBeGreaterThan(0);
    // The verify pass read back what was written.
    expect(r.readBytes).toBeGreaterThan(0);
  });

  it('nbdsh requests beyond the end, unaligned, zero-length, oversized and unsupported get the protocol errors', async () => {
    await requireTool('nbdsh');
    served = await serveSparseFile(16 * MiB, 'r0');
    const script = String.raw`
import errno
h.set_strict_mode(0)
size = h.get_size()
assert size == 16 * 1024 * 1024, size
results = []
def expect(what, code, fn):
    try:
        fn()
    except nbd.Error as e:
        if e.errnum != code:
            raise AssertionError("%s: got %s (%s), expected %s" % (what, errno.errorcode.get(e.errnum), e.string, errno.errorcode[code]))
        # "command failed" means the server answered with the error (not a client-side check).
        if "command failed" not in e.string:
            raise AssertionError("%s: refused by libnbd itself, not by the server: %s" % (what, e.string))
        results.append("%s=%s" % (what, errno.errorcode[code]))
        return
    raise AssertionError("%s: succeeded, expected %s" % (what, errno.errorcode[code]))

expect("read-beyond-end", errno.EINVAL, lambda: h.pread(512, size))
expect("read-straddling-end", errno.EINVAL, lambda: h.pread(1024, size - 512))
expect("write-beyond-end", errno.ENOSPC, lambda: h.pwrite(b"x" * 512, size))
expect("zero-beyond-end", errno.ENOSPC, lambda: h.zero(4096, size))
expect("read-unaligned-offset", errno.EINVAL, lambda: h.pread(512, 1))
expect("read-unaligned-length", errno.EINVAL, lambda: h.pread(100, 0))
expect("write-unaligned", errno.EINVAL, lambda: h.pwrite(b"y" * 512, 7))
expect("read-zero-length", errno.EINVAL, lambda: h.pread(0, 0))
expect("write-zero-length", errno.EINVAL, lambda: h.pwrite(b"", 0))
expect("read-oversized", errno.EOVERFLOW, lambda: h.pread(33 * 1024 * 1024, 0))
expect("write-oversized", errno.EOVERFLOW, lambda: h.pwrite(b"z" * (33 * 1024 * 1024), 0))
expect("trim-not-advertised", errno.EINVAL, lambda: h.trim(4096, 0))
expect("cache-not-advertised", errno.EINVAL, lambda: h.cache(4096, 0))

# The connection is still healthy and nothing above reached the disk.
assert h.pread(512, 0) == b"\0" * 512
h.pwrite(b"ok" * 256, 0, nbd.CMD_FLAG_FUA)
assert h.pread(512, 0) == b"ok" * 256
h.zero(8192, 4096)
assert h.pread(8192, 4096) == b"\0" * 8192
h.flush()
print(" ".join(results))
`;
    const r = await execa('nbdsh', ['-u', served.uri, '-c', script], { reject: false, timeout: 60_000, env: NBDSH_ENV });
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    for (const word of [
      'read-beyond-end=EINVAL',
      'write-beyond-end=ENOSPC',
      'zero-beyond-end=ENOSPC',
      'read-unaligned-offset=EINVAL',
      'write-unaligned=EINVAL',
      'read-zero-length=EINVAL',
      'write-zero-length=EINVAL',
      'read-oversized=EOVERFLOW',
      'write-oversized=EOVERFLOW',
      'trim-not-advertised=EINVAL',
      'cache-not-advertised=EINVAL',
    ]) {
      expect(r.stdout).toContain(word);
    }
    // The write with FUA landed in the backing file.
    const head = Buffer.alloc(512);
    const fd = fs.openSync(served.imagePath, 'r');
    try {
      fs.readSync(fd, head, 0, 512, 0);
    } finally {
      fs.closeSync(fd);
    }
    expect(head.equals(Buffer.from('ok'.repeat(256)))).toBe(true);
  });

  it('a client killed mid-burst leaves the server serving and every acknowledged write on disk', async () => {
    await requireTool('nbdsh');
    await requireTool('nbdinfo');
    served = await serveSparseFile(256 * MiB, 'r0');
    const blockBytes = 4096;
    const blocks = (256 * MiB) / blockBytes;
    // Writes block i filled with its own index, 32 in flight, printing each index once acknowledged.
    const script = String.raw`
import struct, sys
inflight = {}
i = 0
while i < ${blocks} or inflight:
    while i < ${blocks} and len(inflight) < 32:
        buf = struct.pack(">Q", i + 1) * ${blockBytes / 8}
        inflight[h.aio_pwrite(buf, i * ${blockBytes})] = i
        i += 1
    h.poll(-1)
    for cookie in list(inflight):
        if h.aio_command_completed(cookie):
            sys.stdout.write("%d\n" % inflight.pop(cookie))
    sys.stdout.flush()
print("done", flush=True)
`;
    const child = execa('nbdsh', ['-u', served.uri, '-c', script], { reject: false, timeout: 120_000, buffer: false, env: NBDSH_ENV });
    let exited = false;
    void child.then(() => (exited = true));
    const acked: number[] = [];
    let pending = '';
    let finished = false;
    child.stdout.on('data', (c: Buffer) => {
      pending += c.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        if (line === 'done') finished = true;
        else if (line.length > 0) acked.push(Number(line));
      }
    });
    await waitFor(() => acked.length >= 3000 || finished || exited, 60_000, 'the client to get 3000 writes acknowledged');
    if (exited && !finished) throw new Error(`nbdsh exited early after ${acked.length} acknowledged writes`);
    child.kill('SIGKILL');
    let reapTimer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      child,
      new Promise<never>((_, reject) => {
        reapTimer = setTimeout(() => reject(new Error('nbdsh was not reaped within 15 s of SIGKILL')), 15_000);
      }),
    ]).finally(() => clearTimeout(reapTimer));
    expect(finished, `nbdsh finished all writes before the kill (acked ${acked.length})`).toBe(false);
    expect(result.signal).toBe('SIGKILL');

    // The dead connection goes away once its in-flight writes completed; the server keeps serving.
    await waitFor(() => served!.server.connectionCount === 0, 10_000, 'the dead connection to be reaped');
    const info = await execa('nbdinfo', ['--size', served.uri], { timeout: 30_000 });
    expect(Number(info.stdout.trim())).toBe(256 * MiB);

    const fd = fs.openSync(served.imagePath, 'r');
    try {
      const got = Buffer.alloc(blockBytes);
      for (const i of acked) {
        fs.readSync(fd, got, 0, blockBytes, i * blockBytes);
        const expected = Buffer.alloc(blockBytes);
        for (let at = 0; at < blockBytes; at += 8) expected.writeBigUInt64BE(BigInt(i + 1), at);
        if (!got.equals(expected)) throw new Error(`acknowledged block ${i} is not on disk`);
      }
    } finally {
      fs.closeSync(fd);
    }
    expect(acked.length).toBeGreaterThanOrEqual(3000);
  });
});
