// Benchmark part `xfs`: `dd bs=1M conv=fsync` and fio 4 KiB randwrite with
// fsync each, through XFS. Anchor: XFS on a loop device over a plain file of
// the same size. udrbd: XFS on the udrbd device (the default frontend on this
// machine: FUSE file + loop; status --json frontend.devicePath), StandAlone
// and protocol C with a peer. All three are mounted at once and each job runs
// in interleaved rounds (anchor, StandAlone, protocol C; the order rotates
// each round, lib.mjs rotated()); the table
// reports the median. Backing files are written once before mkfs (like an
// LV), so host first-touch allocation favours no side. Root only.
// Writes bench-results/xfs.json; unmounts, detaches loop devices, stops the
// resource processes and removes temp files even on failure.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BenchCluster } from './cluster.mjs';
import { settleWrites, fio, hasCommand, median, onCleanup, prefillZeros, rotated, row, runCleanups, sparseFile, workDir } from './lib.mjs';

const quick = process.argv.includes('--quick');
const MiB = 1024 * 1024;
const DISK_BYTES = (quick ? 512 : 1024) * MiB;
const DD_MIB = quick ? 128 : 400;
const FIO_FILE_BYTES = 128 * MiB;
const RUNTIME_S = quick ? 2 : 4;
const ROUNDS = quick ? 1 : 5;

function sh(cmd, args) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** mkfs.xfs + mount on `device` at a fresh mount point; unmount registered for cleanup. */
function mountXfs(device, name) {
  const mnt = workDir(`xfs-mnt-${name}`);
  sh('mkfs.xfs', ['-f', '-q', device]);
  sh('mount', ['-t', 'xfs', device, mnt]);
  let mounted = true;
  const umount = () => {
    if (!mounted) return;
    try {
      sh('umount', [mnt]);
    } catch {
      sh('umount', ['-l', mnt]);
    }
    mounted = false;
  };
  onCleanup(umount);
  return { mnt, umount };
}

