/**
 * `udrbdadm metrics` on a live pair: each node's endpoint (alpha on
 * 127.0.0.1:8002, beta on 127.0.0.2:8003) parses with a real Prometheus text
 * parser, every family has HELP and TYPE, the label sets are drbd-reactor's,
 * the byte counters and latency histograms move with I/O written through
 * the diagnostic io.write / io.flush verbs, and a resource that is down is
 * absent. The listen-address rule is tested without binding: a non-loopback
 * address is refused unless remote is allowed explicitly.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, UDRBDADM, type NodeName } from '../helpers/cluster.js';
import { byName, hasSample, histogram, httpGet, parsePrometheus, sample, type ParsedFamily } from '../helpers/prometheus.js';

const KiB = 1024;
const REPLICATION_PORT = 8001;
const LISTEN: Record<NodeName, string> = { alpha: '127.0.0.1:8002', beta: '127.0.0.2:8003' };
const EXPORTER_START_TIMEOUT_MS = 15_000;

let cluster: Cluster;
const exporters: ChildProcess[] = [];

/** Starts `udrbdadm metrics` for `node`; resolves once it says it is serving, rejects with its output if it exits. */
function startExporter(c: Cluster, node: NodeName, args: string[]): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [UDRBDADM, '-c', c.configPaths[node], '--node', node, 'metrics', ...args], { env: c.env, stdio: ['ignore', 'pipe', 'pipe'] });
    exporters.push(child);
    let stderr = '';
    const timer = setTimeout(() => reject(new Error(`udrbdadm metrics ${args.join(' ')} did not start within ${EXPORTER_START_TIMEOUT_MS} ms: ${stderr}`)), EXPORTER_START_TIMEOUT_MS);
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.includes('udrbdadm metrics: serving http://')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`udrbdadm metrics ${args.join(' ')} exited ${code}: ${stderr}`));
    });
  });
}

