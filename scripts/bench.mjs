#!/usr/bin/env node
// `npm run bench [-- --quick] [-- --only=part,...]`: runs each benchmark part in its own process
// (scripts/bench/<part>.mjs), in order, so one part's leftovers cannot skew
// another, then prints one table of side-by-side ratios and writes
// bench-results/summary.json. Parts write bench-results/<part>.json with
// { rows: [...] } (see scripts/bench/lib.mjs row()) and may print detail.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { printTable } from './bench/lib.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const quick = process.argv.includes('--quick');
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length).split(',');
const PARTS = ['meta', 'nbd', 'integrity', 'xfs', 'resync', 'rsctl', 'rss'];
const PART_TIMEOUT_MS = quick ? 120_000 : 300_000;

fs.mkdirSync(path.join(root, 'bench-results'), { recursive: true });
const started = Date.now();
const rows = [];
const failures = [];
for (const part of PARTS) {
  if (only && !only.includes(part)) continue;
  const script = path.join(root, 'scripts', 'bench', `${part}.mjs`);
  if (!fs.existsSync(script)) continue;
  process.stdout.write(`\n== bench part: ${part}${quick ? ' (quick)' : ''}\n`);
  const resultFile = path.join(root, 'bench-results', `${part}.json`);
  fs.rmSync(resultFile, { force: true });
  const r = spawnSync(process.execPath, [script, ...(quick ? ['--quick'] : [])], {
    cwd: root,
    stdio: 'inherit',
    timeout: PART_TIMEOUT_MS,
  });
  if (r.status !== 0) {
    failures.push(`${part}: exit ${r.status ?? r.signal}`);
    continue;
  }
  if (fs.existsSync(resultFile)) {
    const json = JSON.parse(fs.readFileSync(resultFile, 'utf8'));
    for (const row of json.rows ?? []) rows.push(row);
  }
}

process.stdout.write(`\n== udrbd benchmark summary (${quick ? 'quick' : 'full'}; ${Math.round((Date.now() - started) / 1000)} s)\n`);
if (rows.length > 0) printTable(rows);
for (const f of failures) process.stdout.write(`part failed: ${f}\n`);
fs.writeFileSync(
  path.join(root, 'bench-results', 'summary.json'),
  JSON.stringify({ when: new Date().toISOString(), quick, rows, failures }, null, 2) + '\n',
);
process.exitCode = failures.length > 0 ? 1 : 0;
