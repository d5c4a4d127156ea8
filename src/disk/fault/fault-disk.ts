/**
 * disk/fault/fault-disk — FaultDisk, a BlockDevice stacked on another one
 * (an nbdkit-filter-like layer for tests): it passes every request on,
 * except those a rule of its plan (disk/fault/plan) hits — those fail with
 * EIO, or stall for a while or until the plan changes. The plan can be
 * replaced at any time (setPlan), so a test fails the disk mid-stream.
 *
 * Power cuts (plan.powerCut): every write is recorded in an undo log (the
 * bytes it overwrote, read just before it) until a flush succeeds; powerCut()
 * writes the old bytes back in reverse order, so the disk holds exactly what
 * it held at the last successful flush, and from then on every request fails
 * (the node is off) — Jepsen's LazyFS, at the block layer. A FUA write is
 * made durable by flushing the whole disk (a real disk may keep more than it
 * promised, never less). The undo log is bounded (UNDO_BYTES_MAX); the upper
 * layers keep overlapping writes apart (replication/range-lock), so an undo
 * read and its write see no other write in between.
 *
 * Knows nothing of DRBD: the daemon installs it at attach only when
 * $UDRBD_FAULT_PLAN names a plan file (daemon/fault-hook).
 */
import { type BlockDevice, type BlockDeviceCapabilities, type ReadFlags, type WriteFlags, checkRange, eioError } from '../block-device.js';
import { EMPTY_PLAN, type FaultPlan, type FaultRule, ruleMatches } from './plan.js';

/** Bytes of overwritten data kept for a power cut; a test flushes long before this. */
export const UNDO_BYTES_MAX = 256 * 1024 * 1024;

type Operation = 'read' | 'write' | 'flush';

interface RuleState {
  readonly rule: FaultRule;
  /** Matching requests seen so far. */
  seen: number;
  /** Requests hit so far. */
  hits: number;
}

interface UndoEntry {
  readonly offsetBytes: number;
  readonly before: Buffer;
}

export interface FaultCounters {
  /** Requests failed with EIO by a rule (or after a power cut). */
  eio: number;
  /** Requests held back by a stall rule. */
  stalls: number;
}

export interface PowerCutResult {
  /** Writes since the last successful flush that were undone. */
  readonly droppedWrites: number;
  readonly droppedBytes: number;
}

export class FaultDisk implements BlockDevice {
  private rules: RuleState[] = [];
  private plan: FaultPlan = EMPTY_PLAN;
  /** Stalled requests waiting for their timer or a plan change. */
  private readonly stalled = new Set<() => void>();
  private undo: UndoEntry[] = [];
  private undoBytes = 0;
  private poweredOff = false;
  readonly counters: FaultCounters = { eio: 0, stalls: 0 };

  constructor(
    private readonly inner: BlockDevice,
    plan: FaultPlan = EMPTY_PLAN,
  ) {
    this.setPlan(plan);
  }

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  get capabilities(): BlockDeviceCapabilities {
    return this.inner.capabilities;
  }

  get currentPlan(): FaultPlan {
    return this.plan;
  }

  /** Replaces the plan: rule counters start again, and every stalled request goes on. */
  setPlan(plan: FaultPlan): void {
    this.plan = plan;
    this.rules = plan.rules.map((rule) => ({ rule, seen: 0, hits: 0 }));
    if (plan.powerCut !== true) this.clearUndo();
    const waiting = [...this.stalled];
    this.stalled.clear();
    for (const wake of waiting) wake();
  }

  /** Writes that a power cut now would drop. */
  get unflushedWrites(): number {
    return this.undo.length;
  }

  async read(buffer: Buffer, offsetBytes: number, flags?: ReadFlags): Promise<void> {
    checkRange(this, offsetBytes, buffer.length);
    await this.intercept('read', offsetBytes, buffer.length);
    await this.inner.read(buffer, offsetBytes, flags);
  }

