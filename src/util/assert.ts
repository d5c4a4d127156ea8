/**
 * util/assert — invariant checks in the TigerBeetle sense: a failed assertion
 * is a bug, so it throws an InvariantError ("invariant violated: <what>")
 * that names what broke; `unreachable` does the same for a switch case the
 * types say cannot happen. Never used for operator input errors (those are
 * UdrbdError with an exit code).
 */

export class InvariantError extends Error {
  override name = 'InvariantError';
}

/** Throws when `condition` is false. `message` says which invariant broke. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantError(`invariant violated: ${message}`);
}

/** Exhaustiveness check for switch statements over unions. */
export function unreachable(value: never, what: string): never {
  throw new InvariantError(`unreachable: unexpected ${what}: ${String(value)}`);
}
