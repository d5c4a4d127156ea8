/**
 * test/helpers/rabbitmq-crm — the user's RabbitMQ-on-DRBD setup as text: the
 * udrbd resource file (`device /dev/drbd1 minor 1`, `meta-disk internal`,
 * protocol C, port 7701) and the crm configuration (ms set with role
 * monitors, Filesystem on /dev/drbd1, IPaddr2, ocf:rabbitmq:rabbitmq-server
 * in g_rabbitmq, colocation with the Master, order after promote) with only
 * the agent's name (ocf:udrbd:drbd), the addresses and the disk changed.
 * Shared by the Pacemaker cluster test and the RabbitMQ demo, with the
 * per-node log directory ocf:rabbitmq:rabbitmq-server writes to.
 */
import fs from 'node:fs';
import path from 'node:path';

export const RABBITMQ_RESOURCE = 'rabbitmq';
export const RABBITMQ_MOUNT = '/var/lib/rabbitmq';

/**
 * The README's resync tuning: DRBD 8.4's dynamic controller (c-plan-ahead 20) with a fill target that
 * keeps the link busy (8.4's 100 sectors keep only 50 KiB in flight: a 64 MiB sync took 23 s here, 3.7 s
 * with 4M) and the rate ceiling DRBD ships (c-max-rate 100M), also as the controller's first guess.
 */
export const TUNED_RESYNC_DISK_OPTIONS = 'c-fill-target 4M; c-max-rate 100M; resync-rate 100M;';

/** What the README's cluster recipe adds: DRBD's resource-level fencing with udrbd's crm handlers. */
const FENCING_LINES = `  handlers {
    fence-peer          "/usr/local/lib/udrbd/udrbd-crm-fence-peer.sh";
    after-resync-target "/usr/local/lib/udrbd/udrbd-crm-unfence-peer.sh";
  }
`;

/** The resource file for /etc/drbd.d; `nodes` are [uname -n, address] pairs; `fencing`: the recipe's fencing lines. */
export function rabbitmqResourceFile(disk: string, nodes: readonly (readonly [string, string])[], options: { fencing?: boolean } = {}): string {
  const on = nodes.map(([name, address]) => `  on ${name} { address ${address}:7701; }\n`).join('');
  return `resource ${RABBITMQ_RESOURCE} {
  device    /dev/drbd1 minor 1;
  disk      ${disk};
  meta-disk internal;
  net { protocol C; }
  disk { ${options.fencing === true ? 'fencing resource-only; ' : ''}${TUNED_RESYNC_DISK_OPTIONS} }
${options.fencing === true ? FENCING_LINES : ''}${on}}
`;
}

/** The user's crm block for `crm configure`, with the service address `ip`/24. */
export function rabbitmqCrmConfig(ip: string): string {
  return `primitive p_drbd_rabbitmq ocf:udrbd:drbd \\
    params drbd_resource="${RABBITMQ_RESOURCE}" \\
    op monitor interval="29s" role="Master" \\
    op monitor interval="30s" role="Slave"
ms ms_drbd_rabbitmq p_drbd_rabbitmq \\
    meta notify="true" master-max="1" clone-max="2"
primitive p_fs_rabbitmq ocf:heartbeat:Filesystem \\
    params device="/dev/drbd1" directory="${RABBITMQ_MOUNT}" fstype="xfs" \\
    op start timeout="60s" op stop timeout="120s" \\
    op monitor interval="20s" timeout="40s"
primitive p_ip_rabbitmq ocf:heartbeat:IPaddr2 \\
    params ip="${ip}" cidr_netmask="24" \\
    op monitor interval="10s"
primitive p_rabbitmq ocf:rabbitmq:rabbitmq-server \\
    params nodename="rabbit@localhost" mnesia_base="${RABBITMQ_MOUNT}" \\
    op start timeout="120s" op stop timeout="120s" \\
    op monitor interval="20s" timeout="60s"
group g_rabbitmq p_fs_rabbitmq p_ip_rabbitmq p_rabbitmq
colocation c_rabbitmq_on_drbd inf: g_rabbitmq ms_drbd_rabbitmq:Master
order o_drbd_before_rabbitmq inf: ms_drbd_rabbitmq:promote g_rabbitmq:start
commit
`;
}

/** A node's /var/log/rabbitmq (NODE_DIR/log/rabbitmq on the host), owned by rabbitmq: the agent's log_base. */
export function prepareRabbitmqLogDir(nodeDir: string): void {
  const logDir = path.join(nodeDir, 'log', 'rabbitmq');
  fs.mkdirSync(logDir, { recursive: true });
  const m = /^rabbitmq:[^:]*:(\d+):(\d+):/m.exec(fs.readFileSync('/etc/passwd', 'utf8'));
  if (m === null) throw new Error('user rabbitmq is missing (apt-get install rabbitmq-server)');
  fs.chownSync(logDir, Number(m[1]), Number(m[2]));
}
