/**
 * The README's first command after setup, end to end (root): `npm run
 * demo:rabbitmq` builds the RabbitMQ demo and runs it — two Pacemaker nodes,
 * the user's crm block with ocf:udrbd:drbd, a power cut of the active node
 * mid-stream — and exits 0 with no confirmed quorum-queue message lost; it
 * prints the figures per queue, the failover time and the status tables, and
 * leaves nothing behind: no network namespace urqp*, no process or work dir of
 * its own, no cleanup problem reported. Needs what the Pacemaker tests need
 * plus rabbitmq-server and python3-pika (fails, not skips, without).
 * netns urqp1/urqp2, 169.254.62.x.
 */
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { requirePacemakerHost } from '../helpers/pcmk-cluster.js';
import { requireRabbitHost } from '../helpers/rabbitmq-pair.js';
import { ROOT } from '../helpers/cluster.js';

const WORK_DIR = '/var/tmp/urq-demo';
/** The demo limits itself to 600 s; this only catches a demo that ignores its own limit. */
const DEMO_TIMEOUT_MS = 660_000;

/** Network namespaces of the demo (urqp1, urqp2). */
async function demoNamespaces(): Promise<string[]> {
  const r = await execa('ip', ['netns', 'list'], { timeout: 30_000 });
  return r.stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => /^urqp\d+$/.test(n));
}

/** pids whose command line mentions the demo's work dir. */
function processesUsingWorkDir(): number[] {
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(WORK_DIR)) pids.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

describe('npm run demo:rabbitmq', () => {
  it('fails over RabbitMQ under Pacemaker after a power cut with no confirmed quorum-queue message lost, and cleans up', async () => {
    requirePacemakerHost();
    requireRabbitHost();
    const r = await execa('npm', ['run', '--silent', 'demo:rabbitmq'], { cwd: ROOT, reject: false, timeout: DEMO_TIMEOUT_MS, stdin: 'ignore', all: true });
    const out = String(r.all);
    expect(r.exitCode, out).toBe(0);
    const result = /result: quorum queue (\d+) of (\d+) confirmed lost, classic queue (\d+) of (\d+); failover ([\d.]+) s/.exec(out);
    expect(result, out).not.toBeNull();
    const [lostQuorum, confirmedQuorum, , confirmedClassic] = (result ?? []).slice(1).map(Number);
    expect(lostQuorum).toBe(0);
    expect(confirmedQuorum).toBeGreaterThan(0);
    expect(confirmedClassic).toBeGreaterThan(0);
    // The status table at each step: the Promoted node before the cut, the powered-off one after.
    expect(out).toMatch(/compute[12]\s+online\s+Promoted\s+Started\s+Primary\/Secondary/);
    expect(out).toMatch(/compute[12]\s+powered off/);
    expect(out).toMatch(/demo\.quorum\s+\d+\s+\d+\s+0\s+0/);
    expect(out).not.toContain('cleanup problems');
    expect(await demoNamespaces()).toEqual([]);
    expect(processesUsingWorkDir()).toEqual([]);
    expect(fs.existsSync(WORK_DIR)).toBe(false);
  }, DEMO_TIMEOUT_MS + 30_000);
});
