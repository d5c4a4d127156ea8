/**
 * cli/render/sh-status — `drbdadm sh-status` as drbd-utils 8.4 prints it
 * (drbdadm_main.c, its sh-status command): per resource drbdadm's `_conf_*` / `_stacked_on*`
 * prefix, then drbdsetup's block of `_minor= _res_name= _volume= _known=
 * _cstate= _role= _peer= _disk= _pdsk= _flags_* _resynced_percent=` and the
 * `_sh_status_process` hook line; a resource of several volumes prints the
 * prefix once and `_conf_volume=N` plus drbdsetup's block per volume, in
 * volume order (drbdadm runs drbdsetup sh-status once per minor). The text is
 * meant for `eval` in sh (the init script's drbd_pretty_status, the Pacemaker
 * agent). Pure.
 */
import { ConnState, DiskState, Role, connName, diskName, roleName } from '../../resource/states.js';
import { volumesOf, type StatusSnapshot } from '../../daemon/status.js';
import { syncPerMilleOf } from './proc-drbd.js';
import { shellEscape } from '../../util/shell-escape.js';
export { shellEscape };

export interface ShStatusResource {
  name: string;
  /** `FILE:LINE` of `resource NAME {`. */
  definedAt: string;
  /** The configured volume number of a one-volume resource (several volumes: each snapshot's own). */
  volume: number;
  status: StatusSnapshot;
}

/** drbdsetup's test: a minor with no disk and no network that is not Primary reads as Unconfigured. */
function isUnconfigured(s: StatusSnapshot): boolean {
  return s.conn === ConnState.StandAlone && s.disk === DiskState.Diskless && s.role !== Role.Primary;
}

/** The states for which the kernel reports the resync totals (Sync*, Verify*, PausedSync*). */
function reportsResyncTotals(conn: ConnState): boolean {
  return conn >= ConnState.SyncSource && conn <= ConnState.PausedSyncT;
}

/** drbdsetup-84 sh-status for one minor. */
export function drbdsetupShStatus(s: StatusSnapshot, volume: number): string {
  const lines = [`_minor=${s.minor}`, `_res_name=${shellEscape(s.resource)}`, `_volume=${volume}`];
  if (isUnconfigured(s)) {
    lines.push('_known=Unconfigured', '', '_cstate=Unconfigured', '_role=', '_peer=', '_disk=', '_pdsk=');
    lines.push('_flags_susp=', '_flags_aftr_isp=', '_flags_peer_isp=', '_flags_user_isp=', '_resynced_percent=');
  } else {
    lines.push('_known=Configured', '');
    lines.push(`_cstate=${connName(s.conn)}`, `_role=${roleName(s.role)}`, `_peer=${roleName(s.peer)}`, `_disk=${diskName(s.disk)}`, `_pdsk=${diskName(s.pdsk)}`, '');
    const flag = (on: boolean): string => (on ? '1' : '');
    lines.push(`_flags_susp=${flag(s.susp)}`, `_flags_aftr_isp=${flag(s.aftrIsp)}`, `_flags_peer_isp=${flag(s.peerIsp)}`, `_flags_user_isp=${flag(s.userIsp)}`, '');
    let percent = '';
    if (reportsResyncTotals(s.conn) && s.sync) {
      const perMille = syncPerMilleOf(s.sync.totalBits, s.sync.leftBits);
      percent = `${Math.floor(perMille / 10)}.${perMille % 10}`;
    }
    lines.push(`_resynced_percent=${percent}`);
  }
  lines.push('', '_sh_status_process', '', '');
  return `${lines.join('\n')}\n`;
}

/** drbdadm-84 sh-status for one resource: its prefix, then `_conf_volume=` and drbdsetup's block per volume. */
export function renderShStatus(r: ShStatusResource): string {
  const prefix = [
    `_conf_res_name=${shellEscape(r.name)}`,
    `_conf_file_line=${shellEscape(r.definedAt)}`,
    '',
    '_stacked_on=',
    '_stacked_on_device=',
    '_stacked_on_minor=',
  ];
  const volumes = volumesOf(r.status);
  const blocks = volumes.length === 1
    ? [{ vnr: r.volume, status: r.status }]
    : volumes.map((v) => ({ vnr: v.volume, status: v }));
  return `${prefix.join('\n')}\n${blocks.map((b) => `_conf_volume=${b.vnr}\n${drbdsetupShStatus(b.status, b.vnr)}`).join('')}`;
}
