/**
 * Issues 18 and 19: the backing disk fails under a running pair, and
 * diskless operation. Two resource processes (NBD socket frontend), the
 * test fault layer ($UDRBD_FAULT_PLAN, disk/fault) under alpha's data path;
 * a real NBD client (nbdsh) writes through alpha's export, one flushed 4 KiB
 * block at a time, and pauses after PAUSE_AT acknowledged blocks while the
 * test fails alpha's disk (fault.plan control request): mid-stream.
 *   on-io-error detach, connected: the client sees no error, alpha goes
 *     UpToDate -> Failed -> Diskless, every acknowledged block is on beta's
 *     disk, and reads through alpha's export come from beta.
 *   call-local-io-error: the local-io-error handler runs, then detach.
 *   pass_on, disconnected: the client sees the error, the disk stays
 *     attached, Inconsistent.
 *   detach, disconnected: I/O fails with EIO, cleanly (the process lives).
 *   disk-timeout: a stalled disk is detached; the client sees no error.
 *   power cut: flushed writes survive it, the unflushed one is gone.
 *   `detach` / `attach` of a connected Primary: diskless writes go to beta
 *     only; the re-attach resyncs exactly the blocks written meanwhile; a
 *     disconnected diskless Primary refuses the disk that missed them.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, type ClusterOptions } from '../helpers/cluster.js';
import { NBDSH_ENV, requireTool } from '../helpers/nbd-helpers.js';

const BLOCK_BYTES = 4096;
/** Blocks the writer writes (each flushed); far below the 64 MiB disk. */
const BLOCKS = 120;
/** The writer waits for the test after this many acknowledged blocks. */
const PAUSE_AT = 40;
const WRITER_TIMEOUT_MS = 120_000;

let cluster: Cluster | undefined;

beforeAll(async () => {
  await requireTool('nbdsh');
});

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

/** Block i's content: its index repeated, so a misplaced block is seen. */
function stamp(i: number): Buffer {
  return Buffer.from(`blk${String(i).padStart(5, '0')}`.repeat(BLOCK_BYTES / 8));
}

async function pairUp(options: ClusterOptions & { port: number; resource: string; minorBase: number }): Promise<Cluster> {
  const c = new Cluster(options);
  cluster = c;
  c.env.UDRBD_FAULT_PLAN = path.join(c.dir, 'fault-{node}.json');
  await c.admOk('alpha', ['up', c.resource]);
  await c.admOk('beta', ['up', c.resource]);
  await c.waitState('alpha', 'cstate', 'Connected');
  await c.admOk('alpha', ['new-current-uuid', '--clear-bitmap', c.resource]);
  await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate');
  await c.waitState('beta', 'dstate', 'UpToDate/UpToDate');
  await c.admOk('alpha', ['primary', c.resource]);
  return c;
}

async function nbdUri(c: Cluster, node: 'alpha' | 'beta'): Promise<string> {
  const frontend = (await c.statusJson(node)).frontend as { nbdSocket: string };
  return `nbd+unix:///${c.resource}?socket=${frontend.nbdSocket}`;
}

async function setPlan(c: Cluster, node: 'alpha' | 'beta', plan: unknown): Promise<void> {
  const client = await c.client(node);
  const reply = await client.request('fault.plan', { plan });
  if (!reply.ok) throw new Error(`fault.plan on ${node}: ${reply.stderr}`);
}

interface WriterResult {
  exitCode: number;
  acked: number[];
  stderr: string;
}

/**
 * nbdsh writes BLOCKS stamped blocks, each followed by a flush, printing the
 * index once both returned; after PAUSE_AT it waits for `duringPause` to finish.
 */
