/**
 * cli/events2-printer — turns the resource processes' events2 notifications
 * into the lines drbdsetup-84 events2 prints: the key, then only the state
 * fields that changed since this object's last line (all of them the first
 * time and after a destroy), statistics with --statistics, an ISO 8601
 * timestamp with microseconds and the local UTC offset with --timestamps,
 * and nothing but `exists` lines with --now. It remembers one entry per
 * object it has seen (bounded: a resource has four objects).
 * Knows nothing of sockets or of how the daemon derives the fields
 * (daemon/events2 owns the vocabulary).
 */
import type { ControlEvent } from '../control/protocol.js';
import { EVENTS2_KEY_FIELDS } from '../daemon/events2.js';

export interface Events2PrintOptions {
  /** --statistics (drbdsetup-84 turns on its verbose statistics with it). */
  statistics: boolean;
  /** --timestamps */
  timestamps: boolean;
  /** --now: only the initial dump. */
  now: boolean;
}

/** Known objects beyond this many are a bug (each resource has 4); the oldest is forgotten. */
export const EVENTS2_KNOWN_OBJECTS_MAX = 4096;

/** Statistics drbdsetup prints only when they changed (or on an object's first line). */
const STATISTICS_WHEN_CHANGED = new Set(['write-ordering', 'al-suspended', 'blocked', 'congested']);

const KEY_FIELDS: ReadonlySet<string> = new Set(EVENTS2_KEY_FIELDS);

interface Known {
  /** The resource the object belongs to (its `name:` key field). */
  resource: string;
  /** The object's last state fields (key fields excluded). */
  fields: Record<string, string>;
  statistics: Record<string, string>;
}

/** Wall-clock time in microseconds since the epoch. */
export function nowMicros(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

const pad = (n: number, width: number): string => String(n).padStart(width, '0');

/**
 * drbdsetup's `%04u-%02u-%02uT%02u:%02u:%02u.%06u%+03d:%02u` in local time:
 * the offset's hours truncate toward zero and its minutes are unsigned, as
 * in the C code (gmtoff / 3600, abs(gmtoff) / 60 % 60).
 */
export function formatTimestamp(epochMicros: number): string {
  const ms = Math.floor(epochMicros / 1000);
  const d = new Date(ms);
  const micros = epochMicros - Math.floor(epochMicros / 1_000_000) * 1_000_000;
  const offsetSeconds = -d.getTimezoneOffset() * 60;
  const offsetHours = Math.trunc(offsetSeconds / 3600);
  const offsetMinutes = Math.floor(Math.abs(offsetSeconds) / 60) % 60;
  const sign = offsetHours < 0 ? '-' : '+';
  return (
    `${pad(d.getFullYear(), 4)}-${pad(d.getMonth() + 1, 2)}-${pad(d.getDate(), 2)}` +
    `T${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.${pad(micros, 6)}` +
    `${sign}${pad(Math.abs(offsetHours), 2)}:${pad(offsetMinutes, 2)}`
  );
}

export class Events2Printer {
  private readonly known = new Map<string, Known>();
  private keptMicros: number | undefined;

  constructor(
    private readonly options: Events2PrintOptions,
    private readonly clockMicros: () => number = nowMicros,
  ) {}

  /** The line for `event` (without newline), or undefined when drbdsetup would print nothing. */
  format(event: ControlEvent): string | undefined {
    if (this.options.now && event.kind !== 'exists') return undefined;
    let line = this.body(event);
    if (this.options.timestamps) line = `${this.timestamp(event)} ${line}`;
    return line;
  }

  /** Forget every object of `resource` (its process ended without destroy notifications, e.g. killed). */
  forgetResource(resource: string): void {
    for (const [key, known] of this.known) if (known.resource === resource) this.known.delete(key);
  }

  private timestamp(event: ControlEvent): string {
    const micros = this.keptMicros ?? this.clockMicros();
    this.keptMicros = event.continues ? micros : undefined;
    return formatTimestamp(micros);
  }

  private body(event: ControlEvent): string {
    if (event.object === '-') return `${event.kind} -`;
    const keyParts: string[] = [event.object];
    const rest: Record<string, string> = {};
    for (const [k, v] of Object.entries(event.fields)) {
      if (KEY_FIELDS.has(k)) keyParts.push(`${k}:${v}`);
      else rest[k] = v;
    }
    const key = keyParts.join(' ');
    const head = `${event.kind} ${key}`;
    if (event.object === 'helper') return [head, ...Object.entries(rest).map(([k, v]) => `${k}:${v}`)].join(' ');
    if (event.kind === 'destroy') {
      this.known.delete(key);
      return head;
    }
    const old = this.known.get(key);
    const parts = [head];
    for (const [k, v] of Object.entries(rest)) if (!old || old.fields[k] !== v) parts.push(`${k}:${v}`);
    const statistics = event.statistics ?? old?.statistics ?? {};
    if (this.options.statistics) {
      for (const [k, v] of Object.entries(statistics)) {
        if (STATISTICS_WHEN_CHANGED.has(k) && old && old.statistics[k] === v) continue;
        parts.push(`${k}:${v}`);
      }
    }
    this.remember(key, { resource: event.fields.name ?? '', fields: rest, statistics });
    return parts.join(' ');
  }

  private remember(key: string, known: Known): void {
    this.known.delete(key);
    if (this.known.size >= EVENTS2_KNOWN_OBJECTS_MAX) {
      const oldest = this.known.keys().next().value;
      if (oldest !== undefined) this.known.delete(oldest);
    }
    this.known.set(key, known);
  }
}
