/**
 * wait-sync on a live pair (it waits for the connection, then for a
 * throttled, paused resync to end; exit 5 on timeout) and UDRBD_SYSLOG (the
 * resource process sends its state changes to a syslog receiver in the DRBD
 * kernel module's wording, while the pino log keeps them too). Receivers run
 * in the test: a unix datagram socket bound by python3 (the /dev/log kind
 * logger -u writes to) and a UDP socket on 127.0.0.1:7963.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
const PYTHON = '/usr/bin/python3';
const LOGGER = '/usr/bin/logger';
let cluster: Cluster | undefined;
let receiver: ChildProcess | undefined;
let udp: dgram.Socket | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
  receiver?.kill('SIGKILL');
  receiver = undefined;
  udp?.close();
  udp = undefined;
});

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; elapsedMs: number }> {
  const start = Date.now();
  const value = await fn();
  return { value, elapsedMs: Date.now() - start };
}

describe('wait-sync', () => {
  it('waits for the connection, then until a (paused, throttled) resync has ended; exit 5 on -t timeout', async () => {
    cluster = new Cluster({ resource: 'inws', port: 7961, diskSizeBytes: 24 * MiB, disk: ['c-plan-ahead 0;', 'resync-rate 4M;'] });
    const c = cluster;
    await c.admOk('alpha', ['up', c.resource]);
    // peer not up: the connection part times out
    const noPeer = await timed(() => c.adm('alpha', ['wait-sync', '-t', '1', c.resource]));
    expect(noPeer.value.exitCode).toBe(5);
    expect(noPeer.value.stderr).toContain('wait-sync timed out after 1 s waiting for the connection');
    expect(noPeer.elapsedMs).toBeGreaterThanOrEqual(1_000);

    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    // connected and nothing to sync: returns at once
    const idle = await timed(() => c.adm('alpha', ['wait-sync', '-t', '10', c.resource]));
    expect(idle.value.exitCode).toBe(0);
    expect(idle.elapsedMs).toBeLessThan(5_000);

    await c.admOk('alpha', ['primary', '--force', c.resource]);
    await c.waitState('beta', 'cstate', 'SyncTarget');
    await c.admOk('beta', ['pause-sync', c.resource]);
    await c.waitState('alpha', 'cstate', 'PausedSyncS');
    for (const node of ['alpha', 'beta'] as const) {
      const paused = await c.adm(node, ['wait-sync', '--wfc-timeout', '1', c.resource]);
      expect(paused.exitCode, `${node}: ${paused.stderr}`).toBe(5);
      expect(paused.stderr).toContain('waiting for the end of the resync');
    }
    await c.admOk('beta', ['resume-sync', c.resource]);
    // the resync runs at 4 MiB/s; wait-sync returns only once it is over, on both sides
    const [onAlpha, onBeta] = await Promise.all([c.adm('alpha', ['wait-sync', '-t', '60', c.resource]), c.adm('beta', ['wait-sync', '-t', '60', c.resource])]);
    expect(onAlpha.exitCode, onAlpha.stderr).toBe(0);
    expect(onBeta.exitCode, onBeta.stderr).toBe(0);
    expect(await c.query('alpha', 'dstate')).toBe('UpToDate/UpToDate');
    expect(await c.query('beta', 'dstate')).toBe('UpToDate/UpToDate');
    expect(await c.query('beta', 'cstate')).toBe('Connected');
    expect(c.hashDataArea('alpha')).toBe(c.hashDataArea('beta'));
  });

  it('-d prints the drbdsetup call with the startup wfc-timeout and waits for nothing', async () => {
    cluster = new Cluster({ resource: 'inwd', port: 7964 });
    const c = cluster;
    fs.writeFileSync(c.configPath, c.configText().replace('  net {', '  startup { wfc-timeout 7; }\n  net {'));
    const r = await c.adm('alpha', ['-d', 'wait-sync', c.resource]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('drbdsetup-84 wait-sync 10 --wfc-timeout=7\n');
  });
});

describe('UDRBD_SYSLOG', () => {
  it('sends state changes to syslog as `block drbdN: …` / `drbd RES: …` lines (unix socket and UDP), pino log unchanged', async () => {
    for (const tool of [PYTHON, LOGGER]) if (!fs.existsSync(tool)) throw new Error(`test prerequisite missing: ${tool}`);
    cluster = new Cluster({ resource: 'insl', port: 7962, diskSizeBytes: 16 * MiB });
    const c = cluster;
    const socketPath = path.join(c.dir, 'syslog.sock');
    const unixLines: string[] = [];
    receiver = spawn(PYTHON, ['-u', '-c', [
      'import socket, sys',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
      `s.bind(${JSON.stringify(socketPath)})`,
      'print("ready", flush=True)',
      'while True:',
      '    print(s.recv(65536).decode("utf-8", "replace"), flush=True)',
    ].join('\n')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let pending = '';
    receiver.stdout!.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const parts = pending.split('\n');
      pending = parts.pop()!;
      unixLines.push(...parts);
    });
    await c.waitFor('python syslog receiver ready', () => unixLines.includes('ready'), 10_000);
    const udpLines: string[] = [];
    udp = dgram.createSocket('udp4');
    udp.on('message', (msg) => udpLines.push(msg.toString('utf8')));
    await new Promise<void>((resolve) => udp!.bind(7963, '127.0.0.1', resolve));

    c.env.UDRBD_SYSLOG = `unix:${socketPath}`;
    await c.admOk('alpha', ['up', c.resource]);
    c.env.UDRBD_SYSLOG = 'udp:127.0.0.1:7963';
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.admOk('alpha', ['primary', '--force', c.resource]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected');

    // facility daemon (3 * 8) + severity info (6) = <30>, tag kernel, the kernel module's text
    const alphaExpected = [
      /^<30>.* kernel: block drbd10: disk\( Diskless -> Attaching \)/,
      /^<30>.* kernel: drbd insl: conn\( StandAlone -> Unconnected \)/,
      /^<30>.* kernel: drbd insl: conn\( \w+ -> WFConnection \)/,
      /^<30>.* kernel: block drbd10: peer\( Unknown -> Secondary \) conn\( WFReportParams -> Connected \)/,
      /^<30>.* kernel: block drbd10: role\( Secondary -> Primary \)/,
      /^<30>.* kernel: block drbd10: .*conn\( \w+ -> SyncSource \)/,
    ];
    const seen = async (what: string, lines: string[], re: RegExp): Promise<void> => {
      await c.waitFor(what, () => lines.some((l) => re.test(l)), 10_000).catch((err: Error) => {
        throw new Error(`${err.message}\nreceived:\n${lines.join('\n')}`);
      });
    };
    for (const re of alphaExpected) await seen(`alpha syslog line ${re}`, unixLines, re);
    await seen('beta syslog line: SyncTarget', udpLines, / kernel: block drbd11: .*conn\( \w+ -> SyncTarget \)/);
    await seen('beta syslog line: resync done', udpLines, / kernel: block drbd11: conn\( SyncTarget -> Connected \) disk\( Inconsistent -> UpToDate \)/);
    // every syslog line is a state change the pino JSON log also has, word for word after the prefix
    const pinoMessages = new Set(c.logText('alpha').split('\n').filter((l) => l.startsWith('{')).map((l) => (JSON.parse(l) as { msg: string }).msg));
    const syslogTexts = unixLines.filter((l) => l !== 'ready').map((l) => l.replace(/^.* kernel: (block drbd10|drbd insl): /, ''));
    expect(syslogTexts.length).toBeGreaterThanOrEqual(alphaExpected.length);
    for (const text of syslogTexts) expect(pinoMessages.has(text), text).toBe(true);
    // nothing but state changes goes to syslog
    expect(unixLines.filter((l) => l !== 'ready').every((l) => / kernel: (block drbd10|drbd insl): /.test(l))).toBe(true);
    expect(unixLines.some((l) => l.includes('Began resync'))).toBe(false);
  });

  it('a syslog socket that is not there: the resource runs on, its log says why syslog stopped', async () => {
    cluster = new Cluster({ resource: 'insm', port: 7967 });
    const c = cluster;
    c.env.UDRBD_SYSLOG = `unix:${path.join(c.dir, 'no-such.sock')}`;
    await c.admOk('alpha', ['up', c.resource]);
    await c.waitFor('syslog stop reported in the pino log', () => c.logText('alpha').includes('syslog: logger(1) stopped: it exited (code 1)'), 10_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${c.logText('alpha')}`);
    });
    const line = c.logText('alpha').split('\n').find((l) => l.includes('syslog: logger(1) stopped'))!;
    expect((JSON.parse(line) as { loggerStderr?: string }).loggerStderr).toContain('no-such.sock');
    await c.admOk('alpha', ['primary', '--force', c.resource]);
    expect(await c.query('alpha', 'role')).toBe('Primary/Unknown');
  });

  it('a malformed UDRBD_SYSLOG makes up fail with what to set instead', async () => {
    cluster = new Cluster({ resource: 'insb', port: 7965 });
    const c = cluster;
    c.env.UDRBD_SYSLOG = 'tcp:somewhere';
    const r = await c.adm('alpha', ['up', c.resource]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('UDRBD_SYSLOG=tcp:somewhere is not understood');
    expect(r.stderr).toContain('udp:HOST:PORT');
  });
});
