import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import {
  EXCHANGED_VOLUMES_MAX, HandshakeFailedError, checkCompatibility, exchangeParams, peerParams,
  type HandshakeResult, type LocalParams, type LocalVolumeParams,
} from '../../src/peer/handshake.js';
import type { PeerSession } from '../../src/peer/session.js';
import { PacketType, type Packet } from '../../src/peer/packets.js';
import { InvariantError } from '../../src/util/assert.js';
import { digestName, newChallenge, respond, verify, validateAuth } from '../../src/peer/auth.js';
import { UdrbdError } from '../../src/util/errors.js';

const base = {
  protocol: 'C' as const,
  afterSb0pri: 'disconnect' as const,
  afterSb1pri: 'disconnect' as const,
  afterSb2pri: 'disconnect' as const,
  allowTwoPrimaries: false,
  discardMyData: false,
  nodeName: 'alpha',
  integrityAlg: '',
};

describe('peer handshake compatibility (DRBD connect-time checks)', () => {
  it('accepts identical settings and one-sided discard-my-data', () => {
    expect(checkCompatibility(base, { ...base, nodeName: 'beta' })).toBeNull();
    expect(checkCompatibility({ ...base, discardMyData: true }, base)).toBeNull();
  });

  it('reports each mismatch with the kernel wording', () => {
    expect(checkCompatibility(base, { ...base, protocol: 'A' })).toBe('incompatible communication protocols');
    expect(checkCompatibility(base, { ...base, afterSb0pri: 'discard-zero-changes' })).toBe('incompatible after-sb-0pri settings');
    expect(checkCompatibility(base, { ...base, afterSb1pri: 'consensus' })).toBe('incompatible after-sb-1pri settings');
    expect(checkCompatibility(base, { ...base, afterSb2pri: 'violently-as0p' })).toBe('incompatible after-sb-2pri settings');
    expect(checkCompatibility(base, { ...base, allowTwoPrimaries: true })).toBe('incompatible setting of the two-primaries options');
    expect(checkCompatibility({ ...base, discardMyData: true }, { ...base, discardMyData: true })).toBe('incompatible discard-my-data settings');
  });

  it('requires the same data-integrity-alg on both nodes, compared as written (receive_protocol strcmp)', () => {
    expect(checkCompatibility({ ...base, integrityAlg: 'sha1' }, { ...base, integrityAlg: 'sha1' })).toBeNull();
    expect(checkCompatibility({ ...base, integrityAlg: 'sha1' }, { ...base, integrityAlg: 'md5' })).toBe('incompatible data-integrity-alg settings');
    expect(checkCompatibility({ ...base, integrityAlg: 'sha1' }, base)).toBe('incompatible data-integrity-alg settings');
    expect(checkCompatibility(base, { ...base, integrityAlg: 'crc32c' })).toBe('incompatible data-integrity-alg settings');
  });

  it('treats discard-local on one side as matching discard-remote on the other', () => {
    expect(checkCompatibility({ ...base, afterSb0pri: 'discard-local' }, { ...base, afterSb0pri: 'discard-remote' })).toBeNull();
    expect(checkCompatibility({ ...base, afterSb0pri: 'discard-local' }, { ...base, afterSb0pri: 'discard-local' })).toBe('incompatible after-sb-0pri settings');
    expect(checkCompatibility({ ...base, afterSb0pri: 'discard-node-beta' }, { ...base, afterSb0pri: 'discard-node-beta' })).toBeNull();
    expect(checkCompatibility({ ...base, afterSb0pri: 'discard-node-beta' }, { ...base, afterSb0pri: 'discard-node-alpha' })).toBe('incompatible after-sb-0pri settings');
  });
});

