/**
 * resource/fencing's rules (DRBD 8.4's conn_try_outdate_peer, drbd_set_role,
 * sanitize_state / after_state_ch for susp_fen) and disk/io-gate, the layer
 * that freezes I/O while susp_fen is set.
 */
import { describe, expect, it } from 'vitest';
import { checkNetOptions } from '../../src/resource/admin.js';
import {
  fenceLogLevel,
  fenceOnConnectionLoss,
  fenceReleasesIo,
  fencingSuspended,
  interpretFencePeer,
  promotionAfterFence,
  promotionNeedsFencing,
} from '../../src/resource/fencing.js';
import { type ResourceState, defaultStateCtx, sanitizeState, unconfiguredState } from '../../src/resource/state.js';
import { ConnState, DiskState, Role } from '../../src/resource/states.js';
import { GatedDevice, IoGate } from '../../src/disk/io-gate.js';
import { MemoryDisk } from '../../src/disk/memory-disk.js';

const connectedPrimary: ResourceState = {
  ...unconfiguredState, role: Role.Primary, peer: Role.Secondary, conn: ConnState.Connected, disk: DiskState.UpToDate, pdsk: DiskState.UpToDate,
};
/** The same Primary right after the link broke (sanitized: peer Unknown, pdsk DUnknown). */
const lostPrimary: ResourceState = { ...connectedPrimary, peer: Role.Unknown, conn: ConnState.NetworkFailure, pdsk: DiskState.DUnknown };
/** A Secondary that lost its Primary. */
const lonelySecondary: ResourceState = { ...unconfiguredState, role: Role.Secondary, conn: ConnState.WFConnection, disk: DiskState.UpToDate, pdsk: DiskState.DUnknown };

describe('fence-peer exit codes (conn_try_outdate_peer)', () => {
  const cases: Array<[number, Partial<ResourceState>, boolean, string]> = [
    [3, { pdsk: DiskState.Inconsistent }, true, 'fence-peer helper returned 3 (peer is inconsistent or worse)'],
    [4, { pdsk: DiskState.Outdated }, true, 'fence-peer helper returned 4 (peer was fenced)'],
    [5, { pdsk: DiskState.Outdated }, true, 'fence-peer helper returned 5 (peer is unreachable, assumed to be dead)'],
    [6, { disk: DiskState.Outdated }, false, 'fence-peer helper returned 6 (peer is active)'],
    [7, { pdsk: DiskState.Outdated }, true, 'fence-peer helper returned 7 (peer was stonithed)'],
  ];
  for (const [code, patch, outdated, line] of cases) {
    it(`${code}: ${JSON.stringify(patch)}, logs "${line}"`, () => {
      const out = interpretFencePeer(code, lonelySecondary, 'resource-and-stonith');
      expect(out.patch).toEqual(patch);
      expect(out.peerOutdated).toBe(outdated);
      expect(out.logLines.at(-1)).toBe(line);
      expect(fenceLogLevel(line)).toBe('info');
    });
  }

  it('5 with a disk that is not UpToDate changes nothing (DRBD keeps the peer unknown)', () => {
    const out = interpretFencePeer(5, { ...lonelySecondary, disk: DiskState.Consistent }, 'resource-only');
    expect(out).toEqual({ peerOutdated: false, patch: {}, logLines: ['fence-peer helper returned 5 (peer unreachable, doing nothing since disk != UpToDate)'] });
  });

  it('6 warns "Peer is primary, outdating myself."', () => {
    const out = interpretFencePeer(6, lonelySecondary, 'resource-only');
    expect(out.logLines[0]).toBe('Peer is primary, outdating myself.');
    expect(fenceLogLevel(out.logLines[0] ?? '')).toBe('warn');
  });

  it('7 without resource-and-stonith is an error line, and still outdates the peer', () => {
    const out = interpretFencePeer(7, lonelySecondary, 'resource-only');
    expect(out.logLines).toEqual(['fence-peer() = 7 && fencing != Stonith !!!', 'fence-peer helper returned 7 (peer was stonithed)']);
    expect(fenceLogLevel(out.logLines[0] ?? '')).toBe('error');
    expect(out.patch).toEqual({ pdsk: DiskState.Outdated });
  });

  for (const code of [0, 1, 2, 8, 20, -1]) {
    it(`${code}: "fence-peer helper broken", nothing changes`, () => {
      const out = interpretFencePeer(code, lostPrimary, 'resource-and-stonith');
      expect(out).toEqual({ peerOutdated: false, patch: {}, logLines: [`fence-peer helper broken, returned ${code}`] });
      expect(fenceLogLevel(out.logLines[0] ?? '')).toBe('error');
    });
  }
});

