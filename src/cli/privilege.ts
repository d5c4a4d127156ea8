/**
 * cli/privilege — udrbdadm's verbs that touch /run/udrbd, backing disks or
 * control sockets need root; as another user they stop at once with
 * "udrbdadm must run as root" (exit 20) instead of a raw EACCES/EPERM from
 * somewhere inside. Exit 20 is what drbdadm gives when its helper cannot do
 * its work (an exec error or a helper exit >= 20; drbdsetup's netlink and
 * drbdmeta's open errors are 20). Verbs that only read the
 * configuration (dump, the sh-* config queries, help) and every -d dry run
 * (cli/dry-run runs first and prints from the configuration alone) work
 * unprivileged. Knows only verb names.
 */
import { UdrbdError, ExitCode } from '../util/errors.js';

export const NOT_ROOT_MESSAGE = 'udrbdadm must run as root';

/** sh-* helpers that ask the running resource (or act) rather than the configuration. */
const SH_VERBS_NEEDING_ROOT: ReadonlySet<string> = new Set(['sh-status', 'sh-b-pri']);

export function verbNeedsRoot(verb: string): boolean {
  if (verb === 'dump' || verb === 'help') return false;
  if (verb.startsWith('sh-')) return SH_VERBS_NEEDING_ROOT.has(verb);
  return true;
}

export function isRoot(): boolean {
  return typeof process.geteuid !== 'function' || process.geteuid() === 0;
}

/** Throws "udrbdadm must run as root" (exit 20) for a privileged verb run by another user. */
export function requireRootFor(verb: string): void {
  if (verbNeedsRoot(verb) && !isRoot()) throw new UdrbdError(NOT_ROOT_MESSAGE, ExitCode.fatal);
}

/** A raw permission error that escaped a verb: the same message when not root. */
export function isPermissionError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EACCES' || code === 'EPERM';
}
