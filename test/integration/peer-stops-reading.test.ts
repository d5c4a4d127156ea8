/**
 * A peer that stops reading (its process is stopped with SIGSTOP: the kernel
 * buffers fill, then the Primary's send queue): the Primary's memory must not
 * grow with what its writers keep sending — the send queue is bounded and
 * writers wait — and after ko-count × timeout without progress (DRBD 8.4:
 * "sock_sendmsg time expired, ko = N") it drops the link and goes on alone,
 * serving writes. Once the peer runs again they reconnect and resync to
 * equal disks.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { isProcessAlive } from '../../src/control/paths.js';

const MiB = 1024 * 1024;
/** Writers × writes of 1 MiB each, over the first 32 MiB again and again: far more than any bound below. */
const WRITERS = 4;
const WRITES_PER_WRITER = 40;
/**
 * What the Primary may grow by while the peer is stopped: the peer session's
 * send queue limit (SEND_QUEUE_BYTES_MAX_DEFAULT, 64 MiB; it stops taking
 * writes at 8 MiB) plus the writers' requests in flight and buffer pools.
 */
const RSS_GROWTH_BYTES_MAX = 96 * MiB;

let cluster: Cluster | undefined;
let stoppedPid: number | undefined;

afterEach(async () => {
  // Never leave a stopped process behind, whatever failed.
  if (stoppedPid !== undefined && isProcessAlive(stoppedPid)) process.kill(stoppedPid, 'SIGCONT');
  stoppedPid = undefined;
  await cluster?.destroy();
  cluster = undefined;
});

function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m?.[1]) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

describe('a peer that stops reading', () => {
  it('keeps the Primary under a memory bound; ko-count drops the link, the Primary keeps serving, and they resync after', async () => {
    cluster = new Cluster({
      port: 8200,
      resource: 'fzko',
      minorBase: 160,
      protocol: 'A', // writes complete when queued: only the send queue's bound holds the writers back
      // timeout 1 s, ko-count 2; ping-int/ping-timeout long, so the send-progress check is what acts.
      net: ['timeout 10;', 'ko-count 2;', 'ping-int 30;', 'ping-timeout 300;', 'connect-int 2;'],
    });
    const c = cluster;
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.admOk('alpha', ['primary', '--force', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    const alphaPid = c.pid('alpha');
    const betaPid = c.pid('beta');
    expect(alphaPid).toBeDefined();
    expect(betaPid).toBeDefined();
    const clients = await Promise.all(Array.from({ length: WRITERS }, () => c.client('alpha')));
    await c.write('alpha', 0, crypto.randomBytes(MiB)); // warm the write path before the baseline
    const baselineRss = rssBytes(alphaPid!);

    process.kill(betaPid!, 'SIGSTOP');
    stoppedPid = betaPid;
    // RSS while the link is still up (the peer not reading: what a missing bound would fill),
    // sampled until the Primary drops the link; afterwards writes are local only.
    let stallPeakRss = baselineRss;
    let linkDroppedAtMs: number | undefined;
    const startedMs = Date.now();
    const watcher = (async () => {
      const probe = await c.client('alpha');
      while (linkDroppedAtMs === undefined && Date.now() - startedMs < 60_000) {
        stallPeakRss = Math.max(stallPeakRss, rssBytes(alphaPid!));
        const cstate = (await probe.request('cstate', {}, 10_000)).stdout.trim();
        if (cstate !== 'Connected') linkDroppedAtMs = Date.now();
        else await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await Promise.all(
      clients.map(async (client, w) => {
        for (let i = 0; i < WRITES_PER_WRITER; i++) {
          const offsetBytes = ((w * WRITES_PER_WRITER + i) % 32) * MiB;
          const reply = await client.request('io.write', { offsetBytes, base64: crypto.randomBytes(MiB).toString('base64') }, 60_000);
          if (!reply.ok) throw new Error(`io.write failed while the peer was stopped: ${reply.stderr}`);
        }
      }),
    );
    await watcher;
    const writtenMiB = WRITERS * WRITES_PER_WRITER;
    console.log(
      `peer stopped: link dropped after ${linkDroppedAtMs === undefined ? 'never' : linkDroppedAtMs - startedMs} ms, ` +
        `${writtenMiB} MiB written in ${Date.now() - startedMs} ms, alpha RSS ${Math.round(baselineRss / MiB)} -> ${Math.round(stallPeakRss / MiB)} MiB at most while stuck`,
    );
    expect(linkDroppedAtMs).toBeDefined();
    expect(stallPeakRss - baselineRss).toBeLessThan(RSS_GROWTH_BYTES_MAX);
    expect(isProcessAlive(alphaPid!)).toBe(true);
    expect(c.logText('alpha')).toMatch(/sock_sendmsg time expired, ko = 1/);
    expect(c.logText('alpha')).toContain('peer did not take data within ko-count * timeout, dropping connection');
    expect(await c.query('alpha', 'role')).toMatch(/^Primary\//);
    expect(await c.query('alpha', 'cstate')).not.toBe('Connected');

    // The peer runs again: reconnect, resync what was written alone, equal disks.
    process.kill(betaPid!, 'SIGCONT');
    stoppedPid = undefined;
    await c.waitState('alpha', 'cstate', 'Connected', 60_000);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 90_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 30_000);
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
  });
});