  async write(buffer: Buffer, offsetBytes: number, flags?: WriteFlags): Promise<void> {
    checkRange(this, offsetBytes, buffer.length);
    await this.intercept('write', offsetBytes, buffer.length);
    if (this.plan.powerCut !== true) return this.inner.write(buffer, offsetBytes, flags);
    await this.recordUndo(offsetBytes, buffer.length);
    await this.inner.write(buffer, offsetBytes, flags?.bypassCache === true ? { bypassCache: true } : undefined);
    if (flags?.fua === true) await this.flushInner();
  }

  async flush(): Promise<void> {
    await this.intercept('flush', 0, 0);
    await this.flushInner();
  }

  async trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    checkRange(this, offsetBytes, lengthBytes);
    await this.intercept('write', offsetBytes, lengthBytes);
    if (this.plan.powerCut === true) await this.recordUndo(offsetBytes, lengthBytes);
    await this.inner.trim(offsetBytes, lengthBytes);
  }

  close(): Promise<void> {
    this.setPlan(EMPTY_PLAN);
    return this.inner.close();
  }

  /**
   * The power goes off: writes since the last successful flush are undone
   * (newest first), the result is flushed, and every later request fails.
   */
  async powerCut(): Promise<PowerCutResult> {
    this.poweredOff = true;
    const entries = this.undo;
    const result = { droppedWrites: entries.length, droppedBytes: this.undoBytes };
    this.clearUndo();
    for (let i = entries.length - 1; i >= 0; i--) {
      const entry = entries[i]!;
      await this.inner.write(entry.before, entry.offsetBytes);
    }
    await this.inner.flush();
    const waiting = [...this.stalled];
    this.stalled.clear();
    for (const wake of waiting) wake();
    return result;
  }

  private async flushInner(): Promise<void> {
    const mark = this.undo.length;
    await this.inner.flush();
    // Writes recorded before the flush began are on stable storage now.
    const durable = this.undo.splice(0, mark);
    for (const entry of durable) this.undoBytes -= entry.before.length;
  }

  private async recordUndo(offsetBytes: number, lengthBytes: number): Promise<void> {
    if (this.undoBytes + lengthBytes > UNDO_BYTES_MAX) {
      throw new Error(`fault disk: more than ${UNDO_BYTES_MAX} bytes written since the last flush; a power-cut plan needs flushes`);
    }
    const before = Buffer.alloc(lengthBytes);
    await this.inner.read(before, offsetBytes);
    this.undo.push({ offsetBytes, before });
    this.undoBytes += lengthBytes;
  }

  private clearUndo(): void {
    this.undo = [];
    this.undoBytes = 0;
  }

  /** Applies the first rule that hits this request: throws EIO, or waits out a stall. */
  private async intercept(op: Operation, offsetBytes: number, lengthBytes: number): Promise<void> {
    if (this.poweredOff) {
      this.counters.eio++;
      throw eioError(`${op} after a simulated power cut`);
    }
    for (let index = 0; index < this.rules.length; index++) {
      const state = this.rules[index]!;
      if (!ruleMatches(state.rule, op, offsetBytes, lengthBytes)) continue;
      state.seen++;
      if (state.seen <= (state.rule.afterOps ?? 0)) continue;
      if (state.rule.count !== undefined && state.hits >= state.rule.count) continue;
      state.hits++;
      if (state.rule.effect === 'eio') {
        this.counters.eio++;
        throw eioError(`${op} at ${offsetBytes} (+${lengthBytes}) failed by fault plan rule ${index}`);
      }
      this.counters.stalls++;
      await this.stall(state.rule.stallMs);
      if (this.poweredOff) {
        this.counters.eio++;
        throw eioError(`${op} after a simulated power cut`);
      }
      return;
    }
  }

  private stall(stallMs: number | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const wake = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        this.stalled.delete(wake);
        resolve();
      };
      this.stalled.add(wake);
      if (stallMs !== undefined) timer = setTimeout(wake, stallMs);
    });
  }
}
