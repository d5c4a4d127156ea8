/**
 * metrics/ — the node's Prometheus endpoint, drbd-reactor-compatible: one
 * endpoint per node covering all of its resources. collect asks the resource
 * processes (the `metrics` control verb, daemon/metrics-source), render
 * turns the reports into exposition text, server serves it over HTTP on an
 * address listen-address allowed. This module wires them together for the
 * `udrbdadm metrics` verb; it knows nothing of the CLI.
 */
import fs from 'node:fs';
import { LATENCY_BOUNDS_MS } from '../replication/latency.js';
import { NodeCollector, type CollectOptions } from './collect.js';
import { renderNodeMetrics } from './render.js';
import { MetricsServer } from './server.js';
import type { ListenAddress } from './listen-address.js';

export { parseListenAddress, allowRemoteFromEnv, formatListenAddress, METRICS_PORT_DEFAULT, ALLOW_REMOTE_ENV, type ListenAddress } from './listen-address.js';
export { renderNodeMetrics, metricFamilies, connectionStateOf, type NodeScrape, type ResourceScrape } from './render.js';
export { NodeCollector } from './collect.js';
export { MetricsServer } from './server.js';

/** The DRBD version udrbd speaks (DRBD_KERNEL_VERSION_CODE 0x08040b), drbd_version's `kmod`. */
export const DRBD_KMOD_VERSION = '8.4.11';

/** udrbd's own version (package.json), drbd_version's `utils`. */
export function udrbdVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return `udrbd ${pkg.version ?? 'unknown'}`;
  } catch {
    return 'udrbd unknown';
  }
}

const BOUNDS_SECONDS = LATENCY_BOUNDS_MS.map((ms) => ms / 1000);

/** One scrape of the node as exposition text. */
export async function scrapeNodeText(collector: NodeCollector, utilsVersion: string = udrbdVersion()): Promise<string> {
  const resources = await collector.collect();
  return renderNodeMetrics({ resources, kmodVersion: DRBD_KMOD_VERSION, utilsVersion }, BOUNDS_SECONDS);
}

export interface ExporterOptions extends CollectOptions {
  address: ListenAddress;
  onError?: (err: Error) => void;
}

/** Starts serving; resolves once listening (rejects with the operator's message if it cannot). */
export async function startMetricsExporter(options: ExporterOptions): Promise<MetricsServer> {
  const collector = new NodeCollector(options);
  const utils = udrbdVersion();
  const server = new MetricsServer({
    address: options.address,
    scrape: () => scrapeNodeText(collector, utils),
    ...(options.onError ? { onError: options.onError } : {}),
  });
  await server.listen();
  return server;
}
