/**
 * daemon/device-size and daemon/agreed-bitmap: DRBD 8.4's size agreement on
 * connect (the smaller usable size wins; a device with good data never
 * shrinks while connecting) and the bitmap view that ends at the agreed size.
 */
import { describe, expect, it } from 'vitest';
import { agreeDeviceSize, differConsiderably, sizeAtAttach, sizeLogLine, type LocalSizeView } from '../../src/daemon/device-size.js';
import { AgreedBitmap } from '../../src/daemon/agreed-bitmap.js';
import { Bitmap } from '../../src/meta/bitmap.js';
import { DiskState, Role } from '../../src/resource/states.js';

const MiB = 1024 * 1024;

/** A node without a u_size whose data area is its usable size. */
function node(maxSizeBytes: number, currentSizeBytes: number, role: Role, disk: DiskState): LocalSizeView {
  return { maxSizeBytes, dataAreaBytes: maxSizeBytes, userSizeBytes: 0, currentSizeBytes, role, disk };
}

describe('agreeDeviceSize', () => {
  it('fresh nodes: the smaller usable size wins on both sides, with DRBD\'s considerable-difference warning', () => {
    const big = node(80 * MiB, 80 * MiB, Role.Secondary, DiskState.Inconsistent);
    const small = node(64 * MiB, 64 * MiB, Role.Secondary, DiskState.Inconsistent);
    const onBig = agreeDeviceSize(big, { userSizeBytes: 0, diskSizeBytes: small.maxSizeBytes, currentSizeBytes: small.currentSizeBytes, role: small.role });
    const onSmall = agreeDeviceSize(small, { userSizeBytes: 0, diskSizeBytes: big.maxSizeBytes, currentSizeBytes: big.currentSizeBytes, role: big.role });
    expect(onBig).toMatchObject({ kind: 'agreed', sizeBytes: 64 * MiB });
    expect(onSmall).toMatchObject({ kind: 'agreed', sizeBytes: 64 * MiB });
    expect(onBig.warnLines).toEqual([`Considerable difference in lower level device sizes: ${(64 * MiB) / 512}s vs. ${(80 * MiB) / 512}s`]);
  });

  it('a node with UpToDate data (here a Primary) refuses to shrink: The peer\'s disk size is too small!', () => {
    const r = agreeDeviceSize(
      node(80 * MiB, 80 * MiB, Role.Primary, DiskState.UpToDate),
      { userSizeBytes: 0, diskSizeBytes: 64 * MiB, currentSizeBytes: 64 * MiB, role: Role.Secondary },
    );
    expect(r.kind).toBe('peer-too-small');
    if (r.kind === 'peer-too-small') expect(r.errorLine).toBe(`The peer's disk size is too small! (${(64 * MiB) / 512} < ${(80 * MiB) / 512} sectors)`);
    const secondary = agreeDeviceSize(
      node(80 * MiB, 80 * MiB, Role.Secondary, DiskState.Outdated),
      { userSizeBytes: 0, diskSizeBytes: 64 * MiB, currentSizeBytes: 64 * MiB, role: Role.Secondary },
    );
    expect(secondary.kind).toBe('peer-too-small');
  });

  it('a Primary whose device is smaller than both disks grows at connect (drbd_determine_dev_size), and the peer agrees on the same size', () => {
    const primary = node(80 * MiB, 64 * MiB, Role.Primary, DiskState.UpToDate);
    const peer = node(96 * MiB, 64 * MiB, Role.Secondary, DiskState.UpToDate);
    expect(agreeDeviceSize(primary, { userSizeBytes: 0, diskSizeBytes: peer.maxSizeBytes, currentSizeBytes: peer.currentSizeBytes, role: peer.role })).toMatchObject({ kind: 'agreed', sizeBytes: 80 * MiB });
    expect(agreeDeviceSize(peer, { userSizeBytes: 0, diskSizeBytes: primary.maxSizeBytes, currentSizeBytes: primary.currentSizeBytes, role: primary.role })).toMatchObject({ kind: 'agreed', sizeBytes: 80 * MiB });
  });

  it("on connect both take the smaller non-zero u_size (min_not_zero), logged as DRBD's Peer sets u_size", () => {
    const plainNode = node(96 * MiB, 48 * MiB, Role.Secondary, DiskState.UpToDate);
    const r = agreeDeviceSize(plainNode, { userSizeBytes: 48 * MiB, diskSizeBytes: 48 * MiB, currentSizeBytes: 48 * MiB, role: Role.Primary });
    expect(r).toEqual({ kind: 'agreed', sizeBytes: 48 * MiB, userSizeBytes: 48 * MiB, warnLines: [`Considerable difference in lower level device sizes: ${(48 * MiB) / 512}s vs. ${(96 * MiB) / 512}s`], infoLines: [`Peer sets u_size to ${(48 * MiB) / 512} sectors`] });
    // the node with the smaller u_size keeps its own
    const capped = { ...plainNode, maxSizeBytes: 48 * MiB, userSizeBytes: 48 * MiB };
    expect(agreeDeviceSize(capped, { userSizeBytes: 64 * MiB, diskSizeBytes: 64 * MiB, currentSizeBytes: 48 * MiB, role: Role.Secondary })).toMatchObject({ kind: 'agreed', sizeBytes: 48 * MiB, userSizeBytes: 48 * MiB, infoLines: [] });
  });

  it('equal disks need no warning; small differences (≤ 1/8) are not considerable', () => {
    const same = node(64 * MiB, 64 * MiB, Role.Secondary, DiskState.UpToDate);
    expect(agreeDeviceSize(same, { userSizeBytes: 0, diskSizeBytes: 64 * MiB, currentSizeBytes: 64 * MiB, role: Role.Secondary })).toEqual({ kind: 'agreed', sizeBytes: 64 * MiB, userSizeBytes: 0, warnLines: [], infoLines: [] });
    expect(differConsiderably(1000, 1100)).toBe(false);
    expect(differConsiderably(1000, 1200)).toBe(true);
  });

  it('at attach: la_size_sect capped by the disk, the whole disk when la_size is 0; logged as DRBD does', () => {
    expect(sizeAtAttach(0, 64 * MiB)).toBe(64 * MiB);
    expect(sizeAtAttach((32 * MiB) / 512, 64 * MiB)).toBe(32 * MiB);
    expect(sizeAtAttach((128 * MiB) / 512, 64 * MiB)).toBe(64 * MiB);
    expect(sizeLogLine(65496 * 1024)).toBe('size = 64 MB (65496 KB)');
  });
});

