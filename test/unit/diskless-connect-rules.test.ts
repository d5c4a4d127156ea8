/**
 * resource/diskless and the after-state rule for a diskless peer's
 * promotion: the pure rules a connect with one disk missing follows
 * (drbd_receiver.c receive_state / receive_sizes / receive_uuids,
 * drbd_main.c drbd_send_uuids, drbd_nl.c drbd_adm_attach, drbd_state.c
 * after_state_ch), and the wire exchange without P_UUIDS.
 */
import { describe, expect, it } from 'vitest';
import {
  NO_BACKING_STORAGE_LINE,
  attachSizeUnderDevice,
  disklessDeviceSize,
  disklessPrimaryMayConnect,
  hasDiskOnWire,
  noSyncHandshake,
  syncHandshakeRuns,
} from '../../src/resource/diskless.js';
import { disklessPeerPromotedRule } from '../../src/resource/transition.js';
import { requestDetach } from '../../src/resource/admin.js';
import { defaultStateCtx, unconfiguredState, type ResourceState } from '../../src/resource/state.js';
import { ConnState as C, DiskState as D, Role as R } from '../../src/resource/states.js';

const MiB = 1024 * 1024;
const st = (patch: Partial<ResourceState>): ResourceState => ({ ...unconfiguredState, conn: C.Connected, ...patch });

describe('receive_state: the sync handshake runs only when both nodes have a disk', () => {
  it('runs with the peer UUIDs known and both disks at least Negotiating', () => {
    expect(syncHandshakeRuns(D.UpToDate, D.Inconsistent, true)).toBe(true);
    expect(syncHandshakeRuns(D.Negotiating, D.UpToDate, true)).toBe(true);
    expect(syncHandshakeRuns(D.UpToDate, D.Negotiating, true)).toBe(true);
  });

  it('does not run with a diskless peer, a peer that sent no P_UUIDS, or no local disk', () => {
    expect(syncHandshakeRuns(D.UpToDate, D.Diskless, false)).toBe(false);
    expect(syncHandshakeRuns(D.UpToDate, D.UpToDate, false)).toBe(false);
    expect(syncHandshakeRuns(D.UpToDate, D.Attaching, true)).toBe(false);
    expect(syncHandshakeRuns(D.Diskless, D.UpToDate, true)).toBe(false);
    expect(syncHandshakeRuns(D.Failed, D.UpToDate, true)).toBe(false);
  });

  it('without it the connect is a no-sync outcome that keeps both UUID sets and runs no handler', () => {
    const self = { current: 0xa0n, bitmap: 0n, historyStart: 0n, historyEnd: 0n };
    const peer = { current: 0n, bitmap: 0n, historyStart: 0n, historyEnd: 0n };
    const d = noSyncHandshake(self, peer);
    expect(d.kind).toBe('no-sync');
    expect(d.full).toBe(false);
    expect(d.handlers).toEqual([]);
    expect(d.logLines).toEqual([]);
    expect(d.selfUuids).toBe(self);
    expect(d.demoted).toBe(false);
  });
});

describe('drbd_send_uuids / drbd_send_sizes: what a node without a disk sends', () => {
  it('a disk below Negotiating is no disk on the wire (no P_UUIDS, d_size 0)', () => {
    for (const disk of [D.Diskless, D.Attaching, D.Failed]) expect(hasDiskOnWire(disk)).toBe(false);
    for (const disk of [D.Negotiating, D.Inconsistent, D.Outdated, D.Consistent, D.UpToDate]) expect(hasDiskOnWire(disk)).toBe(true);
  });
});

describe("receive_sizes without a disk: the device takes the peer's size", () => {
  it("takes the peer's current device size (p_csize) when it has one", () => {
    expect(disklessDeviceSize({ diskSizeBytes: 96 * MiB, currentSizeBytes: 64 * MiB })).toEqual({ kind: 'size', sizeBytes: 64 * MiB });
  });

  it("falls back to the peer's usable disk size (p_size) when its current size is 0, in whole sectors", () => {
    expect(disklessDeviceSize({ diskSizeBytes: 64 * MiB + 700, currentSizeBytes: 0 })).toEqual({ kind: 'size', sizeBytes: 64 * MiB + 512 });
  });

  it('refuses a peer without a disk either: "some backing storage is needed"', () => {
    expect(disklessDeviceSize({ diskSizeBytes: 0, currentSizeBytes: 64 * MiB })).toEqual({ kind: 'no-backing-storage', errorLine: NO_BACKING_STORAGE_LINE });
    expect(NO_BACKING_STORAGE_LINE).toBe('some backing storage is needed');
  });
});

