/**
 * The pure parts of UDRBD_SYSLOG and wait-sync: the kernel module's prefixes
 * for state changes (device vs connection side), the logger(1) arguments per
 * target, the refusal of malformed settings, and when wait-sync may stop.
 */
import { describe, expect, it } from 'vitest';
import { kernelStateLine } from '../../src/daemon/kernel-log.js';
import { ConnState, DiskState, Role } from '../../src/resource/states.js';
import type { ResourceState } from '../../src/resource/state.js';
import { loggerArgs, syslogTargetFromEnv } from '../../src/util/syslog.js';
import { waitSyncVerdict } from '../../src/cli/wait-sync.js';

const base: ResourceState = {
  role: Role.Secondary, peer: Role.Unknown, conn: ConnState.WFConnection, disk: DiskState.UpToDate, pdsk: DiskState.DUnknown,
  susp: false, suspNod: false, suspFen: false, aftrIsp: false, peerIsp: false, userIsp: false,
};
const names = { resource: 'r0', minor: 1 };

describe('kernel wording for syslog', () => {
  it('connection set-up and tear-down are `drbd RES:` lines', () => {
    expect(kernelStateLine(base, { ...base, conn: ConnState.WFReportParams }, names)).toBe('drbd r0: conn( WFConnection -> WFReportParams )');
    const connected = { ...base, conn: ConnState.Connected, peer: Role.Secondary, pdsk: DiskState.UpToDate };
    expect(kernelStateLine(connected, { ...connected, conn: ConnState.TearDown, peer: Role.Unknown, pdsk: DiskState.DUnknown }, names)).toBe(
      'drbd r0: peer( Secondary -> Unknown ) conn( Connected -> TearDown ) pdsk( UpToDate -> DUnknown )',
    );
  });

  it('roles, disk states, the handshake outcome and resync states are `block drbdN:` lines', () => {
    expect(kernelStateLine(base, { ...base, role: Role.Primary }, names)).toBe('block drbd1: role( Secondary -> Primary )');
    expect(kernelStateLine(base, { ...base, disk: DiskState.Outdated }, names)).toBe('block drbd1: disk( UpToDate -> Outdated )');
    const reporting = { ...base, conn: ConnState.WFReportParams };
    expect(kernelStateLine(reporting, { ...reporting, conn: ConnState.Connected, peer: Role.Secondary, pdsk: DiskState.UpToDate }, names)).toBe(
      'block drbd1: peer( Unknown -> Secondary ) conn( WFReportParams -> Connected ) pdsk( DUnknown -> UpToDate )',
    );
    expect(kernelStateLine({ ...base, conn: ConnState.WFSyncUUID }, { ...base, conn: ConnState.SyncTarget }, names)).toBe('block drbd1: conn( WFSyncUUID -> SyncTarget )');
    expect(kernelStateLine(base, { ...base }, names)).toBeUndefined();
  });
});

describe('UDRBD_SYSLOG', () => {
  it('off unless set; 1, unix:PATH and udp:HOST:PORT choose logger(1) targets', () => {
    expect(syslogTargetFromEnv({})).toBeUndefined();
    expect(syslogTargetFromEnv({ UDRBD_SYSLOG: '0' })).toBeUndefined();
    expect(loggerArgs(syslogTargetFromEnv({ UDRBD_SYSLOG: '1' })!)).toEqual(['--prio-prefix', '-p', 'daemon.info', '-t', 'kernel', '--socket-errors=on']);
    expect(loggerArgs(syslogTargetFromEnv({ UDRBD_SYSLOG: 'unix:/run/x.sock' })!, 'udrbd')).toEqual(['--prio-prefix', '-p', 'daemon.info', '-t', 'udrbd', '--socket-errors=on', '-u', '/run/x.sock']);
    expect(syslogTargetFromEnv({ UDRBD_SYSLOG: 'udp:[::1]:514' })).toEqual({ kind: 'udp', host: '::1', port: 514 });
    expect(loggerArgs(syslogTargetFromEnv({ UDRBD_SYSLOG: 'udp:127.0.0.1:7963' })!).slice(-6)).toEqual(['--rfc3164', '-d', '-n', '127.0.0.1', '-P', '7963']);
  });

  it('refuses what it cannot use, saying what to set', () => {
    expect(() => syslogTargetFromEnv({ UDRBD_SYSLOG: 'yes please' })).toThrow(/is not understood\. UDRBD_SYSLOG takes 1 \(local syslog\), unix:\/PATH or udp:HOST:PORT/);
    expect(() => syslogTargetFromEnv({ UDRBD_SYSLOG: 'unix:relative.sock' })).toThrow(/must be absolute/);
    expect(() => syslogTargetFromEnv({ UDRBD_SYSLOG: 'udp:127.0.0.1:0' })).toThrow(/port 1\.\.65535/);
    expect(() => syslogTargetFromEnv({ UDRBD_SYSLOG: 'udp:127.0.0.1' })).toThrow(/udp:HOST:PORT/);
  });
});

describe('wait-sync verdict (drbdsetup 8.4 rules)', () => {
  it('waits for the connection, then for resync/verify to end; StandAlone ends the wait unless --wait-after-sb', () => {
    for (const cs of ['Unconnected', 'WFConnection', 'WFReportParams', 'BrokenPipe', 'NetworkFailure', 'TearDown']) expect(waitSyncVerdict(cs, false), cs).toBe('waiting-for-connection');
    for (const cs of ['WFBitMapS', 'WFBitMapT', 'WFSyncUUID', 'SyncSource', 'SyncTarget', 'PausedSyncS', 'PausedSyncT', 'VerifyS', 'VerifyT', 'StartingSyncS']) expect(waitSyncVerdict(cs, false), cs).toBe('waiting-for-sync');
    expect(waitSyncVerdict('Connected', false)).toBe('done');
    expect(waitSyncVerdict('StandAlone', false)).toBe('done');
    expect(waitSyncVerdict('Unconfigured', false)).toBe('done');
    expect(waitSyncVerdict('StandAlone', true)).toBe('waiting-for-connection');
    expect(() => waitSyncVerdict('Bogus', false)).toThrow(/unknown connection state 'Bogus'/);
  });
});
