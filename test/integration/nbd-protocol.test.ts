/**
 * The NBD server at the protocol level, driven by a raw client over a unix
 * socket and serving MemoryDisk-backed devices whose operations tests can
 * delay, gate or fail: option haggling, out-of-order replies, back-pressure,
 * malformed traffic, vanishing clients, DISC and shutdown.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it, expect, afterEach } from 'vitest';
import { MemoryDisk } from '../../src/disk/memory-disk.js';
import type { BlockDevice, BlockDeviceCapabilities, WriteFlags } from '../../src/disk/block-device.js';
import { NbdServer, type NbdServerOptions } from '../../src/frontend/nbd/server.js';
import { silentLogger } from '../../src/util/log.js';
import * as P from '../../src/frontend/nbd/protocol.js';
import { RawNbdClient, infoRequestData, waitFor } from '../helpers/nbd-helpers.js';

const MiB = 1024 * 1024;

/** A MemoryDisk whose writes can be held at a gate, reads delayed per offset, and ops failed. */
class TestDevice implements BlockDevice {
  readonly mem: MemoryDisk;
  capabilities: BlockDeviceCapabilities;
  gateClosed = false;
  private gateWaiters: (() => void)[] = [];
  pendingWrites = 0;
  maxPendingWrites = 0;
  readDelayMs = new Map<number, number>();
  failWritesWith: string | null = null;
  flushCount = 0;
  fuaWrites = 0;

  constructor(sizeBytes: number, caps: Partial<BlockDeviceCapabilities> = {}) {
    devices.push(this);
    this.mem = new MemoryDisk(sizeBytes);
    this.capabilities = { ...this.mem.capabilities, ...caps };
  }
  get sizeBytes(): number {
    return this.mem.sizeBytes;
  }
  openGate(): void {
    this.gateClosed = false;
    for (const w of this.gateWaiters.splice(0)) w();
  }
  async read(buffer: Buffer, offsetBytes: number): Promise<void> {
    const d = this.readDelayMs.get(offsetBytes);
    if (d) await new Promise((r) => setTimeout(r, d));
    return this.mem.read(buffer, offsetBytes);
  }
  async write(buffer: Buffer, offsetBytes: number, flags?: WriteFlags): Promise<void> {
    this.pendingWrites++;
    this.maxPendingWrites = Math.max(this.maxPendingWrites, this.pendingWrites);
    try {
      if (this.gateClosed) await new Promise<void>((r) => this.gateWaiters.push(r));
      if (this.failWritesWith) throw Object.assign(new Error('injected'), { code: this.failWritesWith });
      if (flags?.fua) this.fuaWrites++;
      await this.mem.write(buffer, offsetBytes);
    } finally {
      this.pendingWrites--;
    }
  }
  async flush(): Promise<void> {
    this.flushCount++;
  }
  trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.mem.trim(offsetBytes, lengthBytes);
  }
  async close(): Promise<void> {}
}

const devices: TestDevice[] = [];
let dir: string | null = null;
let server: NbdServer | null = null;
const clients: RawNbdClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  // A failed test may leave writes held at a gate; release them so close() can finish.
  for (const d of devices.splice(0)) d.openGate();
  if (server) await server.close();
  server = null;
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  dir = null;
});

async function serve(device: BlockDevice, options: Partial<NbdServerOptions> = {}): Promise<string> {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-nbdp-'));
  const socketPath = path.join(dir, 'nbd.sock');
  server = new NbdServer({ device, exportName: 'r0', logger: silentLogger(), ...options });
  await server.listenUnix(socketPath);
  return socketPath;
}

async function client(socketPath: string): Promise<RawNbdClient> {
  const c = await RawNbdClient.connect(socketPath);
  clients.push(c);
  return c;
}

async function transmitting(socketPath: string): Promise<RawNbdClient> {
  const c = await client(socketPath);
  await c.greet();
  await c.go('r0');
  return c;
}

