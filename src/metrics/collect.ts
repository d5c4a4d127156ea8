/**
 * metrics/collect — one scrape of this node: list the resources the
 * configuration gives this node (re-read every scrape, so `adjust` and new
 * resources show up without a restart), ask each resource process for its
 * `metrics` report over its control socket, a few at a time and each with a
 * timeout. A resource whose process is not up, or does not answer in time,
 * has no report: it is absent from the drbd_* families (as drbd-reactor
 * drops a resource that is down) and udrbd_resource_up says 0. Knows the
 * resource processes only through daemon/client and the report type.
 */
import { callResource, ResourceNotUpError } from '../control/client.js';
import { runtimePaths } from '../control/paths.js';
import { METRICS_REPORT_VERSION, type ResourceMetricsReport } from '../daemon/metrics-source.js';
import type { ResourceScrape } from './render.js';

/** A resource process gets this long to answer one scrape. */
export const RESOURCE_REPLY_TIMEOUT_MS = 3_000;
/** Resource processes asked at once. */
export const RESOURCES_IN_PARALLEL_MAX = 8;
/** Resources one scrape covers at most (a config is bounded far below this). */
export const RESOURCES_PER_SCRAPE_MAX = 4096;

export interface CollectOptions {
  /** This node's `on HOST` name. */
  node: string;
  /** The resources of this node in the current configuration (throws when it cannot be read). */
  listResources: () => string[];
  env?: NodeJS.ProcessEnv;
  /** Told why a resource has no report (not up is not a problem and is not reported). */
  onProblem?: (resource: string, message: string) => void;
}

export class NodeCollector {
  /** The last resource list read successfully: a config being edited does not blank the endpoint. */
  private lastResources: string[] = [];

  constructor(private readonly options: CollectOptions) {}

  async collect(): Promise<ResourceScrape[]> {
    const names = this.resources();
    const out: ResourceScrape[] = new Array<ResourceScrape>(names.length);
    for (let start = 0; start < names.length; start += RESOURCES_IN_PARALLEL_MAX) {
      const batch = names.slice(start, start + RESOURCES_IN_PARALLEL_MAX);
      const reports = await Promise.all(batch.map((name) => this.reportOf(name)));
      reports.forEach((report, i) => (out[start + i] = { name: batch[i]!, report }));
    }
    return out;
  }

  private resources(): string[] {
    try {
      const names = [...new Set(this.options.listResources())].sort();
      if (names.length > RESOURCES_PER_SCRAPE_MAX) throw new Error(`${names.length} resources, more than the ${RESOURCES_PER_SCRAPE_MAX} one scrape covers`);
      this.lastResources = names;
    } catch (err) {
      this.options.onProblem?.('*', `cannot read the configuration, using the last good resource list: ${(err as Error).message}`);
    }
    return this.lastResources;
  }

  private async reportOf(resource: string): Promise<ResourceMetricsReport | null> {
    try {
      const paths = runtimePaths(resource, this.options.node, this.options.env);
      const reply = await callResource(paths, 'metrics', {}, RESOURCE_REPLY_TIMEOUT_MS);
      if (!reply.ok) {
        this.options.onProblem?.(resource, `the resource process refused 'metrics' (${reply.exitCode}): ${reply.stderr.trim()} (is it an older udrbd? 'udrbdadm down ${resource}; udrbdadm up ${resource}' restarts it)`);
        return null;
      }
      const report = JSON.parse(reply.stdout) as ResourceMetricsReport;
      if (report.version !== METRICS_REPORT_VERSION) {
        this.options.onProblem?.(resource, `metrics report version ${String(report.version)}, this udrbdadm reads version ${METRICS_REPORT_VERSION}`);
        return null;
      }
      return report;
    } catch (err) {
      if (!(err instanceof ResourceNotUpError)) this.options.onProblem?.(resource, (err as Error).message);
      return null;
    }
  }
}
