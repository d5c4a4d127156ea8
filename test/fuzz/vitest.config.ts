import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// `npm run fuzz` (scripts/fuzz.mjs): the time-bounded pass over every fuzz target
// (test/fuzz/*.fuzz.ts), kept out of `npm test`, which runs the fixed-seed
// test/fuzz/decoders.test.ts through the root vitest.config.ts.
export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    include: ['test/fuzz/**/*.fuzz.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
  },
});