async function runWriter(c: Cluster, duringPause: () => Promise<void>): Promise<WriterResult> {
  const go = path.join(c.dir, 'go');
  const script = [
    'import os, time',
    `for i in range(${BLOCKS}):`,
    `    if i == ${PAUSE_AT}:`,
    `        deadline = time.time() + 60`,
    `        while not os.path.exists(${JSON.stringify(go)}) and time.time() < deadline: time.sleep(0.05)`,
    `    h.pwrite((b'blk%05d' % i) * ${BLOCK_BYTES / 8}, i * ${BLOCK_BYTES})`,
    '    h.flush()',
    '    print(i, flush=True)',
  ].join('\n');
  const child = execa('nbdsh', ['-u', await nbdUri(c, 'alpha'), '-c', script], { reject: false, env: NBDSH_ENV, timeout: WRITER_TIMEOUT_MS });
  const acked: number[] = [];
  let paused = false;
  let pauseWork: Promise<void> = Promise.resolve();
  child.stdout?.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) {
      if (line.trim() === '') continue;
      acked.push(Number(line));
      if (acked.length === PAUSE_AT && !paused) {
        paused = true;
        pauseWork = duringPause().finally(() => fs.writeFileSync(go, ''));
      }
    }
  });
  const r = await child;
  await pauseWork;
  return { exitCode: r.exitCode ?? -1, acked, stderr: String(r.stderr) };
}

/** Reads `lengthBytes` at `offsetBytes` through node's NBD export; resolves with the bytes or the client's error. */
async function nbdRead(c: Cluster, node: 'alpha' | 'beta', offsetBytes: number, lengthBytes: number): Promise<Buffer | Error> {
  const out = path.join(c.dir, `read-${crypto.randomBytes(4).toString('hex')}.bin`);
  const script = `open(${JSON.stringify(out)}, 'wb').write(h.pread(${lengthBytes}, ${offsetBytes}))`;
  const r = await execa('nbdsh', ['-u', await nbdUri(c, node), '-c', script], { reject: false, env: NBDSH_ENV, timeout: 60_000 });
  if (r.exitCode !== 0) return new Error(String(r.stderr));
  return fs.readFileSync(out);
}

function expectOnDisk(c: Cluster, node: 'alpha' | 'beta', blocks: number[]): void {
  for (const i of blocks) expect(c.readDisk(node, i * BLOCK_BYTES, BLOCK_BYTES).equals(stamp(i)), `block ${i} on ${node}`).toBe(true);
}

const EVERY_REQUEST_FAILS = { rules: [{ op: 'any', effect: 'eio' }] };

