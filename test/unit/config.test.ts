/** Unit tests for config/: lexer rules, number suffixes, resolveResource defaults and inheritance. */
import { describe, it, expect, afterEach } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lexer, Tk } from '../../src/config/lexer.js';
import { parseScaledNumber } from '../../src/config/limits.js';
import { loadConfig, resolveResource, resourcesForNode } from '../../src/config/index.js';
import { UdrbdError } from '../../src/util/errors.js';

const CORPUS_DIR = path.resolve(__dirname, '../corpus/config');
const tempDirs: string[] = [];
afterEach(() => {
  for (const d of tempDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
function writeConfig(text: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-config-'));
  tempDirs.push(dir);
  const file = path.join(dir, 'drbd.conf');
  fs.writeFileSync(file, text);
  return file;
}

describe('config lexer', () => {
  it('gives keywords, numbers, addresses and strings drbdadm token numbers (longest match wins)', () => {
    const lexer = new Lexer('on online 10M 10.0.0.1:7701 "a b" disk fd00::1 # comment\n;');
    const codes: number[] = [];
    for (let t = lexer.next(); t.code !== Tk.eof; t = lexer.next()) codes.push(t.code);
    expect(codes).toEqual([Tk.ON, Tk.STRING, Tk.INTEGER, Tk.IPADDR, ':'.charCodeAt(0), Tk.INTEGER, Tk.STRING, Tk.DISK, Tk.IPADDR6, ';'.charCodeAt(0)]);
    expect(Tk.DISK).toBe(264);
    expect(Tk.STRING).toBe(282);
  });
});

describe('config numbers', () => {
  it('converts K/M/G/s suffixes into the option unit like m_strtoll', () => {
    expect(parseScaledNumber('10M', 'k')).toEqual({ ok: true, value: 10240n });
    expect(parseScaledNumber('1M', 's')).toEqual({ ok: true, value: 2048n });
    expect(parseScaledNumber('512k', '1')).toEqual({ ok: true, value: 524288n });
    expect(parseScaledNumber('1s', 'k')).toEqual({ ok: true, value: 1n });
    expect(parseScaledNumber('ten', '1').ok).toBe(false);
  });
});

describe('resolveResource', () => {
  it('gives compute1 its view of the rabbitmq resource with inherited and default options', () => {
    const config = loadConfig(path.join(CORPUS_DIR, 'rabbitmq.conf'));
    const view = resolveResource(config, 'rabbitmq', 'compute1');
    expect(view.minor).toBe(1);
    expect(view.devicePath).toBe('/dev/drbd1');
    expect(view.diskPath).toBe('/dev/mapper/vg_rabbit-rabbit');
    expect(view.metaDisk).toBe('internal');
    expect(view.localAddress).toEqual({ family: 'ipv4', host: '192.168.122.11', port: 7701 });
    expect(view.peer).toEqual({ name: 'compute2', address: { family: 'ipv4', host: '192.168.122.12', port: 7701 } });
    expect(view.net.protocol).toBe('C');
    expect(view.net.pingIntervalMs).toBe(10_000);
    expect(view.net.pingTimeoutMs).toBe(500);
    expect(view.net.timeoutMs).toBe(6000);
    expect(view.net.koCount).toBe(7);
    expect(view.net.cramHmacAlg).toBe('sha1');
    expect(view.net.sharedSecret).toBe('rabbit-secret');
    expect(view.net.afterSb0pri).toBe('discard-zero-changes');
    expect(view.disk.resyncRateKiBps).toBe(40 * 1024);
    expect(view.disk.alExtents).toBe(3389);
    expect(view.disk.fencing).toBe('resource-only');
    expect(view.disk.onIoError).toBe('detach');
    expect(view.disk.cPlanAheadDs).toBe(20);
    expect(view.startup).toMatchObject({ wfcTimeoutS: 120, degrWfcTimeoutS: 60 });
    expect(view.handlers['fence-peer']).toBe('/usr/lib/drbd/crm-fence-peer.sh');
  });

  it('gives each local node its own device, disk and loopback address', () => {
    const config = loadConfig(path.join(CORPUS_DIR, 'two-node-local.conf'));
    expect(resourcesForNode(config, 'alpha')).toEqual(['r0']);
    const beta = resolveResource(config, 'r0', 'beta');
    expect(beta).toMatchObject({ minor: 1, devicePath: '/dev/drbd1', diskPath: '/var/tmp/udrbd-beta.img' });
    expect(beta.localAddress.host).toBe('127.0.0.2');
    expect(beta.peer?.name).toBe('alpha');
    expect(beta.net.connectIntervalMs).toBe(2000);
  });

  it('refuses a resource with no section for this node, exit 1, drbdadm wording', () => {
    const config = loadConfig(path.join(CORPUS_DIR, 'rabbitmq.conf'));
    expect(resourcesForNode(config, 'compute9')).toEqual([]);
    expect(() => resolveResource(config, 'rabbitmq', 'compute9')).toThrow(
      "'rabbitmq' not defined in your config (for this host).",
    );
    try {
      resolveResource(config, 'nosuch', 'compute1');
      throw new Error('expected an error');
    } catch (err) {
      expect(err).toBeInstanceOf(UdrbdError);
      expect((err as UdrbdError).exitCode).toBe(1);
      expect((err as UdrbdError).message).toBe("'nosuch' not defined in your config (for this host).");
    }
  });

  it('reports a missing semicolon with file:line and exit 10', () => {
    const file = writeConfig('resource r0 {\n  on a { device minor 1\n disk /dev/sda; }\n}\n');
    try {
      loadConfig(file);
      throw new Error('expected an error');
    } catch (err) {
      expect((err as UdrbdError).exitCode).toBe(10);
      expect((err as UdrbdError).message).toBe(`${file}:3: Parse error: ';' expected,\n\tbut got 'disk' (TK 264)`);
    }
  });
});