async function stopExporter(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

interface Scrape {
  text: string;
  families: ParsedFamily[];
}

async function scrape(node: NodeName): Promise<Scrape> {
  const answer = await httpGet(`http://${LISTEN[node]}/metrics`);
  expect(answer.status).toBe(200);
  expect(answer.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
  return { text: answer.body, families: parsePrometheus(answer.body) };
}

const res = { name: 'mt0' };

describe('udrbdadm metrics on a connected pair', () => {
  beforeAll(async () => {
    cluster = new Cluster({ resource: 'mt0', port: REPLICATION_PORT, diskSizeBytes: 32 * 1024 * KiB });
    const c = cluster;
    await c.upSynced();
    await startExporter(c, 'alpha', ['--listen', LISTEN.alpha]);
    await startExporter(c, 'beta', ['--listen', LISTEN.beta]);
  });

  afterAll(async () => {
    for (const child of exporters) await stopExporter(child);
    await cluster?.destroy();
  });

  it('serves text a real Prometheus parser reads, with HELP and TYPE on every family and drbd-reactor\'s families and label sets', async () => {
    for (const node of ['alpha', 'beta'] as const) {
      const { families } = await scrape(node);
      for (const f of families) {
        expect(f.help, `${node} ${f.name} HELP`).not.toBe('');
        expect(f.type, `${node} ${f.name} TYPE`).not.toBe('UNTYPED');
      }
      const names = byName(families);
      // drbd-reactor's example Grafana dashboard picks its instances by label_values(drbdreactor_up, instance)
      // and queries drbd_resource_resources, drbd_peerdevice_outofsync_bytes, drbd_connection_state,
      // drbd_device_unintentionaldiskless, drbd_device_quorum, drbd_device_{written,read}_bytes_total.
      expect(sample(families, 'drbdreactor_up')).toBe(1);
      for (const family of [
        'drbd_device_unintentionaldiskless', 'drbd_resource_role', 'drbd_resource_maypromote', 'drbd_resource_promotionscore', 'drbd_connection_state', 'drbd_device_state',
        'drbd_device_quorum', 'drbd_peerdevice_outofsync_bytes', 'drbd_device_written_bytes_total', 'drbd_device_read_bytes_total',
        'drbd_device_alwrites_total', 'drbd_device_bmwrites_total', 'drbd_device_upperpending', 'drbd_device_lowerpending',
        'drbd_connection_congested', 'drbd_connection_apinflight_bytes', 'drbd_connection_rsinflight_bytes', 'drbd_peerdevice_sent_bytes',
        'drbd_peerdevice_received_bytes', 'udrbd_disk_write_duration_seconds', 'udrbd_disk_flush_duration_seconds',
        'udrbd_peer_write_duration_seconds', 'udrbd_peer_flush_duration_seconds', 'udrbd_peerdevice_resync_speed_bytes_per_second',
        'udrbd_connection_splitbrains_total', 'udrbd_device_requests_inflight',
      ]) {
        expect(names.has(family), `${node} has ${family}`).toBe(true);
      }
      const keys = (family: string): string[] => Object.keys(names.get(family)!.metrics[0]!.labels ?? {}).sort();
      expect(keys('drbd_resource_role')).toEqual(['drbd_resource_role', 'name']);
      expect(keys('drbd_connection_state')).toEqual(['conn_name', 'drbd_connection_state', 'name', 'peer_node_id']);
      expect(keys('drbd_device_state')).toEqual(['drbd_device_state', 'minor', 'name', 'volume']);
      expect(keys('drbd_peerdevice_outofsync_bytes')).toEqual(['conn_name', 'name', 'peer_node_id', 'volume']);
      expect(keys('drbd_device_written_bytes_total')).toEqual(['minor', 'name', 'volume']);
      expect(names.get('drbd_device_written_bytes_total')!.type).toBe('COUNTER');
      expect(names.get('udrbd_disk_write_duration_seconds')!.type).toBe('HISTOGRAM');
      expect(sample(families, 'drbd_resource_resources')).toBe(1);
    }
    const alpha = (await scrape('alpha')).families;
    const beta = (await scrape('beta')).families;
    expect(sample(alpha, 'drbd_resource_role', { ...res, drbd_resource_role: 'Primary' })).toBe(1);
    expect(sample(beta, 'drbd_resource_role', { ...res, drbd_resource_role: 'Secondary' })).toBe(1);
    expect(sample(alpha, 'drbd_connection_state', { ...res, conn_name: 'beta', peer_node_id: '1', drbd_connection_state: 'Connected' })).toBe(1);
    expect(sample(beta, 'drbd_connection_state', { ...res, conn_name: 'alpha', drbd_connection_state: 'Connected' })).toBe(1);
    expect(sample(alpha, 'drbd_device_state', { ...res, volume: '0', minor: '10', drbd_device_state: 'UpToDate' })).toBe(1);
    expect(sample(beta, 'drbd_device_state', { ...res, volume: '0', minor: '11', drbd_device_state: 'UpToDate' })).toBe(1);
    expect(sample(alpha, 'drbd_peerdevice_outofsync_bytes', res)).toBe(0);
    expect(sample(alpha, 'drbd_device_size_bytes', res)).toBe((await cluster.statusJson('alpha')).sizeBytes);
    // Primary: may not promote again; the Secondary may not while the peer is Primary (no allow-two-primaries)
    expect(sample(alpha, 'drbd_resource_maypromote', res)).toBe(0);
    expect(sample(beta, 'drbd_resource_maypromote', res)).toBe(0);
    // the initial full sync was written on beta's disk and sent by alpha
    expect(sample(beta, 'drbd_device_written_bytes_total', res)).toBeGreaterThanOrEqual(cluster.dataSizeBytes('beta'));
    expect(sample(alpha, 'drbd_peerdevice_sent_bytes', res)).toBeGreaterThanOrEqual(cluster.dataSizeBytes('alpha'));
  });

  it('the byte counters and the latency histograms move with writes and flushes', async () => {
    const c = cluster;
    const writes = 8;
    const writeBytes = 64 * KiB;
    const before = { alpha: await scrape('alpha'), beta: await scrape('beta') };
    for (let i = 0; i < writes; i++) await c.write('alpha', (1024 + i * 64) * KiB, crypto.randomBytes(writeBytes));
    const client = await c.client('alpha');
    expect((await client.request('io.flush')).ok).toBe(true);
    const after = { alpha: await scrape('alpha'), beta: await scrape('beta') };
    const delta = (node: NodeName, family: string): number => sample(after[node].families, family, res) - sample(before[node].families, family, res);
    const histDelta = (node: NodeName, family: string): number => histogram(after[node].text, family, res).count - histogram(before[node].text, family, res).count;

    expect(delta('alpha', 'drbd_device_written_bytes_total')).toBe(writes * writeBytes);
    expect(delta('alpha', 'drbd_peerdevice_sent_bytes')).toBe(writes * writeBytes);
    expect(delta('beta', 'drbd_peerdevice_received_bytes')).toBe(writes * writeBytes);
    expect(delta('beta', 'drbd_device_written_bytes_total')).toBe(writes * writeBytes);
    // the first application write into an extent (4 MiB) not in the activity log writes an AL transaction
    expect(delta('alpha', 'drbd_device_alwrites_total')).toBeGreaterThan(0);
    // one local write and one WriteAck (protocol C) per application write; one local flush
    expect(histDelta('alpha', 'udrbd_disk_write_duration_seconds')).toBe(writes);
    expect(histDelta('alpha', 'udrbd_peer_write_duration_seconds')).toBe(writes);
    expect(histDelta('alpha', 'udrbd_disk_flush_duration_seconds')).toBe(1);
    // the Secondary wrote each mirrored write and flushed for the Barriers
    expect(histDelta('beta', 'udrbd_disk_write_duration_seconds')).toBe(writes);
    expect(histDelta('beta', 'udrbd_disk_flush_duration_seconds')).toBeGreaterThan(0);
    const h = histogram(after.alpha.text, 'udrbd_peer_write_duration_seconds', res);
    expect(h.buckets['+Inf']).toBe(h.count);
    expect(h.sum).toBeGreaterThan(0);
    // nothing in flight once the requests completed
    expect(sample(after.alpha.families, 'drbd_device_upperpending', res)).toBe(0);
    expect(sample(after.alpha.families, 'drbd_device_lowerpending', res)).toBe(0);
    expect(sample(after.alpha.families, 'drbd_connection_apinflight_bytes', res)).toBe(0);
  });

  it('the peer flush histogram counts a flush that waited for the peer\'s BarrierAck', async () => {
    const c = cluster;
    const client = await c.client('alpha');
    const before = histogram((await scrape('alpha')).text, 'udrbd_peer_flush_duration_seconds', res).count;
    // A write and a flush sent together: the flush finds the write's epoch not yet acknowledged
    // (the peer must fdatasync first) and waits for the BarrierAck. Bounded retries, in case
    // the ack wins the race on an idle machine.
    let after = before;
    for (let round = 0; round < 20 && after === before; round++) {
      const data = crypto.randomBytes(4 * KiB).toString('base64');
      const [w, f] = await Promise.all([client.request('io.write', { offsetBytes: 2048 * KiB, base64: data }), client.request('io.flush')]);
      expect(w.ok && f.ok).toBe(true);
      after = histogram((await scrape('alpha')).text, 'udrbd_peer_flush_duration_seconds', res).count;
    }
    expect(after).toBeGreaterThan(before);
  });

  it('refuses to start a second exporter on a port in use, saying so (exit 10)', async () => {
    const r = await cluster.adm('alpha', ['metrics', '--listen', LISTEN.alpha]);
    expect(r.exitCode).toBe(10);
    expect(r.stderr).toContain(`udrbdadm metrics: cannot listen on ${LISTEN.alpha}: address already in use`);
  });

  it('a resource that is down is absent from the drbd families; its peer shows Connecting', async () => {
    const c = cluster;
    await c.admOk('beta', ['down', c.resource]);
    await c.waitState('alpha', 'cstate', 'WFConnection');
    const beta = (await scrape('beta')).families;
    expect(sample(beta, 'drbd_resource_resources')).toBe(0);
    expect(hasSample(beta, 'drbd_resource_role', res)).toBe(false);
    expect(hasSample(beta, 'drbd_device_state', res)).toBe(false);
    expect(sample(beta, 'udrbd_resource_up', res)).toBe(0);
    const alpha = (await scrape('alpha')).families;
    expect(sample(alpha, 'drbd_connection_state', { ...res, drbd_connection_state: 'Connecting' })).toBe(1);
    expect(sample(alpha, 'drbd_connection_state', { ...res, drbd_connection_state: 'Connected' })).toBe(0);
    expect(sample(alpha, 'udrbd_resource_up', res)).toBe(1);
  });

  describe('listen address', () => {
    it('refuses a non-loopback address without explicit configuration (exit 10, binds nothing)', async () => {
      for (const listen of ['0.0.0.0:8004', '10.11.12.13:8004', '[::]:8004']) {
        const r = await cluster.adm('alpha', ['metrics', '--listen', listen]);
        expect(r.exitCode, listen).toBe(10);
        expect(r.stderr).toContain(`udrbdadm metrics: refusing to listen on ${listen}: it is not a loopback address (127.0.0.0/8 or ::1), and the metrics endpoint has no authentication`);
        expect(r.stderr).toContain('pass --allow-remote (or set UDRBD_METRICS_ALLOW_REMOTE=1)');
      }
    });

    it('accepts it with --allow-remote or UDRBD_METRICS_ALLOW_REMOTE=1 (shown with -d, which binds nothing)', async () => {
      const flag = await cluster.adm('alpha', ['-d', 'metrics', '--allow-remote', '--listen', '0.0.0.0:8004']);
      expect(flag.exitCode).toBe(0);
      expect(flag.stdout).toBe('would serve http://0.0.0.0:8004/metrics for node alpha, resources: mt0\n');
      const saved = cluster.env.UDRBD_METRICS_ALLOW_REMOTE;
      cluster.env.UDRBD_METRICS_ALLOW_REMOTE = '1';
      try {
        const env = await cluster.adm('alpha', ['-d', 'metrics', '--listen', '0.0.0.0:8004']);
        expect(env.exitCode).toBe(0);
        expect(env.stdout).toContain('would serve http://0.0.0.0:8004/metrics');
      } finally {
        if (saved === undefined) delete cluster.env.UDRBD_METRICS_ALLOW_REMOTE;
        else cluster.env.UDRBD_METRICS_ALLOW_REMOTE = saved;
      }
    });
  });
});

describe('udrbdadm metrics --once through a resync and a split brain', () => {
  let pair: Cluster | undefined;
  const mt1 = { name: 'mt1' };

  afterAll(async () => {
    await pair?.destroy();
  });

  async function once(c: Cluster, node: NodeName): Promise<ParsedFamily[]> {
    return parsePrometheus(await c.admOk(node, ['metrics', '--once']));
  }

  it('shows the resync speed and the out-of-sync bytes while syncing, then counts a split brain left unresolved', async () => {
    // 16 MiB at 4 MiB/s: the initial full sync takes about 4 s
    pair = new Cluster({ resource: 'mt1', port: 8006, diskSizeBytes: 16 * 1024 * KiB, disk: ['c-plan-ahead 0;', 'resync-rate 4M;'] });
    const c = pair;
    await c.admOk('alpha', ['up', c.resource]);
    await c.admOk('beta', ['up', c.resource]);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.admOk('alpha', ['primary', '--force', c.resource]);
    await c.waitState('alpha', 'cstate', 'SyncSource');
    await new Promise((r) => setTimeout(r, 1_500));
    const source = await once(c, 'alpha');
    const target = await once(c, 'beta');
    expect(sample(source, 'drbd_connection_state', { ...mt1, drbd_connection_state: 'Connected' })).toBe(1);
    expect(sample(target, 'drbd_device_state', { ...mt1, drbd_device_state: 'Inconsistent' })).toBe(1);
    expect(sample(source, 'drbd_peerdevice_outofsync_bytes', mt1)).toBeGreaterThan(0);
    expect(sample(source, 'udrbd_peerdevice_resync_speed_bytes_per_second', mt1)).toBeGreaterThan(0);
    expect(sample(target, 'udrbd_peerdevice_resync_speed_bytes_per_second', mt1)).toBeGreaterThan(0);
    // rate-limited to 4 MiB/s (with slack for the averaging window)
    expect(sample(target, 'udrbd_peerdevice_resync_speed_bytes_per_second', mt1)).toBeLessThan(12 * 1024 * KiB);
    expect(sample(source, 'udrbd_connection_splitbrains_total', mt1)).toBe(0);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected');
    expect(sample(await once(c, 'alpha'), 'udrbd_peerdevice_resync_speed_bytes_per_second', mt1)).toBe(0);

    // split: both Primary and both write while disconnected; the default after-sb-2pri disconnect leaves it unresolved
    await c.admOk('alpha', ['disconnect', c.resource]);
    await c.admOk('beta', ['disconnect', c.resource]);
    await c.admOk('beta', ['primary', c.resource]);
    await c.write('alpha', 0, crypto.randomBytes(64 * KiB));
    await c.write('beta', 1024 * KiB, crypto.randomBytes(64 * KiB));
    await c.admOk('alpha', ['connect', c.resource]);
    await c.admOk('beta', ['connect', c.resource]);
    await c.waitFor('split brain found on both nodes', () => c.logText('alpha').includes('Split-Brain detected but unresolved') && c.logText('beta').includes('Split-Brain detected but unresolved'));
    await c.waitState('alpha', 'cstate', 'StandAlone');
    await c.waitState('beta', 'cstate', 'StandAlone');
    for (const node of ['alpha', 'beta'] as const) {
      const f = await once(c, node);
      expect(sample(f, 'udrbd_connection_splitbrains_total', mt1), node).toBe(1);
      expect(sample(f, 'udrbd_connection_splitbrains_unresolved_total', mt1), node).toBe(1);
      expect(sample(f, 'drbd_connection_state', { ...mt1, drbd_connection_state: 'StandAlone' }), node).toBe(1);
      expect(sample(f, 'drbd_peerdevice_outofsync_bytes', mt1), node).toBeGreaterThan(0);
    }
  });
});
