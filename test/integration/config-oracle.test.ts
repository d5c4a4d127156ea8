/**
 * Oracle test: every config in test/corpus/config is run through the real
 * drbdadm-84 (as each host named in its `# oracle-hosts:` line, via a private
 * UTS namespace) and through udrbdadm, and the outputs must be identical:
 *  - `-d dump` (common folded in, no local-IP check) for every host,
 *  - `dump RES` for every resource and host (no header; drbdadm's IP warning on
 *    stderr is ignored — udrbd nodes are chosen by name, not by local IP),
 *  - plain `dump` as a host that has no section (everything ignored),
 *  - sh-resources / sh-dev / sh-minor / sh-ll-dev / sh-md-dev / sh-md-idx, for
 *    RES and each RES/VNR (one volume; one the host does not have: exit 1),
 *  - `dump RES/VNR`: drbdadm's exit-1 refusal (dump takes whole resources),
 *  - and for broken configs: the same stderr text and the same exit code.
 * udrbdadm runs in-process (src/cli/main) for speed; one case runs dist.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { main } from '../../src/cli/main.js';

const CORPUS_DIR = path.resolve(__dirname, '../corpus/config');
const DRBDADM = '/usr/lib/drbd/drbdadm-84';
const NO_HOST = 'oracle-nohost';
const SH_VERBS = ['sh-dev', 'sh-minor', 'sh-ll-dev', 'sh-md-dev', 'sh-md-idx'];

interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

function requireTools(): void {
  if (!fs.existsSync(DRBDADM)) throw new Error(`${DRBDADM} missing: install Debian's drbd-utils (apt-get install drbd-utils)`);
  const r = spawnSync('unshare', ['-u', 'true']);
  if (r.status !== 0) throw new Error('unshare -u failed: this test needs root (util-linux unshare)');
}

/** Real drbdadm-84 as host `host`, run in the corpus dir so file names in messages match. */
function drbdadm(host: string, args: string[]): RunResult {
  const quoted = args.map((a) => `'${a}'`).join(' ');
  const r = spawnSync('unshare', ['-u', 'sh', '-c', `hostname '${host}' && exec ${DRBDADM} ${quoted}`], {
    cwd: CORPUS_DIR,
    encoding: 'utf8',
    env: { ...process.env, DRBD_DONT_WARN_ON_VERSION_MISMATCH: '1' },
  });
  return { stdout: r.stdout, stderr: r.stderr, code: r.status ?? -1 };
}

/** udrbdadm in-process, capturing what it writes. */
async function udrbdadm(host: string, args: string[]): Promise<RunResult> {
  const out: string[] = [];
  const err: string[] = [];
  const origOut = process.stdout.write.bind(process.stdout);
  const origErr = process.stderr.write.bind(process.stderr);
  const cwd = process.cwd();
  process.chdir(CORPUS_DIR);
  process.stdout.write = ((chunk: string | Uint8Array) => (out.push(String(chunk)), true));
  process.stderr.write = ((chunk: string | Uint8Array) => (err.push(String(chunk)), true));
  let code: number;
  try {
    code = await main(['--node', host, ...args]);
  } finally {
    process.stdout.write = origOut;
    process.stderr.write = origErr;
    process.chdir(cwd);
    process.exitCode = undefined;
  }
  return { stdout: out.join(''), stderr: err.join(''), code };
}

interface CorpusEntry {
  file: string;
  hosts: string[];
  broken: boolean;
}

function corpus(): CorpusEntry[] {
  return fs
    .readdirSync(CORPUS_DIR)
    .filter((f) => f.endsWith('.conf'))
    .sort()
    .map((file) => {
      const first = fs.readFileSync(path.join(CORPUS_DIR, file), 'utf8').split('\n')[0] ?? '';
      const m = /^# oracle-hosts: (.+)$/.exec(first);
      if (!m) throw new Error(`${file}: first line must be '# oracle-hosts: HOST...'`);
      return { file, hosts: m[1]!.trim().split(/\s+/), broken: file.startsWith('bad-') };
    });
}

const entries = corpus();

