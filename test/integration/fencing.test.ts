/**
 * DRBD 8.4's resource-level fencing on a real loopback pair (test/helpers/cluster):
 * `disk { fencing resource-only | resource-and-stonith; }` with a tiny
 * fence-peer handler whose exit code each test chooses:
 *  - promotion of a disconnected node that does not know its peer outdated
 *    runs the handler first and acts on its exit code (3/4/7 promote, 5/6/
 *    broken refuse; UpToDate + broken = "(-7) Refusing to be Primary while
 *    peer is not outdated"), with DRBD's log lines;
 *  - a Primary losing its peer runs the handler; exit 4 makes the peer
 *    Outdated in the state and in the meta-data (MDF_PEER_OUT_DATED, get-gi's
 *    `o`), which survives a restart;
 *  - resource-and-stonith freezes the Primary's I/O from the link loss until
 *    the handler answers (7: released), and a broken answer keeps it frozen
 *    until the connection comes back.
 *  - resource-and-stonith with protocol A is refused at connect and adjust (154).
 * Resources `fe*`, ports 8150-8199, minors 120-139.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, type NodeName } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
let cluster: Cluster | undefined;
let handlerDir: string | undefined;

afterEach(async () => {
  if (handlerDir) {
    // let a held handler go so nothing waits on it
    for (const node of ['alpha', 'beta']) fs.rmSync(path.join(handlerDir, `hold-${node}`), { force: true });
  }
  await cluster?.destroy();
  cluster = undefined;
  if (handlerDir) fs.rmSync(handlerDir, { recursive: true, force: true });
  handlerDir = undefined;
});

/** Longest a held handler waits for its release file (0.1 s steps). */
const HOLD_STEPS_MAX = 300;

/**
 * A fence-peer handler: exits with the code in DIR/code-<node> (1 if none),
 * records each run in DIR/runs-<node>, and while DIR/hold-<node> exists waits
 * (bounded) before answering. <node> is the node that runs it (DRBD_PEER names the other).
 */
