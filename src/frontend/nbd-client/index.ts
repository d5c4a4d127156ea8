/**
 * frontend/nbd-client — attaching /dev/nbdX to a udrbd NBD server with the
 * Debian nbd-client tool, and detaching it on demotion.
 */
export {
  attachNbd,
  detachNbd,
  ensureKernelNbd,
  findFreeNbdDevice,
  isNbdConnected,
  buildAttachArgs,
  buildDetachArgs,
  execaExec,
  defaultDeps,
  type AttachOptions,
  type ExecFn,
  type ExecResult,
  type NbdClientDeps,
  type SysFs,
} from './attach.js';