describe('receive_uuids: a disconnected diskless Primary connects only to the data it exposes', () => {
  it('accepts the same generation, whatever the role bit', () => {
    expect(disklessPrimaryMayConnect(R.Primary, 0x1234n, 0x1235n)).toEqual({ ok: true });
  });

  it('refuses another generation with DRBD\'s line, naming the exposed UUID in 16 hex digits', () => {
    expect(disklessPrimaryMayConnect(R.Primary, 0xabcn, 0x5000n)).toEqual({ ok: false, errorLine: 'Can only connect to data with current UUID=0000000000000ABC' });
  });

  it('does not apply to a Secondary, or before the node ever saw data', () => {
    expect(disklessPrimaryMayConnect(R.Secondary, 0xabcn, 0x5000n)).toEqual({ ok: true });
    expect(disklessPrimaryMayConnect(R.Primary, undefined, 0x5000n)).toEqual({ ok: true });
  });
});

describe('drbd_adm_attach under a device that already has a size', () => {
  it('the disk agrees on the device size when it holds it', () => {
    expect(attachSizeUnderDevice(96 * MiB, 64 * MiB)).toBe(64 * MiB);
    expect(attachSizeUnderDevice(64 * MiB, 64 * MiB)).toBe(64 * MiB);
  });

  it('a smaller disk is refused (ERR_DISK_TOO_SMALL: null)', () => {
    expect(attachSizeUnderDevice(32 * MiB, 64 * MiB)).toBeNull();
  });

  it('a device without a size yet takes the whole disk', () => {
    expect(attachSizeUnderDevice(96 * MiB, 0)).toBe(96 * MiB);
  });
});

describe('after_state_ch: a diskless peer becomes Primary', () => {
  const before = st({ role: R.Secondary, peer: R.Secondary, disk: D.UpToDate, pdsk: D.Diskless });
  const after = { ...before, peer: R.Primary };

  it('an UpToDate node with no bitmap UUID starts a new data generation', () => {
    expect(disklessPeerPromotedRule(before, after, { bitmapUuid: 0n, newCurrentUuidPending: false })).toEqual([{ kind: 'new-current-uuid' }]);
  });

  it('not with a bitmap UUID set, not below UpToDate, not without a disk, not when the peer has a disk', () => {
    expect(disklessPeerPromotedRule(before, after, { bitmapUuid: 0x44n, newCurrentUuidPending: false })).toEqual([]);
    expect(disklessPeerPromotedRule({ ...before, disk: D.Consistent }, { ...after, disk: D.Consistent }, { bitmapUuid: 0n, newCurrentUuidPending: false })).toEqual([]);
    expect(disklessPeerPromotedRule(before, after, { bitmapUuid: undefined, newCurrentUuidPending: false })).toEqual([]);
    expect(disklessPeerPromotedRule({ ...before, pdsk: D.UpToDate }, { ...after, pdsk: D.UpToDate }, { bitmapUuid: 0n, newCurrentUuidPending: false })).toEqual([]);
  });

  it('only on the promotion itself (peer Secondary -> Primary)', () => {
    expect(disklessPeerPromotedRule(after, after, { bitmapUuid: 0n, newCurrentUuidPending: false })).toEqual([]);
    expect(disklessPeerPromotedRule(after, before, { bitmapUuid: 0n, newCurrentUuidPending: false })).toEqual([]);
  });
});

describe('cl_wide_st_chg: detach under a diskless Primary peer', () => {
  const under = st({ role: R.Secondary, peer: R.Primary, disk: D.UpToDate, pdsk: D.Diskless });

  it('is refused by the peer: (-10) State change was refused by peer node; nothing changes', () => {
    const r = requestDetach(under, defaultStateCtx);
    expect(r.kind).toBe('refused');
    if (r.kind !== 'refused') return;
    expect(r.refusal.code).toBe(-10);
    expect(r.refusal.text).toBe('State change was refused by peer node');
  });

  it('goes ahead when the peer has a disk, is Secondary, or the link is down', () => {
    expect(requestDetach({ ...under, pdsk: D.UpToDate }, defaultStateCtx).kind).toBe('ok');
    expect(requestDetach({ ...under, peer: R.Secondary }, defaultStateCtx).kind).toBe('ok');
    expect(requestDetach({ ...under, conn: C.WFConnection, peer: R.Unknown, pdsk: D.DUnknown }, defaultStateCtx).kind).toBe('ok');
  });
});
