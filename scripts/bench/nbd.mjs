// Benchmark part `nbd`: the same four fio jobs (nbd engine over a unix
// socket) against nbdkit's `file` plugin (anchor), udrbd StandAlone (one
// node, primary --force, disconnected) and udrbd protocol C with a connected
// peer on loopback. All three run at once and every job is measured in
// interleaved rounds (nbdkit, StandAlone, protocol C, then StandAlone,
// protocol C, nbdkit: the order rotates each round, lib.mjs rotated()): on this
// shared 2-core VM a disk's fsync latency drifts by ±30% within a minute, and
// interleaving puts every side under the same drift; the table reports the
// median of the rounds. Every image is written once before measuring (like
// the LV a DRBD user has), so first-touch block allocation in the host file
// system does not fall on whichever side happens to run first. The resource
// processes run with UDRBD_FRONTEND=none (NBD only: status --json
// frontend.nbdSocket). Page cache dropped before each read job; write jobs
// start after a sync from a warm cache (lib.mjs settleWrites says why). The
// 4 KiB write+fsync rounds also run ideal-mirror.c (single copy and a
// two-process mirror over TCP loopback, nothing but syscalls): what a
// mirror with no software overhead scores here, in the same rounds. Writes
// bench-results/nbd.json; cleans up processes and files on failure.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BenchCluster } from './cluster.mjs';
import { dropCaches, settleWrites, fio, hasCommand, median, prefillZeros, rotated, row, runCleanups, sparseFile, startProcess, stopProcess, waitForSocket, workDir } from './lib.mjs';

const quick = process.argv.includes('--quick');
/** Written through each side once before the measured rounds (see the warm-up below). */
const WARMUP_BYTES = 256 * 1024 * 1024;
const MiB = 1024 * 1024;
/** Backing file per node; the NBD export is its data area (a little smaller, the same for every side). */
const DISK_BYTES = (quick ? 256 : 1024) * MiB;
const RUNTIME_S = quick ? 2 : 4;
const ROUNDS = quick ? 1 : 5;
/** ideal-mirror's replication port on 127.0.0.2 (the clusters use 7891). */
const IDEAL_PORT = 7893;
const IDEAL_SOURCE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ideal-mirror.c');

/** Compiles ideal-mirror.c into `dir`; returns a runner: (mode) => IOPS over RUNTIME_S on files p and s. */
function idealMirror(dir, p, s) {
  const exe = path.join(dir, 'ideal-mirror');
  execFileSync('cc', ['-O2', '-o', exe, IDEAL_SOURCE]);
  return (mode) => JSON.parse(execFileSync(exe, [mode, String(RUNTIME_S), p, s, String(IDEAL_PORT)], { encoding: 'utf8', timeout: (RUNTIME_S + 70) * 1000 })).iops;
}

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

async function udrbdSocket(cluster, node) {
  const s = await cluster.status(node);
  const sock = s.frontend?.nbdSocket;
  if (!sock) throw new Error(`${node}: status --json has no frontend.nbdSocket (frontend not wired?)`);
  await waitForSocket(sock);
  return sock;
}

