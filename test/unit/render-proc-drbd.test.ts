import { describe, it, expect } from 'vitest';
import {
  renderProcDrbd,
  renderInitStatus,
  progressBar,
  syncPerMilleOf,
  groupThousands,
} from '../../src/cli/render/proc-drbd.js';
import type { StatusSnapshot } from '../../src/daemon/status.js';
import { drbdsetupShStatus } from '../../src/cli/render/sh-status.js';
import { ConnState, DiskState, Role } from '../../src/resource/states.js';

function snapshot(over: Partial<StatusSnapshot>): StatusSnapshot {
  return {
    role: Role.Primary,
    peer: Role.Secondary,
    conn: ConnState.Connected,
    disk: DiskState.UpToDate,
    pdsk: DiskState.UpToDate,
    susp: false,
    suspNod: false,
    suspFen: false,
    userIsp: false,
    peerIsp: false,
    aftrIsp: false,
    resource: 'rabbitmq',
    node: 'compute1',
    peerNode: 'compute2',
    minor: 1,
    volume: 0,
    device: '/dev/drbd1',
    protocol: 'C',
    uuids: undefined,
    outOfSyncKiB: 0,
    sync: undefined,
    counters: { ns: 10, nr: 0, dw: 10, dr: 4, al: 2, bm: 0, lo: 0, pe: 0, ua: 0, ap: 0, ep: 1 },
    exposed: true,
    pid: 1,
    ...over,
  };
}

describe('/proc/drbd rendering (drbd84.md §5.1)', () => {
  it('renders the progress bar as the kernel does: 20 chars, 21 at zero', () => {
    expect(progressBar(335)).toBe('[=====>..............]');
    expect(progressBar(0)).toBe('[>....................]');
    expect(progressBar(1000)).toBe('[===================>]');
  });

  it('computes per-mille done with the kernel shift arithmetic', () => {
    // 1048576 KiB total (262144 bits), 699052 KiB left (174763 bits) → 33.9 % after the shifts
    expect(syncPerMilleOf(262144, 174763)).toBe(339); // (170*1000)/257 = 661
    expect(syncPerMilleOf(262144, 0)).toBe(1000);
  });

  it('groups thousands with commas', () => {
    expect(groupThousands(40960)).toBe('40,960');
    expect(groupThousands(1234567)).toBe('1,234,567');
    expect(groupThousands(999)).toBe('999');
  });

  it('prints a healthy minor with a blank line before a minor that is not 0', () => {
    const text = renderProcDrbd([snapshot({})]);
    expect(text.split('\n')).toEqual([
      'version: 8.4.11 (api:1/proto:86-101)',
      expect.stringMatching(/^srcversion: /),
      '',
      ' 1: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----',
      '    ns:10 nr:0 dw:10 dr:4 al:2 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0',
      '',
    ]);
  });

  it('prints no protocol letter for StandAlone and the sync lines for SyncSource', () => {
    const standalone = renderProcDrbd([snapshot({ minor: 0, conn: ConnState.StandAlone, peer: Role.Unknown, pdsk: DiskState.DUnknown, protocol: undefined })]);
    expect(standalone).toContain(' 0: cs:StandAlone ro:Primary/Unknown ds:UpToDate/DUnknown   r-----');
    const syncing = renderProcDrbd([
      snapshot({
        minor: 0,
        conn: ConnState.SyncSource,
        pdsk: DiskState.Inconsistent,
        outOfSyncKiB: 699052,
        sync: { totalBits: 262144, leftBits: 174763, percentDone: 33.3, speedKiBps: 40960, averageKiBps: 40960, etaSeconds: 17, bytesTransferred: 0 },
      }),
    ]);
    const lines = syncing.split('\n');
    expect(lines[4]).toBe("\t[=====>..............] sync'ed: 33.9% (699052/1048576)K");
    expect(lines[5]).toBe('\tfinish: 0:00:17 speed: 40,960 (40,960) K/sec');
  });

  it('prints Unconfigured for a minor with nothing attached', () => {
    const text = renderProcDrbd([snapshot({ minor: 0, role: Role.Secondary, peer: Role.Unknown, conn: ConnState.StandAlone, disk: DiskState.Diskless, pdsk: DiskState.DUnknown })]);
    expect(text.split('\n')[2]).toBe(' 0: cs:Unconfigured');
  });
});