/** dd 1 MiB blocks with fsync at the end into a new file on `mnt`; MB/s. The file is removed afterwards. */
function ddJob(mnt) {
  settleWrites();
  const file = path.join(mnt, 'dd.bin');
  const t0 = performance.now();
  sh('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${DD_MIB}`, 'conv=fsync', 'status=none']);
  const rate = (DD_MIB * MiB) / ((performance.now() - t0) / 1000);
  fs.rmSync(file);
  sh('sync', []);
  return rate;
}

/** fio 4 KiB random writes with fsync after each, psync, on a file in `mnt`; IOPS. */
function fioJob(mnt) {
  settleWrites();
  return fio({ filename: path.join(mnt, 'fio.bin'), ioengine: 'psync', rw: 'randwrite', bs: '4k', size: FIO_FILE_BYTES, fsync: 1, runtime: RUNTIME_S, time_based: true, randrepeat: 0 }, 'write').iops;
}

async function udrbdDevice(cluster, node) {
  const s = await cluster.status(node);
  const dev = s.frontend?.devicePath;
  if (!dev) throw new Error(`${node}: status --json has no frontend.devicePath (frontend not wired?)`);
  return dev;
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('the xfs part needs root (mount, losetup)');
  for (const tool of ['fio', 'mkfs.xfs', 'losetup']) if (!hasCommand(tool)) throw new Error(`${tool} is required`);

  // ---- udrbd StandAlone
  const standalone = new BenchCluster({ name: 'xfs-sa', sizeBytes: DISK_BYTES, minorBase: 84 });
  const dataBytes = standalone.dataBytes;
  prefillZeros(standalone.disks.alpha, dataBytes);
  await standalone.standalonePrimary('alpha');
  const saMount = mountXfs(await udrbdDevice(standalone, 'alpha'), 'sa');

  // ---- udrbd protocol C with a peer (the initial sync writes the peer's whole data area)
  const pair = new BenchCluster({ name: 'xfs-c', sizeBytes: DISK_BYTES, minorBase: 86 });
  prefillZeros(pair.disks.alpha, dataBytes);
  await pair.admOk('alpha', ['up', pair.resource]);
  await pair.admOk('beta', ['up', pair.resource]);
  await pair.waitStatus('alpha', 'Connected', (s) => s.cstate === 'Connected', 30_000);
  await pair.admOk('alpha', ['primary', '--force', pair.resource]);
  await pair.waitStatus('alpha', 'UpToDate/UpToDate', (s) => s.cstate === 'Connected' && s.disk === 'UpToDate' && s.peerDisk === 'UpToDate', 120_000);
  const cMount = mountXfs(await udrbdDevice(pair, 'alpha'), 'c');

  // ---- anchor: XFS on a loop device over a plain file of the same size
  const dir = workDir('xfs-anchor');
  const img = sparseFile(path.join(dir, 'anchor.img'), dataBytes);
  prefillZeros(img, dataBytes);
  const loop = sh('losetup', ['--find', '--show', img]).trim();
  let attached = true;
  const detach = () => {
    if (attached) sh('losetup', ['-d', loop]);
    attached = false;
  };
  onCleanup(detach);
  const a = mountXfs(loop, 'anchor');

  const sides = [
    { key: 'anchor', label: 'XFS on loop (plain file)', mnt: a.mnt },
    { key: 'standalone', label: 'XFS on udrbd StandAlone', mnt: saMount.mnt },
    { key: 'protocolC', label: 'XFS on udrbd protocol C', mnt: cMount.mnt },
  ];
  // Warm-up, not measured: one dd through every side (a resource process's first I/O also compiles
  // its hot paths and fills its buffer pools; the first measured round used to run ~25% low).
  for (const s of sides) ddJob(s.mnt);
  console.log(`xfs jobs, ${ROUNDS} interleaved round(s) each`);
  const runs = Object.fromEntries(sides.map((s) => [s.key, { dd: [], randwrite: [] }]));
  for (const [key, job, show] of [
    ['dd', ddJob, (x) => `${(x / 1e6).toFixed(1)} MB/s`],
    ['randwrite', fioJob, (x) => `${Math.round(x)} IOPS`],
  ]) {
    for (let round = 0; round < ROUNDS; round++) for (const s of rotated(sides, round)) runs[s.key][key].push(job(s.mnt));
    for (const s of sides) {
      const v = runs[s.key][key];
      console.log(`  ${s.label.padEnd(26)} ${key.padEnd(10)} median ${show(median(v))}  (rounds: ${v.map(show).join(', ')})`);
    }
  }
  a.umount();
  detach();
  saMount.umount();
  cMount.umount();
  await standalone.destroy();
  await pair.destroy();

  const value = (side, key) => median(runs[side][key]);
  const rows = [
    row({ job: `XFS dd 1 MiB x ${DD_MIB}, conv=fsync`, anchor: 'XFS on loop', anchorValue: value('anchor', 'dd'), variant: 'udrbd StandAlone', value: value('standalone', 'dd'), unit: 'MB/s', target: 0.9 }),
    row({ job: `XFS dd 1 MiB x ${DD_MIB}, conv=fsync`, anchor: 'XFS on loop', anchorValue: value('anchor', 'dd'), variant: 'udrbd protocol C + peer', value: value('protocolC', 'dd'), unit: 'MB/s', target: 0.45 }),
    row({ job: 'XFS fio 4 KiB randwrite + fsync', anchor: 'XFS on loop', anchorValue: value('anchor', 'randwrite'), variant: 'udrbd StandAlone', value: value('standalone', 'randwrite'), unit: 'IOPS', target: 0.6 }),
    row({ job: 'XFS fio 4 KiB randwrite + fsync', anchor: 'XFS on loop', anchorValue: value('anchor', 'randwrite'), variant: 'udrbd protocol C + peer', value: value('protocolC', 'randwrite'), unit: 'IOPS', target: 0.4 }),
  ];
  fs.mkdirSync('bench-results', { recursive: true });
  fs.writeFileSync('bench-results/xfs.json', JSON.stringify({ when: new Date().toISOString(), quick, rounds: ROUNDS, runs, rows }, null, 2) + '\n');
}

try {
  await main();
} catch (err) {
  console.error(`xfs bench failed: ${err.stack ?? err}`);
  process.exitCode = 1;
} finally {
  await runCleanups();
}
