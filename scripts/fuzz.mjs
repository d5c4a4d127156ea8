#!/usr/bin/env node
// npm run fuzz -- [--seconds N] [--seed S]
// Runs every fuzz target (test/fuzz/) for an equal share of N seconds (default 60)
// from seed S (default: a random one, printed first so a failure can be replayed).
import { spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';

function usage(message) {
  console.error(`npm run fuzz: ${message}\nusage: npm run fuzz -- [--seconds N] [--seed S]`);
  process.exit(1);
}

let seconds = 60;
let seed = randomInt(0, 2 ** 31 - 1);
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  const value = args[i + 1];
  if (arg === '--seconds' && value !== undefined) {
    seconds = Number(value);
    if (!Number.isFinite(seconds) || seconds <= 0) usage(`--seconds takes a positive number, not '${value}'`);
    i++;
  } else if (arg === '--seed' && value !== undefined) {
    seed = Number(value);
    if (!Number.isSafeInteger(seed)) usage(`--seed takes an integer, not '${value}'`);
    i++;
  } else {
    usage(`unknown argument '${arg}'`);
  }
}

console.log(`fuzz: ${seconds} s over all targets, seed ${seed} (replay: npm run fuzz -- --seconds ${seconds} --seed ${seed})`);
const result = spawnSync('npx', ['vitest', 'run', '--config', 'test/fuzz/vitest.config.ts', '--reporter', 'verbose'], {
  stdio: 'inherit',
  env: { ...process.env, UDRBD_FUZZ_SECONDS: String(seconds), UDRBD_FUZZ_SEED: String(seed) },
});
if (result.status !== 0) console.error(`fuzz: FAILED with seed ${seed} (replay: npm run fuzz -- --seconds ${seconds} --seed ${seed})`);
process.exit(result.status ?? 1);
