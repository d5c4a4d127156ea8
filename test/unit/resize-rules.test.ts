/**
 * The pure rules behind `udrbdadm resize` (daemon/device-size: DRBD 8.4's
 * drbd_new_dev_size and drbd_determine_dev_size checks; receive_sizes while
 * connected) and Bitmap.grow (drbd_bm_resize keeping every bit).
 */
import { describe, expect, it } from 'vitest';
import { planResize, sizeAfterPeerSizes, type ResizeOptions } from '../../src/daemon/device-size.js';
import { resizeOptionsFrom } from '../../src/daemon/resize.js';
import { Bitmap, BM_PAGE_BYTES } from '../../src/meta/bitmap.js';

const MiB = 1024 * 1024;
const plain: ResizeOptions = { userSizeBytes: 0, assumePeerHasSpace: false, assumeClean: false };

describe('planResize', () => {
  it('connected: this step takes min(own disk, the peer size known now); the peer answer brings the rest', () => {
    const v = planResize({ localMaxBytes: 96 * MiB, peerDiskBytes: 64 * MiB, currentSizeBytes: 64 * MiB, connected: true }, plain);
    expect(v).toEqual({ kind: 'size', sizeBytes: 64 * MiB, warnLines: [], unchangedWhy: null });
    const peerAlreadyBig = planResize({ localMaxBytes: 96 * MiB, peerDiskBytes: 128 * MiB, currentSizeBytes: 64 * MiB, connected: true }, plain);
    expect(peerAlreadyBig).toMatchObject({ kind: 'size', sizeBytes: 96 * MiB });
  });

  it("disconnected: only up to the peer's last known size, and says why; --assume-peer-has-space grows with DRBD's warning", () => {
    const view = { localMaxBytes: 96 * MiB, peerDiskBytes: 64 * MiB, currentSizeBytes: 64 * MiB, connected: false };
    const held = planResize(view, plain);
    expect(held).toMatchObject({ kind: 'size', sizeBytes: 64 * MiB, warnLines: [] });
    if (held.kind === 'size') expect(held.unchangedWhy).toContain("the peer's last known disk size is 131072s");
    const unknown = planResize({ ...view, peerDiskBytes: 0 }, plain);
    if (unknown.kind === 'size') expect(unknown.unchangedWhy).toContain('not known');
    expect(planResize(view, { ...plain, assumePeerHasSpace: true })).toEqual({
      kind: 'size',
      sizeBytes: 96 * MiB,
      warnLines: ['Resize while not connected was forced by the user!'],
      unchangedWhy: null,
    });
  });

  it("--size: within the disks it is the size; above them 111 with DRBD's log line (DRBD would go on); below the current size it is the new, smaller size", () => {
    const view = { localMaxBytes: 96 * MiB, peerDiskBytes: 96 * MiB, currentSizeBytes: 64 * MiB, connected: true };
    expect(planResize(view, { ...plain, userSizeBytes: 80 * MiB })).toMatchObject({ kind: 'size', sizeBytes: 80 * MiB });
    const tooBig = planResize(view, { ...plain, userSizeBytes: 100 * MiB });
    expect(tooBig).toMatchObject({ kind: 'refused', code: 111, errorLines: [`Requested disk size is too big (${100 * 1024} > ${96 * 1024})`] });
    // drbd_adm_resize: an explicit --size below the current size shrinks the device (no error code)
    expect(planResize(view, { ...plain, userSizeBytes: 32 * MiB })).toEqual({ kind: 'size', sizeBytes: 32 * MiB, warnLines: [], unchangedWhy: null });
    expect(planResize({ ...view, connected: false }, { ...plain, userSizeBytes: 32 * MiB })).toMatchObject({ kind: 'size', sizeBytes: 32 * MiB });
    // disconnected, --size is bounded by the peer's last known size too
    const alone = planResize({ ...view, connected: false, peerDiskBytes: 72 * MiB }, { ...plain, userSizeBytes: 80 * MiB });
    expect(alone).toMatchObject({ kind: 'refused', code: 111 });
  });

  it("a peer smaller than the device without --size is DRBD's implicit shrink (170)", () => {
    const v = planResize({ localMaxBytes: 96 * MiB, peerDiskBytes: 48 * MiB, currentSizeBytes: 64 * MiB, connected: false }, plain);
    expect(v).toMatchObject({ kind: 'refused', code: 170, errorLines: [`Implicit shrink not allowed. Use --size=${(48 * MiB) / 512}s for explicit shrink.`] });
  });
});

