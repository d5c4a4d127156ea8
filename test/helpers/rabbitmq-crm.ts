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

/** What the README's cluster recipe adds: DRBD's resource-level fencing with udrbd's crm handlers. */
const FENCING_LINES = `  disk { fencing resource-only; }
  handlers {
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