describe('NBD option haggling', () => {
  it('answers LIST, INFO, unsupported and malformed options, then GO on the default export', async () => {
    const sock = await serve(new TestDevice(8 * MiB));
    const c = await client(sock);
    expect(await c.greet()).toBe(P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES);

    c.sendOption(P.OPT_LIST);
    const server = await c.readOptionReply();
    expect(server.type).toBe(P.REP_SERVER);
    expect(server.data.toString('utf8', 4)).toBe('r0');
    expect((await c.readOptionReply()).type).toBe(P.REP_ACK);

    c.sendOption(P.OPT_LIST, Buffer.from('x'));
    expect((await c.readOptionReply()).type).toBe(P.REP_ERR_INVALID);
    c.sendOption(P.OPT_STRUCTURED_REPLY);
    expect((await c.readOptionReply()).type).toBe(P.REP_ERR_UNSUP);
    c.sendOption(P.OPT_STARTTLS);
    expect((await c.readOptionReply()).type).toBe(P.REP_ERR_UNSUP);
    c.sendOption(99);
    const unknown = await c.readOptionReply();
    expect(unknown.option).toBe(99);
    expect(unknown.type).toBe(P.REP_ERR_UNSUP);
    c.sendOption(P.OPT_INFO, infoRequestData('nope', []));
    const unknownExport = await c.readOptionReply();
    expect(unknownExport.type).toBe(P.REP_ERR_UNKNOWN);
    expect(unknownExport.data.toString()).toMatch(/nope/);
    c.sendOption(P.OPT_INFO, Buffer.from([0, 0, 0, 9, 1]));
    expect((await c.readOptionReply()).type).toBe(P.REP_ERR_INVALID);

    c.sendOption(P.OPT_INFO, infoRequestData('r0', [P.INFO_NAME, P.INFO_DESCRIPTION]));
    const infos: number[] = [];
    for (;;) {
      const r = await c.readOptionReply();
      if (r.type === P.REP_ACK) break;
      expect(r.type).toBe(P.REP_INFO);
      infos.push(r.data.readUInt16BE(0));
    }
    expect(infos.sort()).toEqual([P.INFO_EXPORT, P.INFO_NAME, P.INFO_DESCRIPTION, P.INFO_BLOCK_SIZE].sort());

    const go = await c.go('');
    expect(go.sizeBytes).toBe(8 * MiB);
    expect(go.blockSizes).toEqual([512, 4096, 32 * MiB]);
    c.sendRequest(P.CMD_READ, 7, 0, 4096);
    const r = await c.readReply(4096);
    expect(r).toMatchObject({ handle: 7, error: 0 });
  });

  it('enters transmission on NBD_OPT_EXPORT_NAME without the 124 zero bytes when agreed', async () => {
    const dev = new TestDevice(4 * MiB);
    dev.mem.data.fill(0x5a, 0, 512);
    const sock = await serve(dev);
    const c = await client(sock);
    await c.greet();
    c.sendOption(P.OPT_EXPORT_NAME, Buffer.from('r0'));
    const reply = await c.read(10);
    expect(P.readUInt64BE(reply, 0)).toBe(4 * MiB);
    expect(reply.readUInt16BE(8) & P.TFLAG_HAS_FLAGS).toBe(P.TFLAG_HAS_FLAGS);
    c.sendRequest(P.CMD_READ, 1, 0, 512);
    const r = await c.readReply(512);
    expect(r.data.equals(Buffer.alloc(512, 0x5a))).toBe(true);
  });

  it('hangs up on NBD_OPT_EXPORT_NAME for an unknown export, after ABORT, and on unknown client flags', async () => {
    const sock = await serve(new TestDevice(MiB));
    const a = await client(sock);
    await a.greet();
    a.sendOption(P.OPT_EXPORT_NAME, Buffer.from('other'));
    await a.waitClosed();

    const b = await client(sock);
    await b.greet();
    b.sendOption(P.OPT_ABORT);
    expect((await b.readOptionReply()).type).toBe(P.REP_ACK);
    await b.waitClosed();

    const c = await client(sock);
    await c.read(P.GREETING_BYTES);
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(0x80);
    c.write(flags);
    await c.waitClosed();
    await waitFor(() => server!.connectionCount === 0, 5000, 'connections to be reaped');
  });
});