describe('config oracle: udrbdadm matches drbdadm-84', () => {
  beforeAll(() => requireTools());

  it('has at least 15 configs, including rabbitmq.conf and two-node-local.conf, and broken ones', () => {
    expect(entries.length).toBeGreaterThanOrEqual(15);
    expect(entries.map((e) => e.file)).toEqual(expect.arrayContaining(['rabbitmq.conf', 'two-node-local.conf']));
    expect(entries.filter((e) => e.broken).length).toBeGreaterThanOrEqual(7);
  });

  for (const entry of entries.filter((e) => !e.broken)) {
    it(`${entry.file}: dump, -d dump, dump RES and sh-* are identical`, async () => {
      const all = drbdadm(NO_HOST, ['-c', entry.file, 'dump']);
      expect(all.code).toBe(0);
      const mineAll = await udrbdadm(NO_HOST, ['-c', entry.file, 'dump']);
      expect(mineAll.stdout).toBe(all.stdout);
      expect(mineAll.code).toBe(0);
      const resources = [...all.stdout.matchAll(/^resource (\S+) \{$/gm)].map((m) => m[1]!.replace(/^"|"$/g, ''));
      expect(resources.length).toBeGreaterThan(0);

      for (const host of entry.hosts) {
        const expanded = drbdadm(host, ['-c', entry.file, '-d', 'dump']);
        expect(expanded.code, expanded.stderr).toBe(0);
        const mineExpanded = await udrbdadm(host, ['-c', entry.file, '-d', 'dump']);
        expect(mineExpanded.stdout, `${entry.file} as ${host}: -d dump`).toBe(expanded.stdout);

        for (const res of resources) {
          const one = drbdadm(host, ['-c', entry.file, 'dump', res]);
          const mineOne = await udrbdadm(host, ['-c', entry.file, 'dump', res]);
          expect(mineOne.stdout, `${entry.file} as ${host}: dump ${res}`).toBe(one.stdout);
          expect(mineOne.code).toBe(one.code);
          // RES/VNR names one volume (every volume this host's dump shows, and one it does not have).
          const vnrs = [...one.stdout.matchAll(/^ {8}volume (\d+) \{$/gm)].map((m) => m[1]!);
          const names = [res, ...new Set(vnrs)].map((v, i) => (i === 0 ? v : `${res}/${v}`));
          if (vnrs.length > 0) names.push(`${res}/99`);
          for (const name of names) {
            for (const verb of SH_VERBS) {
              const sh = drbdadm(host, ['-c', entry.file, verb, name]);
              const mineSh = await udrbdadm(host, ['-c', entry.file, verb, name]);
              expect(mineSh.stdout, `${entry.file} as ${host}: ${verb} ${name}`).toBe(sh.stdout);
              expect(mineSh.stderr, `${entry.file} as ${host}: ${verb} ${name} stderr`).toBe(sh.stderr);
              expect(mineSh.code, `${entry.file} as ${host}: ${verb} ${name} exit code`).toBe(sh.code);
            }
          }
          if (vnrs.length > 0) {
            // dump takes whole resources only: drbdadm's exit-1 refusal of RES/VNR.
            const vol = drbdadm(host, ['-c', entry.file, 'dump', `${res}/${vnrs[0]!}`]);
            const mineVol = await udrbdadm(host, ['-c', entry.file, 'dump', `${res}/${vnrs[0]!}`]);
            expect(vol.code).toBe(1);
            expect(mineVol).toEqual(vol);
          }
        }
        const shRes = drbdadm(host, ['-c', entry.file, 'sh-resources']);
        const mineShRes = await udrbdadm(host, ['-c', entry.file, 'sh-resources']);
        expect(mineShRes.stdout, `${entry.file} as ${host}: sh-resources`).toBe(shRes.stdout);
      }
    });
  }

  for (const entry of entries.filter((e) => e.broken)) {
    it(`${entry.file}: same error text and exit code`, async () => {
      const host = entry.hosts[0]!;
      const real = drbdadm(host, ['-c', entry.file, '-d', 'dump']);
      expect(real.code).not.toBe(0);
      const mine = await udrbdadm(host, ['-c', entry.file, '-d', 'dump']);
      expect(mine.stderr).toBe(real.stderr);
      expect(mine.code).toBe(real.code);
      expect(mine.stdout).toBe(real.stdout);
    });
  }

  it('rabbitmq.conf: the built dist/cli/udrbdadm.js prints the same dump as drbdadm-84', () => {
    const bin = path.resolve(__dirname, '../../dist/cli/udrbdadm.js');
    if (!fs.existsSync(bin)) throw new Error(`${bin} missing: run npm run build first (npm test does)`);
    const real = drbdadm('compute1', ['-c', 'rabbitmq.conf', '-d', 'dump', 'rabbitmq']);
    const mine = execFileSync('node', [bin, '-c', 'rabbitmq.conf', '--node', 'compute1', '-d', 'dump', 'rabbitmq'], {
      cwd: CORPUS_DIR,
      encoding: 'utf8',
    });
    expect(mine).toBe(real.stdout);
    expect(mine).toContain('disk             /dev/mapper/vg_rabbit-rabbit;');
    expect(mine).toContain('address          ipv4 192.168.122.11:7701;');
  });

  it('bad-rource.conf: the misspelt keyword yields drbdadm\'s line-3 parse error, exit 10', async () => {
    const mine = await udrbdadm('compute1', ['-c', 'bad-rource.conf', 'dump']);
    expect(mine.code).toBe(10);
    expect(mine.stderr).toBe(
      "bad-rource.conf:3: Parse error: 'global | common | resource | skip | include' expected,\n\tbut got 'rource'\n",
    );
  });
});
