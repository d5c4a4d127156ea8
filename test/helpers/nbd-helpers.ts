/**
 * Shared fixtures for the NBD integration tests: a temp dir, a sparse file
 * served by an NbdServer over a unix socket, tool presence checks that fail
 * loudly, and a minimal raw NBD client for protocol-level tests.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { FileDisk } from '../../src/disk/file-disk.js';
import { NbdServer } from '../../src/frontend/nbd/server.js';
import { silentLogger } from '../../src/util/log.js';
import * as P from '../../src/frontend/nbd/protocol.js';

/** Debian package that provides each tool the tests drive. */
const TOOL_PACKAGES: Record<string, string> = {
  nbdinfo: 'libnbd-bin',
  nbdcopy: 'libnbd-bin',
  nbdsh: 'python3-libnbd',
  'qemu-img': 'qemu-utils',
  fio: 'fio',
};

/**
 * Environment for nbdsh: it runs `python3 -m nbd`, and Debian's python3-libnbd
 * belongs to /usr/bin/python3, not to a python3 some other tool put first on PATH.
 */
export const NBDSH_ENV = { PATH: `/usr/bin:/bin:${process.env.PATH ?? ''}` };

/** Throws (so the test fails, never skips) when `tool` is not installed. */
export async function requireTool(tool: string): Promise<void> {
  const r = await execa('sh', ['-c', `command -v ${tool}`], { reject: false });
  if (r.exitCode !== 0) {
    throw new Error(`${tool} is not installed: run scripts/setup.sh (Debian package ${TOOL_PACKAGES[tool] ?? tool})`);
  }
  if (tool === 'nbdsh') {
    const py = await execa('nbdsh', ['-c', 'pass'], { reject: false, env: NBDSH_ENV });
    if (py.exitCode !== 0) {
      throw new Error(`nbdsh cannot load libnbd's Python module: ${py.stderr.trim()} (Debian package python3-libnbd)`);
    }
  }
}

export interface ServedFile {
  dir: string;
  imagePath: string;
  socketPath: string;
  disk: FileDisk;
  server: NbdServer;
  uri: string;
  cleanup(): Promise<void>;
}

