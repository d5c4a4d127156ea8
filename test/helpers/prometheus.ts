/**
 * test/helpers/prometheus — reading a metrics endpoint in tests with a real
 * Prometheus text parser (npm parse-prometheus-text-format, a port of the
 * Prometheus Python client's parser): fetch over HTTP, parse, look up a
 * sample by family and labels. That parser folds a histogram's series into
 * one when they carry labels besides `le`, so `histogram()` parses one
 * series at a time: the lines of that label set, its other labels dropped.
 */
import http from 'node:http';
import { createRequire } from 'node:module';

export interface ParsedSample {
  value?: string;
  labels?: Record<string, string>;
  buckets?: Record<string, string>;
  count?: string;
  sum?: string;
}

export interface ParsedFamily {
  name: string;
  help: string;
  type: 'GAUGE' | 'COUNTER' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
  metrics: ParsedSample[];
}

const require = createRequire(import.meta.url);
const parser = require('parse-prometheus-text-format') as ((text: string) => ParsedFamily[]) | { default: (text: string) => ParsedFamily[] };
const parseText = typeof parser === 'function' ? parser : parser.default;

export function parsePrometheus(text: string): ParsedFamily[] {
  return parseText(text);
}

export interface HttpAnswer {
  status: number;
  contentType: string;
  body: string;
}

export function httpGet(url: string, timeoutMs = 10_000): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    // agent: false — a fresh connection per request (a pooled keep-alive socket may belong to a server a previous test closed)
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

function matches(labels: Record<string, string> | undefined, want: Record<string, string>): boolean {
  return Object.entries(want).every(([k, v]) => labels?.[k] === v);
}

/** The families by name. */
export function byName(families: ParsedFamily[]): Map<string, ParsedFamily> {
  return new Map(families.map((f) => [f.name, f]));
}

/** The one sample of `family` whose labels include `want`; throws when there is not exactly one. */
export function sample(families: ParsedFamily[], family: string, want: Record<string, string> = {}): number {
  const f = families.find((x) => x.name === family);
  if (!f) throw new Error(`no family ${family} in the scrape`);
  const found = f.metrics.filter((m) => matches(m.labels, want));
  if (found.length !== 1) throw new Error(`${found.length} samples of ${family} match ${JSON.stringify(want)}`);
  return Number(found[0]!.value);
}

/** Whether `family` has a sample whose labels include `want`. */
export function hasSample(families: ParsedFamily[], family: string, want: Record<string, string> = {}): boolean {
  const f = families.find((x) => x.name === family);
  return f !== undefined && f.metrics.some((m) => matches(m.labels, want));
}

function labelsOfLine(line: string): Record<string, string> {
  const open = line.indexOf('{');
  if (open < 0) return {};
  const labels: Record<string, string> = {};
  const body = line.slice(open + 1, line.lastIndexOf('}'));
  for (const m of body.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]!] = m[2]!;
  return labels;
}

/** One histogram series (the label set `want`), parsed by the real parser. */
export function histogram(text: string, family: string, want: Record<string, string>): { buckets: Record<string, number>; count: number; sum: number } {
  const series: string[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith(`# HELP ${family} `) || line.startsWith(`# TYPE ${family} `)) {
      series.push(line);
      continue;
    }
    const name = line.split(/[{ ]/, 1)[0];
    if (name !== `${family}_bucket` && name !== `${family}_sum` && name !== `${family}_count`) continue;
    const labels = labelsOfLine(line);
    if (!matches(labels, want)) continue;
    const value = line.slice(line.lastIndexOf(' ') + 1);
    series.push(labels.le !== undefined ? `${name}{le="${labels.le}"} ${value}` : `${name} ${value}`);
  }
  const parsed = parseText(`${series.join('\n')}\n`);
  const h = parsed.find((f) => f.name === family);
  if (!h || h.type !== 'HISTOGRAM' || h.metrics.length !== 1) throw new Error(`histogram ${family} ${JSON.stringify(want)} not found or not one series`);
  const m = h.metrics[0]!;
  const buckets: Record<string, number> = {};
  for (const [le, v] of Object.entries(m.buckets ?? {})) buckets[le] = Number(v);
  return { buckets, count: Number(m.count), sum: Number(m.sum) };
}
