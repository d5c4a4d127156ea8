/**
 * test/helpers/two-node-xfs-harness — two real udrbd resource processes (alpha
 * 127.0.0.1, beta 127.0.0.2) whose Primary exposes the volume through FUSE +
 * loop, for the issue-5 e2e tests: prerequisite checks that fail loudly,
 * tools run through execa, mount points per node, and a cleanup that always
 * leaves nothing behind (umount, down, kill -9 by pid file, stale exposure
 * cleanup, losetup -d, fusermount -u, links, temp dir).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { Cluster, NODES, type NodeName } from './cluster.js';
import { cleanupStale, isMountPoint } from '../../src/frontend/exposure/fuse-loop-exposure.js';
import { findLoopDevicesBackedBy } from '../../src/frontend/loop/losetup.js';
import { readDeviceLink } from '../../src/frontend/device-link/device-link.js';
import { isProcessAlive } from '../../src/control/paths.js';
import { requireFuseLoopPrerequisites, forceCleanup, run } from './fuse-harness.js';

export const MiB = 1024 * 1024;
/** mkfs.xfs needs >= 300 MiB. */
export const DISK_BYTES = 512 * MiB;
export const RESOURCE = 'r0';
/** The device paths test/helpers/cluster.ts configures. */
export const DEVICE: Record<NodeName, string> = { alpha: '/dev/drbd10', beta: '/dev/drbd11' };
/** A full initial sync of 512 MiB on this shared machine takes seconds; allow for a slow CI. */
export const SYNC_TIMEOUT_MS = 240_000;

export async function requireTwoNodeXfsPrerequisites(): Promise<void> {
  await requireFuseLoopPrerequisites();
  const missing: string[] = [];
  for (const tool of ['fio', 'xfs_repair', 'mkfs.xfs', 'nbdinfo']) {
    const found = await execa('sh', ['-c', `command -v ${tool}`], { reject: false });
    if (found.exitCode !== 0) missing.push(tool);
  }
  if (missing.length > 0) throw new Error(`two-node XFS e2e prerequisites missing: ${missing.join(', ')} (apt-get install fio xfsprogs libnbd-bin)`);
}

export class XfsPair {
  readonly cluster: Cluster;
  readonly mnt: Record<NodeName, string>;

  constructor() {
    this.cluster = new Cluster({ diskSizeBytes: DISK_BYTES, frontend: 'fuse' });
    this.mnt = { alpha: path.join(this.cluster.dir, 'mnt-alpha'), beta: path.join(this.cluster.dir, 'mnt-beta') };
  }

  get runDir(): string {
    return this.cluster.paths('alpha').runDir;
  }

  get frontendDir(): string {
    return path.join(this.runDir, 'frontend');
  }

  /** The FUSE mount point and volume file the node's resource process uses while Primary. */
  fuseDir(node: NodeName): string {
    return path.join(this.frontendDir, `${RESOURCE}.${node}.fuse`);
  }

  volumeFile(node: NodeName): string {
    return path.join(this.fuseDir(node), 'volume');
  }

  async start(): Promise<void> {
    for (const node of NODES) await fs.mkdir(this.mnt[node], { recursive: true });
    await this.cluster.admOk('alpha', ['up', RESOURCE]);
    await this.cluster.admOk('beta', ['up', RESOURCE]);
    await this.cluster.waitState('alpha', 'cstate', 'Connected');
    await this.cluster.waitState('beta', 'cstate', 'Connected');
  }

  async mount(node: NodeName): Promise<void> {
    await run('mount', [DEVICE[node], this.mnt[node]]);
  }

  async umount(node: NodeName): Promise<void> {
    await run('umount', [this.mnt[node]]);
  }

  /** What this node exposes right now: the device link's target, loop devices on its volume file, FUSE mounted. */
  async exposure(node: NodeName): Promise<{ link: string | null; loops: string[]; fuseMounted: boolean }> {
    return {
      link: await readDeviceLink(DEVICE[node]),
      loops: await findLoopDevicesBackedBy(this.volumeFile(node)),
      fuseMounted: await isMountPoint(this.fuseDir(node)),
    };
  }

  /** Always safe: umount, down, kill -9 leftovers, undo stale exposures, remove everything. Returns problems. */
  async destroy(): Promise<string[]> {
    const problems: string[] = [];
    for (const node of NODES) {
      if (await isMountPoint(this.mnt[node])) {
        const r = await execa('umount', [this.mnt[node]], { reject: false, timeout: 60_000 });
        if (r.exitCode !== 0) await execa('umount', ['-l', this.mnt[node]], { reject: false, timeout: 60_000 });
      }
    }
    for (const node of NODES) {
      await this.cluster.adm(node, ['down', RESOURCE], 30_000).catch(() => undefined);
    }
    for (const node of NODES) {
      const pid = this.cluster.pid(node);
      if (pid !== undefined && isProcessAlive(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      await this.cluster.waitGone(node).catch((err: Error) => problems.push(err.message));
    }
    await cleanupStale(this.frontendDir).catch((err: Error) => problems.push(`cleanupStale: ${err.message}`));
    problems.push(
      ...(await forceCleanup({
        filesystemMounts: NODES.map((n) => this.mnt[n]),
        volumeFiles: NODES.map((n) => this.volumeFile(n)),
        fuseMounts: NODES.map((n) => this.fuseDir(n)),
        links: [],
      })),
    );
    for (const node of NODES) {
      // Only links that point at a loop device: never remove anything else at /dev/drbdN.
      const target = await readDeviceLink(DEVICE[node]).catch(() => null);
      if (target !== null && target.startsWith('/dev/loop')) await fs.rm(DEVICE[node], { force: true });
    }
    for (const node of NODES) {
      if (await isMountPoint(this.fuseDir(node))) problems.push(`FUSE still mounted on ${this.fuseDir(node)}`);
    }
    if (problems.length === 0) await this.cluster.destroy();
    return problems;
  }
}

/** Writes `count` files of `sizeBytes` random bytes under `dir` with fsync; returns their names. */
export async function writeFiles(dir: string, prefix: string, count: number, sizeBytes: number): Promise<string[]> {
  const script = 'i=0; while [ "$i" -lt "$2" ]; do head -c "$3" /dev/urandom > "$1/$4$i" || exit 1; i=$((i+1)); done; sync -f "$1"';
  await run('sh', ['-c', script, 'sh', dir, String(count), String(sizeBytes), prefix]);
  const names = Array.from({ length: count }, (_, i) => `${prefix}${i}`);
  // fsync(2) of every file (coreutils sync with file arguments)
  await run('sync', names.map((n) => path.join(dir, n)));
  return names;
}

/** name → sha256, computed by sha256sum in a child process. */
export async function checksumMap(dir: string, names: string[]): Promise<Map<string, string>> {
  const out = await execa('sha256sum', names, { cwd: dir, timeout: 120_000, reject: false });
  const map = new Map<string, string>();
  for (const line of out.stdout.split('\n')) {
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (m) map.set(m[2]!, m[1]!);
  }
  return map;
}
