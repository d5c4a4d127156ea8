/**
 * daemon/durability — flush and write failures while the disk is being
 * released (detach, down). DRBD logs a failed flush ("local disk flush failed
 * with status N", drbd_receiver.c: drbd_flush) and a failed meta-data write
 * ("meta data update failed!", drbd_md_sync) in the kernel log; udrbd logs
 * the same and also answers the detach/down verb with the failure, so the
 * operator learns that writes completed before may not be on stable storage.
 * The detach/down itself still completes: the disk is gone either way.
 */
import type { Logger } from '../util/log.js';
import { ExitCode } from '../util/errors.js';

/** What failed: the data flush before closing, or the meta-data (bitmap, superblock) written at close. */
export type DurabilityOperation = 'flush' | 'meta-data write';

export class DurabilityReport {
  private readonly failures: string[] = [];

  /** Logs the failure in DRBD's words and keeps the operator's line for the verb's reply. */
  record(log: Logger, where: { minor: number; diskPath: string }, operation: DurabilityOperation, err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    const status = (error as NodeJS.ErrnoException).errno ?? -5; // -EIO when the error carries no errno
    if (operation === 'flush') log.error({ err: error, disk: where.diskPath }, `local disk flush failed with status ${status}`);
    else log.error({ err: error, disk: where.diskPath }, 'meta data update failed!');
    this.failures.push(
      `${where.minor}: ${operation} of ${where.diskPath} failed while detaching (${error.message}): ` +
        'writes completed before it may not be on stable storage; check the disk (dmesg) before attaching it again',
    );
  }

  /** The verb's answer: success, or the failures since the last answer with drbdsetup's exit code 10. */
  takeReply(): { exitCode: number; stderr?: string } {
    const failures = this.failures.splice(0);
    if (failures.length === 0) return { exitCode: ExitCode.ok };
    return { exitCode: ExitCode.deviceError, stderr: failures.map((line) => `${line}\n`).join('') };
  }
}
