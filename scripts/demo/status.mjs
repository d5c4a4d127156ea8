#!/usr/bin/env node
// scripts/demo/status — renders the demo's two nodes the way a DRBD 8.4
// operator reads them: `proc` prints /proc/drbd (with the sync progress bar),
// `table` prints the `/etc/init.d/drbd status` table with mount points.
// Reads each node's `udrbdadm status --json` and hands the snapshots to the
// renderers in dist/cli/render/proc-drbd.js. Usage:
//   node scripts/demo/status.mjs proc|table CONFIG RESOURCE NODE...
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const { renderProcDrbd, renderInitStatus } = await import(path.join(root, 'dist/cli/render/proc-drbd.js'));
const { parseRole, parseConnState, parseDiskState, ConnState, DiskState, Role } = await import(path.join(root, 'dist/resource/states.js'));
const ADM = path.join(root, 'dist/cli/udrbdadm.js');
const STATUS_TIMEOUT_MS = 10_000;

const [mode, config, resource, ...nodes] = process.argv.slice(2);
if (!['proc', 'table'].includes(mode) || !config || !resource || nodes.length === 0) {
  process.stderr.write('usage: status.mjs proc|table CONFIG RESOURCE NODE...\n');
  process.exit(1);
}

/** status --json (names) back into the snapshot the renderers take (enum numbers). */
function snapshotOf(j) {
  const unconfigured = j.cstate === 'Unconfigured';
  return {
    role: parseRole(j.role) ?? Role.Unknown,
    peer: parseRole(j.peerRole) ?? Role.Unknown,
    conn: unconfigured ? ConnState.StandAlone : (parseConnState(j.cstate) ?? ConnState.StandAlone),
    disk: parseDiskState(j.disk) ?? DiskState.Diskless,
    pdsk: parseDiskState(j.peerDisk) ?? DiskState.DUnknown,
    susp: Boolean(j.suspended), suspNod: false, suspFen: false,
    userIsp: Boolean(j.resyncSuspended?.user), peerIsp: Boolean(j.resyncSuspended?.peer), aftrIsp: Boolean(j.resyncSuspended?.dependency),
    resource: `${j.resource}@${j.node}`,
    node: j.node,
    peerNode: j.peerNode ?? undefined,
    minor: j.minor,
    device: j.device,
    protocol: j.protocol ?? undefined,
    uuids: j.uuids ?? undefined,
    outOfSyncKiB: j.outOfSyncKiB ?? 0,
    sync: j.sync ?? undefined,
    counters: j.counters ?? {},
    exposed: Boolean(j.exposed),
    frontend: j.frontend ?? null,
    pid: j.pid,
  };
}

const snapshots = [];
for (const node of nodes) {
  try {
    const out = execFileSync(process.execPath, [ADM, '-c', config, '--node', node, 'status', '--json', resource], { encoding: 'utf8', timeout: STATUS_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const j of JSON.parse(out)) snapshots.push(snapshotOf(j));
  } catch {
    process.stdout.write(`(${node}: resource ${resource} is not up)\n`);
  }
}

if (mode === 'proc') {
  process.stdout.write(renderProcDrbd(snapshots));
} else {
  // Mounted filesystems by device: the configured path, or the kernel device it links to.
  const mounts = new Map();
  const procMounts = fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' '));
  for (const s of snapshots) {
    const names = new Set([s.device, s.frontend?.kernelDevice].filter(Boolean));
    const hit = procMounts.find((f) => names.has(f[0]));
    if (hit) mounts.set(s.minor, { mountPoint: hit[1], fsType: hit[2] });
  }
  process.stdout.write(renderInitStatus(snapshots, mounts));
}
