/**
 * The time-bounded fuzz pass behind `npm run fuzz -- --seconds N --seed S`
 * (scripts/fuzz.mjs passes both in the environment). Not part of `npm test`
 * (test/fuzz/vitest.config.ts picks up *.fuzz.ts only): every target gets an equal
 * share of the time and prints how many inputs each property tried.
 */
import { describe, expect, it } from 'vitest';
import { TARGETS } from './targets.js';

const seconds = Number(process.env.UDRBD_FUZZ_SECONDS ?? '60');
const seed = Number(process.env.UDRBD_FUZZ_SEED ?? '0');
if (!Number.isFinite(seconds) || seconds <= 0) throw new Error(`UDRBD_FUZZ_SECONDS must be a positive number, not ${process.env.UDRBD_FUZZ_SECONDS}`);
if (!Number.isSafeInteger(seed)) throw new Error(`UDRBD_FUZZ_SEED must be an integer, not ${process.env.UDRBD_FUZZ_SEED}`);
const perTargetMs = Math.floor((seconds * 1000) / TARGETS.length);

describe(`fuzz pass: ${seconds} s, seed ${seed}`, () => {
  for (const target of TARGETS) {
    it(`${target.name} (${perTargetMs} ms)`, { timeout: perTargetMs + 120_000 }, async () => {
      const results = await target.run({ seed, timeLimitMs: perTargetMs });
      for (const r of results) {
        console.log(`fuzz ${target.name}: ${r.runs} runs (seed ${seed}) — ${r.name}`);
        expect(r.runs, r.name).toBeGreaterThan(0);
      }
    });
  }
});