describe('AgreedBitmap', () => {
  it('ends at the agreed size: setAll, scans and counts stay below it; shrinking clears, growing sets the new blocks', () => {
    const whole = new Bitmap(1000);
    whole.setRange(900, 1000);
    const view = new AgreedBitmap(whole, 800 * 4096);
    expect(view.bitCount).toBe(800);
    expect(whole.countSet()).toBe(0);
    view.setAll();
    expect(view.countSet()).toBe(800);
    expect(whole.nextSet(800)).toBe(-1);
    expect(view.nextClear(0)).toBe(800);
    expect(view.setRange(790, 2000)).toBe(0);
    view.clearRange(0, 800);
    expect(view.setRange(795, 900)).toBe(5);
    expect(view.nextSet(0)).toBe(795);
    view.resize(700 * 4096, true);
    expect(view.countSet()).toBe(0);
    view.resize(750 * 4096, true);
    expect(view.countSet()).toBe(50);
    expect(view.nextSet(0)).toBe(700);
  });

  it("drops a peer's bitmap bits past the agreed size and exports none there", () => {
    const whole = new Bitmap(1000);
    const view = new AgreedBitmap(whole, 803 * 4096); // 803 bits: the agreed size ends inside byte 100
    const all = Buffer.alloc(125, 0xff); // the peer's bitmap: every one of 1000 bits
    expect(view.orBytes(0, all)).toBe(803);
    expect(whole.nextSet(803)).toBe(-1);
    expect(view.orBytes(101, Buffer.from([0xff]))).toBe(0);
    const out = Buffer.alloc(125, 0xaa);
    expect(view.exportBytes(0, out)).toBe(803);
    expect(out[99]).toBe(0xff);
    expect(out[100]).toBe(0b00000111);
    expect(out.subarray(101).every((b) => b === 0)).toBe(true);
  });
});
