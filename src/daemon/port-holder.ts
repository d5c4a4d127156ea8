/**
 * daemon/port-holder — who listens on a TCP address:port on this host, so a
 * failed `up` can name it ("127.0.0.1:7701 is already in use by pid 812
 * (nc)"). Reads /proc/net/tcp{,6} for a LISTEN socket on the port (on the
 * address or a wildcard), then /proc/PID/fd for the process holding its
 * inode; both scans are bounded. Best effort: undefined when not found, not
 * permitted, or the scan hits its limits. Knows nothing of udrbd.
 */
import fs from 'node:fs';

/** Processes scanned at most. */
export const HOLDER_PID_SCAN_MAX = 65_536;
/** File descriptors looked at per process at most. */
export const HOLDER_FD_SCAN_PER_PROCESS_MAX = 4_096;
/** The whole scan gives up after this long (a busy host has many fds). */
export const HOLDER_SCAN_TIMEOUT_MS = 2_000;

const TCP_LISTEN_STATE = '0A';

export interface PortHolder {
  pid: number;
  command: string;
}

/** /proc/net/tcp's little-endian hex IPv4 (`0100007F`) as dotted quad. */
function ipv4FromProcHex(hex: string): string {
  const n = Number.parseInt(hex, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff].join('.');
}

/** Socket inodes listening on `port` at `host` or a wildcard address, from /proc/net/tcp text. */
export function listeningInodes(procNetTcp: string, host: string, port: number, ipv6: boolean): string[] {
  const inodes: string[] = [];
  for (const line of procNetTcp.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10 || fields[3] !== TCP_LISTEN_STATE) continue;
    const [addrHex, portHex] = fields[1]!.split(':');
    if (addrHex === undefined || portHex === undefined || Number.parseInt(portHex, 16) !== port) continue;
    const wildcard = /^0+$/.test(addrHex);
    const sameAddress = !ipv6 && ipv4FromProcHex(addrHex) === host;
    if (wildcard || sameAddress || ipv6) inodes.push(fields[9]!);
  }
  return inodes;
}

function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** The process listening on host:port, if it can be found. */
export function findPortHolder(host: string, port: number): PortHolder | undefined {
  const inodes = new Set([
    ...listeningInodes(readText('/proc/net/tcp'), host, port, false),
    ...listeningInodes(readText('/proc/net/tcp6'), host, port, true),
  ]);
  if (inodes.size === 0) return undefined;
  const deadline = Date.now() + HOLDER_SCAN_TIMEOUT_MS;
  let pids: string[];
  try {
    pids = fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n)).slice(0, HOLDER_PID_SCAN_MAX);
  } catch {
    return undefined;
  }
  for (const pid of pids) {
    if (Date.now() > deadline) return undefined;
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`).slice(0, HOLDER_FD_SCAN_PER_PROCESS_MAX);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const match = /^socket:\[(\d+)\]$/.exec(link);
      if (match && inodes.has(match[1]!)) {
        return { pid: Number(pid), command: readText(`/proc/${pid}/comm`).trim() || '?' };
      }
    }
  }
  return undefined;
}