describe('peer cram-hmac auth', () => {
  it('verifies the right secret and rejects a wrong one or a truncated response', () => {
    const challenge = newChallenge();
    expect(challenge).toHaveLength(64);
    const right = { alg: 'sha256', secret: 'k' };
    const response = respond(right, challenge);
    expect(verify(right, challenge, response)).toBe(true);
    expect(verify({ alg: 'sha256', secret: 'K' }, challenge, response)).toBe(false);
    expect(verify(right, challenge, response.subarray(1))).toBe(false);
    expect(verify(right, newChallenge(), response)).toBe(false);
  });

  it('accepts DRBD-style "hmac(sha1)" names and refuses unknown digests and long secrets', () => {
    expect(digestName('hmac(sha1)')).toBe('sha1');
    expect(digestName('SHA256')).toBe('sha256');
    expect(() => digestName('no-such-digest')).toThrow(UdrbdError);
    expect(() => validateAuth({ alg: 'sha1', secret: 'x'.repeat(65) })).toThrow(/shared-secret longer than 64/);
  });
});

/** Just what exchangeParams uses of a PeerSession: the test plays the peer through `deliver`. */
class FakeSession {
  readonly sent: Packet[] = [];
  closedWith: string | null = null;
  private handler: ((packet: Packet) => void) | null = null;
  send(packet: Packet): boolean {
    this.sent.push(packet);
    return true;
  }
  onPacket(handler: (packet: Packet) => void): void {
    this.handler = handler;
  }
  detachPacketHandler(): void {
    this.handler = null;
  }
  onClose(): void {}
  close(reason: string): void {
    this.closedWith = reason;
  }
  deliver(packet: Packet): void {
    this.handler?.(packet);
  }
}

function volumeParams(volume: number, role = 2): LocalVolumeParams {
  return {
    volume,
    syncParam: { resyncRateKiBps: 250, cPlanAheadDs: 20, cDelayTargetDs: 10, cFillTargetSectors: 100, cMaxRateKiBps: 102400, verifyAlg: '', csumsAlg: '' },
    uuids: { uuids: { current: 0x100n + BigInt(volume), bitmap: 0n, historyStart: 0n, historyEnd: 0n }, bitsSet: volume, uuidFlags: 0 },
    sizes: { diskSizeBytes: 4096 * (volume + 1), userSizeBytes: 0, currentSizeBytes: 0, maxRequestBytes: 4096, ddsFlags: 0 },
    state: { role, disk: 8, conn: 9, userIsp: false },
  };
}

/** The packets one side sends for volume `v` (SyncParam, Uuids, Sizes, State). */
function volumePackets(v: LocalVolumeParams): Packet[] {
  const { volume } = v;
  return [
    { type: PacketType.SyncParam, volume, ...v.syncParam },
    { type: PacketType.Uuids, volume, ...v.uuids! },
    { type: PacketType.Sizes, volume, ...v.sizes },
    { type: PacketType.State, volume, ...v.state },
  ];
}

function start(volumes: number[]): { session: FakeSession; messages: string[]; done: Promise<HandshakeResult> } {
  const session = new FakeSession();
  const messages: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void messages.push(JSON.parse(line).msg as string) });
  const local: LocalParams = { protocol: base, volumes: volumes.map((v) => volumeParams(v)) };
  const done = exchangeParams(session as unknown as PeerSession, () => local, { timeoutMs: 1000, resolveConflicts: false, agreedVersion: 2, logger });
  return { session, messages, done };
}

