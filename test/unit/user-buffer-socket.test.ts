// util/user-buffer-socket: an accepted socket re-wrapped to read into
// caller-owned buffers keeps every byte in order, honours back-pressure
// (callback false stops reading until resume), sees the peer's hang-up, and
// leaves the server's connection count right so server.close() completes.
import { describe, expect, it } from 'vitest';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { adoptAcceptedSocket } from '../../src/util/user-buffer-socket.js';

function tempSocketPath(): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-ubs-')), 's.sock');
}

describe('adoptAcceptedSocket', () => {
  it('reads every byte, in order, into the buffers the reader names, and the server closes afterwards', async () => {
    const sockPath = tempSocketPath();
    const small = Buffer.alloc(7);
    const big = Buffer.alloc(100_000);
    const received: Buffer[] = [];
    let useBig = false;
    let serverSide: net.Socket | null = null;
    const server = net.createServer({ pauseOnConnect: true }, (accepted) => {
      serverSide = adoptAcceptedSocket(accepted, {
        buffer: () => ((useBig = !useBig) ? big : small),
        callback: (bytes, buffer) => {
          expect(buffer === big || buffer === small).toBe(true);
          received.push(Buffer.from(buffer.subarray(0, bytes)));
          return true;
        },
      });
      serverSide.on('end', () => serverSide!.end());
    });
    await new Promise<void>((r) => server.listen(sockPath, r));
    const payload = Buffer.alloc(1_000_003);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + (i >> 9)) & 0xff;
    const client = net.connect(sockPath);
    await new Promise<void>((r) => client.once('connect', () => r()));
    client.end(payload);
    await new Promise<void>((r) => client.once('close', () => r()));
    const closed = new Promise<void>((r) => server.close(() => r()));
    await closed; // would hang if the connection count had not moved to the adopted socket
    expect(Buffer.concat(received).equals(payload)).toBe(true);
    expect(received.some((b) => b.length > small.length)).toBe(true);
    expect(serverSide).not.toBeNull();
    fs.rmSync(path.dirname(sockPath), { recursive: true, force: true });
  });

  it('stops reading when the callback returns false and goes on after resume()', async () => {
    const sockPath = tempSocketPath();
    const buf = Buffer.alloc(16);
    let reads = 0;
    let adopted: net.Socket | null = null;
    const firstRead = new Promise<void>((resolveFirst) => {
      const server = net.createServer({ pauseOnConnect: true }, (accepted) => {
        adopted = adoptAcceptedSocket(accepted, {
          buffer: () => buf,
          callback: () => {
            reads++;
            resolveFirst();
            return false;
          },
        });
        adopted.on('close', () => server.close());
      });
      server.listen(sockPath);
    });
    const client = net.connect(sockPath);
    client.write(Buffer.alloc(64, 1));
    await firstRead;
    await new Promise((r) => setTimeout(r, 100));
    expect(reads).toBe(1); // paused: the other 48 bytes wait in the kernel
    adopted!.resume();
    await new Promise((r) => setTimeout(r, 100));
    expect(reads).toBe(2);
    client.destroy();
    fs.rmSync(path.dirname(sockPath), { recursive: true, force: true });
  });

  it('refuses a socket that has already started reading', async () => {
    const sockPath = tempSocketPath();
    const result = new Promise<string>((resolve) => {
      const server = net.createServer({ pauseOnConnect: false }, (accepted) => {
        accepted.on('data', () => undefined);
        try {
          adoptAcceptedSocket(accepted, { buffer: () => Buffer.alloc(8), callback: () => true });
          resolve('adopted');
        } catch (err) {
          resolve((err as Error).message);
        }
        accepted.destroy();
        server.close();
      });
      server.listen(sockPath);
    });
    const client = net.connect(sockPath);
    client.on('error', () => undefined);
    expect(await result).toMatch(/has not started reading/);
    client.destroy();
    fs.rmSync(path.dirname(sockPath), { recursive: true, force: true });
  });
});
