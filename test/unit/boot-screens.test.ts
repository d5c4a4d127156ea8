/**
 * The pure parts of the boot verbs and status screens: column -t as the
 * installed util-linux does it, sh-status text, the wfc-timeout choice
 * with DRBD's fix-ups, the wait-con-int texts, /proc/mounts matching, and
 * the timeout type from the on-disk flags.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { columnT, renderInitStatus } from '../../src/cli/render/proc-drbd.js';
import { drbdsetupShStatus, shellEscape } from '../../src/cli/render/sh-status.js';
import { chooseWfcTimeout, counterRedraw, timeoutRangeError, waitBanner, ABORT_PROMPT } from '../../src/cli/boot/wfc.js';
import { mountsOfDevice, parseMounts } from '../../src/cli/boot/mounts.js';
import { timeoutTypeOf } from '../../src/daemon/startup-info.js';
import { MdFlag } from '../../src/meta/types.js';
import type { StatusSnapshot } from '../../src/daemon/status.js';
import { ConnState, DiskState, Role } from '../../src/resource/states.js';

function snapshot(over: Partial<StatusSnapshot>): StatusSnapshot {
  return {
    role: Role.Secondary, peer: Role.Secondary, conn: ConnState.Connected, disk: DiskState.UpToDate, pdsk: DiskState.UpToDate,
    susp: false, suspNod: false, suspFen: false, userIsp: false, peerIsp: false, aftrIsp: false,
    resource: 'bt0', node: 'alpha', peerNode: 'beta', minor: 51, volume: 0, device: '/dev/drbd51', protocol: 'C', uuids: undefined,
    outOfSyncKiB: 0, sync: undefined, counters: {}, exposed: false, pid: 1, ...over,
  };
}

describe('columnT', () => {
  it('pads like the installed `column -t` (util-linux), short rows included', () => {
    const rows = [['m:res', 'cs', 'ro', 'ds', 'p', 'mounted', 'fstype'], ['1:r0', 'Connected', 'Primary/Secondary', 'UpToDate/UpToDate', 'C'], ['...', "sync'ed:", '2.5%', '(1/2)K'], ['2:r1', 'Unconfigured']];
    const column = spawnSync('column', ['-t'], { input: rows.map((r) => r.join(' ')).join('\n') + '\n', encoding: 'utf8' });
    expect(column.status).toBe(0);
    expect(columnT(rows).join('\n') + '\n').toBe(column.stdout);
  });
});

describe('init-status table', () => {
  it('keeps a named unconfigured minor as "<minor>:<name>  Unconfigured" and drops its counters', () => {
    const text = renderInitStatus([snapshot({ conn: ConnState.StandAlone, disk: DiskState.Diskless, peer: Role.Unknown, pdsk: DiskState.DUnknown })], new Map());
    expect(text.split('\n')[4]!.trimEnd()).toBe('51:bt0  Unconfigured');
  });
});

describe('sh-status (drbdsetup-84 block)', () => {
  it('prints the resync percentage while syncing, as the kernel computes it', () => {
    const text = drbdsetupShStatus(snapshot({ conn: ConnState.SyncSource, pdsk: DiskState.Inconsistent, sync: { totalBits: 262144, leftBits: 174763, percentDone: 33, speedKiBps: 1, averageKiBps: 1, etaSeconds: 1, bytesTransferred: 0 } }), 0);
    expect(text).toContain('\n_resynced_percent=33.9\n');
    expect(text).toContain('\n_cstate=SyncSource\n_role=Secondary\n_peer=Secondary\n_disk=UpToDate\n_pdsk=Inconsistent\n\n');
  });

  it('marks the resync-paused flags with 1', () => {
    const text = drbdsetupShStatus(snapshot({ conn: ConnState.PausedSyncS, userIsp: true }), 0);
    expect(text).toContain('_flags_susp=\n_flags_aftr_isp=\n_flags_peer_isp=\n_flags_user_isp=1\n\n');
  });

  it('a diskless StandAlone Primary is still Configured (drbdsetup tests role != Primary)', () => {
    expect(drbdsetupShStatus(snapshot({ role: Role.Primary, conn: ConnState.StandAlone, disk: DiskState.Diskless }), 0)).toContain('_known=Configured\n');
  });

  it('escapes what sh would not take literally', () => {
    expect(shellEscape('/etc/my drbd.conf:3')).toBe('/etc/my\\ drbd.conf:3');
  });
});

describe('wfc-timeout choice (drbdsetup choose_timeout)', () => {
  it('uses wfc for UT_DEFAULT, degr for UT_DEGRADED, outdated for UT_PEER_OUTDATED', () => {
    const t = { wfcTimeoutS: 60, degrWfcTimeoutS: 30, outdatedWfcTimeoutS: 10 };
    expect(chooseWfcTimeout(t, 'UT_DEFAULT')).toEqual({ timeoutS: 60, messages: [] });
    expect(chooseWfcTimeout(t, 'UT_DEGRADED').timeoutS).toBe(30);
    expect(chooseWfcTimeout(t, 'UT_PEER_OUTDATED').timeoutS).toBe(10);
  });

  it('caps degr-wfc-timeout by wfc-timeout with DRBD message', () => {
    const chosen = chooseWfcTimeout({ wfcTimeoutS: 5, degrWfcTimeoutS: 0, outdatedWfcTimeoutS: 2 }, 'UT_DEGRADED');
    expect(chosen.timeoutS).toBe(5);
    expect(chosen.messages).toEqual(['degr-wfc-timeout has to be shorter than wfc-timeout\ndegr-wfc-timeout implicitly set to wfc-timeout (5s)\n']);
  });

  it('an unset outdated-wfc-timeout takes the wfc value while the message names the degr value (drbd-utils quirk)', () => {
    const chosen = chooseWfcTimeout({ wfcTimeoutS: 5, degrWfcTimeoutS: 3, outdatedWfcTimeoutS: 0 }, 'UT_PEER_OUTDATED');
    expect(chosen.timeoutS).toBe(5);
    expect(chosen.messages).toEqual(['outdated-wfc-timeout has to be shorter than degr-wfc-timeout\noutdated-wfc-timeout implicitly set to degr-wfc-timeout (3s)\n']);
  });

  it('0 everywhere waits forever and says nothing', () => {
    expect(chooseWfcTimeout({ wfcTimeoutS: 0, degrWfcTimeoutS: 0, outdatedWfcTimeoutS: 0 }, 'UT_DEGRADED')).toEqual({ timeoutS: 0, messages: [] });
  });

  it('refuses values out of drbd_limits.h range', () => {
    expect(timeoutRangeError('wfc_timeout', 300001)).toBe('wfc_timeout => 300001 out of range [0..300000]');
    expect(timeoutRangeError('wfc_timeout', 7)).toBeUndefined();
  });
});

describe('wait-con-int texts', () => {
  it('banner and prompt as drbdadm-84 prints them; the counter lands on column 31, over "[ -- ]"', () => {
    expect(waitBanner('3', '5', 'bt0')).toBe(
      '\n***************************************************************\n' +
        " DRBD's startup script waits for the peer node(s) to appear.\n" +
        ' - If this node was already a degraded cluster before the\n' +
        '   reboot, the timeout is 3 seconds. [degr-wfc-timeout]\n' +
        ' - If the peer was available before the reboot, the timeout\n' +
        '   is 5 seconds. [wfc-timeout]\n' +
        "   (These values are for resource 'bt0'; 0 sec -> wait forever)\n",
    );
    expect(ABORT_PROMPT.indexOf('[ -- ]')).toBe(30);
    expect(counterRedraw(7)).toBe('\x1b[s\x1b[31G[   7]:\x1b[u');
  });
});

describe('/proc/mounts matching', () => {
  it('matches the configured path or its link target, decoding octal escapes', () => {
    const mounts = parseMounts('/dev/loop7 /mnt/a\\040b xfs rw 0 0\n/dev/sda1 / ext4 rw 0 0\n/dev/drbd52 /srv xfs rw 0 0\n');
    expect(mounts[0]).toEqual({ source: '/dev/loop7', mountPoint: '/mnt/a b', fsType: 'xfs' });
    expect(mountsOfDevice('/dev/drbd52', mounts).map((m) => m.mountPoint)).toEqual(['/srv']);
    expect(mountsOfDevice('/dev/drbd-not-there', mounts)).toEqual([]);
  });
});

describe('timeout type from the on-disk flags at attach', () => {
  it('a disconnected Primary (PRIMARY_IND, no CONNECTED_IND) is UT_DEGRADED', () => {
    expect(timeoutTypeOf(DiskState.DUnknown, MdFlag.consistent | MdFlag.wasUpToDate | MdFlag.primaryInd)).toBe('UT_DEGRADED');
  });
  it('a Primary that was connected, or a Secondary, is UT_DEFAULT', () => {
    expect(timeoutTypeOf(DiskState.DUnknown, MdFlag.consistent | MdFlag.primaryInd | MdFlag.connectedInd)).toBe('UT_DEFAULT');
    expect(timeoutTypeOf(DiskState.DUnknown, MdFlag.consistent)).toBe('UT_DEFAULT');
  });
  it('a peer known Outdated (flag or state) is UT_PEER_OUTDATED, before the degraded check', () => {
    expect(timeoutTypeOf(DiskState.DUnknown, MdFlag.consistent | MdFlag.primaryInd | MdFlag.peerOutDated)).toBe('UT_PEER_OUTDATED');
    expect(timeoutTypeOf(DiskState.Outdated, null)).toBe('UT_PEER_OUTDATED');
  });
});
