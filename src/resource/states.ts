/**
 * resource/states — DRBD 8.4's state vocabulary: roles, connection states and
 * disk states with the kernel's numeric values and exact printed names
 * (enum drbd_role / drbd_conns / drbd_disk_state in drbd.h, names as drbd_strings.c prints them). Pure data; the transition rules live beside it.
 */

export const Role = { Unknown: 0, Primary: 1, Secondary: 2 } as const;
export type Role = (typeof Role)[keyof typeof Role];

export const ConnState = {
  StandAlone: 0,
  Disconnecting: 1,
  Unconnected: 2,
  Timeout: 3,
  BrokenPipe: 4,
  NetworkFailure: 5,
  ProtocolError: 6,
  TearDown: 7,
  WFConnection: 8,
  WFReportParams: 9,
  Connected: 10,
  StartingSyncS: 11,
  StartingSyncT: 12,
  WFBitMapS: 13,
  WFBitMapT: 14,
  WFSyncUUID: 15,
  SyncSource: 16,
  SyncTarget: 17,
  VerifyS: 18,
  VerifyT: 19,
  PausedSyncS: 20,
  PausedSyncT: 21,
  Ahead: 22,
  Behind: 23,
} as const;
export type ConnState = (typeof ConnState)[keyof typeof ConnState];

export const DiskState = {
  Diskless: 0,
  Attaching: 1,
  Failed: 2,
  Negotiating: 3,
  Inconsistent: 4,
  Outdated: 5,
  DUnknown: 6,
  Consistent: 7,
  UpToDate: 8,
} as const;
export type DiskState = (typeof DiskState)[keyof typeof DiskState];

function invert<T extends Record<string, number>>(table: T): string[] {
  const names: string[] = [];
  for (const [name, value] of Object.entries(table)) names[value] = name;
  return names;
}

const roleNames = invert(Role);
const connNames = invert(ConnState);
const diskNames = invert(DiskState);

export const roleName = (r: Role): string => roleNames[r]!;
export const connName = (c: ConnState): string => connNames[c]!;
export const diskName = (d: DiskState): string => diskNames[d]!;

export function parseRole(name: string): Role | undefined {
  return (Role as Record<string, Role>)[name];
}
export function parseConnState(name: string): ConnState | undefined {
  return (ConnState as Record<string, ConnState>)[name];
}
export function parseDiskState(name: string): DiskState | undefined {
  return (DiskState as Record<string, DiskState>)[name];
}
