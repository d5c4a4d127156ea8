/**
 * frontend/nbd/tcp-address — where the NBD export may listen on TCP. NBD has
 * no authentication, so only loopback addresses are accepted: IPv4
 * 127.0.0.0/8 and IPv6 ::1, as literal addresses (a name such as
 * `localhost` could resolve to anything). `HOST:PORT` is the
 * UDRBD_NBD_TCP syntax; IPv6 is written `[::1]:PORT`.
 */
import net from 'node:net';
import { UdrbdError, ExitCode } from '../../util/errors.js';

export interface NbdTcpAddress {
  readonly host: string;
  readonly port: number;
}

const PORT_MIN = 1;
const PORT_MAX = 65535;

/** True for a literal loopback address: 127.0.0.0/8 or ::1 (any spelling). */
export function isLoopbackAddress(host: string): boolean {
  if (net.isIPv4(host)) return host.split('.')[0] === '127';
  if (net.isIPv6(host)) {
    const list = new net.BlockList();
    list.addAddress('::1', 'ipv6');
    return list.check(host, 'ipv6');
  }
  return false;
}

/** Throws a usage error naming `where` unless `host` is a literal loopback address. */
export function assertLoopbackHost(host: string, where: string): void {
  if (isLoopbackAddress(host)) return;
  throw new UdrbdError(
    `${where}: NBD over TCP is only served on a loopback address (127.0.0.0/8 or ::1), not on '${host}': ` +
      `NBD has no authentication, so anyone who can reach the port could read and write the volume; ` +
      `use e.g. 127.0.0.1:10809, or the unix socket`,
    ExitCode.configInvalid,
  );
}

/** Parses `HOST:PORT` (IPv6 as `[::1]:PORT`); `where` names the setting in error messages. */
export function parseNbdTcpAddress(text: string, where: string): NbdTcpAddress {
  const value = text.trim();
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(value) ?? /^([^:[\]]+):(\d+)$/.exec(value);
  if (match === null) {
    throw new UdrbdError(`${where}: expected HOST:PORT (e.g. 127.0.0.1:10809, or [::1]:10809), not '${value}'`, ExitCode.configInvalid);
  }
  const host = match[1]!;
  const port = Number(match[2]);
  if (!Number.isSafeInteger(port) || port < PORT_MIN || port > PORT_MAX) {
    throw new UdrbdError(`${where}: port must be ${PORT_MIN}..${PORT_MAX}, not '${match[2]}' (in '${value}')`, ExitCode.configInvalid);
  }
  assertLoopbackHost(host, where);
  return { host, port };
}
