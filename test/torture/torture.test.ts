/**
 * The seeded fault torture in CI (issue 18): two minutes of episodes with a
 * fixed seed on two namespace nodes (netns uto1/uto2, 169.254.63.x, resource
 * totort). Each episode's checks (test/torture/torture) throw with the seed
 * and the episode on a violation; this test also asserts that episodes ran,
 * that acknowledged writes were checked, and that every split brain made on
 * purpose was reported on both nodes. Root, FUSE, loop, iptables, drbdmeta
 * and python3 are required (it fails, not skips, without them).
 * Teardown (namespaces, loop devices, processes) runs in afterAll too.
 */
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import { NetnsPair, requireNamespaceHost } from '../helpers/netns-node.js';
import { requireTools } from '../helpers/cluster.js';
import { runTorture, FAULTS } from './torture.js';

const BASE = '/var/tmp/uto-torture-ci';
const SEED = 18;
const SECONDS = 120;

afterAll(async () => {
  // runTorture tears down itself; this catches a run killed by the test timeout.
  const problems = await NetnsPair.cleanupLeftovers('uto');
  if (process.env.UDRBD_TORTURE_KEEP === undefined) fs.rmSync(BASE, { recursive: true, force: true });
  if (problems.length > 0) throw new Error(`teardown problems: ${problems.join('; ')}`);
}, 120_000);

describe('seeded fault torture', () => {
  it(`${SECONDS} s with seed ${SEED}: every acknowledged write survives, replicas end identical, split brains reported on both nodes`, async () => {
    requireNamespaceHost();
    requireTools();
    for (const tool of ['/usr/bin/python3', '/usr/sbin/iptables']) {
      if (!fs.existsSync(tool)) throw new Error(`${tool} is missing (apt-get install python3 iptables)`);
    }
    const lines: string[] = [];
    const report = await runTorture({ seconds: SECONDS, seed: SEED, baseDir: BASE, log: (l) => lines.push(l) });
    process.stdout.write(`${lines.join('\n')}\n`);
    expect(report.episodes).toBeGreaterThan(0);
    const figures = FAULTS.map((f) => report.perFault[f]);
    expect(figures.reduce((n, x) => n + x.ackedChecked, 0)).toBeGreaterThan(0);
    for (const x of figures) expect(x.splitBrainsBoth).toBe(x.splitBrainsTotal);
  }, (SECONDS + 600) * 1000);
});
