/**
 * cli/commands/version — registers `-V, --version` (drbdadm's eval-able
 * version lines, cli/version). Knows nothing of resources.
 */
import type { Command } from 'commander';
import type { GetContext } from './index.js';
import { versionText } from '../version.js';

export function register(program: Command, _getContext: GetContext): void {
  program.version(versionText(), '-V, --version', "print drbdadm's eval-able version lines (DRBDADM_*, DRBD_KERNEL_VERSION*) and UDRBD_VERSION");
}
