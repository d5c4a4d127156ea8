import { describe, expect, it } from 'vitest';
import { daemonEnv, MALLOC_TOP_PAD_BYTES, nodeArgsFromEnv } from '../../src/control/launcher.js';
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

describe('resource process environment', () => {
  it('keeps a heap top pad (no trim-and-refault churn on socket buffers) and passes everything else through', () => {
    const env = daemonEnv({ PATH: '/usr/bin', UDRBD_RUN_DIR: '/run/x' });
    expect(env.MALLOC_TOP_PAD_).toBe(String(MALLOC_TOP_PAD_BYTES));
    expect(env.PATH).toBe('/usr/bin');
    expect(env.UDRBD_RUN_DIR).toBe('/run/x');
  });
  it("leaves the operator's own MALLOC_TOP_PAD_ alone", () => {
    expect(daemonEnv({ MALLOC_TOP_PAD_: '0' }).MALLOC_TOP_PAD_).toBe('0');
  });
});
