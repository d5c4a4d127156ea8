/**
 * test/helpers/fuse-expose-child — a process that exposes a FileDisk through
 * FUSE + loop and waits, so tests can kill -9 the process hosting FUSE.
 * Compiled by fuse-harness.ts; not a test itself.
 * argv: DISK_FILE MOUNT_DIR DEVICE_PATH RUNTIME_DIR
 * Prints one JSON line {"loopDevice": ...} when exposed; tears down on SIGTERM.
 */
import { FileDisk } from '../../src/disk/file-disk.js';
import { exposeVolume } from '../../src/frontend/exposure/fuse-loop-exposure.js';

const [diskFile, mountDir, devicePath, runtimeDir] = process.argv.slice(2);
if (!diskFile || !mountDir || !devicePath || !runtimeDir) {
  process.stderr.write('usage: fuse-expose-child DISK_FILE MOUNT_DIR DEVICE_PATH RUNTIME_DIR\n');
  process.exit(1);
}
const device = FileDisk.open(diskFile);
const exposure = await exposeVolume({ device, mountDir, devicePath, runtimeDir });
process.stdout.write(`${JSON.stringify({ loopDevice: exposure.loopDevice, volumeFile: exposure.volumeFile })}\n`);
process.on('SIGTERM', () => {
  exposure.teardown().then(
    () => device.close().then(() => process.exit(0)),
    (err: Error) => {
      process.stderr.write(`${err.message}\n`);
      process.exit(11);
    },
  );
});
