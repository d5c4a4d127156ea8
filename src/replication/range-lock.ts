/**
 * replication/range-lock — serialises overlapping byte ranges in arrival
 * order (first come, first served per overlap), so two writes to the same
 * block, or a write and a resync of that block, reach the disk in one order.
 * Non-overlapping ranges never wait. Knows nothing of disks or peers.
 */
import { assert } from '../util/assert.js';

/** Ranges held or waiting at once; callers are bounded by max-buffers and resync in-flight limits. */
export const RANGE_LOCK_ENTRIES_MAX = 1 << 16;

export interface RangeHold {
  readonly startBytes: number;
  readonly endBytes: number;
}

interface Entry extends RangeHold {
  granted: boolean;
  wake: (() => void) | null;
}

export class RangeLock {
  /** Holders and waiters in arrival order. */
  private readonly entries: Entry[] = [];

  get size(): number {
    return this.entries.length;
  }

  /** Grants [startBytes, endBytes) now (returns the hold) or later (returns a promise of it). */
  acquire(startBytes: number, endBytes: number): RangeHold | Promise<RangeHold> {
    assert(startBytes < endBytes, `range [${startBytes}, ${endBytes}) is not empty`);
    assert(this.entries.length < RANGE_LOCK_ENTRIES_MAX, `range lock holds fewer than ${RANGE_LOCK_ENTRIES_MAX} entries`);
    const entry: Entry = { startBytes, endBytes, granted: false, wake: null };
    const blocked = this.overlapsBefore(entry, this.entries.length);
    this.entries.push(entry);
    if (!blocked) {
      entry.granted = true;
      return entry;
    }
    return new Promise<RangeHold>((resolve) => {
      entry.wake = () => resolve(entry);
    });
  }

  /** True when some granted or waiting range overlaps [startBytes, endBytes). */
  isBusy(startBytes: number, endBytes: number): boolean {
    for (const e of this.entries) if (e.startBytes < endBytes && startBytes < e.endBytes) return true;
    return false;
  }

  release(hold: RangeHold): void {
    const index = this.entries.indexOf(hold as Entry);
    assert(index >= 0, 'released range is held');
    assert((hold as Entry).granted, 'released range was granted');
    this.entries.splice(index, 1);
    for (let i = index; i < this.entries.length; i++) {
      const e = this.entries[i]!;
      if (e.granted || !e.wake) continue;
      if (!this.overlapsBefore(e, i)) {
        e.granted = true;
        const wake = e.wake;
        e.wake = null;
        wake();
      }
    }
  }

  private overlapsBefore(entry: RangeHold, endIndex: number): boolean {
    for (let i = 0; i < endIndex; i++) {
      const e = this.entries[i]!;
      if (e.startBytes < entry.endBytes && entry.startBytes < e.endBytes) return true;
    }
    return false;
  }
}

/** A counting semaphore: at most `capacity` holders, waiters served in order. */
export class Slots {
  private used = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(
    private capacityNow: number,
    private readonly waitersMax: number = RANGE_LOCK_ENTRIES_MAX,
  ) {
    assert(capacityNow >= 1, `slot capacity ${capacityNow} ≥ 1`);
  }

  get capacity(): number {
    return this.capacityNow;
  }

  /** A new bound (max-buffers changed online): more room wakes waiters now; less takes effect as slots free. */
  setCapacity(capacity: number): void {
    assert(Number.isSafeInteger(capacity) && capacity >= 1, `slot capacity ${capacity} ≥ 1`);
    this.capacityNow = capacity;
    while (this.used < this.capacityNow && this.waiters.length > 0) {
      this.used++;
      this.waiters.shift()!();
    }
  }

  get inUse(): number {
    return this.used;
  }

  /** Takes a slot now (returns true) or when one frees (returns a promise). */
  acquire(): true | Promise<void> {
    if (this.used < this.capacityNow && this.waiters.length === 0) {
      this.used++;
      return true;
    }
    assert(this.waiters.length < this.waitersMax, `fewer than ${this.waitersMax} requests wait for a slot`);
    return new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    assert(this.used > 0, 'released slot was taken');
    if (this.used > this.capacityNow) {
      this.used--; // the bound shrank: this slot is not handed on
      return;
    }
    const next = this.waiters.shift();
    if (next) next();
    else this.used--;
  }
}
