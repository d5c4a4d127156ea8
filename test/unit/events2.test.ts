/**
 * events2 lines: daemon/events2 (which notifications, which fields) through
 * cli/events2-printer (what drbdsetup-84 events2 prints), checked against
 * fixed lines written from drbd-utils' user/v84/drbdsetup.c formats
 * (event_key, print_notifications, print_*_statistics) and the 8.4 kernel's
 * notify_* calls.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  changeEvents,
  connectionText,
  downEvents,
  existsEvents,
  helperEvent,
  helperStatus,
  isReplicating,
  replicationText,
} from '../../src/daemon/events2.js';
import { Events2Printer, formatTimestamp, type Events2PrintOptions } from '../../src/cli/events2-printer.js';
import type { ControlEvent } from '../../src/control/protocol.js';
import { createdEvents } from '../../src/cli/commands/events.js';
import type { StatusSnapshot } from '../../src/daemon/status.js';
import { ConnState, DiskState, Role } from '../../src/resource/states.js';

function snapshot(over: Partial<StatusSnapshot> = {}): StatusSnapshot {
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
    resource: 'r0',
    node: 'alpha',
    peerNode: 'beta',
    minor: 1,
    volume: 0,
    device: '/dev/drbd1',
    protocol: 'C',
    uuids: undefined,
    outOfSyncKiB: 0,
    sync: undefined,
    counters: { ns: 2048, nr: 4, dw: 3072, dr: 512, al: 7, pe: 0, ua: 0, ap: 0, ep: 1, oos: 0 },
    deviceSizeKiB: 65532,
    exposed: false,
    pid: 1234,
    ...over,
  };
}

const plain: Events2PrintOptions = { statistics: false, timestamps: false, now: false };

function lines(events: ControlEvent[], printer: Events2Printer): string[] {
  return events.map((e) => printer.format(e)).filter((l): l is string => l !== undefined);
}

describe('events2 initial dump (exists)', () => {
  it('a connected Primary prints its four objects with drbdsetup-84 keys, then exists -', () => {
    expect(lines(existsEvents(snapshot()), new Events2Printer(plain))).toEqual([
      'exists resource name:r0 role:Primary suspended:no',
      'exists connection name:r0 peer-node-id:0 conn-name:peer connection:Connected role:Secondary',
      'exists device name:r0 volume:0 minor:1 disk:UpToDate',
      'exists peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:Established peer-disk:UpToDate resync-suspended:no',
      'exists -',
    ]);
  });

  it('a StandAlone resource has a connection without conn-name (no peer address) and replication:StandAlone', () => {
    const s = snapshot({ role: Role.Secondary, peer: Role.Unknown, conn: ConnState.StandAlone, pdsk: DiskState.DUnknown });
    expect(lines(existsEvents(s), new Events2Printer(plain))).toEqual([
      'exists resource name:r0 role:Secondary suspended:no',
      'exists connection name:r0 peer-node-id:0 connection:StandAlone role:Unknown',
      'exists device name:r0 volume:0 minor:1 disk:UpToDate',
      'exists peer-device name:r0 peer-node-id:0 volume:0 replication:StandAlone peer-disk:DUnknown resync-suspended:no',
      'exists -',
    ]);
  });

  it('--statistics adds drbdsetup-84 verbose statistics in its order (KiB from the counters)', () => {
    const s = snapshot({ conn: ConnState.SyncSource, pdsk: DiskState.Inconsistent, outOfSyncKiB: 4096, counters: { ns: 2048, nr: 4, dw: 3072, dr: 512, al: 7, pe: 3, ua: 1, ap: 2 } });
    expect(lines(existsEvents(s), new Events2Printer({ ...plain, statistics: true }))).toEqual([
      'exists resource name:r0 role:Primary suspended:no write-ordering:flush',
      'exists connection name:r0 peer-node-id:0 conn-name:peer connection:Connected role:Secondary congested:no',
      'exists device name:r0 volume:0 minor:1 disk:UpToDate size:65532 read:512 written:3072 al-writes:7 bm-writes:0 upper-pending:2 lower-pending:0 al-suspended:no blocked:no',
      'exists peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:SyncSource peer-disk:Inconsistent resync-suspended:no received:4 sent:2048 out-of-sync:4096 pending:3 unacked:1',
      'exists -',
    ]);
  });

  it('suspended and resync-suspended list every reason, comma-separated, as susp_str/resync_susp_str', () => {
    const s = snapshot({ susp: true, suspFen: true, userIsp: true, aftrIsp: true, conn: ConnState.PausedSyncS });
    const out = lines(existsEvents(s), new Events2Printer({ ...plain, statistics: true }));
    expect(out[0]).toBe('exists resource name:r0 role:Primary suspended:user,fencing write-ordering:flush');
    expect(out[2]).toMatch(/ blocked:upper$/);
    expect(out[3]).toBe(
      'exists peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:PausedSyncS peer-disk:UpToDate resync-suspended:user,dependency received:4 sent:2048 out-of-sync:0 pending:0 unacked:0',
    );
  });
});

describe('events2 changes', () => {
  it('a change line carries the key and only the fields that changed', () => {
    const printer = new Events2Printer(plain);
    const before = snapshot();
    lines(existsEvents(before), printer);
    const after = snapshot({ role: Role.Secondary });
    expect(lines(changeEvents(before, after), printer)).toEqual(['change resource name:r0 role:Secondary']);
  });

  it('a lost connection: NetworkFailure, then Connecting / WFConnection, role and peer-disk cleared once', () => {
    const printer = new Events2Printer(plain);
    const s0 = snapshot();
    const s1 = snapshot({ conn: ConnState.NetworkFailure, peer: Role.Unknown, pdsk: DiskState.DUnknown });
    const s2 = snapshot({ conn: ConnState.Unconnected, peer: Role.Unknown, pdsk: DiskState.DUnknown });
    const s3 = snapshot({ conn: ConnState.WFConnection, peer: Role.Unknown, pdsk: DiskState.DUnknown });
    lines(existsEvents(s0), printer);
    expect([...lines(changeEvents(s0, s1), printer), ...lines(changeEvents(s1, s2), printer), ...lines(changeEvents(s2, s3), printer)]).toEqual([
      'change connection name:r0 peer-node-id:0 conn-name:peer connection:NetworkFailure role:Unknown',
      'change peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:NetworkFailure peer-disk:DUnknown',
      'change connection name:r0 peer-node-id:0 conn-name:peer connection:Unconnected',
      'change peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:Unconnected',
      'change connection name:r0 peer-node-id:0 conn-name:peer connection:Connecting',
      'change peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:WFConnection',
    ]);
  });

  it('the connection stays Connected while the device goes WFReportParams -> Connected -> SyncSource (8.4 connection-wide state)', () => {
    const printer = new Events2Printer(plain);
    const s0 = snapshot({ conn: ConnState.WFConnection, peer: Role.Unknown, pdsk: DiskState.DUnknown, role: Role.Secondary });
    const s1 = snapshot({ conn: ConnState.WFReportParams, peer: Role.Unknown, pdsk: DiskState.DUnknown, role: Role.Secondary });
    const s2 = snapshot({ conn: ConnState.Connected, peer: Role.Secondary, pdsk: DiskState.Inconsistent, role: Role.Secondary });
    const s3 = snapshot({ conn: ConnState.SyncSource, pdsk: DiskState.Inconsistent, role: Role.Primary });
    lines(existsEvents(s0), printer);
    expect([...lines(changeEvents(s0, s1), printer), ...lines(changeEvents(s1, s2), printer), ...lines(changeEvents(s2, s3), printer)]).toEqual([
      'change connection name:r0 peer-node-id:0 conn-name:peer connection:Connected',
      'change peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:Off',
      'change connection name:r0 peer-node-id:0 conn-name:peer role:Secondary',
      'change peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:Established peer-disk:Inconsistent',
      'change resource name:r0 role:Primary',
      'change peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:SyncSource',
    ]);
  });

  it('with --statistics a change repeats the counters but not unchanged congested/blocked/write-ordering', () => {
    const printer = new Events2Printer({ ...plain, statistics: true });
    const s0 = snapshot();
    const s1 = snapshot({ conn: ConnState.SyncSource, pdsk: DiskState.Inconsistent, outOfSyncKiB: 1024, role: Role.Secondary, disk: DiskState.UpToDate });
    lines(existsEvents(s0), printer);
    expect(lines(changeEvents(s0, s1), printer)).toEqual([
      'change resource name:r0 role:Secondary',
      'change peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:SyncSource peer-disk:Inconsistent received:4 sent:2048 out-of-sync:1024 pending:0 unacked:0',
    ]);
    const s2 = snapshot({ disk: DiskState.Outdated, susp: true, role: Role.Secondary, conn: ConnState.SyncSource, pdsk: DiskState.Inconsistent, outOfSyncKiB: 1024 });
    expect(lines(changeEvents(s1, s2), printer)).toEqual([
      'change resource name:r0 suspended:user',
      'change device name:r0 volume:0 minor:1 disk:Outdated size:65532 read:512 written:3072 al-writes:7 bm-writes:0 upper-pending:0 lower-pending:0 blocked:upper',
    ]);
  });

  it('connect from StandAlone: create connection and peer-device (still StandAlone), then the change to Unconnected', () => {
    const printer = new Events2Printer(plain);
    const s0 = snapshot({ role: Role.Secondary, peer: Role.Unknown, conn: ConnState.StandAlone, pdsk: DiskState.DUnknown });
    const s1 = snapshot({ role: Role.Secondary, peer: Role.Unknown, conn: ConnState.Unconnected, pdsk: DiskState.DUnknown });
    lines(existsEvents(s0), printer);
    expect(lines(changeEvents(s0, s1), printer)).toEqual([
      'create connection name:r0 peer-node-id:0 conn-name:peer connection:StandAlone role:Unknown',
      'create peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:StandAlone peer-disk:DUnknown resync-suspended:no',
      'change connection name:r0 peer-node-id:0 conn-name:peer connection:Unconnected',
      'change peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:Unconnected',
    ]);
  });

  it('disconnect: Disconnecting, StandAlone, then destroy peer-device and connection; down destroys device and resource', () => {
    const printer = new Events2Printer(plain);
    const s0 = snapshot({ role: Role.Secondary });
    const s1 = snapshot({ role: Role.Secondary, conn: ConnState.Disconnecting, peer: Role.Unknown, pdsk: DiskState.DUnknown });
    const s2 = snapshot({ role: Role.Secondary, conn: ConnState.StandAlone, peer: Role.Unknown, pdsk: DiskState.DUnknown });
    const s3 = snapshot({ role: Role.Secondary, conn: ConnState.StandAlone, peer: Role.Unknown, pdsk: DiskState.DUnknown, disk: DiskState.Diskless, deviceSizeKiB: 0 });
    lines(existsEvents(s0), printer);
    expect([
      ...lines(changeEvents(s0, s1), printer),
      ...lines(changeEvents(s1, s2), printer),
      ...lines(changeEvents(s2, s3), printer),
      ...lines(downEvents(s3), printer),
    ]).toEqual([
      'change connection name:r0 peer-node-id:0 conn-name:peer connection:Disconnecting role:Unknown',
      'change peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:Disconnecting peer-disk:DUnknown',
      'change connection name:r0 peer-node-id:0 conn-name:peer connection:StandAlone',
      'change peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:StandAlone',
      'destroy peer-device name:r0 peer-node-id:0 conn-name:peer volume:0',
      'destroy connection name:r0 peer-node-id:0 conn-name:peer',
      'change device name:r0 volume:0 minor:1 disk:Diskless',
      'destroy device name:r0 volume:0 minor:1',
      'destroy resource name:r0',
    ]);
  });

  it('after a destroy the object is new again: its create prints every field', () => {
    const printer = new Events2Printer(plain);
    const standAlone = snapshot({ role: Role.Secondary, peer: Role.Unknown, conn: ConnState.StandAlone, pdsk: DiskState.DUnknown });
    const connected = snapshot({ role: Role.Secondary });
    lines(existsEvents(connected), printer);
    lines(changeEvents(connected, standAlone), printer);
    const back = snapshot({ role: Role.Secondary, peer: Role.Unknown, conn: ConnState.Unconnected, pdsk: DiskState.DUnknown });
    expect(lines(changeEvents(standAlone, back), printer)[0]).toBe('create connection name:r0 peer-node-id:0 conn-name:peer connection:StandAlone role:Unknown');
  });

  it('a resource whose process was killed is forgotten: its next dump as create lines shows every field', () => {
    const printer = new Events2Printer(plain);
    const s = snapshot();
    lines(existsEvents(s), printer);
    lines(existsEvents(snapshot({ resource: 'r1', minor: 2 })), printer);
    printer.forgetResource('r0');
    const again = lines(existsEvents(s), printer).map((l) => l.replace(/^exists/, 'create'));
    expect(again[0]).toBe('create resource name:r0 role:Primary suspended:no');
    expect(lines(existsEvents(snapshot({ resource: 'r1', minor: 2 })), printer)[0]).toBe('exists resource name:r1');
  });

  it('a resource process that appears under an open stream shows as create lines in drbdadm up order', () => {
    const dump = existsEvents(snapshot({ role: Role.Secondary, peer: Role.Unknown, conn: ConnState.WFConnection, pdsk: DiskState.DUnknown })).slice(0, -1);
    expect(lines(createdEvents(dump), new Events2Printer(plain))).toEqual([
      'create resource name:r0 role:Secondary suspended:no',
      'create device name:r0 volume:0 minor:1 disk:UpToDate',
      'create connection name:r0 peer-node-id:0 conn-name:peer connection:Connecting role:Unknown',
      'create peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:WFConnection peer-disk:DUnknown resync-suspended:no',
    ]);
  });

  it('a state change that touches nothing events2 shows sends nothing (no repeated identical lines)', () => {
    const s = snapshot();
    expect(changeEvents(s, snapshot({ uuids: { current: 'A', bitmap: '0', historyStart: '0', historyEnd: '0' } }))).toEqual([]);
  });

  it('--now prints the exists lines only', () => {
    const printer = new Events2Printer({ ...plain, now: true });
    const s0 = snapshot();
    const out = [...lines(existsEvents(s0), printer), ...lines(changeEvents(s0, snapshot({ role: Role.Secondary })), printer)];
    expect(out.at(-1)).toBe('exists -');
    expect(out.every((l) => l.startsWith('exists '))).toBe(true);
  });
});

describe('events2 helpers', () => {
  it('call/response of a device handler carry the device key; status is the wait status (exit code << 8)', () => {
    const printer = new Events2Printer(plain);
    const s = snapshot();
    expect(printer.format(helperEvent('call', s, 'split-brain'))).toBe('call helper name:r0 peer-node-id:0 conn-name:peer volume:0 minor:1 helper:split-brain');
    expect(printer.format(helperEvent('response', s, 'split-brain', 0))).toBe('response helper name:r0 peer-node-id:0 conn-name:peer volume:0 minor:1 helper:split-brain status:0');
    expect(printer.format(helperEvent('response', s, 'before-resync-target', 1))).toBe(
      'response helper name:r0 peer-node-id:0 conn-name:peer volume:0 minor:1 helper:before-resync-target status:256',
    );
  });

  it('fence-peer is a connection handler (no volume/minor); a StandAlone resource has no conn-name', () => {
    const printer = new Events2Printer(plain);
    expect(printer.format(helperEvent('call', snapshot({ conn: ConnState.NetworkFailure }), 'fence-peer'))).toBe('call helper name:r0 peer-node-id:0 conn-name:peer helper:fence-peer');
    expect(printer.format(helperEvent('call', snapshot({ conn: ConnState.StandAlone }), 'local-io-error'))).toBe('call helper name:r0 peer-node-id:0 volume:0 minor:1 helper:local-io-error');
    expect(helperStatus(-1)).toBe(4294967295);
  });
});

describe('events2 vocabulary', () => {
  it('connection: and replication: map 8.4 cstates as drbd_conn_str9 / drbd_repl_str9 do', () => {
    expect(connectionText(ConnState.WFConnection)).toBe('Connecting');
    expect(connectionText(ConnState.WFReportParams)).toBe('Connected');
    expect(connectionText(ConnState.StandAlone)).toBe('StandAlone');
    expect(connectionText(ConnState.BrokenPipe)).toBe('BrokenPipe');
    expect(replicationText(ConnState.WFReportParams)).toBe('Off');
    expect(replicationText(ConnState.Connected)).toBe('Established');
    expect(replicationText(ConnState.SyncTarget)).toBe('SyncTarget');
    expect(replicationText(ConnState.WFConnection)).toBe('WFConnection');
  });

  it('isReplicating is true from Connected on (what wait-connect waits for)', () => {
    expect(['Off', 'WFConnection', 'StandAlone', 'Unconnected', 'NetworkFailure'].map(isReplicating)).toEqual([false, false, false, false, false]);
    expect(['Established', 'SyncSource', 'PausedSyncT', 'WFBitMapS'].map(isReplicating)).toEqual([true, true, true, true]);
  });
});

describe('events2 --timestamps', () => {
  const savedTz = process.env.TZ;
  afterEach(() => {
    if (savedTz === undefined) delete process.env.TZ;
    else process.env.TZ = savedTz;
  });
  const at = Date.UTC(2026, 11, 1, 20, 41, 7) * 1000 + 123456;

  it('prints local time with microseconds and the UTC offset as drbdsetup does', () => {
    process.env.TZ = 'UTC';
    expect(formatTimestamp(at)).toBe('2026-12-01T20:41:07.123456+00:00');
    process.env.TZ = 'America/New_York';
    expect(formatTimestamp(at)).toBe('2026-12-01T15:41:07.123456-05:00');
    process.env.TZ = 'Asia/Kolkata';
    expect(formatTimestamp(at)).toBe('2026-12-02T02:11:07.123456+05:30');
    process.env.TZ = 'UTC';
    expect(formatTimestamp(Date.UTC(2026, 0, 2, 3, 4, 5) * 1000 + 7)).toBe('2026-01-02T03:04:05.000007+00:00');
  });

  it('the lines of one notification share one timestamp; the next notification gets a new one', () => {
    process.env.TZ = 'UTC';
    let clock = at;
    const printer = new Events2Printer({ ...plain, timestamps: true }, () => (clock += 1000));
    const out = lines(existsEvents(snapshot()), printer);
    const stamps = out.map((l) => l.split(' ')[0]);
    expect(new Set(stamps.slice(0, 4)).size).toBe(1);
    expect(stamps[4]).not.toBe(stamps[0]);
    expect(out[0]).toBe('2026-12-01T20:41:07.124456+00:00 exists resource name:r0 role:Primary suspended:no');
  });
});