async function main() {
  for (const tool of ['fio', 'nbdkit', 'cc']) if (!hasCommand(tool)) throw new Error(`${tool} is required (apt-get install ${tool})`);
  const env = { UDRBD_FRONTEND: 'none' };

  // ---- udrbd StandAlone
  const standalone = new BenchCluster({ name: 'nbd-sa', sizeBytes: DISK_BYTES, minorBase: 80, env });
  const dataBytes = standalone.dataBytes;
  prefillZeros(standalone.disks.alpha, dataBytes);
  await standalone.standalonePrimary('alpha');
  const saSock = await udrbdSocket(standalone, 'alpha');
  const exportBytes = (await standalone.status('alpha')).frontend?.sizeBytes ?? dataBytes;

  // ---- udrbd protocol C with a connected peer: initial sync first (it writes the peer's whole data area)
  const pair = new BenchCluster({ name: 'nbd-c', sizeBytes: DISK_BYTES, minorBase: 82, env });
  prefillZeros(pair.disks.alpha, dataBytes);
  await pair.admOk('alpha', ['up', pair.resource]);
  await pair.admOk('beta', ['up', pair.resource]);
  await pair.waitStatus('alpha', 'Connected', (s) => s.cstate === 'Connected', 30_000);
  await pair.admOk('alpha', ['primary', '--force', pair.resource]);
  await pair.waitStatus('alpha', 'UpToDate/UpToDate', (s) => s.cstate === 'Connected' && s.disk === 'UpToDate' && s.peerDisk === 'UpToDate', 120_000);
  const cSock = await udrbdSocket(pair, 'alpha');

  // ---- anchor: nbdkit file plugin over a unix socket, on a file of the export's size
  const dir = workDir('nbd-anchor');
  const img = sparseFile(path.join(dir, 'anchor.img'), exportBytes);
  prefillZeros(img, exportBytes);
  const sock = path.join(dir, 'nbdkit.sock');
  const nbdkit = startProcess('nbdkit', ['--foreground', '--unix', sock, '--exit-with-parent', 'file', `file=${img}`]);
  await waitForSocket(sock);

  const sides = [
    { key: 'anchor', label: 'nbdkit file', sock },
    { key: 'standalone', label: 'udrbd StandAlone', sock: saSock },
    { key: 'protocolC', label: 'udrbd protocol C', sock: cSock },
  ];
  // ---- the 4 KiB write+fsync job's reference: ideal-mirror on two more files of the export's size
  const idealFiles = ['ideal-p.img', 'ideal-s.img'].map((f) => sparseFile(path.join(dir, f), exportBytes));
  for (const f of idealFiles) prefillZeros(f, exportBytes);
  const ideal = idealMirror(dir, idealFiles[0], idealFiles[1]);
  const idealSides = [
    { key: 'idealSingle', label: 'ideal single copy', ideal: 'single' },
    { key: 'idealMirror', label: 'ideal mirror', ideal: 'mirror' },
  ];
  const sidesFor = (j) => (j.key === 'randwrite' ? [...sides, ...idealSides] : sides);
  // Warm-up, not measured: one short sequential write through every side. A resource process's
  // first I/O also compiles its hot paths and fills its buffer pools: the first measured round of
  // both udrbd sides used to run 25-35% below the rest (nbdkit's ~10%).
  for (const s of sides) {
    settleWrites();
    fio({ ioengine: 'nbd', uri: `nbd+unix:///?socket=${s.sock}`, rw: 'write', bs: '1M', iodepth: 8, size: Math.min(WARMUP_BYTES, exportBytes) }, 'write');
  }
  console.log(`nbd jobs on a ${(exportBytes / MiB).toFixed(0)} MiB export, ${ROUNDS} interleaved round(s) each`);
  const runs = Object.fromEntries([...sides, ...idealSides].map((s) => [s.key, {}]));
  for (const j of jobs(exportBytes)) {
    for (const s of sidesFor(j)) runs[s.key][j.key] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of rotated(sidesFor(j), round)) {
        if (j.side === 'read') dropCaches();
        else settleWrites();
        if (s.ideal !== undefined) {
          runs[s.key][j.key].push(ideal(s.ideal));
          continue;
        }
        const r = fio({ ioengine: 'nbd', uri: `nbd+unix:///?socket=${s.sock}`, ...j.opts }, j.side);
        runs[s.key][j.key].push(j.key.startsWith('seq') ? r.bwBytesPerSec : r.iops);
      }
    }
    for (const s of sidesFor(j)) {
      const v = runs[s.key][j.key];
      const show = (x) => (j.key.startsWith('seq') ? `${(x / 1e6).toFixed(1)} MB/s` : `${Math.round(x)} IOPS`);
      console.log(`  ${s.label.padEnd(18)} ${j.name.padEnd(32)} median ${show(median(v))}  (rounds: ${v.map(show).join(', ')})`);
    }
  }
  await stopProcess(nbdkit);
  await standalone.destroy();
  await pair.destroy();

  const value = (side, key) => median(runs[side][key]);
  const rows = [];
  for (const j of jobs(exportBytes)) {
    const unit = j.key.startsWith('seq') ? 'MB/s' : 'IOPS';
    rows.push(row({ job: `NBD ${j.name}`, anchor: 'nbdkit file', anchorValue: value('anchor', j.key), variant: 'udrbd StandAlone', value: value('standalone', j.key), unit, target: j.targets[0] }));
    rows.push(row({ job: `NBD ${j.name}`, anchor: 'nbdkit file', anchorValue: value('anchor', j.key), variant: 'udrbd protocol C + peer', value: value('protocolC', j.key), unit, target: j.targets[1] }));
    if (j.key === 'randwrite') {
      // ideal-mirror.c: the same loop with nothing but syscalls (see the header).
      rows.push(
        row({
          job: `NBD ${j.name}`,
          anchor: 'nbdkit file',
          anchorValue: value('anchor', j.key),
          variant: 'ideal mirror (C, no NBD)',
          value: value('idealMirror', j.key),
          unit,
          note: 'what a two-process mirror with no software overhead scores against the same anchor',
        }),
        row({
          job: '4 KiB write+fsync, C programs',
          anchor: 'ideal single copy',
          anchorValue: value('idealSingle', j.key),
          variant: 'ideal mirror',
          value: value('idealMirror', j.key),
          unit,
          note: "what the second copy costs on this machine (peer wake-ups, two flushes on one disk)",
        }),
      );
    }
  }
  fs.mkdirSync('bench-results', { recursive: true });
  fs.writeFileSync('bench-results/nbd.json', JSON.stringify({ when: new Date().toISOString(), quick, exportBytes, rounds: ROUNDS, runs, rows }, null, 2) + '\n');
}

try {
  await main();
} catch (err) {
  console.error(`nbd bench failed: ${err.stack ?? err}`);
  process.exitCode = 1;
} finally {
  await runCleanups();
}
