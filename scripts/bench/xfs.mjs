// Benchmark part `xfs`: `dd bs=1M conv=fsync` and fio 4 KiB randwrite with
// fsync each, through XFS. Anchor: XFS on a loop device over a plain file
// (measured first, same size). udrbd: XFS on the udrbd device (the default
// frontend on this machine: FUSE file + loop; status --json
// frontend.devicePath), StandAlone and protocol C with a peer. Root only.
// Writes bench-results/xfs.json; unmounts, detaches loop devices, stops the
// resource processes and removes temp files even on failure.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BenchCluster } from './cluster.mjs';
import { dropCaches, fio, hasCommand, onCleanup, row, runCleanups, sparseFile, workDir } from './lib.mjs';

const quick = process.argv.includes('--quick');
const MiB = 1024 * 1024;
const DISK_BYTES = (quick ? 512 : 1024) * MiB;
const DD_MIB = quick ? 128 : 400;
const FIO_FILE_BYTES = 128 * MiB;
const RUNTIME_S = quick ? 3 : 8;

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

/** The two jobs on a mounted XFS: dd MB/s and fio randwrite+fsync IOPS. */
function runJobs(mnt, label) {
  dropCaches();
  const t0 = performance.now();
  sh('dd', ['if=/dev/zero', `of=${path.join(mnt, 'dd.bin')}`, 'bs=1M', `count=${DD_MIB}`, 'conv=fsync', 'status=none']);
  const ddRate = (DD_MIB * MiB) / ((performance.now() - t0) / 1000);
  fs.rmSync(path.join(mnt, 'dd.bin'));
  sh('sync', []);
  dropCaches();
  const r = fio({ filename: path.join(mnt, 'fio.bin'), ioengine: 'psync', rw: 'randwrite', bs: '4k', size: FIO_FILE_BYTES, fsync: 1, runtime: RUNTIME_S, time_based: true, randrepeat: 0 }, 'write');
  console.log(`  ${label.padEnd(26)} dd ${(ddRate / 1e6).toFixed(1)} MB/s, fio randwrite+fsync ${Math.round(r.iops)} IOPS`);
  return { dd: ddRate, randwrite: r.iops };
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

  // ---- anchor: XFS on a loop device over a plain file
  const dir = workDir('xfs-anchor');
  const img = sparseFile(path.join(dir, 'anchor.img'), DISK_BYTES);
  const loop = sh('losetup', ['--find', '--show', img]).trim();
  let attached = true;
  const detach = () => {
    if (attached) sh('losetup', ['-d', loop]);
    attached = false;
  };
  onCleanup(detach);
  const a = mountXfs(loop, 'anchor');
  const anchor = runJobs(a.mnt, 'XFS on loop (plain file)');
  a.umount();
  detach();
  fs.rmSync(img, { force: true });

  // ---- udrbd StandAlone
  const standalone = new BenchCluster({ name: 'xfs-sa', sizeBytes: DISK_BYTES, minorBase: 84 });
  await standalone.standalonePrimary('alpha');
  const saMount = mountXfs(await udrbdDevice(standalone, 'alpha'), 'sa');
  const sa = runJobs(saMount.mnt, 'XFS on udrbd StandAlone');
  saMount.umount();
  await standalone.destroy();

  // ---- udrbd protocol C with a peer
  const pair = new BenchCluster({ name: 'xfs-c', sizeBytes: DISK_BYTES, minorBase: 86 });
  await pair.admOk('alpha', ['up', pair.resource]);
  await pair.admOk('beta', ['up', pair.resource]);
  await pair.waitStatus('alpha', 'Connected', (s) => s.cstate === 'Connected', 30_000);
  await pair.admOk('alpha', ['primary', '--force', pair.resource]);
  await pair.waitStatus('alpha', 'UpToDate/UpToDate', (s) => s.cstate === 'Connected' && s.disk === 'UpToDate' && s.peerDisk === 'UpToDate', 120_000);
  const cMount = mountXfs(await udrbdDevice(pair, 'alpha'), 'c');
  const c = runJobs(cMount.mnt, 'XFS on udrbd protocol C');
  cMount.umount();
  await pair.destroy();

  const rows = [
    row({ job: `XFS dd 1 MiB x ${DD_MIB}, conv=fsync`, anchor: 'XFS on loop', anchorValue: anchor.dd, variant: 'udrbd StandAlone', value: sa.dd, unit: 'MB/s', target: 0.9 }),
    row({ job: `XFS dd 1 MiB x ${DD_MIB}, conv=fsync`, anchor: 'XFS on loop', anchorValue: anchor.dd, variant: 'udrbd protocol C + peer', value: c.dd, unit: 'MB/s', target: 0.45 }),
    row({ job: 'XFS fio 4 KiB randwrite + fsync', anchor: 'XFS on loop', anchorValue: anchor.randwrite, variant: 'udrbd StandAlone', value: sa.randwrite, unit: 'IOPS', target: 0.6 }),
    row({ job: 'XFS fio 4 KiB randwrite + fsync', anchor: 'XFS on loop', anchorValue: anchor.randwrite, variant: 'udrbd protocol C + peer', value: c.randwrite, unit: 'IOPS', target: 0.4 }),
  ];
  fs.mkdirSync('bench-results', { recursive: true });
  fs.writeFileSync('bench-results/xfs.json', JSON.stringify({ when: new Date().toISOString(), quick, anchor, standalone: sa, protocolC: c, rows }, null, 2) + '\n');
}

try {
  await main();
} catch (err) {
  console.error(`xfs bench failed: ${err.stack ?? err}`);
  process.exitCode = 1;
} finally {
  await runCleanups();
}
