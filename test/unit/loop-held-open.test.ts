import { describe, it, expect, afterEach } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { statSync } from 'node:fs';
import { majorMinorOf, mountPointsOf, unescapeMountField, describeHeldOpen } from '../../src/frontend/device-link/held-open.js';
import { createDeviceLink, readDeviceLink, removeDeviceLink } from '../../src/frontend/device-link/device-link.js';
import { UdrbdError } from '../../src/util/errors.js';

const MOUNTINFO = [
  '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
  '42 22 0:39 / /tmp/a\\040b/mnt rw,nosuid,nodev - fuse.udrbd udrbd:drbd1 rw,user_id=0',
  '43 22 7:3 / /srv/rabbitmq rw,relatime - xfs /dev/loop3 rw,inode64',
  '44 22 7:30 / /other rw,relatime - xfs /dev/loop30 rw',
  '45 22 0:50 / /via-link rw - xfs /dev/drbd1 rw',
  '',
].join('\n');

describe('held-open: mount table parsing', () => {
  it('finds mounts of a device by major:minor, not by a prefix of it', () => {
    expect(mountPointsOf(MOUNTINFO, '7:3', new Set())).toEqual(['/srv/rabbitmq']);
  });
  it('finds mounts whose source is the device link', () => {
    expect(mountPointsOf(MOUNTINFO, '7:99', new Set(['/dev/drbd1']))).toEqual(['/via-link']);
  });
  it('unescapes \\040 in mount points', () => {
    expect(mountPointsOf(MOUNTINFO, '0:39', new Set())).toEqual(['/tmp/a b/mnt']);
    expect(unescapeMountField('a\\011b\\134c')).toBe('a\tb\\c');
  });
  it('decodes major:minor from a stat rdev like glibc', () => {
    expect(majorMinorOf(statSync('/dev/null').rdev)).toEqual({ major: 1, minor: 3 });
    // Large numbers use the high bits: makedev(4100, 1048575) (20-bit minor, major above 0xfff).
    const major = 4100;
    const minor = 1048575;
    const rdev = (major & 0xfff) * 256 + (major & ~0xfff) * 2 ** 32 + (minor & 0xff) + (minor & ~0xff) * 4096;
    expect(majorMinorOf(rdev)).toEqual({ major, minor });
  });
  it('describes why a device is held in one line', () => {
    expect(
      describeHeldOpen({
        held: true, device: '/dev/loop3', majorMinor: '7:3', mountPoints: ['/srv/rabbitmq'], holders: [],
        exclusivelyClaimed: true, openBy: [{ pid: 12, command: 'dd', fd: 3 }], scanComplete: true,
      }),
    ).toBe('mounted on /srv/rabbitmq; open by pid 12 (dd)');
  });
});

describe('device link', () => {
  let dir = '';
  afterEach(async () => {
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('creates, re-points and removes the link, idempotently', async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'udrbd-link-'));
    const link = path.join(dir, 'drbd1');
    await createDeviceLink(link, '/dev/loop3');
    expect(await readDeviceLink(link)).toBe('/dev/loop3');
    await createDeviceLink(link, '/dev/loop4');
    expect(await readDeviceLink(link)).toBe('/dev/loop4');
    expect(await removeDeviceLink(link, '/dev/loop3')).toBe(false);
    expect(await readDeviceLink(link)).toBe('/dev/loop4');
    expect(await removeDeviceLink(link, '/dev/loop4')).toBe(true);
    expect(await readDeviceLink(link)).toBeNull();
    expect(await removeDeviceLink(link)).toBe(false);
    expect(await fs.readdir(dir)).toEqual([]);
  });

  it('never replaces something that is not a link', async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'udrbd-link-'));
    const file = path.join(dir, 'drbd1');
    await fs.writeFile(file, 'not ours');
    await expect(createDeviceLink(file, '/dev/loop3')).rejects.toBeInstanceOf(UdrbdError);
    expect(await removeDeviceLink(file)).toBe(false);
    expect(await fs.readFile(file, 'utf8')).toBe('not ours');
  });
});