const peerProtocol: Packet = { type: PacketType.Protocol, ...base, nodeName: 'beta' };
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('peer parameter exchange over several volumes', () => {
  it('sends Protocol once, then each volume\'s four in vnr order, and takes interleaved volumes', async () => {
    const { session, done } = start([0, 3]);
    await tick();
    expect(session.sent.map((p) => [p.type, 'volume' in p ? p.volume : null])).toEqual([
      [PacketType.Protocol, null],
      [PacketType.SyncParam, 0], [PacketType.Uuids, 0], [PacketType.Sizes, 0], [PacketType.State, 0],
      [PacketType.SyncParam, 3], [PacketType.Uuids, 3], [PacketType.Sizes, 3], [PacketType.State, 3],
    ]);
    const v0 = volumePackets(volumeParams(0, 1));
    const v3 = volumePackets(volumeParams(3, 2)).filter((p) => p.type !== PacketType.Uuids); // volume 3 has no disk
    session.deliver(peerProtocol);
    for (let i = 0; i < 4; i++) {
      if (v3[i]) session.deliver(v3[i]!);
      session.deliver(v0[i]!);
    }
    const result = await done;
    expect(result.connection.nodeName).toBe('beta');
    expect([...result.volumes.keys()]).toEqual([0, 3]);
    expect(peerParams(result, 0)).toMatchObject({ role: 1, uuidsKnown: true, bitsSet: 0, sizes: { diskSizeBytes: 4096 } });
    expect(peerParams(result, 3)).toMatchObject({ role: 2, uuidsKnown: false, sizes: { diskSizeBytes: 16384 } });
    expect(session.closedWith).toBeNull();
  });

  it('does not finish while one volume still lacks its State', async () => {
    const { session, done } = start([0, 1]);
    await tick();
    let settled = false;
    void done.then(() => (settled = true), () => (settled = true));
    session.deliver(peerProtocol);
    for (const p of volumePackets(volumeParams(0))) session.deliver(p);
    for (const p of volumePackets(volumeParams(1)).slice(0, 3)) session.deliver(p);
    await tick();
    expect(settled).toBe(false);
    session.deliver(volumePackets(volumeParams(1))[3]!);
    await expect(done).resolves.toMatchObject({ connection: { nodeName: 'beta' } });
  });

  it('names the volume in an out-of-order packet when several are exchanged, and not with one', async () => {
    const two = start([0, 1]);
    await tick();
    two.session.deliver(peerProtocol);
    two.session.deliver(volumePackets(volumeParams(0))[0]!);
    two.session.deliver(volumePackets(volumeParams(1))[3]!); // volume 1's State before its SyncParam
    await expect(two.done).rejects.toThrow(new HandshakeFailedError('expected SyncParam packet for volume 1, received: State'));
    expect(two.session.closedWith).toBe('ProtocolError');

    const one = start([0]);
    await tick();
    one.session.deliver(peerProtocol);
    one.session.deliver(volumePackets(volumeParams(0))[0]!);
    one.session.deliver(volumePackets(volumeParams(0))[2]!); // Sizes: Uuids may be left out
    one.session.deliver(volumePackets(volumeParams(0))[0]!);
    await expect(one.done).rejects.toThrow('expected State packet, received: SyncParam');
  });

  it('refuses a volume\'s packet after its State, a packet before Protocol and a volume not exchanged', async () => {
    const after = start([0, 1]);
    await tick();
    after.session.deliver(peerProtocol);
    for (const p of volumePackets(volumeParams(0))) after.session.deliver(p);
    after.session.deliver(volumePackets(volumeParams(0))[2]!);
    await expect(after.done).rejects.toThrow('expected nothing packet for volume 0, received: Sizes');

    const first = start([0, 1]);
    await tick();
    first.session.deliver(volumePackets(volumeParams(0))[0]!);
    await expect(first.done).rejects.toThrow('expected Protocol packet, received: SyncParam');

    const stray = start([0, 1]);
    await tick();
    stray.session.deliver(peerProtocol);
    stray.session.deliver(volumePackets(volumeParams(2))[0]!);
    await expect(stray.done).rejects.toThrow('SyncParam packet for volume 2 during the exchange of volumes 0, 1');
  });

  it('asserts LocalParams: 1..EXCHANGED_VOLUMES_MAX volumes, distinct and ascending', async () => {
    for (const volumes of [[], [1, 0], [0, 0], Array.from({ length: EXCHANGED_VOLUMES_MAX + 1 }, (_, i) => i)]) {
      const { session, done } = start(volumes);
      await expect(done).rejects.toBeInstanceOf(InvariantError);
      expect(session.sent).toEqual([]);
    }
    const { done, session } = start(Array.from({ length: EXCHANGED_VOLUMES_MAX }, (_, i) => i));
    await tick();
    expect(session.sent).toHaveLength(1 + 4 * EXCHANGED_VOLUMES_MAX);
    session.close('Disconnecting');
    void done.catch(() => undefined);
  });
});
