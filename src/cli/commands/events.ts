/**
 * cli/commands/events — `udrbdadm events [RES...|all]` (alias `events2`):
 * drbdsetup events2's stream for this node's resources, as drbd-utils prints
 * it for a DRBD 8.4 kernel. One event stream per resource process (its
 * control socket), merged: first every running resource's objects as
 * `exists` lines in configuration order and one `exists -`, then the
 * changes as they happen; a resource that comes up later is shown with
 * `create` lines, one going down with `destroy` lines (sent by its process).
 * It owns the streams' life cycle (subscribe, wait for a process to appear,
 * stop on --timeout / signal / closed stdout); the line format is
 * cli/events2-printer's, the fields daemon/events2's.
 */
import type { Command } from 'commander';
import type { GetContext } from './index.js';
import type { CliContext } from '../context.js';
import { UdrbdError, ExitCode } from '../../util/errors.js';
import { runtimePaths, type RuntimePaths } from '../../control/paths.js';
import { ControlClient } from '../../control/client.js';
import type { ControlEvent } from '../../control/protocol.js';
import { endOfDumpEvent, isEndOfDump } from '../../daemon/events2.js';
import { expandResourceNames, loadConfig, resolveResource } from '../../config/index.js';
import { resourceOfArgument } from '../volume-args.js';
import { Events2Printer, type Events2PrintOptions } from '../events2-printer.js';

/** How often a stream that is not open looks for its resource process. */
export const EVENTS_POLL_INTERVAL_MS = 500;
/** A resource process that does not finish its initial dump this fast is treated as not up. */
export const EVENTS_DUMP_TIMEOUT_MS = 5_000;
/** Connecting to a control socket. */
const EVENTS_CONNECT_TIMEOUT_MS = 2_000;
/** Events held for one stream while the merged initial dump is being printed; more is a runaway peer. */
export const EVENTS_PENDING_MAX = 10_000;

type Sink = (event: ControlEvent) => void;

/** The order in which `drbdadm up` creates a resource's objects: new-resource, new-minor, connect. */
const CREATE_ORDER: readonly ControlEvent['object'][] = ['resource', 'device', 'connection', 'peer-device'];

/**
 * A resource process that appeared while the stream was open: its initial
 * dump, shown as the `create` lines `drbdadm up` causes on a kernel, in that
 * order (the states are the ones it has by now, not the intermediate ones).
 */
export function createdEvents(dump: readonly ControlEvent[]): ControlEvent[] {
  const rank = (e: ControlEvent): number => {
    const i = CREATE_ORDER.indexOf(e.object);
    return i < 0 ? CREATE_ORDER.length : i;
  };
  return [...dump].sort((a, b) => rank(a) - rank(b)).map((e) => ({ ...e, kind: 'create' as const }));
}

/** One resource process's event stream. */
class ResourceStream {
  private client: ControlClient | undefined;
  private sink: Sink | undefined;
  private pending: ControlEvent[] = [];
  opening = false;

  constructor(
    readonly name: string,
    readonly paths: RuntimePaths,
    private readonly onClosed: (stream: ResourceStream) => void,
  ) {}

  get isOpen(): boolean {
    return this.client !== undefined;
  }

  /** Subscribes; resolves with the initial dump (without `exists -`), or undefined when the process is not there. */
  async open(): Promise<ControlEvent[] | undefined> {
    this.opening = true;
    let client: ControlClient;
    try {
      client = await ControlClient.connect(this.paths, EVENTS_CONNECT_TIMEOUT_MS);
    } catch {
      this.opening = false;
      return undefined; // not up (no socket, or a stale one of a killed process)
    }
    return new Promise((resolve) => {
      const dump: ControlEvent[] = [];
      let dumped = false;
      const finish = (result: ControlEvent[] | undefined): void => {
        if (dumped) return;
        dumped = true;
        clearTimeout(timer);
        this.opening = false;
        if (result) this.client = client;
        else client.close();
        resolve(result);
      };
      const timer = setTimeout(() => finish(undefined), EVENTS_DUMP_TIMEOUT_MS);
      client
        .subscribe(
          (event) => {
            if (!dumped) {
              if (isEndOfDump(event)) finish(dump);
              else if (dump.length < EVENTS_PENDING_MAX) dump.push(event);
              return;
            }
            this.deliver(event);
          },
          () => {
            const wasOpen = this.client === client;
            finish(undefined);
            if (!wasOpen) return;
            this.client = undefined;
            this.sink = undefined;
            this.pending = [];
            this.onClosed(this);
          },
        )
        .catch(() => finish(undefined));
    });
  }

  /** From now on events go to `sink` (those that arrived meanwhile first). */
  goLive(sink: Sink): void {
    this.sink = sink;
    const held = this.pending;
    this.pending = [];
    for (const event of held) sink(event);
  }

