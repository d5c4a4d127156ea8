import { defineConfig } from 'vitest/config';

// `npm run fuzz`: the time-bounded pass over every fuzz target (test/fuzz/*.fuzz.ts),
// kept out of `npm test`, which runs the fixed-seed test/fuzz/decoders.test.ts.
export default defineConfig({
  test: {
    include: ['test/fuzz/**/*.fuzz.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
  },
});
