/**
 * test/helpers/fuse-harness — shared helpers for the FUSE + loop e2e tests:
 * prerequisite checks that fail loudly, running tools through execa (never
 * synchronously: the FUSE volume may be served by the test process itself),
 * compiling the child fixture, and forceful cleanup of mounts, loop devices
 * and FUSE mounts left by a failed test.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { findLoopDevicesBackedBy } from '../../src/frontend/loop/losetup.js';
import { isMountPoint, unmountFuseLazily } from '../../src/frontend/exposure/fuse-loop-exposure.js';
import type { BlockDevice, WriteFlags } from '../../src/disk/block-device.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TOOL_TIMEOUT_MS = 120_000;

/** Throws one error naming everything missing (root, /dev/fuse, losetup, XFS tools, fusermount). */
export async function requireFuseLoopPrerequisites(): Promise<void> {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (run the e2e tests as root)');
  for (const node of ['/dev/fuse', '/dev/loop-control']) {
    try {
      await fs.access(node);
    } catch {
      missing.push(node);
    }
  }
  for (const tool of ['losetup', 'mkfs.xfs', 'xfs_repair', 'fusermount', 'mount', 'umount', 'sha256sum', 'dd', 'blockdev']) {
    const found = await execa('sh', ['-c', `command -v ${tool}`], { reject: false });
    if (found.exitCode !== 0) missing.push(tool);
  }
  if (missing.length > 0) {
    throw new Error(`FUSE + loop e2e prerequisites missing: ${missing.join(', ')} (apt-get install fuse3 libfuse2 xfsprogs mount)`);
  }
}

/** Runs a tool; throws with its stderr on a non-zero exit. */
export async function run(command: string, args: string[]): Promise<string> {
  const result = await execa(command, args, { timeout: TOOL_TIMEOUT_MS, stdin: 'ignore', reject: false });
  if (result.exitCode !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${result.exitCode}: ${result.stderr || result.stdout}`);
  }
  return result.stdout;
}

/** Runs a tool and returns its exit code (for steps expected to fail). */
export async function exitCodeOf(command: string, args: string[]): Promise<number> {
  const result = await execa(command, args, { timeout: TOOL_TIMEOUT_MS, stdin: 'ignore', reject: false });
  return result.exitCode ?? -1;
}

/** sha256 of each file, computed by sha256sum in a child process. */
export async function checksums(files: string[]): Promise<string[]> {
  const out = await run('sha256sum', files);
  return out.split('\n').map((line) => line.split(' ')[0] ?? '');
}

/**
 * Compiles test/helpers/fuse-expose-child.ts (and the src files it imports) with
 * tsc into `outDir`, next to a node_modules link so its imports resolve.
 * Returns the path of the compiled child.
 */
export async function compileExposeChild(outDir: string): Promise<string> {
  await fs.mkdir(outDir, { recursive: true });
  await fs.symlink(path.join(repoRoot, 'node_modules'), path.join(outDir, 'node_modules'));
  await fs.writeFile(path.join(outDir, 'package.json'), '{"type":"module"}\n');
  await run(path.join(repoRoot, 'node_modules/.bin/tsc'), [
    '--outDir', path.join(outDir, 'out'), '--rootDir', repoRoot,
    '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--target', 'ES2022', '--lib', 'ES2023',
    '--types', 'node', '--strict', '--skipLibCheck',
    path.join(repoRoot, 'test/helpers/fuse-expose-child.ts'),
  ]);
  return path.join(outDir, 'out/test/helpers/fuse-expose-child.js');
}

/** Best-effort cleanup after a test, in the safe order; never throws. */
export async function forceCleanup(state: { filesystemMounts: string[]; volumeFiles: string[]; fuseMounts: string[]; links: string[] }): Promise<string[]> {
  const problems: string[] = [];
  const attempt = async (what: string, step: () => Promise<unknown>): Promise<void> => {
    try {
      await step();
    } catch (err) {
      problems.push(`${what}: ${(err as Error).message}`);
    }
  };
  for (const mnt of state.filesystemMounts) {
    if (await isMountPoint(mnt)) {
      await attempt(`umount ${mnt}`, async () => {
        if ((await exitCodeOf('umount', [mnt])) !== 0) await run('umount', ['-l', mnt]);
      });
    }
  }
  for (const file of state.volumeFiles) {
    await attempt(`losetup -d for ${file}`, async () => {
      for (const loop of await findLoopDevicesBackedBy(file)) await run('losetup', ['-d', loop]);
    });
  }
  for (const mnt of state.fuseMounts) {
    if (await isMountPoint(mnt)) await attempt(`fusermount -u -z ${mnt}`, () => unmountFuseLazily(mnt));
  }
  for (const link of state.links) await attempt(`rm ${link}`, () => fs.rm(link, { force: true }));
  return problems;
}

/** Passes everything through to `inner` and counts flushes (did fsync reach the device?). */
export class CountingDevice implements BlockDevice {
  flushCount = 0;
  /**
   * When > 0, each write waits this long before reaching the inner device, like a disk
   * (or a peer round trip) that takes time. FileDisk completes small writes inline on the
   * event loop, so without a delay a request can finish before the next one is delivered
   * and a queue depth the kernel keeps would not show in the frontend's in-flight count.
   */
  writeDelayMs = 0;
  /** Backing stores of the buffers reads and writes arrived in (shows whether the frontend reuses its buffers). */
  readonly stores = new Set<ArrayBufferLike>();
  requests = 0;
  constructor(private readonly inner: BlockDevice) {}
  get sizeBytes(): number { return this.inner.sizeBytes; }
  get capabilities(): BlockDevice['capabilities'] { return this.inner.capabilities; }
  read(buffer: Buffer, offsetBytes: number): Promise<void> {
    this.note(buffer);
    return this.inner.read(buffer, offsetBytes);
  }
  write(buffer: Buffer, offsetBytes: number, flags?: WriteFlags): Promise<void> {
    this.note(buffer);
    if (this.writeDelayMs <= 0) return this.inner.write(buffer, offsetBytes, flags);
    return new Promise<void>((resolve) => setTimeout(resolve, this.writeDelayMs)).then(() => this.inner.write(buffer, offsetBytes, flags));
  }
  flush(): Promise<void> { this.flushCount++; return this.inner.flush(); }
  private note(buffer: Buffer): void {
    this.requests++;
    if (this.stores.size < 1024) this.stores.add(buffer.buffer);
  }
  trim(offsetBytes: number, lengthBytes: number): Promise<void> { return this.inner.trim(offsetBytes, lengthBytes); }
  close(): Promise<void> { return this.inner.close(); }
}
