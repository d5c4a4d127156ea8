// Benchmark part `rss`: the resource process's peak RSS (VmHWM) for a 1 TiB
// sparse volume (up, primary --force StandAlone, writes spread over the whole
// volume so bitmap and activity log are touched everywhere), and CPU seconds
// (utime + stime from /proc/PID/stat) per GiB written through NBD with fio,
// side by side with nbdkit's file plugin doing the same job on a 1 TiB sparse
// file (anchor, same run). The resource process runs with UDRBD_FRONTEND=none
// (NBD only). Writes
// bench-results/rss.json; stops the process and removes the file on failure.
import fs from 'node:fs';
import { computeLayout } from '../../dist/meta/superblock.js';
import { BenchCluster } from './cluster.mjs';
import path from 'node:path';
import { fio, hasCommand, row, runCleanups, sparseFile, startProcess, stopProcess, waitForSocket, workDir } from './lib.mjs';

const quick = process.argv.includes('--quick');
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
const RSS_TARGET_MIB = 150;
/** Bytes written sequentially through NBD for the CPU figure. */
const CPU_WRITE_BYTES = (quick ? 0.5 : 2) * GiB;
/** Scattered 1 MiB writes across the 1 TiB volume (one per 4 MiB AL extent group far apart). */
const SCATTER_WRITES = quick ? 256 : 1024;

/** utime + stime of `pid`, seconds. */
function cpuSecondsOf(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Anchor: nbdkit's file plugin, the same sequential job on a 1 TiB sparse file; CPU s/GiB. */
async function nbdkitCpuPerGiB() {
  const dir = workDir('rss-anchor');
  const img = sparseFile(path.join(dir, 'anchor.img'), TiB);
  const sock = path.join(dir, 'nbdkit.sock');
  const nbdkit = startProcess('nbdkit', ['--foreground', '--unix', sock, '--exit-with-parent', 'file', `file=${img}`]);
  await waitForSocket(sock);
  const cpu0 = cpuSecondsOf(nbdkit.pid);
  fio({ ioengine: 'nbd', uri: `nbd+unix:///?socket=${sock}`, rw: 'write', bs: '1M', size: CPU_WRITE_BYTES, iodepth: 8, end_fsync: 1 }, 'write');
  const perGiB = (cpuSecondsOf(nbdkit.pid) - cpu0) / (CPU_WRITE_BYTES / GiB);
  await stopProcess(nbdkit);
  fs.rmSync(img, { force: true });
  return perGiB;
}

async function main() {
  if (!hasCommand('fio')) throw new Error('fio is required');
  if (!hasCommand('nbdkit')) throw new Error('nbdkit is required (apt-get install nbdkit)');
  const anchorCpuPerGiB = await nbdkitCpuPerGiB();
  const cluster = new BenchCluster({ name: 'rss', sizeBytes: TiB, minorBase: 88, env: { UDRBD_FRONTEND: 'none' } });
  await cluster.standalonePrimary('alpha');
  const afterUp = cluster.memory('alpha');
  const s = await cluster.status('alpha');
  const sock = s.frontend?.nbdSocket;
  if (!sock) throw new Error('status --json has no frontend.nbdSocket (frontend not wired?)');
  await waitForSocket(sock);
  const uri = `nbd+unix:///?socket=${sock}`;

  // CPU per GiB: one sequential write stream of 1 MiB requests, fsync at the end.
  const cpu0 = cluster.cpuSeconds('alpha');
  const t0 = performance.now();
  fio({ ioengine: 'nbd', uri, rw: 'write', bs: '1M', size: CPU_WRITE_BYTES, iodepth: 8, end_fsync: 1 }, 'write');
  const wallS = (performance.now() - t0) / 1000;
  const cpuPerGiB = (cluster.cpuSeconds('alpha') - cpu0) / (CPU_WRITE_BYTES / GiB);

  // Writes spread over the whole terabyte: every bitmap page and many AL extents get dirty.
  const stride = Math.floor(computeLayout(TiB).dataSizeBytes / SCATTER_WRITES / MiB);
  fio({ ioengine: 'nbd', uri, rw: `write:${stride - 1}M`, bs: '1M', size: `${SCATTER_WRITES * stride}M`, iodepth: 8, end_fsync: 1 }, 'write');
  const after = cluster.memory('alpha');
  console.log(
    `1 TiB volume: RSS after up ${(afterUp.rssBytes / MiB).toFixed(1)} MiB, peak ${(after.hwmBytes / MiB).toFixed(1)} MiB; ` +
      `CPU ${cpuPerGiB.toFixed(2)} s/GiB written (${(CPU_WRITE_BYTES / GiB).toFixed(1)} GiB in ${wallS.toFixed(1)} s); nbdkit file ${anchorCpuPerGiB.toFixed(2)} s/GiB`,
  );
  const peakMiB = after.hwmBytes / MiB;
  const rows = [
    { job: 'peak RSS, 1 TiB volume (VmHWM)', anchor: 'target', anchorValue: RSS_TARGET_MIB, variant: 'udrbd StandAlone', value: peakMiB, unit: 'MiB', ratio: RSS_TARGET_MIB / peakMiB, target: 1, holds: peakMiB <= RSS_TARGET_MIB },
    row({ job: 'CPU per GiB written (NBD seq 1 MiB)', anchor: 'nbdkit file', anchorValue: anchorCpuPerGiB, variant: 'udrbd StandAlone', value: cpuPerGiB, unit: 's/GiB', higherIsBetter: false }),
  ];
  fs.mkdirSync('bench-results', { recursive: true });
  fs.writeFileSync('bench-results/rss.json', JSON.stringify({ when: new Date().toISOString(), quick, afterUp, after, cpuPerGiB, anchorCpuPerGiB, wallS, rows }, null, 2) + '\n');
}

try {
  await main();
} catch (err) {
  console.error(`rss bench failed: ${err.stack ?? err}`);
  process.exitCode = 1;
} finally {
  await runCleanups();
}
