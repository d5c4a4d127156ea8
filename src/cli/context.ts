/**
 * cli/context — what every udrbdadm verb gets: the global options (config
 * file, node name, dry run), output streams, and helpers to report errors the
 * way drbdadm does. Verbs never call process.exit themselves: they throw
 * UdrbdError with DRBD's exit code, and udrbdadm.ts prints and exits.
 */
import os from 'node:os';

export interface CliContext {
  /** -c / --config-file; default /etc/drbd.conf (as drbdadm). */
  configPath: string;
  /** This node's `on HOST` name: --node, else UDRBD_NODE, else uname -n. */
  nodeName: string;
  /** Options given between `--` and the verb (drbdadm's backend options). */
  backendOptions: string[];
  dryRun: boolean;
  verbose: boolean;
  out: (text: string) => void;
  err: (text: string) => void;
}

export const DEFAULT_CONFIG_PATH = '/etc/drbd.conf';

export function defaultNodeName(explicit?: string): string {
  if (explicit) return explicit;
  const fromEnv = process.env.UDRBD_NODE;
  if (fromEnv) return fromEnv;
  return os.hostname();
}
