/**
 * cli/commands/metrics — `udrbdadm metrics`: this node's Prometheus endpoint,
 * a long-running foreground process (run it under systemd, as drbd-reactor
 * is run) that answers each scrape by asking every resource process of this
 * node over its control socket. A verb of udrbdadm rather than a daemon of
 * its own: it finds the resources and sockets exactly as every other verb
 * does (-c, --node, UDRBD_RUN_DIR) and needs no pid or lock files; the logic
 * lives in metrics/. `--once` prints one scrape and exits (textfile
 * collectors, debugging). Knows nothing of how the metrics are gathered.
 */
import type { Command } from 'commander';
import type { GetContext } from './index.js';
import type { CliContext } from '../context.js';
import { expandResourceNames, loadConfig } from '../../config/index.js';
import { declareOwnDryRun } from '../dry-run.js';
import {
  ALLOW_REMOTE_ENV,
  METRICS_PORT_DEFAULT,
  NodeCollector,
  allowRemoteFromEnv,
  formatListenAddress,
  parseListenAddress,
  scrapeNodeText,
  startMetricsExporter,
} from '../../metrics/index.js';

/** The same problem is reported at most once per this interval (a scrape every 15 s would flood stderr). */
const PROBLEM_REPEAT_MS = 10 * 60_000;
const PROBLEMS_REMEMBERED_MAX = 256;

interface MetricsOptions {
  listen?: string;
  allowRemote?: boolean;
  once?: boolean;
}

function problemReporter(ctx: CliContext): (resource: string, message: string) => void {
  const lastMs = new Map<string, number>();
  return (resource, message) => {
    const key = `${resource}\n${message}`;
    const now = Date.now();
    const last = lastMs.get(key);
    if (last !== undefined && now - last < PROBLEM_REPEAT_MS) return;
    if (lastMs.size >= PROBLEMS_REMEMBERED_MAX) lastMs.clear();
    lastMs.set(key, now);
    ctx.err(`udrbdadm metrics: ${resource === '*' ? '' : `resource ${resource}: `}${message}\n`);
  };
}

async function metrics(ctx: CliContext, opts: MetricsOptions): Promise<void> {
  const listResources = (): string[] => expandResourceNames(loadConfig(ctx.configPath), ctx.nodeName, ['all']);
  const onProblem = problemReporter(ctx);
  if (opts.once) {
    ctx.out(await scrapeNodeText(new NodeCollector({ node: ctx.nodeName, listResources, onProblem })));
    return;
  }
  const address = parseListenAddress(opts.listen, Boolean(opts.allowRemote) || allowRemoteFromEnv(process.env));
  const url = `http://${formatListenAddress(address)}/metrics`;
  if (ctx.dryRun) {
    ctx.out(`would serve ${url} for node ${ctx.nodeName}, resources: ${listResources().join(' ') || '(none)'}\n`);
    return;
  }
  const server = await startMetricsExporter({ node: ctx.nodeName, listResources, onProblem, address, onError: (err) => onProblem('*', `scrape failed: ${err.message}`) });
  ctx.err(`udrbdadm metrics: serving ${url} for node ${ctx.nodeName}\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  await server.close();
}

export function register(program: Command, getContext: GetContext): void {
  // -d metrics says what it would serve and binds nothing (metrics() checks ctx.dryRun).
  declareOwnDryRun('metrics');
  program
    .command('metrics')
    .description(
      `serve this node's Prometheus metrics (all its resources; drbd-reactor's metric names, so its dashboards work) ` +
        `until SIGTERM; loopback only unless --allow-remote or ${ALLOW_REMOTE_ENV}=1`,
    )
    .option('--listen <address>', `HOST:PORT, [IPV6]:PORT or PORT to listen on (default 127.0.0.1:${METRICS_PORT_DEFAULT}, drbd-reactor's port)`)
    .option('--allow-remote', 'allow a non-loopback --listen address (the endpoint has no authentication)')
    .option('--once', 'print one scrape to stdout and exit')
    .action(async (opts: MetricsOptions) => {
      await metrics(getContext(), opts);
    });
}
