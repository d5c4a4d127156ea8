/**
 * util/errors — errors an operator reads. Each carries the process exit code
 * drbdadm / drbdsetup / drbdmeta would use for the same situation, so scripts
 * written for DRBD 8.4 (the OCF agent, init scripts) keep working.
 */

/** Exit codes shared by udrbdadm verbs (the values drbdadm-84, drbdsetup-84 and drbdmeta exit with). */
export const ExitCode = {
  ok: 0,
  usage: 1,
  /** drbdmeta: invalid size / arguments; drbdadm: config invalid; drbdsetup: kernel error. */
  configInvalid: 10,
  stateChangeFailed: 11,
  /** drbdsetup's 10 for an error the kernel reports; udrbd: the backing disk failed I/O the verb needed. */
  deviceError: 10,
  /** drbdsetup: SS_LOWER_THAN_OUTDATED. */
  lowerThanOutdated: 5,
  noLocalDisk: 16,
  /** drbdsetup: SS_NO_UP_TO_DATE_DISK (the OCF agent keys on this one). */
  noUpToDateDisk: 17,
  /** exec error, module / daemon missing, "device is configured". */
  fatal: 20,
  /** drbdmeta create-md would truncate a filesystem. */
  wouldTruncate: 40,
} as const;

export class UdrbdError extends Error {
  override name = 'UdrbdError';
  constructor(
    message: string,
    readonly exitCode: number = ExitCode.usage,
  ) {
    super(message);
  }
}