  close(): void {
    const client = this.client;
    this.client = undefined;
    this.sink = undefined;
    client?.close();
  }

  private deliver(event: ControlEvent): void {
    if (this.sink) this.sink(event);
    else if (this.pending.length < EVENTS_PENDING_MAX) this.pending.push(event);
  }
}

export interface EventsOptions extends Events2PrintOptions {
  /** Stop after this long (udrbd's own option; 0 = until interrupted). */
  timeoutMs: number;
}

interface EventsTarget {
  name: string;
  paths: RuntimePaths;
}

/** RES...|all (none = all) against the config, with drbdadm's errors for unknown resources. */
function eventsTargets(ctx: CliContext, names: string[]): EventsTarget[] {
  const config = loadConfig(ctx.configPath);
  return expandResourceNames(config, ctx.nodeName, names).map((written) => {
    // events acts on whole resources: RES/VNR is drbdadm's exit-1 refusal.
    const name = resourceOfArgument(config, ctx.nodeName, 'events', written);
    resolveResource(config, name, ctx.nodeName);
    return { name, paths: runtimePaths(name, ctx.nodeName) };
  });
}

/** Runs the merged stream until --now's dump is out, --timeout passes, a signal comes or stdout closes. */
export async function streamEvents(ctx: CliContext, targets: EventsTarget[], options: EventsOptions): Promise<void> {
  const printer = new Events2Printer(options);
  let stopped = false;
  const print: Sink = (event) => {
    if (stopped) return;
    const line = printer.format(event);
    if (line !== undefined) ctx.out(`${line}\n`);
  };
  const streams = targets.map((t) => new ResourceStream(t.name, t.paths, (s) => printer.forgetResource(s.name)));

  const dumps = await Promise.all(streams.map((s) => s.open()));
  for (const dump of dumps) for (const event of dump ?? []) print(event);
  print(endOfDumpEvent());
  if (options.now) {
    for (const s of streams) s.close();
    return;
  }
  streams.forEach((s, i) => {
    if (dumps[i]) s.goLive(print);
  });

  await new Promise<void>((resolve) => {
    const stop = (): void => {
      if (stopped) return;
      stopped = true;
      clearInterval(poll);
      if (timer) clearTimeout(timer);
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      process.stdout.off('error', stop);
      for (const s of streams) s.close();
      resolve();
    };
    // A resource that comes up while we watch: its objects appear as `create` lines.
    const poll = setInterval(() => {
      for (const s of streams) {
        if (s.isOpen || s.opening || !ControlClient.isUp(s.paths)) continue;
        // The poll timer cannot wait; a failure is reported, the stream closed, and the next poll retries.
        s.open()
          .then((dump) => {
            if (!dump || stopped) return s.close();
            for (const event of createdEvents(dump)) print(event);
            s.goLive(print);
          })
          .catch((err: unknown) => {
            ctx.err(`${s.name}: cannot follow its events: ${err instanceof Error ? err.message : String(err)}\n`);
            s.close();
          });
      }
    }, EVENTS_POLL_INTERVAL_MS);
    const timer = options.timeoutMs > 0 ? setTimeout(stop, options.timeoutMs) : undefined;
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    process.stdout.on('error', stop); // EPIPE: whoever read us is gone (drbdsetup polls stdout for POLLHUP)
  });
}

function parseTimeoutMs(text: string | undefined): number {
  if (text === undefined) return 0;
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds < 0) {
    throw new UdrbdError(`events: --timeout must be a number of seconds >= 0, not '${text}'`, ExitCode.usage);
  }
  return Math.round(seconds * 1000);
}

export function register(program: Command, getContext: GetContext): void {
  program
    .command('events')
    .alias('events2')
    .description(
      "print drbdsetup events2's lines for this node's resources (all when none is named): " +
        'every object as `exists ...`, then `exists -`, then one line per change ' +
        '(`change`, `create`, `destroy`, `call`/`response` for handlers) showing only the fields that changed',
    )
    .option('--now', 'print the current state (the `exists` lines and `exists -`) and exit')
    .option('--statistics', 'add the statistics fields (size read written al-writes ... received sent out-of-sync pending unacked); printed with state changes, not periodically')
    .option('--timestamps', 'start each line with the time, e.g. 2026-12-01T20:41:07.123456+00:00')
    .option('--timeout <seconds>', 'stop after this many seconds (udrbd; drbdsetup runs until interrupted)')
    .argument('[resources...]')
    .action(async (resources: string[], opts: { now?: boolean; statistics?: boolean; timestamps?: boolean; timeout?: string }) => {
      const ctx = getContext();
      const options: EventsOptions = {
        now: Boolean(opts.now),
        statistics: Boolean(opts.statistics),
        timestamps: Boolean(opts.timestamps),
        timeoutMs: parseTimeoutMs(opts.timeout),
      };
      await streamEvents(ctx, eventsTargets(ctx, resources), options);
    });
}