function makeHandler(): { dir: string; command: string } {
  const dir = fs.mkdtempSync('/tmp/udrbd-fence-');
  handlerDir = dir;
  const script = path.join(dir, 'fence-peer.sh');
  fs.writeFileSync(
    script,
    [
      '#!/bin/sh',
      'if [ "$DRBD_PEER" = alpha ]; then me=beta; else me=alpha; fi',
      `d=${dir}`,
      'echo "$DRBD_RESOURCE $DRBD_PEER" >> $d/runs-$me',
      'echo "test fence-peer handler on $me"',
      'touch $d/started-$me',
      'i=0',
      `while [ -e $d/hold-$me ] && [ $i -lt ${HOLD_STEPS_MAX} ]; do sleep 0.1; i=$((i+1)); done`,
      'rm -f $d/started-$me',
      'exit $(cat $d/code-$me 2>/dev/null || echo 1)',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  return { dir, command: script };
}

/** A pair (16 MiB disks) with `disk { fencing FENCING; }` and the test fence-peer handler; resources fe*, ports 8150-8199, minors 120-139. */
function fencedCluster(resource: string, port: number, minorBase: number, fencing: 'resource-only' | 'resource-and-stonith'): { c: Cluster; h: { dir: string; command: string } } {
  const h = makeHandler();
  cluster = new Cluster({ resource, port, minorBase, diskSizeBytes: 16 * MiB, disk: [`fencing ${fencing};`], handlers: { 'fence-peer': h.command } });
  return { c: cluster, h };
}

function setCode(dir: string, node: NodeName, code: number): void {
  fs.writeFileSync(path.join(dir, `code-${node}`), `${code}\n`);
}

function runs(dir: string, node: NodeName): number {
  try {
    return fs.readFileSync(path.join(dir, `runs-${node}`), 'utf8').split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
}

/** get-gi's flag fields c:u:p:n:f:o:x after the four UUIDs. */
async function giFlags(c: Cluster, node: NodeName): Promise<{ consistent: string; wasUpToDate: string; peerOutdated: string }> {
  const fields = (await c.admOk(node, ['get-gi', c.resource])).trim().split(':');
  return { consistent: fields[4] ?? '', wasUpToDate: fields[5] ?? '', peerOutdated: fields[9] ?? '' };
}

/** How long a write is given to (wrongly) complete while I/O should be frozen. */
const FROZEN_CHECK_MS = 1_000;

/**
 * A synced pair with alpha Primary under fencing resource-and-stonith, the
 * handler answering `code`; beta is killed and, once `ready` holds on alpha,
 * a 4 KiB write of `fill` is issued at `offsetBytes`. Resolves with the write
 * (pending) after checking it did not complete within FROZEN_CHECK_MS.
 */
async function frozenWrite(c: Cluster, dir: string, code: number, ready: () => boolean | Promise<boolean>, offsetBytes: number, fill: number): Promise<{ write: Promise<void>; written: () => boolean }> {
  await c.upSynced();
  setCode(dir, 'alpha', code);
  c.kill9('beta');
  await c.waitGone('beta');
  await c.waitFor('alpha fencing under way', ready);
  let done = false;
  const write = c.write('alpha', offsetBytes, Buffer.alloc(4096, fill)).then(() => {
    done = true;
  });
  await new Promise((r) => setTimeout(r, FROZEN_CHECK_MS));
  expect(done, 'a write during the freeze is not completed').toBe(false);
  return { write, written: () => done };
}

function logLines(c: Cluster, node: NodeName, needle: string): number {
  return c.logText(node).split('\n').filter((l) => l.includes(needle)).length;
}

describe('fence-peer before a promotion (drbd_set_role)', () => {
  it('a Consistent disk: 3, 4 and 7 promote (peer Inconsistent/Outdated), 5, 6 and a broken handler refuse (-2)', async () => {
    const { c, h } = fencedCluster('fepro', 8150, 120, 'resource-only');
    const expected: Array<[number, 'Primary' | 17, string, string]> = [
      [4, 'Primary', 'UpToDate/Outdated', 'fence-peer helper returned 4 (peer was fenced)'],
      [3, 'Primary', 'UpToDate/Inconsistent', 'fence-peer helper returned 3 (peer is inconsistent or worse)'],
      [7, 'Primary', 'UpToDate/Outdated', 'fence-peer helper returned 7 (peer was stonithed)'],
      [5, 17, 'Consistent/DUnknown', 'fence-peer helper returned 5 (peer unreachable, doing nothing since disk != UpToDate)'],
      [6, 17, 'Outdated/DUnknown', 'fence-peer helper returned 6 (peer is active)'],
      [1, 17, 'Consistent/DUnknown', 'fence-peer helper broken, returned 1'],
    ];
    let handlerRuns = 0;
    for (const [code, outcome, dstate, line] of expected) {
      // A disk that was UpToDate, with the peer not known outdated: Consistent at attach under fencing.
      await c.admOk('alpha', ['set-gi', '--force', c.resource, '0123456789ABCDEE::::1:1:0:0:0:0:0']);
      await c.admOk('alpha', ['up', c.resource]);
      expect(await c.query('alpha', 'dstate')).toBe('Consistent/DUnknown');
      setCode(h.dir, 'alpha', code);
      const before = logLines(c, 'alpha', line);
      const r = await c.adm('alpha', ['primary', c.resource]);
      handlerRuns++;
      expect(runs(h.dir, 'alpha'), `exit ${code}: the handler ran once`).toBe(handlerRuns);
      expect(logLines(c, 'alpha', line), `exit ${code}: ${line}`).toBe(before + 1);
      if (outcome === 'Primary') {
        expect(r.exitCode, `${code}: ${r.stderr}`).toBe(0);
        expect(await c.query('alpha', 'role')).toBe('Primary/Unknown');
      } else {
        expect(r.exitCode, `${code}: ${r.stderr}`).toBe(17);
        expect(r.stderr).toContain('State change failed: (-2) Need access to UpToDate data');
      }
      expect(await c.query('alpha', 'dstate')).toBe(dstate);
      if (code === 4) {
        await c.admOk('alpha', ['secondary', c.resource]);
        await c.admOk('alpha', ['down', c.resource]);
        // MDF_PEER_OUT_DATED was written, and the next attach knows the peer Outdated: no handler, Primary at once.
        expect((await giFlags(c, 'alpha')).peerOutdated).toBe('1');
        await c.admOk('alpha', ['up', c.resource]);
        expect(await c.query('alpha', 'dstate')).toBe('UpToDate/Outdated');
        await c.admOk('alpha', ['primary', c.resource]);
        expect(runs(h.dir, 'alpha')).toBe(handlerRuns);
      }
      if (code === 6) expect(c.logText('alpha')).toContain('Peer is primary, outdating myself.');
      if (code === 7) expect(c.logText('alpha')).toContain('fence-peer() = 7 && fencing != Stonith !!!');
      if (outcome === 'Primary') await c.admOk('alpha', ['secondary', c.resource]);
      await c.admOk('alpha', ['down', c.resource]);
    }
  }, 120_000);

  it('the survivor of a dead Primary: broken handler → (-7) refused; exit 5 → promoted, peer Outdated; the dead node comes back and resyncs', async () => {
    const { c, h } = fencedCluster('fesur', 8152, 122, 'resource-only');
    await c.upSynced();
    await c.write('alpha', 0, Buffer.alloc(64 * 1024, 0x5a));
    c.kill9('alpha');
    await c.waitGone('alpha');
    await c.waitState('beta', 'cstate', 'WFConnection');
    expect(await c.query('beta', 'dstate')).toBe('UpToDate/DUnknown');

    setCode(h.dir, 'beta', 1);
    const refused = await c.adm('beta', ['primary', c.resource]);
    expect(refused.exitCode).toBe(11);
    expect(refused.stderr).toContain('State change failed: (-7) Refusing to be Primary while peer is not outdated');
    expect(c.logText('beta')).toContain('fence-peer helper broken, returned 1');
    expect(await c.query('beta', 'role')).toBe('Secondary/Unknown');

    setCode(h.dir, 'beta', 5);
    await c.admOk('beta', ['primary', c.resource]);
    expect(c.logText('beta')).toContain('fence-peer helper returned 5 (peer is unreachable, assumed to be dead)');
    expect(await c.query('beta', 'role')).toBe('Primary/Unknown');
    expect(await c.query('beta', 'dstate')).toBe('UpToDate/Outdated');
    expect(runs(h.dir, 'beta')).toBe(2);
    expect(runs(h.dir, 'alpha')).toBe(0);

    await c.admOk('alpha', ['up', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate');
    expect(await c.query('beta', 'role')).toBe('Primary/Secondary');
    expect((await giFlags(c, 'beta')).peerOutdated).toBe('0');
  }, 120_000);
});

describe('restart under fencing', () => {
  it('both nodes come up Consistent/DUnknown (peer not known outdated) and are UpToDate/UpToDate once connected', async () => {
    const { c, h } = fencedCluster('ferst', 8160, 130, 'resource-only');
    await c.upSynced();
    await c.admOk('alpha', ['secondary', c.resource]);
    await c.admOk('alpha', ['down', c.resource]);
    await c.admOk('beta', ['down', c.resource]);
    await c.admOk('alpha', ['up', c.resource]);
    expect(await c.query('alpha', 'dstate')).toBe('Consistent/DUnknown');
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'dstate', 'UpToDate/UpToDate');
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate');
    expect(await c.query('alpha', 'cstate')).toBe('Connected');
    await c.admOk('beta', ['primary', c.resource]);
    expect(runs(h.dir, 'alpha') + runs(h.dir, 'beta'), 'connected: no fence-peer').toBe(0);
  }, 90_000);
});

describe('fence-peer when a Primary loses its peer (conn_try_outdate_peer_async)', () => {
  it('resource-only: exit 4 → pdsk Outdated in the state and the meta-data; I/O never stops', async () => {
    const { c, h } = fencedCluster('feloss', 8154, 124, 'resource-only');
    await c.upSynced();
    setCode(h.dir, 'alpha', 4);
    c.kill9('beta');
    await c.waitGone('beta');
    await c.waitFor('alpha ran fence-peer', () => c.logText('alpha').includes('fence-peer helper returned 4 (peer was fenced)'));
    await c.waitState('alpha', 'dstate', 'UpToDate/Outdated');
    expect(runs(h.dir, 'alpha')).toBe(1);
    expect(c.logText('alpha')).toContain('helper command: ' + h.command + ' fence-peer feloss');
    expect(c.logText('alpha'), 'the handler\'s output is in the log').toContain('helper output: test fence-peer handler on alpha');
    expect((await giFlags(c, 'alpha')).peerOutdated).toBe('1');
    expect((await c.statusJson('alpha')).suspended).toBe(false);
    await c.write('alpha', 0, Buffer.alloc(4096, 1));
  }, 90_000);

  it('resource-and-stonith: I/O is frozen from the link loss until the handler returns 7, then the write completes', async () => {
    const { c, h } = fencedCluster('festo', 8156, 126, 'resource-and-stonith');
    fs.writeFileSync(path.join(h.dir, 'hold-alpha'), '');
    const started = (): boolean => fs.existsSync(path.join(h.dir, 'started-alpha'));
    const { write, written } = await frozenWrite(c, h.dir, 7, started, 8192, 7);
    expect((await c.statusJson('alpha')).suspended).toBe(true);
    expect(await c.admOk('alpha', ['proc-drbd'])).toMatch(/cs:WFConnection ro:Primary\/Unknown ds:UpToDate\/DUnknown C s-----/);
    expect(c.readDisk('alpha', 8192, 4096).every((b) => b === 0), 'nor submitted to the disk').toBe(true);

    fs.rmSync(path.join(h.dir, 'hold-alpha'));
    await write;
    expect(written()).toBe(true);
    const log = c.logText('alpha');
    expect(log).toContain('fence-peer helper returned 7 (peer was stonithed)');
    expect(log).not.toContain('fence-peer() = 7 && fencing != Stonith !!!');
    expect(log.indexOf('fence-peer helper returned 7')).toBeLessThan(log.indexOf('I/O resumed'));
    expect(await c.query('alpha', 'dstate')).toBe('UpToDate/Outdated');
    expect((await c.statusJson('alpha')).suspended).toBe(false);
  }, 90_000);

  it('resource-and-stonith: a broken handler keeps I/O frozen; the peer coming back releases it', async () => {
    const { c, h } = fencedCluster('febrk', 8158, 128, 'resource-and-stonith');
    const answered = (): boolean => c.logText('alpha').includes('fence-peer helper broken, returned 0');
    const { write, written } = await frozenWrite(c, h.dir, 0, answered, 0, 9);
    expect((await c.statusJson('alpha')).suspended).toBe(true);
    expect(await c.query('alpha', 'dstate')).toBe('UpToDate/DUnknown');

    await c.admOk('beta', ['up', c.resource]);
    await write;
    expect(written()).toBe(true);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    expect((await c.statusJson('alpha')).suspended).toBe(false);
    expect(c.readDisk('beta', 0, 4096).every((b) => b === 9), 'the write reached the peer with the resync').toBe(true);
  }, 90_000);

  it('resource-and-stonith: resume-io releases I/O frozen after a broken answer; the write stays on this node, out of sync', async () => {
    const { c, h } = fencedCluster('feres', 8162, 132, 'resource-and-stonith');
    const answered = (): boolean => c.logText('alpha').includes('fence-peer helper broken, returned 1');
    const { write } = await frozenWrite(c, h.dir, 1, answered, 0, 4);
    expect(await c.admOk('alpha', ['-d', 'resume-io', c.resource])).toBe('drbdsetup-84 resume-io 132\n');
    await c.admOk('alpha', ['resume-io', c.resource]);
    await write;
    expect((await c.statusJson('alpha')).suspended).toBe(false);
    expect(await c.query('alpha', 'dstate')).toBe('UpToDate/DUnknown');
    expect(Number((await c.statusJson('alpha')).outOfSyncKiB)).toBeGreaterThanOrEqual(4);
    await c.admOk('alpha', ['resume-io', c.resource]); // nothing frozen: a no-op, as DRBD's
  }, 90_000);
});

describe('resource-and-stonith needs protocol B or C (drbd_nl.c ERR_STONITH_AND_PROT_A)', () => {
  it('up with protocol A: Failure (154), exit 10, nothing left up; adjust refuses switching to A', async () => {
    const h = makeHandler();
    cluster = new Cluster({ resource: 'feprA', port: 8164, minorBase: 134, diskSizeBytes: 16 * MiB, protocol: 'A', disk: ['fencing resource-and-stonith;'], handlers: { 'fence-peer': h.command } });
    const c = cluster;
    const up = await c.adm('alpha', ['up', c.resource]);
    expect(up.exitCode, up.stderr).toBe(10);
    expect(up.stderr).toContain('134: Failure: (154) Fencing policy resource-and-stonith only with prot B or C allowed');
    expect(await c.query('alpha', 'cstate')).toBe('Unconfigured');

    // Protocol C goes up; an adjust to protocol A is refused and changes nothing.
    const protocolA = c.configText();
    fs.writeFileSync(c.configPath, protocolA.replace(/protocol A;/g, 'protocol C;'));
    await c.admOk('alpha', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'WFConnection');
    fs.writeFileSync(c.configPath, protocolA);
    const adjust = await c.adm('alpha', ['adjust', c.resource]);
    expect(adjust.exitCode, adjust.stderr).toBe(10);
    expect(adjust.stderr).toContain('Failure: (154) Fencing policy resource-and-stonith only with prot B or C allowed');
    expect(await c.query('alpha', 'cstate')).toBe('WFConnection');
  });
});
