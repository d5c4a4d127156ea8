import { describe, expect, it } from 'vitest';
import { nodeArgsFromEnv } from '../../src/daemon/launcher.js';
import { UdrbdError } from '../../src/util/errors.js';

describe('UDRBD_NODE_ARGS (Node.js flags for the resource process)', () => {
  it('is empty when unset or blank', () => {
    expect(nodeArgsFromEnv({})).toEqual([]);
    expect(nodeArgsFromEnv({ UDRBD_NODE_ARGS: '  ' })).toEqual([]);
  });
  it('splits flags on white space', () => {
    expect(nodeArgsFromEnv({ UDRBD_NODE_ARGS: ' --cpu-prof  --cpu-prof-dir=/tmp/p\t--max-old-space-size=256 ' })).toEqual([
      '--cpu-prof',
      '--cpu-prof-dir=/tmp/p',
      '--max-old-space-size=256',
    ]);
  });
  it('refuses anything that is not a flag, naming it', () => {
    expect(() => nodeArgsFromEnv({ UDRBD_NODE_ARGS: '--cpu-prof /tmp/evil.js' })).toThrow(UdrbdError);
    expect(() => nodeArgsFromEnv({ UDRBD_NODE_ARGS: '--cpu-prof /tmp/evil.js' })).toThrow(/not '\/tmp\/evil\.js'/);
  });
});
