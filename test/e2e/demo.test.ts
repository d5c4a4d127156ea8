/**
 * The README's main job, end to end (root): `bash scripts/demo.sh` runs the
 * two-node demo (initial sync, XFS on /dev/drbd1, switchover to beta with
 * checksums verified, status tables) and exits 0; afterwards nothing of it is
 * left: no resource process, no mount (FUSE or XFS) or loop device on its
 * files, no /dev/drbd1 or /dev/drbd2 link, no work dir. The demo's work dir is
 * made under a TMPDIR private to this test, so every check can look for
 * exactly the demo's paths; UDRBD_DEMO_PORT keeps it off other tests' ports.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { requireFuseLoopPrerequisites, repoRoot } from '../helpers/fuse-harness.js';

const DEMO_PORT = 7817;
const DEMO_TIMEOUT_MS = 180_000;
const LINKS = ['/dev/drbd1', '/dev/drbd2'];

let base = '';

/** pids whose command line mentions `dir` (the demo's resource processes carry `--config <dir>/...`). */
function processesUsing(dir: string): number[] {
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let cmdline = '';
    try {
      cmdline = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ');
    } catch {
      continue; // exited meanwhile
    }
    if (cmdline.includes(dir)) pids.push(Number(name));
  }
  return pids;
}

/** Mount points under `dir` (from /proc/self/mounts; octal escapes left as they are, `dir` has none). */
function mountsUnder(dir: string): string[] {
  return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(dir));
}

/** Loop devices whose backing file lies under `dir`. */
async function loopsBackedUnder(dir: string): Promise<string[]> {
  const r = await execa('losetup', ['-l', '-n', '-O', 'NAME,BACK-FILE']);
  return r.stdout.split('\n').filter((l) => l.includes(dir)).map((l) => l.trim().split(/\s+/)[0]!);
}

function linkExists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  await requireFuseLoopPrerequisites();
  if (!fs.existsSync(path.join(repoRoot, 'dist', 'cli', 'udrbdadm.js'))) throw new Error('dist/ is missing: run `npm run build`');
  for (const link of LINKS) {
    if (linkExists(link)) throw new Error(`${link} exists before the demo (another run left it?); remove it first`);
  }
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-demo-test-'));
});

afterAll(async () => {
  if (base === '') return;
  // Only if the demo (or this test) failed: do by force what the demo's own cleanup should have done.
  for (const pid of processesUsing(base)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const m of mountsUnder(base).reverse()) await execa('umount', ['-l', m], { reject: false });
  for (const loop of await loopsBackedUnder(base)) await execa('losetup', ['-d', loop], { reject: false });
  for (const link of LINKS) {
    let target = '';
    try {
      target = fs.readlinkSync(link);
    } catch {
      continue; // absent, or not a link (not ours to remove)
    }
    if (/^\/dev\/(loop|nbd)\d+$/.test(target)) fs.rmSync(link, { force: true });
  }
  if (mountsUnder(base).length === 0) fs.rmSync(base, { recursive: true, force: true });
});

describe('scripts/demo.sh', () => {
  it('runs the two-node demo to exit 0 and leaves no process, mount, loop device, device link or work dir behind', async () => {
    const r = await execa('bash', [path.join(repoRoot, 'scripts', 'demo.sh')], {
      cwd: repoRoot,
      env: { ...process.env, TMPDIR: base, UDRBD_DEMO_PORT: String(DEMO_PORT) },
      reject: false,
      all: true,
      timeout: DEMO_TIMEOUT_MS,
      killSignal: 'SIGTERM', // the demo traps it and cleans up
    });
    if (r.exitCode !== 0) throw new Error(`demo.sh exited ${r.exitCode ?? r.signal}${r.timedOut ? ' (timed out)' : ''}:\n${(r.all ?? '').split('\n').slice(-40).join('\n')}`);
    const out = r.all ?? '';
    expect(out).toContain('alpha is Secondary: /dev/drbd1 is gone');
    expect(out).toMatch(/file1: OK/);
    expect(out).toContain('checksums matched on beta after the switchover');
    expect(out).toContain('demo finished: everything cleaned up');

    expect(processesUsing(base)).toEqual([]);
    expect(mountsUnder(base)).toEqual([]);
    expect(await loopsBackedUnder(base)).toEqual([]);
    for (const link of LINKS) expect(linkExists(link), `${link} left behind`).toBe(false);
    expect(fs.readdirSync(base)).toEqual([]); // the work dir itself was removed
  }, DEMO_TIMEOUT_MS + 30_000);
});
