import { describe, expect, it } from 'vitest';
import { runAside, trackUntilFulfilled } from '../../src/util/aside.js';
import { InvariantError } from '../../src/util/assert.js';
import { capturingLogger } from '../helpers/replication-helpers.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('util/aside: work not awaited is never lost', () => {
  it('runAside logs a rejection at error level with what failed and why', async () => {
    const { log, lines } = capturingLogger();
    runAside(Promise.reject(new Error('disk gone')), log, 'peer write');
    await tick();
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0] ?? '{}') as { level: number; msg: string };
    expect(line.msg).toBe('peer write failed: disk gone');
    expect(line.level).toBe(50); // pino's error
  });

  it('runAside logs an InvariantError as fatal and rethrows it as an uncaught exception', async () => {
    const { log, lines } = capturingLogger();
    const bug = new InvariantError('invariant violated: epoch has no writes in flight');
    // vitest reports uncaught exceptions as errors: this test's listener is the only one while it runs.
    const others = process.listeners('uncaughtException');
    for (const l of others) process.off('uncaughtException', l);
    const uncaught = new Promise<unknown>((resolve) => process.once('uncaughtException', resolve));
    try {
      runAside(Promise.reject(bug), log, 'peer write');
      expect(await uncaught).toBe(bug);
    } finally {
      for (const l of others) process.on('uncaughtException', l);
    }
    const line = JSON.parse(lines[0] ?? '{}') as { level: number; msg: string };
    expect(line.level).toBe(60); // pino's fatal
    expect(line.msg).toContain('peer write failed: invariant violated');
  });

  it('trackUntilFulfilled drops a fulfilled promise from the set and keeps a rejected one for Promise.all', async () => {
    const pending = new Set<Promise<boolean>>();
    const ok = Promise.resolve(true);
    const bad = Promise.reject(new Error('fetch failed'));
    trackUntilFulfilled(pending, ok);
    trackUntilFulfilled(pending, bad);
    await tick();
    expect([...pending]).toEqual([bad]);
    await expect(Promise.all(pending)).rejects.toThrow('fetch failed');
  });
});
