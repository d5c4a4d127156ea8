import { defineConfig } from 'vitest/config';

// Integration and e2e tests start processes, attach loop devices and mount
// filesystems: run test files one at a time so they never fight over
// ports 7701, /dev/loop* or /run/udrbd, and give them room to finish.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default', './test/helpers/summary-reporter.ts'],
  },
});
