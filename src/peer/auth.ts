/**
 * peer/auth — DRBD's cram-hmac challenge-response, both ways: each side sends
 * random bytes, the other answers HMAC(shared-secret, challenge), each side
 * checks the answer with a timing-safe compare. Pure functions over
 * node:crypto; the frames that carry them are peer/connection's business.
 */
import { createHmac, getHashes, randomBytes, timingSafeEqual } from 'node:crypto';
import { UdrbdError, ExitCode } from '../util/errors.js';
import { AUTH_CHALLENGE_BYTES_MAX, DIGEST_BYTES_MAX } from './codec.js';

/** DRBD sends CHALLENGE_LEN = 64 random bytes. */
export const AUTH_CHALLENGE_BYTES = AUTH_CHALLENGE_BYTES_MAX;
/** DRBD limits shared-secret to 64 characters (SHARED_SECRET_MAX). */
export const SHARED_SECRET_BYTES_MAX = 64;

export interface AuthConfig {
  /** cram-hmac-alg, a digest name such as sha1, sha256 (DRBD accepts "hmac(sha256)" style too). */
  alg: string;
  secret: string;
}

/** Normalises "hmac(sha256)" / "sha256" to the node:crypto digest name, or throws UdrbdError. */
export function digestName(alg: string): string {
  const match = /^hmac\((.+)\)$/i.exec(alg.trim());
  const name = (match ? match[1]! : alg).trim().toLowerCase();
  if (!getHashes().includes(name)) {
    throw new UdrbdError(`cram-hmac-alg ${alg}: no such digest`, ExitCode.configInvalid);
  }
  const size = createHmac(name, 'x').update('x').digest().length;
  if (size > DIGEST_BYTES_MAX) throw new UdrbdError(`cram-hmac-alg ${alg}: digest too long`, ExitCode.configInvalid);
  return name;
}

export function validateAuth(auth: AuthConfig): void {
  digestName(auth.alg);
  if (Buffer.byteLength(auth.secret, 'utf8') > SHARED_SECRET_BYTES_MAX) {
    throw new UdrbdError(`shared-secret longer than ${SHARED_SECRET_BYTES_MAX} characters`, ExitCode.configInvalid);
  }
}

export function newChallenge(): Buffer {
  return randomBytes(AUTH_CHALLENGE_BYTES);
}

export function respond(auth: AuthConfig, challenge: Buffer): Buffer {
  return createHmac(digestName(auth.alg), auth.secret).update(challenge).digest();
}

/** True when `response` is HMAC(secret, challenge); constant time for equal lengths. */
export function verify(auth: AuthConfig, challenge: Buffer, response: Buffer): boolean {
  const expected = respond(auth, challenge);
  return expected.length === response.length && timingSafeEqual(expected, response);
}