describe('on-io-error', () => {
  it('detach: the Primary\'s disk fails mid-stream, the writer sees no error, every acknowledged block is on the peer', async () => {
    const c = await pairUp({ port: 8451, resource: 'ftdetach', minorBase: 190, disk: ['on-io-error detach;'] });
    const result = await runWriter(c, () => setPlan(c, 'alpha', EVERY_REQUEST_FAILS));
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.acked).toEqual([...Array(BLOCKS).keys()]);
    await c.waitState('alpha', 'dstate', 'Diskless/UpToDate');
    expect(await c.query('alpha', 'role')).toBe('Primary/Secondary');
    expect(await c.query('alpha', 'cstate')).toBe('Connected');
    const log = c.logText('alpha');
    expect(log).toMatch(/Local IO failed in drbd_request_endio\. Detaching\.\.\./);
    expect(log).toContain('disk( UpToDate -> Failed )');
    expect(log).toContain('disk( Failed -> Diskless )');
    expectOnDisk(c, 'beta', result.acked);
    // The diskless Primary's reads come from beta.
    const back = await nbdRead(c, 'alpha', 0, BLOCKS * BLOCK_BYTES);
    if (back instanceof Error) throw back;
    expect(back.equals(Buffer.concat(result.acked.map(stamp)))).toBe(true);
  });

  it('call-local-io-error: the local-io-error handler runs and the disk detaches; the writer sees no error', async () => {
    const marker = path.join('/tmp', `ft-local-io-error-${process.pid}`);
    fs.rmSync(marker, { force: true });
    try {
      const c = await pairUp({
        port: 8453, resource: 'fthelper', minorBase: 192,
        disk: ['on-io-error call-local-io-error;'],
        handlers: { 'local-io-error': `/bin/sh -c 'echo $DRBD_RESOURCE >> ${marker}'` },
      });
      const result = await runWriter(c, () => setPlan(c, 'alpha', EVERY_REQUEST_FAILS));
      expect(result.exitCode, result.stderr).toBe(0);
      await c.waitState('alpha', 'dstate', 'Diskless/UpToDate');
      await c.waitFor('local-io-error handler ran', () => fs.existsSync(marker));
      expect(fs.readFileSync(marker, 'utf8').trim()).toBe('fthelper');
      expectOnDisk(c, 'beta', result.acked);
    } finally {
      fs.rmSync(marker, { force: true });
    }
  });

  it('pass_on without a peer: the writer sees the error, the disk stays attached and goes Inconsistent', async () => {
    const c = await pairUp({ port: 8455, resource: 'ftpass', minorBase: 194, disk: ['on-io-error pass_on;'] });
    await c.admOk('beta', ['disconnect', c.resource]);
    await c.waitState('alpha', 'cstate', 'WFConnection');
    const result = await runWriter(c, () => setPlan(c, 'alpha', { rules: [{ op: 'write', effect: 'eio' }] }));
    expect(result.exitCode).not.toBe(0);
    expect(result.acked).toEqual([...Array(PAUSE_AT).keys()]);
    expect(result.stderr).toMatch(/Input\/output error|EIO/);
    await c.waitState('alpha', 'dstate', 'Inconsistent/DUnknown');
    const log = c.logText('alpha');
    expect(log).toContain('Local IO failed in drbd_request_endio.');
    expect(log).not.toContain('Detaching...');
    expectOnDisk(c, 'alpha', result.acked);
  });

  it('detach without a peer: I/O fails with EIO and the resource process stays up, Diskless', async () => {
    const c = await pairUp({ port: 8457, resource: 'ftalone', minorBase: 196, disk: ['on-io-error detach;'] });
    await c.admOk('beta', ['disconnect', c.resource]);
    await c.waitState('alpha', 'cstate', 'WFConnection');
    const result = await runWriter(c, () => setPlan(c, 'alpha', EVERY_REQUEST_FAILS));
    expect(result.exitCode).not.toBe(0);
    expect(result.acked).toEqual([...Array(PAUSE_AT).keys()]);
    await c.waitState('alpha', 'dstate', 'Diskless/DUnknown');
    const read = await nbdRead(c, 'alpha', 0, BLOCK_BYTES);
    expect(read).toBeInstanceOf(Error);
    expect(await c.query('alpha', 'role')).toBe('Primary/Unknown');
    expectOnDisk(c, 'alpha', result.acked);
  });

  it('disk-timeout: a stalled backing disk is detached and the writer goes on through the peer', async () => {
    const c = await pairUp({ port: 8459, resource: 'fttimeout', minorBase: 198, disk: ['disk-timeout 5;'] });
    const result = await runWriter(c, () => setPlan(c, 'alpha', { rules: [{ op: 'any', effect: 'stall' }] }));
    expect(result.exitCode, result.stderr).toBe(0);
    await c.waitState('alpha', 'dstate', 'Diskless/UpToDate');
    expect(c.logText('alpha')).toContain('Local backing device failed to meet the disk-timeout');
    expectOnDisk(c, 'beta', result.acked);
    await setPlan(c, 'alpha', { rules: [] }); // the stalled requests end, the old disk can close
  });
});

describe('simulated power cut (fault.power-cut)', () => {
  it('keeps every write flushed before the cut and drops the one written after the last flush', async () => {
    const c = await pairUp({ port: 8467, resource: 'ftpower', minorBase: 206 });
    await c.admOk('beta', ['disconnect', c.resource]);
    await c.waitState('alpha', 'cstate', 'WFConnection');
    await setPlan(c, 'alpha', { rules: [], powerCut: true });
    const result = await runWriter(c, async () => undefined);
    expect(result.exitCode, result.stderr).toBe(0);
    const lateOffsetBytes = 16 * 1024 * 1024;
    await c.write('alpha', lateOffsetBytes, stamp(99_999)); // acknowledged, never flushed
    const client = await c.client('alpha');
    const cut = await client.request('fault.power-cut', {});
    expect(cut.ok, cut.stderr).toBe(true);
    expect(JSON.parse(cut.stdout) as unknown).toEqual({ droppedWrites: 1, droppedBytes: BLOCK_BYTES });
    c.kill9('alpha');
    await c.waitGone('alpha');
    expectOnDisk(c, 'alpha', result.acked);
    expect(c.readDisk('alpha', lateOffsetBytes, BLOCK_BYTES).equals(Buffer.alloc(BLOCK_BYTES))).toBe(true);
  });
});

