/**
 * metrics/listen-address — where the Prometheus endpoint may listen. The
 * endpoint has no authentication and tells anyone who reaches it the node's
 * resources, roles and load, so it listens on loopback unless the operator
 * says otherwise on purpose (`--allow-remote` or UDRBD_METRICS_ALLOW_REMOTE=1);
 * the default is drbd-reactor's port 9942 on 127.0.0.1. Addresses are
 * literal (a name could resolve to anything): `HOST:PORT`, `[V6]:PORT`, or a
 * bare `PORT` (127.0.0.1). Pure: binds nothing. Knows nothing of resources.
 */
import net from 'node:net';
import { UdrbdError, ExitCode } from '../util/errors.js';

/** drbd-reactor's prometheus plugin listens on this port. */
export const METRICS_PORT_DEFAULT = 9942;
export const METRICS_HOST_DEFAULT = '127.0.0.1';
export const ALLOW_REMOTE_ENV = 'UDRBD_METRICS_ALLOW_REMOTE';

const PORT_MIN = 1;
const PORT_MAX = 65535;

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** True for a literal loopback address: 127.0.0.0/8 or ::1 (any spelling). */
export function isLoopbackHost(host: string): boolean {
  if (net.isIPv4(host)) return host.split('.')[0] === '127';
  if (net.isIPv6(host)) {
    const list = new net.BlockList();
    list.addAddress('::1', 'ipv6');
    return list.check(host, 'ipv6');
  }
  return false;
}

/** `host:port` as an operator writes it back (IPv6 in brackets). */
export function formatListenAddress(address: ListenAddress): string {
  return net.isIPv6(address.host) ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

/** True when UDRBD_METRICS_ALLOW_REMOTE is 1/yes/true. */
export function allowRemoteFromEnv(env: NodeJS.ProcessEnv): boolean {
  const value = (env[ALLOW_REMOTE_ENV] ?? '').trim().toLowerCase();
  return value === '1' || value === 'yes' || value === 'true';
}

/**
 * Parses `--listen` (undefined: 127.0.0.1:9942) and applies the loopback rule:
 * a non-loopback address is refused unless `allowRemote`.
 */
export function parseListenAddress(text: string | undefined, allowRemote: boolean): ListenAddress {
  const address = text === undefined ? { host: METRICS_HOST_DEFAULT, port: METRICS_PORT_DEFAULT } : parseHostPort(text.trim());
  if (!isLoopbackHost(address.host) && !allowRemote) {
    throw new UdrbdError(
      `udrbdadm metrics: refusing to listen on ${formatListenAddress(address)}: it is not a loopback address (127.0.0.0/8 or ::1), ` +
        `and the metrics endpoint has no authentication; listen on loopback (default ${METRICS_HOST_DEFAULT}:${METRICS_PORT_DEFAULT}) ` +
        `and scrape through a proxy or tunnel, or pass --allow-remote (or set ${ALLOW_REMOTE_ENV}=1) to serve it on ${address.host} on purpose`,
      ExitCode.configInvalid,
    );
  }
  return address;
}

function parseHostPort(value: string): ListenAddress {
  if (/^\d+$/.test(value)) return { host: METRICS_HOST_DEFAULT, port: checkPort(value, value) };
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(value) ?? /^([^:[\]]+):(\d+)$/.exec(value);
  if (match === null) {
    throw new UdrbdError(`udrbdadm metrics: --listen expects HOST:PORT, [IPV6]:PORT or PORT (e.g. 127.0.0.1:${METRICS_PORT_DEFAULT}), not '${value}'`, ExitCode.usage);
  }
  const host = match[1]!;
  if (net.isIP(host) === 0) {
    throw new UdrbdError(`udrbdadm metrics: --listen needs a literal IP address, not the name '${host}' (e.g. 127.0.0.1:${METRICS_PORT_DEFAULT})`, ExitCode.usage);
  }
  return { host, port: checkPort(match[2]!, value) };
}

function checkPort(text: string, value: string): number {
  const port = Number(text);
  if (!Number.isSafeInteger(port) || port < PORT_MIN || port > PORT_MAX) {
    throw new UdrbdError(`udrbdadm metrics: port must be ${PORT_MIN}..${PORT_MAX}, not '${text}' (in --listen '${value}')`, ExitCode.usage);
  }
  return port;
}