describe('NBD transmission', () => {
  it('replies out of order: a fast read overtakes a slow one', async () => {
    const dev = new TestDevice(MiB);
    dev.readDelayMs.set(0, 300);
    const c = await transmitting(await serve(dev));
    c.sendRequest(P.CMD_READ, 1, 0, 4096);
    c.sendRequest(P.CMD_READ, 2, 4096, 4096);
    const first = await c.readReply(4096);
    const second = await c.readReply(4096);
    expect([first.handle, second.handle]).toEqual([2, 1]);
  });

  it('pauses reading at maxInflight and resumes when requests complete', async () => {
    const dev = new TestDevice(MiB);
    dev.gateClosed = true;
    const c = await transmitting(await serve(dev, { maxInflight: 4 }));
    const count = 32;
    for (let i = 0; i < count; i++) c.sendRequest(P.CMD_WRITE, i + 1, i * 4096, 4096, 0, Buffer.alloc(4096, i + 1));
    await waitFor(() => dev.pendingWrites === 4, 5000, 'four writes to reach the device');
    await new Promise((r) => setTimeout(r, 200));
    expect(dev.pendingWrites).toBe(4);
    expect(dev.maxPendingWrites).toBe(4);
    dev.openGate();
    const handles = new Set<number>();
    for (let i = 0; i < count; i++) {
      const r = await c.readReply();
      expect(r.error).toBe(0);
      handles.add(r.handle);
    }
    expect(handles.size).toBe(count);
    expect(dev.maxPendingWrites).toBe(4);
    for (let i = 0; i < count; i++) expect(dev.mem.data[i * 4096 + 100]).toBe(i + 1);
  });

  it('caps in-flight payload bytes as well as requests', async () => {
    const dev = new TestDevice(64 * MiB);
    dev.gateClosed = true;
    // 8 MiB budget, 2 MiB writes: at most 4 at the device at once.
    const c = await transmitting(await serve(dev, { maxInflight: 64, maxInflightBytes: 8 * MiB }));
    for (let i = 0; i < 10; i++) c.sendRequest(P.CMD_WRITE, i + 1, i * 2 * MiB, 2 * MiB, 0, Buffer.alloc(2 * MiB, 7));
    await waitFor(() => dev.pendingWrites === 4, 5000, 'four writes at the device');
    await new Promise((r) => setTimeout(r, 200));
    expect(dev.maxPendingWrites).toBe(4);
    dev.openGate();
    for (let i = 0; i < 10; i++) expect((await c.readReply()).error).toBe(0);
  });

  it('emulates FUA with a flush when the device cannot do FUA, and passes it through when it can', async () => {
    const noFua = new TestDevice(MiB, { canFua: false });
    const c = await transmitting(await serve(noFua));
    c.sendRequest(P.CMD_WRITE, 1, 0, 512, P.CMD_FLAG_FUA, Buffer.alloc(512, 1));
    expect((await c.readReply()).error).toBe(0);
    expect(noFua.flushCount).toBe(1);
    expect(noFua.fuaWrites).toBe(0);
    c.sendRequest(P.CMD_FLUSH, 2, 0, 0);
    expect((await c.readReply()).error).toBe(0);
    expect(noFua.flushCount).toBe(2);
  });

  it('zeroes with writes under NO_HOLE and with trim otherwise', async () => {
    const dev = new TestDevice(16 * MiB);
    dev.mem.data.fill(0xff);
    const c = await transmitting(await serve(dev));
    // 9 MiB spans several zero chunks.
    c.sendRequest(P.CMD_WRITE_ZEROES, 1, 512, 9 * MiB, P.CMD_FLAG_NO_HOLE | P.CMD_FLAG_FUA);
    expect((await c.readReply()).error).toBe(0);
    expect(dev.mem.data[511]).toBe(0xff);
    expect(dev.mem.data.subarray(512, 512 + 9 * MiB).every((b) => b === 0)).toBe(true);
    expect(dev.mem.data[512 + 9 * MiB]).toBe(0xff);
    expect(dev.flushCount).toBe(1);
    c.sendRequest(P.CMD_TRIM, 2, 12 * MiB, MiB);
    expect((await c.readReply()).error).toBe(0);
    expect(dev.mem.data.subarray(12 * MiB, 13 * MiB).every((b) => b === 0)).toBe(true);
  });

  it('answers device failures with the mapped error and keeps the connection', async () => {
    const dev = new TestDevice(MiB);
    dev.failWritesWith = 'EIO';
    const c = await transmitting(await serve(dev));
    c.sendRequest(P.CMD_WRITE, 1, 0, 4096, 0, Buffer.alloc(4096, 1));
    expect(await c.readReply()).toMatchObject({ handle: 1, error: P.NBD_EIO });
    dev.failWritesWith = 'ENOSPC';
    c.sendRequest(P.CMD_WRITE, 2, 0, 4096, 0, Buffer.alloc(4096, 1));
    expect(await c.readReply()).toMatchObject({ handle: 2, error: P.NBD_ENOSPC });
    c.sendRequest(P.CMD_READ, 3, 0, 4096);
    expect(await c.readReply(4096)).toMatchObject({ handle: 3, error: 0 });
  });

  it('refuses writes on a read-only export with EPERM, skipping their payload', async () => {
    const dev = new TestDevice(MiB);
    const sock = await serve(dev, { readOnly: true });
    const c = await client(sock);
    await c.greet();
    const go = await c.go('r0');
    expect(go.flags & P.TFLAG_READ_ONLY).toBe(P.TFLAG_READ_ONLY);
    c.sendRequest(P.CMD_WRITE, 1, 0, 4096, 0, Buffer.alloc(4096, 9));
    c.sendRequest(P.CMD_READ, 2, 0, 4096);
    expect(await c.readReply()).toMatchObject({ handle: 1, error: P.NBD_EPERM });
    const r = await c.readReply(4096);
    expect(r.handle).toBe(2);
    expect(r.data.equals(Buffer.alloc(4096))).toBe(true);
  });

  it('closes the connection on a bad request magic after finishing what was in flight, and keeps serving others', async () => {
    const dev = new TestDevice(MiB);
    dev.gateClosed = true;
    const sock = await serve(dev);
    const c = await transmitting(sock);
    c.sendRequest(P.CMD_WRITE, 1, 0, 4096, 0, Buffer.alloc(4096, 3));
    await waitFor(() => dev.pendingWrites === 1, 5000, 'the write at the device');
    c.write(Buffer.alloc(P.REQUEST_HEADER_BYTES, 0xee));
    await new Promise((r) => setTimeout(r, 100));
    dev.openGate();
    expect(await c.readReply()).toMatchObject({ handle: 1, error: 0 });
    await c.waitClosed();
    expect(dev.mem.data[0]).toBe(3);

    const d = await transmitting(sock);
    d.sendRequest(P.CMD_READ, 5, 0, 512);
    expect((await d.readReply(512)).data[0]).toBe(3);
  });

  it('completes the in-flight write of a client that vanished, and survives it', async () => {
    const dev = new TestDevice(MiB);
    dev.gateClosed = true;
    const sock = await serve(dev);
    const c = await transmitting(sock);
    c.sendRequest(P.CMD_WRITE, 1, 8192, 4096, 0, Buffer.alloc(4096, 0x42));
    await waitFor(() => dev.pendingWrites === 1, 5000, 'the write at the device');
    c.destroy();
    await new Promise((r) => setTimeout(r, 100));
    expect(server!.connectionCount).toBe(1);
    dev.openGate();
    await waitFor(() => server!.connectionCount === 0, 5000, 'the connection to be reaped');
    expect(dev.mem.data[8192]).toBe(0x42);
    const d = await transmitting(sock);
    d.sendRequest(P.CMD_READ, 2, 8192, 512);
    expect((await d.readReply(512)).data[0]).toBe(0x42);
  });

  it('a client that vanishes in the middle of a write payload is reaped, the partial write dropped (regression: the slot was never released)', async () => {
    const dev = new TestDevice(MiB);
    const sock = await serve(dev);
    const c = await transmitting(sock);
    // Header of a 64 KiB write, then only 1 KiB of its payload.
    c.sendRequest(P.CMD_WRITE, 7, 65536, 65536, 0, Buffer.alloc(1024, 0x5a));
    await new Promise((r) => setTimeout(r, 100));
    expect(server!.connectionCount).toBe(1);
    c.destroy();
    await waitFor(() => server!.connectionCount === 0, 5000, 'the connection to be reaped');
    expect(dev.pendingWrites).toBe(0);
    expect(dev.mem.data.subarray(65536, 65536 + 1024).every((b) => b === 0)).toBe(true);
    const d = await transmitting(sock);
    d.sendRequest(P.CMD_READ, 8, 65536, 512);
    expect((await d.readReply(512)).error).toBe(0);
  });

  it('answers in-flight requests before closing on NBD_CMD_DISC', async () => {
    const dev = new TestDevice(MiB);
    dev.gateClosed = true;
    const c = await transmitting(await serve(dev));
    c.sendRequest(P.CMD_WRITE, 1, 0, 4096, 0, Buffer.alloc(4096, 1));
    c.sendRequest(P.CMD_DISC, 2, 0, 0);
    await waitFor(() => dev.pendingWrites === 1, 5000, 'the write at the device');
    await new Promise((r) => setTimeout(r, 100));
    expect(c.closed).toBe(false);
    dev.openGate();
    expect(await c.readReply()).toMatchObject({ handle: 1, error: 0 });
    await c.waitClosed();
  });

  it('close() waits for in-flight requests, answers them, and closes every connection', async () => {
    const dev = new TestDevice(MiB);
    dev.gateClosed = true;
    const sock = await serve(dev);
    const c = await transmitting(sock);
    const idle = await client(sock);
    await idle.greet();
    c.sendRequest(P.CMD_WRITE, 1, 0, 4096, 0, Buffer.alloc(4096, 1));
    await waitFor(() => dev.pendingWrites === 1, 5000, 'the write at the device');
    let closed = false;
    const closing = server!.close().then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 150));
    expect(closed).toBe(false);
    await idle.waitClosed();
    dev.openGate();
    expect(await c.readReply()).toMatchObject({ handle: 1, error: 0 });
    await closing;
    await c.waitClosed();
    server = null;
  });

  it('serves a 32 MiB read and write split across many socket chunks', async () => {
    const dev = new TestDevice(64 * MiB);
    const c = await transmitting(await serve(dev));
    const payload = Buffer.alloc(32 * MiB);
    for (let i = 0; i < payload.length; i += 4096) payload.writeUInt32BE(i, i);
    c.sendRequest(P.CMD_WRITE, 1, 16 * MiB, payload.length, 0, payload);
    expect((await c.readReply()).error).toBe(0);
    c.sendRequest(P.CMD_READ, 2, 16 * MiB, payload.length);
    const r = await c.readReply(payload.length);
    expect(r.data.equals(payload)).toBe(true);
  });
});