/** A sparse file of `sizeBytes` served as export `exportName` on a unix socket. */
export async function serveSparseFile(sizeBytes: number, exportName = 'r0', maxInflight = 64): Promise<ServedFile> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-nbd-'));
  const imagePath = path.join(dir, 'backing.img');
  fs.writeFileSync(imagePath, '');
  fs.truncateSync(imagePath, sizeBytes);
  const socketPath = path.join(dir, 'nbd.sock');
  const disk = FileDisk.open(imagePath);
  const server = new NbdServer({ device: disk, exportName, logger: silentLogger(), maxInflight });
  await server.listenUnix(socketPath);
  return {
    dir,
    imagePath,
    socketPath,
    disk,
    server,
    uri: `nbd+unix:///${exportName}?socket=${socketPath}`,
    async cleanup() {
      try {
        await server.close();
      } finally {
        await disk.close();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** Polls `condition` every 20 ms for at most `timeoutMs`. */
/** What a fio verify run reports (the parts the tests assert). */
export interface FioVerifyResult {
  exitCode: number | undefined;
  stderr: string;
  error: number;
  writeBytes: number;
  readBytes: number;
}

/**
 * fio's nbd engine against `uri`: random writes of 4..128 KiB at iodepth 16
 * over 48 MiB, each block checked with crc32c on the verify pass (fatal on
 * the first mismatch). Bounded by fio's runtime and `timeoutMs`.
 */
export async function fioVerify(uri: string, name: string, cwd: string, timeoutMs: number): Promise<FioVerifyResult> {
  const r = await execa(
    'fio',
    [
      `--name=${name}`,
      '--ioengine=nbd',
      `--uri=${uri}`,
      '--rw=randwrite',
      '--bsrange=4k-128k',
      '--bs_unaligned=0',
      '--iodepth=16',
      '--size=48m',
      '--verify=crc32c',
      '--do_verify=1',
      '--verify_fatal=1',
      '--verify_state_save=0',
      '--runtime=60',
      '--output-format=json',
    ],
    { reject: false, timeout: timeoutMs, cwd },
  );
  const brace = r.stdout.indexOf('{');
  const json = brace >= 0 ? (JSON.parse(r.stdout.slice(brace)) as { jobs: { error: number; write: { io_bytes: number }; read: { io_bytes: number } }[] }) : null;
  const job = json?.jobs[0];
  return {
    exitCode: r.exitCode,
    stderr: r.stderr,
    error: job?.error ?? -1,
    writeBytes: job?.write.io_bytes ?? 0,
    readBytes: job?.read.io_bytes ?? 0,
  };
}

export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A raw NBD client for protocol tests: reads exact byte counts from a socket.
 * Bounded by a per-read timeout so a broken server fails the test, not hangs it.
 */
export class RawNbdClient {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiter: (() => void) | null = null;
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.buffered += c.length;
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    socket.on('error', () => {});
  }

  static connect(socketPath: string): Promise<RawNbdClient> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(socketPath, () => resolve(new RawNbdClient(s)));
      s.once('error', reject);
    });
  }

  async read(bytes: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buffered < bytes) {
      if (this.closed) throw new Error(`connection closed with ${this.buffered}/${bytes} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out reading ${bytes} bytes (have ${this.buffered})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = null;
    }
    const all = Buffer.concat(this.chunks, this.buffered);
    this.chunks = [all.subarray(bytes)];
    this.buffered -= bytes;
    return all.subarray(0, bytes);
  }

  /** Waits until the server closes the connection. */
  async waitClosed(timeoutMs = 5000): Promise<void> {
    await waitFor(() => this.closed, timeoutMs, 'the server to close the connection');
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  /** Reads the greeting and sends client flags (fixed newstyle, no zeroes). */
  async greet(): Promise<number> {
    const g = await this.read(P.GREETING_BYTES);
    if (g.readUInt32BE(0) !== P.NBDMAGIC_HI || g.readUInt32BE(8) !== P.IHAVEOPT_HI) throw new Error('bad greeting');
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES);
    this.write(flags);
    return g.readUInt16BE(16);
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(16);
    h.writeUInt32BE(P.IHAVEOPT_HI, 0);
    h.writeUInt32BE(P.IHAVEOPT_LO, 4);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(data.length, 12);
    this.write(Buffer.concat([h, data]));
  }

  async readOptionReply(): Promise<{ option: number; type: number; data: Buffer }> {
    const h = await this.read(P.OPTION_REPLY_HEADER_BYTES);
    if (h.readUInt32BE(0) !== P.OPTION_REPLY_MAGIC_HI || h.readUInt32BE(4) !== P.OPTION_REPLY_MAGIC_LO) {
      throw new Error('bad option reply magic');
    }
    const len = h.readUInt32BE(16);
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: len > 0 ? await this.read(len) : Buffer.alloc(0) };
  }

  /** NBD_OPT_GO on `name`; returns size and transmission flags from NBD_INFO_EXPORT. */
  async go(name: string): Promise<{ sizeBytes: number; flags: number; blockSizes?: [number, number, number] }> {
    this.sendOption(P.OPT_GO, infoRequestData(name, [P.INFO_BLOCK_SIZE]));
    let sizeBytes = -1;
    let flags = 0;
    let blockSizes: [number, number, number] | undefined;
    for (let i = 0; i < 8; i++) {
      const r = await this.readOptionReply();
      if (r.type === P.REP_ACK) return { sizeBytes, flags, ...(blockSizes ? { blockSizes } : {}) };
      if (r.type !== P.REP_INFO) throw new Error(`NBD_OPT_GO failed with reply type 0x${r.type.toString(16)}: ${r.data.toString()}`);
      const infoType = r.data.readUInt16BE(0);
      if (infoType === P.INFO_EXPORT) {
        sizeBytes = P.readUInt64BE(r.data, 2);
        flags = r.data.readUInt16BE(10);
      } else if (infoType === P.INFO_BLOCK_SIZE) {
        blockSizes = [r.data.readUInt32BE(2), r.data.readUInt32BE(6), r.data.readUInt32BE(10)];
      }
    }
    throw new Error('too many option replies');
  }

  sendRequest(type: number, handle: number, offsetBytes: number, lengthBytes: number, flags = 0, payload?: Buffer): void {
    const h = Buffer.alloc(P.REQUEST_HEADER_BYTES);
    h.writeUInt32BE(P.REQUEST_MAGIC, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeUInt32BE(0, 8);
    h.writeUInt32BE(handle, 12);
    P.writeUInt64BE(h, offsetBytes, 16);
    h.writeUInt32BE(lengthBytes, 24);
    this.write(payload ? Buffer.concat([h, payload]) : h);
  }

  /** Reads a simple reply; reads `dataBytes` of payload when the error is 0. */
  async readReply(dataBytes = 0): Promise<{ handle: number; error: number; data: Buffer }> {
    const h = await this.read(P.SIMPLE_REPLY_HEADER_BYTES);
    if (h.readUInt32BE(0) !== P.SIMPLE_REPLY_MAGIC) throw new Error('bad simple reply magic');
    const error = h.readUInt32BE(4);
    const handle = h.readUInt32BE(12);
    const data = error === 0 && dataBytes > 0 ? await this.read(dataBytes) : Buffer.alloc(0);
    return { handle, error, data };
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export function infoRequestData(name: string, infoTypes: number[]): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length + 2 + 2 * infoTypes.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infoTypes.length, 4 + n.length);
  infoTypes.forEach((t, i) => b.writeUInt16BE(t, 4 + n.length + 2 + 2 * i));
  return b;
}
