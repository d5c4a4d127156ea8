/**
 * The metrics exporter's moving parts without a resource process: the
 * collector asks each configured resource's control socket (here a fake
 * one) and treats "not up", a refusal, a wrong report version and an
 * unreadable configuration the way the endpoint promises; the HTTP server
 * answers /metrics with Prometheus' content type, 404/405 otherwise, and
 * shares one scrape between concurrent scrapers. Port 8009 on 127.0.0.1.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { NodeCollector } from '../../src/metrics/collect.js';
import { MetricsServer } from '../../src/metrics/server.js';
import { httpGet } from '../helpers/prometheus.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function tempRunDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-mt-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A fake resource process: answers every control request with `reply(verb)`. */
async function fakeResource(runDir: string, resource: string, node: string, reply: (verb: string) => { ok: boolean; exitCode: number; stdout: string; stderr: string }): Promise<void> {
  const server = net.createServer((socket) => {
    let pending = '';
    socket.on('data', (chunk) => {
      pending += chunk.toString();
      for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
        const request = JSON.parse(pending.slice(0, nl)) as { id: number; verb: string };
        pending = pending.slice(nl + 1);
        socket.write(`${JSON.stringify({ id: request.id, ...reply(request.verb) })}\n`);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path.join(runDir, `${resource}.${node}.sock`), resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
}

describe('NodeCollector', () => {
  it('gives each configured resource its report, or null when its process is not up, refuses, or reports another version', async () => {
    const runDir = tempRunDir();
    const env = { UDRBD_RUN_DIR: runDir, UDRBD_LOG_DIR: runDir };
    await fakeResource(runDir, 'mt2', 'alpha', () => ({ ok: true, exitCode: 0, stdout: JSON.stringify({ version: 1, resource: 'mt2' }), stderr: '' }));
    await fakeResource(runDir, 'mt3', 'alpha', () => ({ ok: false, exitCode: 1, stdout: '', stderr: "udrbd: unknown control request 'metrics'" }));
    await fakeResource(runDir, 'mt4', 'alpha', () => ({ ok: true, exitCode: 0, stdout: JSON.stringify({ version: 99 }), stderr: '' }));
    const problems: string[] = [];
    const collector = new NodeCollector({ node: 'alpha', env, listResources: () => ['mt4', 'mt2', 'mt3', 'mt5'], onProblem: (r, m) => problems.push(`${r}: ${m}`) });
    const scrape = await collector.collect();
    expect(scrape.map((r) => r.name)).toEqual(['mt2', 'mt3', 'mt4', 'mt5']);
    expect(scrape[0]!.report?.resource).toBe('mt2');
    expect(scrape.slice(1).map((r) => r.report)).toEqual([null, null, null]);
    expect(problems).toHaveLength(2); // mt5 is simply not up: not a problem
    expect(problems[0]).toContain("mt3: the resource process refused 'metrics' (1): udrbd: unknown control request 'metrics'");
    expect(problems[1]).toContain('mt4: metrics report version 99, this udrbdadm reads version 1');
  });

  it('keeps the last good resource list while the configuration cannot be read', async () => {
    const env = { UDRBD_RUN_DIR: tempRunDir() };
    let broken = false;
    const problems: string[] = [];
    const collector = new NodeCollector({
      node: 'alpha',
      env,
      listResources: () => {
        if (broken) throw new Error('/etc/drbd.conf:3: syntax error');
        return ['mt6'];
      },
      onProblem: (r, m) => problems.push(`${r}: ${m}`),
    });
    expect((await collector.collect()).map((r) => r.name)).toEqual(['mt6']);
    broken = true;
    expect((await collector.collect()).map((r) => r.name)).toEqual(['mt6']);
    expect(problems).toEqual(['*: cannot read the configuration, using the last good resource list: /etc/drbd.conf:3: syntax error']);
  });
});

describe('MetricsServer', () => {
  const address = { host: '127.0.0.1', port: 8009 };

  async function serve(scrape: () => Promise<string>): Promise<MetricsServer> {
    const server = new MetricsServer({ address, scrape });
    await server.listen();
    cleanups.push(() => server.close());
    return server;
  }

  it('answers GET /metrics and / with the text and Prometheus\' content type, other paths 404, other methods 405', async () => {
    await serve(async () => 'x 1\n');
    const ok = await httpGet('http://127.0.0.1:8009/metrics');
    expect(ok).toEqual({ status: 200, contentType: 'text/plain; version=0.0.4; charset=utf-8', body: 'x 1\n' });
    expect((await httpGet('http://127.0.0.1:8009/')).body).toBe('x 1\n');
    expect((await httpGet('http://127.0.0.1:8009/other')).status).toBe(404);
    const post = await new Promise<number>((resolve, reject) => {
      const req = http.request('http://127.0.0.1:8009/metrics', { method: 'POST', agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(post).toBe(405);
  });

  it('concurrent scrapes share one collection', async () => {
    let runs = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    await serve(async () => {
      runs++;
      await gate;
      return `runs ${runs}\n`;
    });
    const answers = Promise.all([1, 2, 3].map(() => httpGet('http://127.0.0.1:8009/metrics')));
    await new Promise((r) => setTimeout(r, 200));
    release();
    expect((await answers).map((a) => a.body)).toEqual(['runs 1\n', 'runs 1\n', 'runs 1\n']);
    expect((await httpGet('http://127.0.0.1:8009/metrics')).body).toBe('runs 2\n');
  });

  it('a failed scrape is a 500 with the reason', async () => {
    await serve(async () => {
      throw new Error('boom');
    });
    const answer = await httpGet('http://127.0.0.1:8009/metrics');
    expect(answer.status).toBe(500);
    expect(answer.body).toBe('scrape failed: boom\n');
  });

  it('a port in use is refused with the operator message', async () => {
    await serve(async () => '');
    const second = new MetricsServer({ address, scrape: async () => '' });
    await expect(second.listen()).rejects.toThrow("udrbdadm metrics: cannot listen on 127.0.0.1:8009: address already in use (is drbd-reactor's prometheus plugin or another 'udrbdadm metrics' running? pick another port with --listen)");
  });
});
