/**
 * `resync-after` per volume (a disk option; drbd_resync_after_valid checks
 * the device chain): volume 1 of a resource may wait for its volume 0, and
 * the two waiting for each other is refused with ERR_RESYNC_AFTER_CYCLE
 * (133) at the minor of the volume that closes the loop.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { refuseResyncAfterCycle } from '../../src/cli/resync-after-check.js';
import { resyncAfterDependency } from '../../src/daemon/resync-after.js';
import { loadConfig, resolveResource } from '../../src/config/index.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-ravol-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function config(name: string, v0Disk: string, v1Disk: string): string {
  const file = path.join(dir, `${name}.conf`);
  const host = (node: string, ip: string): string[] => [
    `  on ${node} {`,
    `    address ${ip}:7790;`,
    `    volume 0 { device minor 70; disk /tmp/${node}-0.img; meta-disk internal; ${v0Disk} }`,
    `    volume 1 { device minor 71; disk /tmp/${node}-1.img; meta-disk internal; ${v1Disk} }`,
    '  }',
  ];
  fs.writeFileSync(file, ['resource ra {', ...host('alpha', '127.0.0.1'), ...host('beta', '127.0.0.2'), '}', ''].join('\n'));
  return file;
}

describe('resync-after between the volumes of one resource', () => {
  it('volume 1 after ra/0 names that device; no cycle', () => {
    const file = config('chain', '', 'disk { resync-after ra/0; }');
    expect(resyncAfterDependency(resolveResource(loadConfig(file), 'ra', 'alpha', 1))).toEqual({ resource: 'ra', volume: 0 });
    expect(resyncAfterDependency(resolveResource(loadConfig(file), 'ra', 'alpha', 0))).toBeUndefined();
    expect(() => refuseResyncAfterCycle({ configPath: file, nodeName: 'alpha' }, 'ra', 'attach')).not.toThrow();
  });

  it('volumes 0 and 1 after each other: (133) at the first volume that closes the loop', () => {
    const file = config('cycle', 'disk { resync-after ra/1; }', 'disk { resync-after ra/0; }');
    expect(() => refuseResyncAfterCycle({ configPath: file, nodeName: 'alpha' }, 'ra', 'attach')).toThrow(
      "70: Failure: (133) This would cause a resync-after dependency cycle\nCommand 'drbdsetup-84 attach 70' terminated with exit code 10",
    );
  });
});
