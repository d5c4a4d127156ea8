/**
 * The fixed-seed fuzz pass that runs with `npm test`: every decoder that
 * reads bytes from outside (config files, v08 meta-data, NBD clients, the
 * peer link, the control socket) gets a few thousand mutated and random
 * inputs and must reject them cleanly. `npm run fuzz` runs the same targets
 * for longer with any seed.
 */
import { describe, expect, it } from 'vitest';
import type { PropertyResult } from './runner.js';
import { fuzzConfig } from './target-config.js';
import { fuzzControl } from './target-control.js';
import { fuzzMeta } from './target-meta.js';
import { fuzzNbd } from './target-nbd.js';
import { fuzzPeerCodec } from './target-peer.js';

/** Fixed, so `npm test` is repeatable; `npm run fuzz -- --seed S` explores others. */
const SEED = 18_2026;

function expectRan(results: PropertyResult[], runsMin: number): void {
  for (const r of results) expect(r.runs, r.name).toBeGreaterThanOrEqual(runsMin);
}

describe('fuzzing with a fixed seed', () => {
  it('peer frame decoder: mutated streams fail only with ProtocolError, oversized lengths at the header, decoded packets re-encode', () => {
    expectRan(fuzzPeerCodec({ seed: SEED, numRuns: 3000 }), 3000);
  });

  it('NBD decoders: admitted requests are in bounds, mutated handshakes and request streams end cleanly and write only what valid requests ask', async () => {
    expectRan(await fuzzNbd({ seed: SEED, numRuns: 400 }), 400);
  });

  it('control socket: the line splitter matches a reference split, mutated request lines each get a JSON reply and reach the handler only well-formed', async () => {
    expectRan(await fuzzControl({ seed: SEED, numRuns: 500 }), 500);
  });

  it('config parser: mutated configs load or fail with UdrbdError, and what loads resolves, is judged and dumps', () => {
    expectRan(fuzzConfig({ seed: SEED, numRuns: 1000 }), 1000);
  });

  it('v08 meta-data: any superblock is judged, any AL ring replays, bad meta-data is refused without a write and attach writes only meta-data', () => {
    expectRan(fuzzMeta({ seed: SEED, numRuns: 600 }), 150);
  });
});