describe('who fences when', () => {
  it('a Primary losing a peer with a good disk fences; dont-care does not', () => {
    expect(fenceOnConnectionLoss(connectedPrimary, lostPrimary, 'resource-only')).toBe(true);
    expect(fenceOnConnectionLoss(connectedPrimary, lostPrimary, 'resource-and-stonith')).toBe(true);
    expect(fenceOnConnectionLoss(connectedPrimary, lostPrimary, 'dont-care')).toBe(false);
  });

  it('no fencing when the lost peer was known Inconsistent or Outdated, or this node is Secondary', () => {
    const syncing = { ...connectedPrimary, conn: ConnState.SyncSource, pdsk: DiskState.Inconsistent };
    expect(fenceOnConnectionLoss(syncing, { ...lostPrimary, pdsk: DiskState.Inconsistent }, 'resource-only')).toBe(false);
    expect(fenceOnConnectionLoss({ ...connectedPrimary, role: Role.Secondary }, lonelySecondary, 'resource-only')).toBe(false);
  });

  it('only the step out of the connection fences, not later changes while disconnected', () => {
    const waiting = { ...lostPrimary, conn: ConnState.WFConnection };
    expect(fenceOnConnectionLoss(lostPrimary, waiting, 'resource-only')).toBe(false);
  });

  it('promotion: UpToDate or Consistent and not knowing the peer outdated needs fence-peer', () => {
    expect(promotionNeedsFencing(lonelySecondary, 'resource-only', false)).toBe(true);
    expect(promotionNeedsFencing({ ...lonelySecondary, disk: DiskState.Consistent }, 'resource-only', false)).toBe(true);
    expect(promotionNeedsFencing(lonelySecondary, 'dont-care', false)).toBe(false);
    expect(promotionNeedsFencing({ ...lonelySecondary, pdsk: DiskState.Outdated }, 'resource-only', false)).toBe(false);
    expect(promotionNeedsFencing({ ...lonelySecondary, conn: ConnState.Connected, pdsk: DiskState.UpToDate }, 'resource-only', false)).toBe(false);
  });

  it('promotion: Outdated/Inconsistent disks are refused -2 without the handler, unless --force', () => {
    expect(promotionNeedsFencing({ ...lonelySecondary, disk: DiskState.Outdated }, 'resource-only', false)).toBe(false);
    expect(promotionNeedsFencing({ ...lonelySecondary, disk: DiskState.Inconsistent }, 'resource-only', false)).toBe(false);
    expect(promotionNeedsFencing({ ...lonelySecondary, disk: DiskState.Inconsistent }, 'resource-only', true)).toBe(true);
  });

  it('after fence-peer: a Consistent disk with the peer outdated becomes UpToDate; --force outdates the peer by decree', () => {
    expect(promotionAfterFence({ ...lonelySecondary, disk: DiskState.Consistent, pdsk: DiskState.Outdated }, false)).toEqual({ patch: { disk: DiskState.UpToDate }, logLines: [] });
    expect(promotionAfterFence(lonelySecondary, true)).toEqual({ patch: { pdsk: DiskState.Outdated }, logLines: ['Forced into split brain situation!'] });
    expect(promotionAfterFence(lonelySecondary, false)).toEqual({ patch: {}, logLines: [] });
  });
});

describe('frozen I/O (susp_fen)', () => {
  it('resource-and-stonith freezes a Primary losing its peer; resource-only does not', () => {
    expect(fencingSuspended(connectedPrimary, lostPrimary, 'resource-and-stonith')).toBe(true);
    expect(fencingSuspended(connectedPrimary, lostPrimary, 'resource-only')).toBe(false);
  });

  it('stays frozen while disconnected, is released when the connection is back', () => {
    const frozen = { ...lostPrimary, suspFen: true };
    const waiting = { ...frozen, conn: ConnState.WFConnection };
    expect(fencingSuspended(frozen, waiting, 'resource-and-stonith')).toBe(true);
    expect(fencingSuspended({ ...waiting, conn: ConnState.WFReportParams }, { ...waiting, conn: ConnState.Connected, pdsk: DiskState.UpToDate }, 'resource-and-stonith')).toBe(false);
  });

  it('the peer becoming Outdated (or Inconsistent) releases it; other answers do not', () => {
    const frozen = { ...lostPrimary, conn: ConnState.WFConnection, suspFen: true };
    expect(fenceReleasesIo(frozen, { ...frozen, pdsk: DiskState.Outdated })).toBe(true);
    expect(fenceReleasesIo(frozen, { ...frozen, pdsk: DiskState.Inconsistent })).toBe(true);
    expect(fenceReleasesIo(frozen, frozen)).toBe(false);
    expect(fenceReleasesIo({ ...frozen, suspFen: false }, { ...frozen, suspFen: false, pdsk: DiskState.Outdated })).toBe(false);
  });
});

