// Benchmark part `nbd`: the same four fio jobs (nbd engine over a unix
// socket) against nbdkit's `file` plugin (anchor, measured first in the same
// run), udrbd StandAlone (one node, primary --force, disconnected) and udrbd
// protocol C with a connected peer on loopback. The resource processes run
// with UDRBD_FRONTEND=none, so they serve NBD only (status --json
// frontend.nbdSocket). Same image size, page cache dropped before each job.
// Writes bench-results/nbd.json; cleans up processes and files on failure.
import path from 'node:path';
import fs from 'node:fs';
import { BenchCluster } from './cluster.mjs';
import { dropCaches, fio, hasCommand, row, runCleanups, sparseFile, startProcess, stopProcess, waitForSocket, workDir } from './lib.mjs';

const quick = process.argv.includes('--quick');
const MiB = 1024 * 1024;
/** Backing file per node; the NBD export is its data area (a little smaller, the same for every side). */
const DISK_BYTES = (quick ? 256 : 1024) * MiB;
const RUNTIME_S = quick ? 3 : 8;

/** fio jobs: name, options, which side to read, target ratios for StandAlone and peer (protocol C). */
function jobs(sizeBytes) {
  const size = Math.floor(sizeBytes / MiB) * MiB;
  return [
    { key: 'seqwrite', name: 'seq write 1 MiB, end fsync', side: 'write', targets: [1.0, 0.45], opts: { rw: 'write', bs: '1M', size, iodepth: 8, end_fsync: 1 } },
    { key: 'randwrite', name: '4 KiB random write, fsync each', side: 'write', targets: [0.8, 0.6], opts: { rw: 'randwrite', bs: '4k', size, iodepth: 1, fsync: 1, runtime: RUNTIME_S, time_based: true, randrepeat: 0 } },
    { key: 'seqread', name: 'seq read 1 MiB', side: 'read', targets: [1.0, undefined], opts: { rw: 'read', bs: '1M', size, iodepth: 8 } },
    { key: 'randread', name: '4 KiB random read, iodepth 16', side: 'read', targets: [0.8, undefined], opts: { rw: 'randread', bs: '4k', size, iodepth: 16, runtime: RUNTIME_S, time_based: true, randrepeat: 0 } },
  ];
}

function runJobs(socketPath, sizeBytes, label) {
  const results = {};
  for (const j of jobs(sizeBytes)) {
    dropCaches();
    const r = fio({ ioengine: 'nbd', uri: `nbd+unix:///?socket=${socketPath}`, ...j.opts }, j.side);
    results[j.key] = j.key.startsWith('seq') ? r.bwBytesPerSec : r.iops;
    console.log(`  ${label.padEnd(22)} ${j.name.padEnd(34)} ${j.key.startsWith('seq') ? `${(r.bwBytesPerSec / 1e6).toFixed(1)} MB/s` : `${Math.round(r.iops)} IOPS`}`);
  }
  return results;
}

async function udrbdSocket(cluster, node) {
  const s = await cluster.status(node);
  const sock = s.frontend?.nbdSocket;
  if (!sock) throw new Error(`${node}: status --json has no frontend.nbdSocket (frontend not wired?)`);
  await waitForSocket(sock);
  return sock;
}

async function main() {
  for (const tool of ['fio', 'nbdkit']) if (!hasCommand(tool)) throw new Error(`${tool} is required (apt-get install ${tool})`);
  const env = { UDRBD_FRONTEND: 'none' };

  // udrbd's export is the data area of the backing file; give nbdkit a file of that size.
  const standalone = new BenchCluster({ name: 'nbd-sa', sizeBytes: DISK_BYTES, minorBase: 80, env });
  await standalone.standalonePrimary('alpha');
  const saSock = await udrbdSocket(standalone, 'alpha');
  const dataBytes = (await standalone.status('alpha')).frontend?.sizeBytes ?? null;

  // ---- anchor: nbdkit file plugin over a unix socket, right before udrbd
  const dir = workDir('nbd-anchor');
  const img = sparseFile(path.join(dir, 'anchor.img'), DISK_BYTES);
  const sock = path.join(dir, 'nbdkit.sock');
  const nbdkit = startProcess('nbdkit', ['--foreground', '--unix', sock, '--exit-with-parent', 'file', `file=${img}`]);
  await waitForSocket(sock);
  const exportBytes = dataBytes ?? DISK_BYTES - 2 * MiB;
  console.log(`nbd jobs on a ${(exportBytes / MiB).toFixed(0)} MiB export`);
  const anchor = runJobs(sock, exportBytes, 'nbdkit file');
  await stopProcess(nbdkit);
  fs.rmSync(img, { force: true });

  const sa = runJobs(saSock, exportBytes, 'udrbd StandAlone');
  await standalone.destroy();

  // ---- protocol C with a connected peer: fresh pair, initial sync first, then the same jobs
  const pair = new BenchCluster({ name: 'nbd-c', sizeBytes: DISK_BYTES, minorBase: 82, env });
  await pair.admOk('alpha', ['up', pair.resource]);
  await pair.admOk('beta', ['up', pair.resource]);
  await pair.waitStatus('alpha', 'Connected', (s) => s.cstate === 'Connected', 30_000);
  await pair.admOk('alpha', ['primary', '--force', pair.resource]);
  await pair.waitStatus('alpha', 'UpToDate/UpToDate', (s) => s.cstate === 'Connected' && s.disk === 'UpToDate' && s.peerDisk === 'UpToDate', 120_000);
  const cSock = await udrbdSocket(pair, 'alpha');
  const c = runJobs(cSock, exportBytes, 'udrbd protocol C');
  await pair.destroy();

  const rows = [];
  for (const j of jobs(exportBytes)) {
    const unit = j.key.startsWith('seq') ? 'MB/s' : 'IOPS';
    rows.push(row({ job: `NBD ${j.name}`, anchor: 'nbdkit file', anchorValue: anchor[j.key], variant: 'udrbd StandAlone', value: sa[j.key], unit, target: j.targets[0] }));
    rows.push(row({ job: `NBD ${j.name}`, anchor: 'nbdkit file', anchorValue: anchor[j.key], variant: 'udrbd protocol C + peer', value: c[j.key], unit, target: j.targets[1] }));
  }
  fs.mkdirSync('bench-results', { recursive: true });
  fs.writeFileSync('bench-results/nbd.json', JSON.stringify({ when: new Date().toISOString(), quick, exportBytes, anchor, standalone: sa, protocolC: c, rows }, null, 2) + '\n');
}

try {
  await main();
} catch (err) {
  console.error(`nbd bench failed: ${err.stack ?? err}`);
  process.exitCode = 1;
} finally {
  await runCleanups();
}
