/**
 * control/lock — the lock file that keeps two resource processes for the same
 * resource and node from running at once. Node has no flock(2), so the lock
 * is an O_EXCL-created file holding the owner's pid; a lock whose owner is
 * dead (kill -9) is stale and is taken over. Knows nothing else.
 */
import fs from 'node:fs';
import { isProcessAlive } from './paths.js';

/** Attempts to take over a stale lock before giving up (another process may race us). */
const LOCK_ATTEMPTS_MAX = 3;

export type LockResult = { ok: true; release: () => void } | { ok: false; ownerPid: number };

export function acquireLock(lockPath: string, pid: number = process.pid): LockResult {
  for (let attempt = 0; attempt < LOCK_ATTEMPTS_MAX; attempt++) {
    try {
      const fd = fs.openSync(lockPath, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
      fs.writeSync(fd, `${pid}\n`);
      fs.closeSync(fd);
      return {
        ok: true,
        release: () => {
          try {
            if (readOwner(lockPath) === pid) fs.unlinkSync(lockPath);
          } catch {
            /* already gone */
          }
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = readOwner(lockPath);
    if (owner !== undefined && owner !== pid && isProcessAlive(owner)) return { ok: false, ownerPid: owner };
    // Stale (owner dead) or unreadable: remove and retry.
    try {
      fs.unlinkSync(lockPath);
    } catch {
      /* raced with another remover */
    }
  }
  return { ok: false, ownerPid: readOwner(lockPath) ?? -1 };
}

function readOwner(lockPath: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(lockPath, 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
