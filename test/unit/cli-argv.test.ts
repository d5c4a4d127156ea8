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
  it('leaves argv without backend options unchanged', () => {
    expect(moveBackendOptions(['primary', '--force', 'r0'])).toEqual({
      argv: ['primary', '--force', 'r0'],
      backendOptions: [],
    });
    expect(moveBackendOptions(['-c', 'x.conf', '--node', 'alpha', '-d', 'up', 'r0']).argv).toEqual([
      '-c', 'x.conf', '--node', 'alpha', '-d', 'up', 'r0',
    ]);
  });
});

describe('backend options before the verb without `--` (drbdadm 8.4 accepts them)', () => {
  it('`--discard-my-data connect r0` is `connect --discard-my-data r0`', () => {
    expect(moveBackendOptions(['--discard-my-data', 'connect', 'r0'])).toEqual({
      argv: ['connect', '--discard-my-data', 'r0'],
      backendOptions: ['--discard-my-data'],
    });
  });
  it('global options with values stay in front, wherever the backend option stands', () => {
    expect(moveBackendOptions(['--force', '-c', 'x.conf', '--config-file=y.conf', '-n', 'beta', 'primary', 'r0']).argv).toEqual([
      '-c', 'x.conf', '--config-file=y.conf', '-n', 'beta', 'primary', '--force', 'r0',
    ]);
  });
  it('options before and after `--` are both backend options', () => {
    expect(moveBackendOptions(['--force', '--', '--overwrite-data-of-peer', 'primary', 'r0']).argv).toEqual([
      'primary', '--force', '--overwrite-data-of-peer', 'r0',
    ]);
  });
});
