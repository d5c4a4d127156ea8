// What the data path's latency histograms cost per request (replication/latency):
// ns per LatencyHistogram.record() call, per performance.now() call, and per
// "time one request" (two clock reads + one record, what volume.ts adds to each
// local write). Run after `npm run build`:  node scripts/bench/latency-record.mjs
import { performance } from 'node:perf_hooks';
import { LatencyHistogram } from '../../dist/replication/latency.js';

const CALLS = 5_000_000;
const ROUNDS = 5;
// Durations (ms) spread over the buckets like a mix of page-cache writes, fsyncs and a few stalls.
const DURATIONS_MS = Float64Array.from({ length: 1024 }, (_, i) => (i % 64 === 0 ? 40 : i % 8 === 0 ? 3 : 0.02 + (i % 17) * 0.03));

function nsPerCall(fn) {
  const start = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - start) / CALLS;
}

const results = { record: [], clock: [], timedRequest: [], emptyLoop: [] };
let sink = 0;
for (let round = 0; round < ROUNDS; round++) {
  const h = new LatencyHistogram();
  results.emptyLoop.push(nsPerCall(() => {
    for (let i = 0; i < CALLS; i++) sink += DURATIONS_MS[i & 1023];
  }));
  results.record.push(nsPerCall(() => {
    for (let i = 0; i < CALLS; i++) h.record(DURATIONS_MS[i & 1023]);
  }));
  results.clock.push(nsPerCall(() => {
    for (let i = 0; i < CALLS; i++) sink += performance.now();
  }));
  results.timedRequest.push(nsPerCall(() => {
    for (let i = 0; i < CALLS; i++) {
      const startedMs = performance.now();
      h.record(performance.now() - startedMs);
    }
  }));
  if (h.count !== 2 * CALLS) throw new Error('record lost observations');
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`node ${process.version}, ${CALLS} calls x ${ROUNDS} rounds, median ns per call:`);
for (const [name, xs] of Object.entries(results)) console.log(`  ${name.padEnd(13)} ${median(xs).toFixed(1)}  (rounds: ${xs.map((x) => x.toFixed(1)).join(' ')})`);
if (sink === 42) console.log('');
