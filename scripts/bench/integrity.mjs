// Benchmark part `integrity`: what data-integrity-alg costs on protocol C
// sequential writes. Three connected pairs run at once — without a digest
// (the anchor), with crc32c and with sha1 — and the same fio job (nbd
// engine over the Primary's unix socket, 1 MiB writes, iodepth 8, end
// fsync) is measured on each in interleaved rounds whose order rotates
// (lib.mjs rotated(): the VM's disk drifts within a minute; every side sees
// the same drift); the table reports medians. Each pair is fully synced
// first (that sync already carries the digests) and warmed up with one
// unmeasured write pass. Run it alone with `npm run bench -- --only=integrity`.
// Writes bench-results/integrity.json; cleans up processes and files on failure.
import fs from 'node:fs';
import { BenchCluster } from './cluster.mjs';
import { fio, hasCommand, median, prefillZeros, rotated, row, runCleanups, settleWrites, waitForSocket } from './lib.mjs';

const quick = process.argv.includes('--quick');
const MiB = 1024 * 1024;
const DISK_BYTES = (quick ? 128 : 512) * MiB;
const ROUNDS = quick ? 1 : 5;
const JOB = 'NBD seq write 1 MiB, end fsync, protocol C';
/** Each pair listens on its own port and minors (the integration tests of data-integrity-alg use 9141-9153). */
const SIDES = [
  { key: 'none', label: 'no data-integrity-alg', net: [], port: 9161, minorBase: 264 },
  { key: 'crc32c', label: 'data-integrity-alg crc32c', net: ['data-integrity-alg crc32c;'], port: 9163, minorBase: 266 },
  { key: 'sha1', label: 'data-integrity-alg sha1', net: ['data-integrity-alg sha1;'], port: 9165, minorBase: 268 },
];

/** A connected, synced protocol C pair with alpha Primary; resolves its NBD socket. */
async function syncedPair(side) {
  const pair = new BenchCluster({ name: `int-${side.key}`, sizeBytes: DISK_BYTES, minorBase: side.minorBase, port: side.port, net: side.net, env: { UDRBD_FRONTEND: 'none' } });
  prefillZeros(pair.disks.alpha, pair.dataBytes);
  prefillZeros(pair.disks.beta, pair.dataBytes);
  await pair.admOk('alpha', ['up', pair.resource]);
  await pair.admOk('beta', ['up', pair.resource]);
  await pair.waitStatus('alpha', 'Connected', (s) => s.cstate === 'Connected', 30_000);
  await pair.admOk('alpha', ['primary', '--force', pair.resource]);
  await pair.waitStatus('alpha', 'UpToDate/UpToDate', (s) => s.cstate === 'Connected' && s.disk === 'UpToDate' && s.peerDisk === 'UpToDate', 120_000);
  const status = await pair.status('alpha');
  const sock = status.frontend?.nbdSocket;
  if (!sock) throw new Error(`${side.key}: status --json has no frontend.nbdSocket`);
  await waitForSocket(sock);
  return { pair, sock, exportBytes: status.frontend?.sizeBytes ?? pair.dataBytes };
}

async function main() {
  if (!hasCommand('fio')) throw new Error('fio is required (apt-get install fio)');
  const ready = [];
  for (const side of SIDES) ready.push({ ...side, ...(await syncedPair(side)) });
  const size = Math.floor(Math.min(...ready.map((s) => s.exportBytes)) / MiB) * MiB;
  const job = { rw: 'write', bs: '1M', size, iodepth: 8, end_fsync: 1 };
  for (const s of ready) {
    settleWrites();
    fio({ ioengine: 'nbd', uri: `nbd+unix:///?socket=${s.sock}`, ...job }, 'write'); // warm-up, not measured
  }
  console.log(`${JOB}: ${size / MiB} MiB per run, ${ROUNDS} interleaved round(s)`);
  const runs = Object.fromEntries(ready.map((s) => [s.key, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const s of rotated(ready, round)) {
      settleWrites();
      runs[s.key].push(fio({ ioengine: 'nbd', uri: `nbd+unix:///?socket=${s.sock}`, ...job }, 'write').bwBytesPerSec);
    }
  }
  for (const s of ready) {
    const show = (x) => `${(x / 1e6).toFixed(1)} MB/s`;
    console.log(`  ${s.label.padEnd(26)} median ${show(median(runs[s.key]))}  (rounds: ${runs[s.key].map(show).join(', ')})`);
    // A link that dropped mid-run (a digest failure reconnects) would make the figure meaningless.
    if ((await s.pair.status('beta')).cstate !== 'Connected') throw new Error(`${s.key}: the pair lost its connection during the run`);
  }
  for (const s of ready) await s.pair.destroy();

  const anchor = median(runs.none);
  const rows = ready
    .filter((s) => s.key !== 'none')
    .map((s) =>
      row({
        job: JOB,
        anchor: 'udrbd, no data-integrity-alg',
        anchorValue: anchor,
        variant: `udrbd, ${s.label}`,
        value: median(runs[s.key]),
        unit: 'MB/s',
        note: 'digest computed by the Primary and recomputed by the Secondary for every 1 MiB Data frame',
      }),
    );
  fs.mkdirSync('bench-results', { recursive: true });
  fs.writeFileSync('bench-results/integrity.json', JSON.stringify({ when: new Date().toISOString(), quick, rounds: ROUNDS, sizeBytes: size, runs, rows }, null, 2) + '\n');
}

try {
  await main();
} catch (err) {
  process.stderr.write(`bench part integrity failed: ${err.stack ?? err.message}\n`);
  process.exitCode = 1;
} finally {
  await runCleanups();
}
