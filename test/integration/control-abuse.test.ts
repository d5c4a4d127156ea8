/**
 * The control socket under abuse: more clients than the connection cap, slow
 * loris clients (half a request line, or nothing, then silence) and a client
 * that pipelines requests without reading the replies. Each must be bounded
 * (counted connections, handler calls) and a normal udrbdadm request must
 * still be answered during and after.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import { CONTROL_PIPELINE_MAX, ControlServer } from '../../src/control/control-server.js';
import { runtimePaths, type RuntimePaths } from '../../src/control/paths.js';
import { okReply } from '../../src/control/protocol.js';
import { silentLogger } from '../../src/util/log.js';
import { UdrbdError } from '../../src/util/errors.js';

const CONNECTIONS_MAX = 8;
const LINE_TIMEOUT_MS = 300;
/** Reply size of the 'fz-big' verb, and the unread reply bytes after which the server stops serving a client. */
const BIG_REPLY_BYTES = 256 * 1024;
const REPLY_BACKLOG_BYTES_MAX = 1024 * 1024;

let dir: string;
let paths: RuntimePaths;
let server: ControlServer;
let handled = 0;
const sockets: net.Socket[] = [];

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-fz-ctl-'));
  paths = runtimePaths('fzctl', 'alpha', { UDRBD_RUN_DIR: dir, UDRBD_LOG_DIR: dir });
  handled = 0;
  server = new ControlServer(
    paths.socketPath,
    (request) => {
      handled++;
      return Promise.resolve(okReply(request.id, request.verb === 'fz-big' ? 'x'.repeat(BIG_REPLY_BYTES) : `${request.verb}\n`));
    },
    silentLogger(),
    () => [],
    { connectionsMax: CONNECTIONS_MAX, requestLineTimeoutMs: LINE_TIMEOUT_MS, replyBacklogBytesMax: REPLY_BACKLOG_BYTES_MAX },
  );
  await server.listen();
});

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function open(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(paths.socketPath);
    sockets.push(s);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

function closed(s: net.Socket, withinMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    if (s.destroyed) return resolve();
    const timer = setTimeout(() => reject(new Error(`control connection still open after ${withinMs} ms`)), withinMs);
    s.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function statusWorks(): Promise<void> {
  const client = await ControlClient.connect(paths);
  try {
    const reply = await client.request('status', {}, 5_000);
    expect(reply.stdout).toBe('status\n');
  } finally {
    client.close();
  }
}

async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('control socket limits', () => {
  it('connections over the cap get a reply saying so and are closed; the open ones keep working, and a new one works once they leave', async () => {
    const held: ControlClient[] = [];
    for (let i = 0; i < CONNECTIONS_MAX; i++) {
      const c = await ControlClient.connect(paths);
      held.push(c);
      expect((await c.request('status', {}, 5_000)).ok).toBe(true); // a complete request: no line timer while idle
    }
    // A flood of 40 more: each refused with the reason, never more than the cap open.
    let maxOpen = 0;
    const refusals = await Promise.all(
      Array.from({ length: 40 }, async () => {
        const c = await ControlClient.connect(paths);
        maxOpen = Math.max(maxOpen, server.counters.connections);
        return c.request('status', {}, 5_000).then(
          () => 'served',
          (err: unknown) => (err instanceof UdrbdError ? err.message : String(err)),
        );
      }),
    );
    expect(refusals.every((m) => /too many control connections to .*fzctl\.alpha\.sock \(8 open\); try again/.test(m))).toBe(true);
    expect(server.counters.refusedOverCap).toBe(40);
    expect(maxOpen).toBeLessThanOrEqual(CONNECTIONS_MAX);
    for (const c of held) expect((await c.request('status', {}, 5_000)).ok).toBe(true);
    for (const c of held) c.close();
    await until(() => server.counters.connections === 0, 5_000, 'the held connections to close');
    await statusWorks();
  });

  it('slow loris clients (half a request line, or nothing at all) are dropped after the line timeout while others are served', async () => {
    const loris: net.Socket[] = [];
    for (let i = 0; i < 3; i++) {
      const s = await open();
      s.write('{"id":1,"verb":"sta'); // half a line, then silence
      loris.push(s);
    }
    loris.push(await open()); // connect and say nothing
    const s = await open();
    s.write('{"id":1,"verb":"status"}\n{"id":2,"ve'); // one good request, then half of the next
    loris.push(s);
    await statusWorks();
    for (const l of loris) l.resume(); // read, so the server's hang-up is seen
    await Promise.all(loris.map((l) => closed(l, LINE_TIMEOUT_MS * 10)));
    expect(server.counters.droppedSlow).toBe(5);
    await statusWorks();
  });

  it('a client that pipelines requests and never reads the replies stops being read: handler calls and reply backlog stay bounded', async () => {
    const s = await open();
    const requests = 100;
    let text = '';
    for (let i = 1; i <= requests; i++) text += `${JSON.stringify({ id: i, verb: 'fz-big' })}\n`;
    s.write(text);
    // The server answers until REPLY_BACKLOG_BYTES_MAX (plus what the kernel buffers: a few replies) is unread, then waits.
    await new Promise((r) => setTimeout(r, 1_000));
    const kernelBufferedReplies = 8;
    const boundCalls = CONTROL_PIPELINE_MAX + REPLY_BACKLOG_BYTES_MAX / BIG_REPLY_BYTES + kernelBufferedReplies;
    expect(handled).toBeGreaterThan(0);
    expect(handled).toBeLessThanOrEqual(boundCalls);
    await statusWorks(); // other clients are not held up by the stuck one
    // Once it reads, every reply arrives.
    let replies = 0;
    s.on('data', (chunk: Buffer) => {
      for (let at = chunk.indexOf(0x0a); at >= 0; at = chunk.indexOf(0x0a, at + 1)) replies++;
    });
    await until(() => replies === requests, 30_000, `all ${requests} replies (got ${replies}, handled ${handled})`);
    expect(handled).toBe(requests + 1);
  });
});
