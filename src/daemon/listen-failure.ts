/**
 * daemon/listen-failure — what `up` / `connect` tell the operator when this
 * node's first listen on its configured address fails, with drbdadm's
 * wording and exit code 10 (drbdsetup's answer to a kernel error): an address that cannot be
 * bound here (EADDRNOTAVAIL) is "IP 192.0.2.1 not found on this host.";
 * a port in use names address:port and, if it can be found, the process
 * holding it. Deciding "on this host" by bindability (not by matching an
 * interface list) is what makes 127.0.0.0/8 all local, as the kernel has it.
 * Knows nothing of the peer protocol.
 */
import { UdrbdError, ExitCode } from '../util/errors.js';
import { findPortHolder } from './port-holder.js';

export interface ListenTarget {
  resource: string;
  host: string;
  port: number;
  configPath: string;
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The first listen of a connect failed: `up` fails with it; other connect errors are logged and retried as before. */
export class ListenFailedError extends UdrbdError {
  override name = 'ListenFailedError';
}

export function listenFailureError(err: NodeJS.ErrnoException, target: ListenTarget): ListenFailedError {
  const where = hostPort(target.host, target.port);
  if (err.code === 'EADDRNOTAVAIL') {
    return new ListenFailedError(`IP ${target.host} not found on this host.`, ExitCode.configInvalid);
  }
  if (err.code === 'EADDRINUSE') {
    const holder = findPortHolder(target.host, target.port);
    const by = holder ? ` by pid ${holder.pid} (${holder.command})` : '';
    return new ListenFailedError(
      `${target.resource}: cannot listen on ${where}: the address is already in use${by}; ` +
        `stop that process or change the address of this node in ${target.configPath}`,
      ExitCode.configInvalid,
    );
  }
  return new ListenFailedError(
    `${target.resource}: cannot listen on ${where}: ${err.message}; check the address of this node in ${target.configPath}`,
    ExitCode.configInvalid,
  );
}
