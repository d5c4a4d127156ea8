import { describe, expect, it } from 'vitest';
import { checkCompatibility } from '../../src/peer/handshake.js';
import { digestName, newChallenge, respond, verify, validateAuth } from '../../src/peer/auth.js';
import { UdrbdError } from '../../src/util/errors.js';

const base = {
  protocol: 'C' as const,
  afterSb0pri: 'disconnect' as const,
  afterSb1pri: 'disconnect' as const,
  afterSb2pri: 'disconnect' as const,
  allowTwoPrimaries: false,
  discardMyData: false,
  nodeName: 'alpha',
  integrityAlg: '',
};

describe('peer handshake compatibility (DRBD connect-time checks)', () => {
  it('accepts identical settings and one-sided discard-my-data', () => {
    expect(checkCompatibility(base, { ...base, nodeName: 'beta' })).toBeNull();
    expect(checkCompatibility({ ...base, discardMyData: true }, base)).toBeNull();
  });

  it('reports each mismatch with the kernel wording', () => {
    expect(checkCompatibility(base, { ...base, protocol: 'A' })).toBe('incompatible communication protocols');
    expect(checkCompatibility(base, { ...base, afterSb0pri: 'discard-zero-changes' })).toBe('incompatible after-sb-0pri settings');
    expect(checkCompatibility(base, { ...base, afterSb1pri: 'consensus' })).toBe('incompatible after-sb-1pri settings');
    expect(checkCompatibility(base, { ...base, afterSb2pri: 'violently-as0p' })).toBe('incompatible after-sb-2pri settings');
    expect(checkCompatibility(base, { ...base, allowTwoPrimaries: true })).toBe('incompatible setting of the two-primaries options');
    expect(checkCompatibility({ ...base, discardMyData: true }, { ...base, discardMyData: true })).toBe('incompatible discard-my-data settings');
  });

  it('requires the same data-integrity-alg on both nodes, compared as written (receive_protocol strcmp)', () => {
    expect(checkCompatibility({ ...base, integrityAlg: 'sha1' }, { ...base, integrityAlg: 'sha1' })).toBeNull();
    expect(checkCompatibility({ ...base, integrityAlg: 'sha1' }, { ...base, integrityAlg: 'md5' })).toBe('incompatible data-integrity-alg settings');
    expect(checkCompatibility({ ...base, integrityAlg: 'sha1' }, base)).toBe('incompatible data-integrity-alg settings');
    expect(checkCompatibility(base, { ...base, integrityAlg: 'crc32c' })).toBe('incompatible data-integrity-alg settings');
  });

  it('treats discard-local on one side as matching discard-remote on the other', () => {
    expect(checkCompatibility({ ...base, afterSb0pri: 'discard-local' }, { ...base, afterSb0pri: 'discard-remote' })).toBeNull();
    expect(checkCompatibility({ ...base, afterSb0pri: 'discard-local' }, { ...base, afterSb0pri: 'discard-local' })).toBe('incompatible after-sb-0pri settings');
    expect(checkCompatibility({ ...base, afterSb0pri: 'discard-node-beta' }, { ...base, afterSb0pri: 'discard-node-beta' })).toBeNull();
    expect(checkCompatibility({ ...base, afterSb0pri: 'discard-node-beta' }, { ...base, afterSb0pri: 'discard-node-alpha' })).toBe('incompatible after-sb-0pri settings');
  });
});

describe('peer cram-hmac auth', () => {
  it('verifies the right secret and rejects a wrong one or a truncated response', () => {
    const challenge = newChallenge();
    expect(challenge).toHaveLength(64);
    const right = { alg: 'sha256', secret: 'k' };
    const response = respond(right, challenge);
    expect(verify(right, challenge, response)).toBe(true);
    expect(verify({ alg: 'sha256', secret: 'K' }, challenge, response)).toBe(false);
    expect(verify(right, challenge, response.subarray(1))).toBe(false);
    expect(verify(right, newChallenge(), response)).toBe(false);
  });

  it('accepts DRBD-style "hmac(sha1)" names and refuses unknown digests and long secrets', () => {
    expect(digestName('hmac(sha1)')).toBe('sha1');
    expect(digestName('SHA256')).toBe('sha256');
    expect(() => digestName('no-such-digest')).toThrow(UdrbdError);
    expect(() => validateAuth({ alg: 'sha1', secret: 'x'.repeat(65) })).toThrow(/shared-secret longer than 64/);
  });
});