describe('sizeAfterPeerSizes (receive_sizes while connected)', () => {
  const base = { dataAreaBytes: 96 * MiB, userSizeBytes: 0, peerDiskBytes: 128 * MiB, peerUserBytes: 0, currentSizeBytes: 64 * MiB };

  it('the smaller usable size of both, larger than now', () => {
    expect(sizeAfterPeerSizes(base)).toEqual({ sizeBytes: 96 * MiB, userSizeBytes: 0, infoLines: [], errorLines: [] });
    expect(sizeAfterPeerSizes({ ...base, peerDiskBytes: 64 * MiB })).toMatchObject({ sizeBytes: 64 * MiB, infoLines: [] });
  });

  it("the peer's resize --size below the current size: this node takes its u_size and shrinks (Peer sets u_size)", () => {
    const r = sizeAfterPeerSizes({ ...base, peerDiskBytes: 40 * MiB, peerUserBytes: 40 * MiB });
    expect(r).toEqual({ sizeBytes: 40 * MiB, userSizeBytes: 40 * MiB, infoLines: [`Peer sets u_size to ${(40 * MiB) / 512} sectors`], errorLines: [] });
  });

  it("the peer's resize without --size clears this node's u_size, and the device grows to what both disks hold", () => {
    const r = sizeAfterPeerSizes({ ...base, userSizeBytes: 64 * MiB, peerDiskBytes: 96 * MiB, peerUserBytes: 0 });
    expect(r).toEqual({ sizeBytes: 96 * MiB, userSizeBytes: 0, infoLines: ['Peer sets u_size to 0 sectors'], errorLines: [] });
  });

  it("a peer u_size above what the disks hold: DRBD's Requested disk size is too big; below the current size the size and u_size stay", () => {
    const r = sizeAfterPeerSizes({ ...base, dataAreaBytes: 48 * MiB, peerUserBytes: 56 * MiB, currentSizeBytes: 48 * MiB });
    expect(r.sizeBytes).toBe(48 * MiB);
    expect(r.errorLines).toEqual([`Requested disk size is too big (${56 * 1024} > ${48 * 1024})`]);
    expect(r.userSizeBytes).toBe(0);
  });
});

describe('Bitmap.grow', () => {
  it('keeps every bit and its count, starts the new bits clear, marks every page dirty for the write at the new place', () => {
    const bm = new Bitmap(10_000, BM_PAGE_BYTES);
    bm.setRange(5, 9);
    bm.setRange(9_990, 10_000);
    expect(bm.countSet()).toBe(14);
    bm.grow(100_000, 4 * BM_PAGE_BYTES);
    expect(bm.bitCount).toBe(100_000);
    expect(bm.pageCount).toBe(4);
    expect(bm.countSet()).toBe(14);
    expect(bm.test(5) && bm.test(9_999)).toBe(true);
    expect(bm.nextSet(10_000)).toBe(-1);
    expect(bm.dirtyPageCount).toBe(4);
    expect(bm.setRange(10_000, 100_000)).toBe(90_000);
    expect(bm.countSet()).toBe(90_014);
    expect(() => bm.grow(50_000, 4 * BM_PAGE_BYTES)).toThrow(/grows/);
  });
});

describe('resizeOptionsFrom (the control verb arguments)', () => {
  it('takes the three options and refuses anything else, naming it', () => {
    expect(resizeOptionsFrom({ sizeBytes: 1024, assumeClean: true })).toEqual({ userSizeBytes: 1024, assumePeerHasSpace: false, assumeClean: true });
    expect(resizeOptionsFrom({})).toEqual(plain);
    expect(resizeOptionsFrom({ alStripes: 2 })).toBe("resize: unknown argument 'alStripes'");
    expect(resizeOptionsFrom({ sizeBytes: 1000 })).toContain('whole number of 512-byte sectors');
    expect(resizeOptionsFrom({ assumeClean: 'yes' })).toBe('resize: assumeClean must be true or false');
  });
});