describe('Consistent and Outdated vanish once connected (resource/state: sanitizeState)', () => {
  const base = { ...unconfiguredState, role: Role.Secondary };
  const sane = (p: Partial<ResourceState>): ResourceState => sanitizeState(base, { ...base, ...p }, defaultStateCtx);
  it('Connected without a resync: both Consistent disks are UpToDate', () => {
    expect(sane({ conn: ConnState.Connected, peer: Role.Secondary, disk: DiskState.Consistent, pdsk: DiskState.Consistent })).toMatchObject({ disk: DiskState.UpToDate, pdsk: DiskState.UpToDate });
    expect(sane({ conn: ConnState.Connected, peer: Role.Secondary, disk: DiskState.Outdated, pdsk: DiskState.UpToDate })).toMatchObject({ disk: DiskState.UpToDate, pdsk: DiskState.UpToDate });
  });

  it('not while disconnected; a SyncSource-to-be keeps its peer Inconsistent', () => {
    expect(sane({ conn: ConnState.WFConnection, disk: DiskState.Consistent, pdsk: DiskState.Outdated })).toMatchObject({ disk: DiskState.Consistent, pdsk: DiskState.Outdated });
    expect(sane({ conn: ConnState.WFBitMapS, peer: Role.Secondary, disk: DiskState.Consistent, pdsk: DiskState.Inconsistent })).toMatchObject({ disk: DiskState.UpToDate, pdsk: DiskState.Inconsistent });
  });
});

describe('disk/io-gate', () => {
  it('holds new requests and the completion of running ones while frozen, releases them on thaw', async () => {
    const disk = new MemoryDisk(1024 * 1024);
    const gate = new IoGate();
    const dev = new GatedDevice(disk, gate);
    await dev.write(Buffer.alloc(4096, 1), 0);
    gate.freeze();
    let done = false;
    const write = dev.write(Buffer.alloc(4096, 2), 4096).then(() => (done = true));
    const flush = dev.flush();
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false);
    expect(gate.waiting).toBe(2);
    const onDisk = Buffer.alloc(4096);
    await disk.read(onDisk, 4096);
    expect(onDisk.every((b) => b === 0)).toBe(true); // a frozen request never reached the device
    gate.thaw();
    await write;
    await flush;
    await disk.read(onDisk, 4096);
    expect(onDisk.every((b) => b === 2)).toBe(true);
  });

  it('a request already running when the gate closes completes upwards only after thaw', async () => {
    let finish: () => void = () => undefined;
    const slow = new MemoryDisk(1024 * 1024);
    const inner = Object.assign(Object.create(slow) as MemoryDisk, {
      write: (b: Buffer, o: number): Promise<void> => new Promise<void>((resolve) => { finish = () => { void slow.write(b, o).then(resolve); }; }),
    });
    const gate = new IoGate();
    const dev = new GatedDevice(inner, gate);
    let done = false;
    const write = dev.write(Buffer.alloc(512, 3), 0).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 5));
    gate.freeze();
    finish();
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false);
    gate.thaw();
    await write;
    expect(done).toBe(true);
  });
});

describe('_check_net_options: resource-and-stonith needs protocol B or C', () => {
  it('refuses protocol A with resource-and-stonith (154); B, C and the other policies pass', () => {
    expect(checkNetOptions({ protocol: 'A', onCongestion: 'block', fencing: 'resource-and-stonith' })).toMatchObject({
      ok: false, code: 154, text: 'Fencing policy resource-and-stonith only with prot B or C allowed', failure: true,
    });
    for (const protocol of ['B', 'C'] as const) expect(checkNetOptions({ protocol, onCongestion: 'block', fencing: 'resource-and-stonith' })).toBeNull();
    for (const fencing of ['dont-care', 'resource-only'] as const) expect(checkNetOptions({ protocol: 'A', onCongestion: 'block', fencing })).toBeNull();
    // Without an attached disk no fencing policy is known (drbd_nl.c looks at the ldev's disk_conf).
    expect(checkNetOptions({ protocol: 'A', onCongestion: 'block' })).toBeNull();
  });
});