describe('/etc/init.d/drbd status table (drbd84.md §5.4)', () => {
  it('aligns columns like column -t and puts the progress row first', () => {
    const text = renderInitStatus(
      [
        snapshot({
          conn: ConnState.SyncSource,
          pdsk: DiskState.Inconsistent,
          sync: { totalBits: 262144, leftBits: 174763, percentDone: 33.3, speedKiBps: 1, averageKiBps: 1, etaSeconds: 1, bytesTransferred: 0 },
        }),
      ],
      new Map([[1, { mountPoint: '/var/lib/rabbitmq', fsType: 'ext4' }]]),
    );
    expect(text.split('\n').slice(3)).toEqual([
      'm:res       cs          ro                 ds                     p  mounted            fstype',
      "...         sync'ed:    33.9%              (699052/1048576)K" + ' '.repeat(28), // column -t pads a short row
      '1:rabbitmq  SyncSource  Primary/Secondary  UpToDate/Inconsistent  C  /var/lib/rabbitmq  ext4',
      '',
    ]);
    expect(text.split('\n')[0]).toBe('drbd driver loaded OK; device status:');
  });

  it('moves the flags into the p column when there is no protocol (StandAlone)', () => {
    const text = renderInitStatus(
      [snapshot({ minor: 5, role: Role.Secondary, peer: Role.Unknown, conn: ConnState.StandAlone, pdsk: DiskState.DUnknown, protocol: undefined })],
      new Map(),
    );
    expect(text).toContain('5:rabbitmq  StandAlone  Secondary/Unknown  UpToDate/DUnknown  r-----');
  });
});

describe('Ahead/Behind in the status screens (on-congestion pull-ahead)', () => {
  it('/proc/drbd and the init script table show cs:Ahead / cs:Behind with the marked KiB as oos, no sync lines', () => {
    const ahead = snapshot({ conn: ConnState.Ahead, pdsk: DiskState.Consistent, protocol: 'A', outOfSyncKiB: 1376 });
    const behind = snapshot({ minor: 2, role: Role.Secondary, peer: Role.Primary, conn: ConnState.Behind, disk: DiskState.Outdated, protocol: 'A', outOfSyncKiB: 1376 });
    const lines = renderProcDrbd([ahead, behind]).split('\n');
    expect(lines).toContain(' 1: cs:Ahead ro:Primary/Secondary ds:UpToDate/Consistent A r-----');
    expect(lines).toContain(' 2: cs:Behind ro:Secondary/Primary ds:Outdated/UpToDate A r-----');
    expect(lines.filter((l) => l.includes('oos:1376'))).toHaveLength(2);
    expect(lines.some((l) => l.includes('sync\'ed') || l.includes('finish:'))).toBe(false);
    const table = renderInitStatus([ahead, behind], new Map()).split('\n');
    expect(table.some((l) => /^1:rabbitmq\s+Ahead\s+Primary\/Secondary\s+UpToDate\/Consistent\s+A/.test(l))).toBe(true);
    expect(table.some((l) => /^2:rabbitmq\s+Behind\s+Secondary\/Primary\s+Outdated\/UpToDate\s+A/.test(l))).toBe(true);
    // drbdsetup sh-status: the cstate by name, no resync totals outside Sync*.
    expect(drbdsetupShStatus(ahead, 0)).toContain('_cstate=Ahead');
    expect(drbdsetupShStatus(behind, 0)).toContain('_cstate=Behind');
    expect(drbdsetupShStatus(ahead, 0)).toContain('_resynced_percent=\n');
  });
});
