/**
 * test/e2e/fuse-bench — throughput of XFS on the FUSE + loop exposure for
 * the four combinations of FUSE direct_io and loop direct I/O (figures are
 * recorded in src/frontend/fuse/volume-fs.ts). Not a test; root only; needs
 * fio. Run from the repository root:
 *   D=$(mktemp -d) && ln -s $PWD/node_modules $D/node_modules && echo '{"type":"module"}' > $D/package.json &&
 *   npx tsc --outDir $D/out --rootDir . --module NodeNext --moduleResolution NodeNext --target ES2022 \
 *     --lib ES2023 --types node --skipLibCheck test/e2e/fuse-bench.ts && node $D/out/test/e2e/fuse-bench.js
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { FileDisk } from '../../src/disk/file-disk.js';
import { exposeVolume } from '../../src/frontend/exposure/fuse-loop-exposure.js';

const RUNS = 3;
const FILE_MIB = 200;
const FIO_SECONDS = 5;

function mbPerSecond(ddStderr: string): number {
  const seconds = Number(/copied, ([\d.]+) s/.exec(ddStderr)?.[1]);
  return Math.round((FILE_MIB * 1.048576) / seconds);
}

async function fioIops(file: string, rw: 'randwrite' | 'randread'): Promise<number> {
  const { stdout } = await execa('fio', [
    '--name=bench', `--filename=${file}`, '--size=128M', `--rw=${rw}`, '--bs=4k', '--direct=1',
    '--ioengine=libaio', '--iodepth=16', `--runtime=${FIO_SECONDS}`, '--time_based', '--output-format=json',
  ]);
  const job = (JSON.parse(stdout) as { jobs: { read: { iops: number }; write: { iops: number } }[] }).jobs[0];
  if (!job) throw new Error('fio printed no job');
  return Math.round(rw === 'randwrite' ? job.write.iops : job.read.iops);
}

const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'udrbd-fuse-bench-'));
const xfs = path.join(dir, 'xfs');
await fs.mkdir(xfs);
await fs.writeFile(path.join(dir, 'disk.img'), '');
await fs.truncate(path.join(dir, 'disk.img'), 512 * 1024 * 1024);
try {
  for (const [fuseDirectIo, loopDirectIo] of [[true, true], [false, true], [true, false], [false, false]] as const) {
    const disk = FileDisk.open(path.join(dir, 'disk.img'));
    const exposure = await exposeVolume({
      device: disk, mountDir: path.join(dir, 'fuse'), devicePath: path.join(dir, 'drbd1'), runtimeDir: path.join(dir, 'run'),
      fuseDirectIo, loopDirectIo,
    });
    try {
      await execa('mkfs.xfs', ['-q', '-f', exposure.devicePath]);
      await execa('mount', [exposure.devicePath, xfs]);
      const writes: number[] = [];
      const reads: number[] = [];
      for (let run = 0; run < RUNS; run++) {
        await execa('rm', ['-f', `${xfs}/f`]);
        writes.push(mbPerSecond((await execa('dd', ['if=/dev/zero', `of=${xfs}/f`, 'bs=1M', `count=${FILE_MIB}`, 'conv=fsync'])).stderr));
        await execa('sh', ['-c', 'echo 3 > /proc/sys/vm/drop_caches']);
        reads.push(mbPerSecond((await execa('dd', [`if=${xfs}/f`, 'of=/dev/null', 'bs=1M'])).stderr));
      }
      const randwrite = await fioIops(`${xfs}/fio`, 'randwrite');
      const randread = await fioIops(`${xfs}/fio`, 'randread');
      process.stdout.write(
        `FUSE direct_io=${fuseDirectIo} loop dio=${exposure.loopDirectIo}: write MB/s ${writes.join(' ')}, read MB/s ${reads.join(' ')}, ` +
          `randwrite ${randwrite} IOPS, randread ${randread} IOPS, largest request ${exposure.stats.requestLargestBytes} B, ` +
          `in flight at most ${exposure.stats.inflightHighWater}\n`,
      );
    } finally {
      await execa('umount', [xfs], { reject: false });
      await exposure.teardown();
      await disk.close();
    }
  }
} finally {
  await fs.rm(dir, { recursive: true, force: true });
}
