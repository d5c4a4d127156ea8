import { describe, it, expect } from 'vitest';
import { moveBackendOptions } from '../../src/cli/argv.js';

describe("drbdadm's `--` convention", () => {
  it('moves backend options given before the verb behind it', () => {
    expect(moveBackendOptions(['--', '--force', 'primary', 'r0'])).toEqual({
      argv: ['primary', '--force', 'r0'],
      backendOptions: ['--force'],
    });
  });
  it('keeps global options before `--` in front', () => {
    expect(moveBackendOptions(['-c', 'x.conf', '--', '--discard-my-data', 'connect', 'r0']).argv).toEqual([
      '-c', 'x.conf', 'connect', '--discard-my-data', 'r0',
    ]);
  });
  it('leaves argv without `--` unchanged', () => {
    expect(moveBackendOptions(['primary', '--force', 'r0'])).toEqual({
      argv: ['primary', '--force', 'r0'],
      backendOptions: [],
    });
  });
});