describe('diskless operation', () => {
  it('detach of a connected Primary: writes go to the peer only, and attach resyncs just what changed', async () => {
    const c = await pairUp({ port: 8461, resource: 'ftdiskless', minorBase: 200 });
    const before = crypto.randomBytes(256 * 1024);
    await c.write('alpha', 0, before);
    await c.admOk('alpha', ['detach', c.resource]);
    await c.waitState('alpha', 'dstate', 'Diskless/UpToDate');
    expect(await c.query('alpha', 'role')).toBe('Primary/Secondary');
    const log = c.logText('alpha');
    expect(log).toContain('disk( UpToDate -> Failed )');
    expect(log).toContain('disk( Failed -> Diskless )');

    const changedOffsetBytes = 4 * 1024 * 1024;
    const changed = crypto.randomBytes(1024 * 1024);
    await c.write('alpha', changedOffsetBytes, changed);
    expect(c.readDisk('beta', changedOffsetBytes, changed.length).equals(changed)).toBe(true);
    expect(c.readDisk('alpha', changedOffsetBytes, changed.length).equals(Buffer.alloc(changed.length))).toBe(true);
    const back = await nbdRead(c, 'alpha', changedOffsetBytes, changed.length);
    if (back instanceof Error) throw back;
    expect(back.equals(changed)).toBe(true);
    expect((await c.statusJson('beta')).outOfSyncKiB).toBe(1024);

    await c.admOk('alpha', ['attach', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected');
    expect(c.logText('alpha')).toContain('Began resync as SyncTarget (will sync 1024 KB [256 bits set]).');
    expect(c.readDisk('alpha', changedOffsetBytes, changed.length).equals(changed)).toBe(true);
    expect(c.readDisk('alpha', 0, before.length).equals(before)).toBe(true);
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
  });

  it('a disconnected diskless Primary refuses a disk that missed its writes (ERR_DATA_NOT_CURRENT)', async () => {
    const c = await pairUp({ port: 8465, resource: 'ftstale', minorBase: 204 });
    await c.admOk('alpha', ['detach', c.resource]);
    await c.waitState('alpha', 'dstate', 'Diskless/UpToDate');
    await c.write('alpha', 0, crypto.randomBytes(64 * 1024)); // on beta only
    // DRBD refuses `disconnect` on a diskless Primary (-2, no UpToDate data left): the peer drops the link.
    await c.admOk('beta', ['disconnect', c.resource]);
    await c.waitState('alpha', 'dstate', 'Diskless/DUnknown');
    const r = await c.adm('alpha', ['attach', c.resource]);
    expect(r.exitCode).toBe(10);
    expect(r.stderr).toContain('Failure: (150) Can only attach to the data we lost last (see kernel log).');
    expect(c.logText('alpha')).toMatch(/Can only attach to data with current UUID=[0-9A-F]{16}/);
    expect(await c.query('alpha', 'dstate')).toBe('Diskless/DUnknown');
    expect(await c.query('alpha', 'role')).toBe('Primary/Unknown');
  });

  it('detach of a connected Secondary: the Primary marks what it writes, the re-attach resyncs it', async () => {
    const c = await pairUp({ port: 8463, resource: 'ftsecondary', minorBase: 202 });
    await c.admOk('beta', ['detach', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/Diskless');
    const changed = crypto.randomBytes(512 * 1024);
    await c.write('alpha', 8 * 1024 * 1024, changed);
    expect((await c.statusJson('alpha')).outOfSyncKiB).toBe(512);
    await c.admOk('beta', ['attach', c.resource]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('beta', 'cstate', 'Connected');
    expect(c.logText('beta')).toContain('Began resync as SyncTarget (will sync 512 KB [128 bits set]).');
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
  });
});
