import { describe, expect, it } from 'vitest';
import {
  FRAME_BYTES_MAX,
  FRAME_MAGIC,
  FrameDecoder,
  HEADER_BYTES,
  HEADER_VOLUME_OFFSET,
  INTEGRITY_DIGEST_BYTES_MAX,
  PAYLOAD_BYTES_MAX,
  PROTOCOL_VERSION,
  ProtocolError,
  encodeHead,
  encodePacket,
  tailOf,
  unknownVolumeMessage,
} from '../../src/peer/codec.js';
import { PacketType, SetupPacketType, volumeScope, type WirePacket } from '../../src/peer/packets.js';

const U64_MAX = 2n ** 64n - 1n;
const SAFE_MAX_SECTOR = Math.floor(Number.MAX_SAFE_INTEGER / 512) * 512;
/** The volumes samples() addresses, all configured on the decoders below unless a test says otherwise. */
const SAMPLE_VOLUMES: ReadonlySet<number> = new Set([0, 1, 7, 65535]);

function pattern(length: number, seed: number): Buffer {
  const buf = Buffer.alloc(length);
  for (let i = 0; i < length; i++) buf[i] = (i * 31 + seed) & 0xff;
  return buf;
}

/** One sample of every packet type, with extreme field values where the type has them. */
function samples(): WirePacket[] {
  return [
    { type: SetupPacketType.Hello, nodeName: 'compute1', versionMin: 1, versionMax: 65535, authAlg: 'sha256' },
    { type: SetupPacketType.Hello, nodeName: 'n', versionMin: 1, versionMax: 1, authAlg: '' },
    { type: SetupPacketType.Chosen },
    { type: PacketType.AuthChallenge, challenge: pattern(64, 1) },
    { type: PacketType.AuthResponse, response: pattern(32, 2) },
    { type: PacketType.AuthResult, ok: true },
    { type: PacketType.AuthResult, ok: false },
    {
      type: PacketType.Protocol, protocol: 'C', afterSb0pri: 'discard-zero-changes', afterSb1pri: 'discard-secondary',
      afterSb2pri: 'violently-as0p', allowTwoPrimaries: false, discardMyData: true, nodeName: 'compute2', integrityAlg: 'sha1',
    },
    {
      type: PacketType.Protocol, protocol: 'A', afterSb0pri: 'discard-remote', afterSb1pri: 'consensus',
      afterSb2pri: 'disconnect', allowTwoPrimaries: true, discardMyData: false, nodeName: 'ñode-ü', integrityAlg: '',
    },
    {
      type: PacketType.Protocol, protocol: 'B', afterSb0pri: 'discard-node-compute2', afterSb1pri: 'disconnect',
      afterSb2pri: 'disconnect', allowTwoPrimaries: false, discardMyData: false, nodeName: 'compute1', integrityAlg: 'crc32c',
    },
    {
      // P_PROTOCOL_UPDATE: `adjust` changed the protocol on a live connection
      type: PacketType.ProtocolUpdate, protocol: 'B', afterSb0pri: 'discard-least-changes', afterSb1pri: 'call-pri-lost-after-sb',
      afterSb2pri: 'call-pri-lost-after-sb', allowTwoPrimaries: false, discardMyData: false, nodeName: 'compute1', integrityAlg: 'sha256',
    },
    // P_SYNC_PARAM: disk-options / net-options changed the resync parameters on a live connection
    { type: PacketType.SyncParam, volume: 0, resyncRateKiBps: 4 << 20, cPlanAheadDs: 300, cDelayTargetDs: 100, cFillTargetSectors: 1 << 20, cMaxRateKiBps: 250, verifyAlg: 'sha256', csumsAlg: '' },
    { type: PacketType.SyncParam, volume: 1, resyncRateKiBps: 1, cPlanAheadDs: 0, cDelayTargetDs: 1, cFillTargetSectors: 0, cMaxRateKiBps: 102400, verifyAlg: '', csumsAlg: 'crc32c' },
    {
      type: PacketType.Uuids, volume: 65535,
      uuids: { current: U64_MAX, bitmap: 0n, historyStart: 0x0001000000000000n, historyEnd: 4n },
      bitsSet: Number.MAX_SAFE_INTEGER, uuidFlags: 15,
    },
    { type: PacketType.Sizes, volume: 7, diskSizeBytes: Number.MAX_SAFE_INTEGER, userSizeBytes: 0, currentSizeBytes: 0, maxRequestBytes: 0xffffffff, ddsFlags: 3 },
    { type: PacketType.State, volume: 65535, role: 1, disk: 8, conn: 23, userIsp: true },
    { type: PacketType.State, volume: 0, role: 0, disk: 0, conn: 0, userIsp: false },
    { type: PacketType.SyncUuid, volume: 1, uuid: U64_MAX },
    { type: PacketType.SyncUuid, volume: 7, uuid: 0n },
    { type: PacketType.StateChangeRequest, volume: 65535, requestId: 0xffffffff, role: 1, disk: 5 },
    { type: PacketType.StateChangeRequest, volume: 0, requestId: 0, conn: 16 },
    { type: PacketType.StateChangeReply, volume: 1, requestId: 7, result: -17 },
    { type: PacketType.Data, volume: 7, offsetBytes: SAFE_MAX_SECTOR, blockId: Number.MAX_SAFE_INTEGER, epoch: 0xffffffff, flags: 3, payload: pattern(4096, 3) },
    { type: PacketType.Data, volume: 65535, offsetBytes: 0, blockId: 0, epoch: 0, flags: 2, payload: Buffer.alloc(0) },
    // the ack a write asks for (protocol changed online): fua + ackWrite, flush + ackReceive, ackNone
    { type: PacketType.Data, volume: 0, offsetBytes: 4096, blockId: 2, epoch: 1, flags: 0x9, payload: pattern(512, 4) },
    { type: PacketType.Data, volume: 1, offsetBytes: 4096, blockId: 3, epoch: 1, flags: 0x6, payload: pattern(512, 5) },
    { type: PacketType.Data, volume: 7, offsetBytes: 4096, blockId: 4, epoch: 1, flags: 0x10, payload: pattern(512, 6) },
    { type: PacketType.RecvAck, volume: 65535, offsetBytes: 512, lengthBytes: 4096, blockId: 1 },
    { type: PacketType.WriteAck, volume: 0, offsetBytes: SAFE_MAX_SECTOR, lengthBytes: 1024 * 1024, blockId: Number.MAX_SAFE_INTEGER },
    { type: PacketType.NegAck, volume: 1, offsetBytes: 0, lengthBytes: 0, blockId: 2 },
    { type: PacketType.RsWriteAck, volume: 7, offsetBytes: 4096, lengthBytes: 4096, blockId: 3 },
    { type: PacketType.RsNegAck, volume: 65535, offsetBytes: 8192, lengthBytes: 512, blockId: 4 },
    { type: PacketType.Barrier, epoch: 0xffffffff },
    { type: PacketType.BarrierAck, epoch: 9, writes: 2048 },
    { type: PacketType.Bitmap, volume: 0, firstByte: Number.MAX_SAFE_INTEGER, bits: pattern(100, 5), last: true },
    { type: PacketType.Bitmap, volume: 1, firstByte: 0, bits: Buffer.alloc(0), last: false },
    { type: PacketType.RsDataRequest, volume: 7, offsetBytes: 1024 * 1024, lengthBytes: 65536, blockId: 11 },
    { type: PacketType.RsDataReply, volume: 65535, offsetBytes: 1024 * 1024, blockId: 11, payload: pattern(1024, 6) },
    { type: PacketType.OutOfSync, volume: 0, offsetBytes: 4096, lengthBytes: 0xfffffe00 },
    { type: PacketType.CsumRsRequest, volume: 1, offsetBytes: 1024 * 1024, lengthBytes: 65536, blockId: 14, digest: pattern(16, 8) },
    { type: PacketType.RsIsInSync, volume: 7, offsetBytes: 1024 * 1024, lengthBytes: 65536, blockId: 14 },
    { type: PacketType.OvRequest, volume: 65535, offsetBytes: 0, lengthBytes: 4096, blockId: 12 },
    { type: PacketType.OvReply, volume: 0, offsetBytes: 0, lengthBytes: 4096, blockId: 12, digest: pattern(64, 7) },
    // one sha512 digest per 4 KiB block of a 256 KiB verify run
    { type: PacketType.OvReply, volume: 1, offsetBytes: 0, lengthBytes: 262144, blockId: 13, digest: pattern(64 * 64, 9) },
    { type: PacketType.OvResult, volume: 7, offsetBytes: 0, lengthBytes: 4096, inSync: false },
    { type: PacketType.Ping },
    { type: PacketType.PingAck },
    { type: PacketType.Disconnect },
  ];
}

function wire(packet: WirePacket): Buffer {
  return Buffer.concat(encodePacket(packet));
}

function decodeAll(chunks: Buffer[]): WirePacket[] {
  const out: WirePacket[] = [];
  const decoder = new FrameDecoder((p) => out.push(p), { volumes: SAMPLE_VOLUMES });
  for (const chunk of chunks) decoder.push(chunk);
  expect(decoder.midFrame).toBe(false);
  return out;
}

function header(type: number, length: number, magic = FRAME_MAGIC, version = PROTOCOL_VERSION, volume = 0): Buffer {
  const buf = Buffer.alloc(HEADER_BYTES);
  buf.writeUInt32BE(magic, 0);
  buf.writeUInt16BE(version, 4);
  buf.writeUInt16BE(type, 6);
  buf.writeUInt32BE(length, 8);
  buf.writeUInt16BE(volume, 12);
  return buf;
}

function expectProtocolError(bytes: Buffer, pattern: RegExp, volumes: ReadonlySet<number> = SAMPLE_VOLUMES): void {
  const decoder = new FrameDecoder(() => undefined, { volumes });
  let caught: unknown;
  try {
    decoder.push(bytes);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ProtocolError);
  expect((caught as Error).message).toMatch(pattern);
}

describe('peer codec', () => {
  it('round-trips every packet type, including u64 extremes', () => {
    const all = samples();
    const seen = new Set(all.map((p) => p.type));
    for (const t of [...Object.values(PacketType), ...Object.values(SetupPacketType)]) expect(seen.has(t)).toBe(true);
    for (const packet of all) {
      expect(decodeAll([wire(packet)])).toEqual([packet]);
    }
  });

  it('round-trips a maximum-size Data packet and sends its payload as a separate buffer', () => {
    const payload = pattern(PAYLOAD_BYTES_MAX, 9);
    const packet: WirePacket = { type: PacketType.Data, volume: 0, offsetBytes: 512, blockId: 5, epoch: 1, flags: 1, payload };
    const parts = encodePacket(packet);
    expect(parts).toHaveLength(2);
    expect(parts[1]).toBe(payload); // not copied
    expect(parts[0]!.length).toBeLessThan(64);
    // FRAME_BYTES_MAX leaves room for the longest data-integrity-alg digest (peer-integrity.test.ts).
    expect(parts[0]!.length + payload.length + INTEGRITY_DIGEST_BYTES_MAX).toBe(FRAME_BYTES_MAX);
    const whole = Buffer.concat(parts);
    const sameData = (p: WirePacket | undefined): void => {
      expect(p?.type).toBe(PacketType.Data);
      const d = p as typeof packet;
      expect([d.offsetBytes, d.blockId, d.epoch, d.flags]).toEqual([512, 5, 1, 1]);
      expect(d.payload.equals(payload)).toBe(true);
    };
    const [decoded] = decodeAll([whole]);
    sameData(decoded);
    // Arrived in one chunk: the payload is a view of that chunk, not a copy.
    expect((decoded as { payload: Buffer }).payload.buffer).toBe(whole.buffer);
    // Split across many chunks it is still byte-identical.
    const pieces: Buffer[] = [];
    for (let at = 0; at < whole.length; at += 65536 - 7) pieces.push(whole.subarray(at, Math.min(whole.length, at + 65536 - 7)));
    const again = decodeAll(pieces);
    expect(again).toHaveLength(1);
    sameData(again[0]);
  });

  it('decodes a stream split at every byte boundary and byte by byte', () => {
    const all = samples();
    const stream = Buffer.concat(all.map(wire));
    expect(stream.length).toBeGreaterThan(5000);
    for (let split = 0; split <= stream.length; split++) {
      const decoded = decodeAll([stream.subarray(0, split), stream.subarray(split)]);
      // Re-encoding is exact (the round-trip test proves field equality), so
      // byte equality of the re-encoded stream proves every packet survived.
      expect(decoded.length).toBe(all.length);
      if (!Buffer.concat(decoded.map(wire)).equals(stream)) expect.fail(`stream split at byte ${split} decoded differently`);
    }
    const bytes: Buffer[] = [];
    for (let i = 0; i < stream.length; i++) bytes.push(stream.subarray(i, i + 1));
    expect(decodeAll(bytes)).toEqual(all);
  });

  it('reads through a reused receive buffer and direct body reads: same packets, and no delivered body changes when the buffer is reused', () => {
    const packets: WirePacket[] = [
      ...samples(),
      { type: PacketType.Data, volume: 0, offsetBytes: 1 << 20, blockId: 7, epoch: 3, flags: 0, payload: pattern(PAYLOAD_BYTES_MAX, 9) },
      { type: PacketType.RsDataReply, volume: 0, offsetBytes: 4096, blockId: 8, payload: pattern(256 * 1024, 11) },
      ...samples(),
    ];
    const stream = Buffer.concat(packets.flatMap((p) => encodePacket(p)));
    const delivered: WirePacket[] = [];
    const decoder = new FrameDecoder((p) => delivered.push(p), { volumes: SAMPLE_VOLUMES });
    const receiveBuffer = Buffer.alloc(64 * 1024);
    let pos = 0;
    let directReads = 0;
    let readNo = 0;
    // Reads of varying sizes, like a socket: whatever is "available", capped by the buffer offered.
    while (pos < stream.length) {
      const direct = decoder.directReadTarget();
      const target = direct ?? receiveBuffer;
      const available = [1, 7, 12, 100, 4096, 65536, 300_000][readNo++ % 7]!;
      const n = Math.min(target.length, available, stream.length - pos);
      stream.copy(target, 0, pos, pos + n);
      pos += n;
      if (direct !== null) directReads++;
      decoder.received(n, target);
      receiveBuffer.fill(0xee); // the socket reuses it for the next read
    }
    expect(directReads).toBeGreaterThan(0);
    expect(delivered).toEqual(packets);
  });

  it('encodeHead + tailOf carry exactly the bytes encodePacket carries', () => {
    for (const packet of samples()) {
      const tail = tailOf(packet);
      const joined = Buffer.concat(tail ? [encodeHead(packet), tail] : [encodeHead(packet)]);
      expect(joined.equals(wire(packet))).toBe(true);
      expect(joined.readUInt32BE(8)).toBe(joined.length - HEADER_BYTES);
      // The volume sits at offset 12: the packet's own, 0 for connection-wide packets.
      expect(joined.readUInt16BE(HEADER_VOLUME_OFFSET)).toBe('volume' in packet ? packet.volume : 0);
    }
  });

  it('rejects bad magic, wrong version, unknown type, oversized and short lengths from the header alone', () => {
    expectProtocolError(header(PacketType.Ping, 0, 0x83740267), /bad frame magic 0x83740267/);
    expectProtocolError(header(PacketType.Ping, 0, FRAME_MAGIC, 99), /incompatible frame version 99/);
    expectProtocolError(header(0x7777, 0), /unknown packet type 0x7777/);
    expectProtocolError(header(PacketType.Data, 0xffffffff), /oversized frame/);
    expectProtocolError(header(PacketType.Data, FRAME_BYTES_MAX), /oversized frame/);
    expectProtocolError(header(PacketType.Ping, 1), /oversized frame/);
    expectProtocolError(header(PacketType.Uuids, 47), /short frame/);
    expectProtocolError(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), /bad frame magic/);
  });

  it('rejects malformed bodies with a ProtocolError', () => {
    const misaligned = wire({ type: PacketType.WriteAck, volume: 0, offsetBytes: 512, lengthBytes: 512, blockId: 1 });
    misaligned.writeUInt32BE(513, HEADER_BYTES + 4); // offset low word
    expectProtocolError(misaligned, /not a multiple of 512/);

    const hugeOffset = wire({ type: PacketType.OutOfSync, volume: 0, offsetBytes: 0, lengthBytes: 512 });
    hugeOffset.writeUInt32BE(0xffffffff, HEADER_BYTES);
    expectProtocolError(hugeOffset, /too large/);

    const badProtocol = wire(samples()[7]!);
    badProtocol.writeUInt8('D'.charCodeAt(0), HEADER_BYTES);
    expectProtocolError(badProtocol, /unknown protocol/);

    const badSb = wire(samples()[7]!);
    badSb.writeUInt8(200, HEADER_BYTES + 1);
    expectProtocolError(badSb, /unknown after-sb-0pri/);

    const badName = wire(samples()[7]!);
    badName.writeUInt8(200, HEADER_BYTES + 5); // name length past the body
    expectProtocolError(badName, /length mismatch/);

    const oddPayload = Buffer.concat([header(PacketType.Data, 24 + 100), Buffer.alloc(24), Buffer.alloc(100)]);
    expectProtocolError(oddPayload, /payload 100 not a multiple/);

    const badState = wire({ type: PacketType.State, volume: 0, role: 1, disk: 8, conn: 10, userIsp: false });
    badState.writeUInt8(9, HEADER_BYTES + 1);
    expectProtocolError(badState, /State out of range/);

    // P_SIZES dds_flags: forced (1) and no-resync (2) only; another bit is not silently dropped
    const badSizes = wire({ type: PacketType.Sizes, volume: 0, diskSizeBytes: 4096, userSizeBytes: 0, currentSizeBytes: 0, maxRequestBytes: 4096, ddsFlags: 0 });
    badSizes.writeUInt16BE(4, HEADER_BYTES + 28);
    expectProtocolError(badSizes, /Sizes flags out of range/);
  });

  it("P_SIZES carries u_size between d_size and c_size, as DRBD's p_sizes", () => {
    const frame = wire({ type: PacketType.Sizes, volume: 3, diskSizeBytes: 96 * 1024 * 1024, userSizeBytes: 48 * 1024 * 1024, currentSizeBytes: 64 * 1024 * 1024, maxRequestBytes: 1 << 20, ddsFlags: 2 });
    expect(frame.length).toBe(HEADER_BYTES + 30);
    expect(Number(frame.readBigUInt64BE(HEADER_BYTES))).toBe(96 * 1024 * 1024);
    expect(Number(frame.readBigUInt64BE(HEADER_BYTES + 8))).toBe(48 * 1024 * 1024);
    expect(Number(frame.readBigUInt64BE(HEADER_BYTES + 16))).toBe(64 * 1024 * 1024);
    expect(frame.readUInt32BE(HEADER_BYTES + 24)).toBe(1 << 20);
    expect(frame.readUInt16BE(HEADER_BYTES + 28)).toBe(2);
    const out: WirePacket[] = [];
    new FrameDecoder((p) => out.push(p), { volumes: new Set([3]) }).push(frame);
    expect(out).toEqual([{ type: PacketType.Sizes, volume: 3, diskSizeBytes: 96 * 1024 * 1024, userSizeBytes: 48 * 1024 * 1024, currentSizeBytes: 64 * 1024 * 1024, maxRequestBytes: 1 << 20, ddsFlags: 2 }]);
  });

  it('delivers the good frames before a bad one and then stays dead', () => {
    const out: WirePacket[] = [];
    const decoder = new FrameDecoder((p) => out.push(p), { volumes: SAMPLE_VOLUMES });
    const good = wire({ type: PacketType.Ping });
    expect(() => decoder.push(Buffer.concat([good, good, Buffer.from('garbage-garbage')]))).toThrow(ProtocolError);
    expect(out).toHaveLength(2);
    expect(() => decoder.push(good)).toThrow(/after a ProtocolError/);
  });

  it('refuses to encode values the wire cannot carry', () => {
    expect(() => encodeHead({ type: PacketType.Data, volume: 0, offsetBytes: 100, blockId: 1, epoch: 0, flags: 0, payload: Buffer.alloc(512) })).toThrow(/multiple of 512/);
    expect(() => encodeHead({ type: PacketType.Sizes, volume: 0, diskSizeBytes: -1, userSizeBytes: 0, currentSizeBytes: 0, maxRequestBytes: 0, ddsFlags: 0 })).toThrow(/safe integer/);
    expect(() => encodeHead({ type: PacketType.Data, volume: 0, offsetBytes: 0, blockId: 1, epoch: 0, flags: 0, payload: Buffer.alloc(PAYLOAD_BYTES_MAX + 512) })).toThrow(/within bounds/);
    expect(() => encodeHead({ type: PacketType.Data, volume: 0, offsetBytes: 0, blockId: 1, epoch: 0, flags: 0x20, payload: Buffer.alloc(0) })).toThrow(/Data flags/);
  });
});

describe('peer codec: the volume in the frame header (p_header100.volume)', () => {
  /** Every per-volume packet type of samples(), once each. */
  function perVolumeSamples(): WirePacket[] {
    const byType = new Map<number, WirePacket>();
    for (const p of samples()) if ('volume' in p && !byType.has(p.type)) byType.set(p.type, p);
    return [...byType.values()];
  }

  it('every per-volume packet round-trips with a volume other than 0, carried at header offset 12', () => {
    const perVolume = perVolumeSamples();
    expect(perVolume.map((p) => p.type).sort()).toEqual(
      Object.values(PacketType).filter((t) => volumeScope(t) !== 'connection').sort(),
    );
    for (const sample of perVolume) {
      for (const volume of [1, 7, 65535]) {
        const packet = { ...sample, volume } as WirePacket;
        const bytes = wire(packet);
        expect(bytes.readUInt16BE(HEADER_VOLUME_OFFSET)).toBe(volume);
        const [decoded] = decodeAll([bytes]);
        expect(decoded).toEqual(packet);
      }
    }
  });

  it('a connection-wide frame is delivered whatever volume its header names, and carries no volume', () => {
    const out: WirePacket[] = [];
    const decoder = new FrameDecoder((p) => out.push(p), { volumes: new Set([0]) });
    const connectionWide: WirePacket[] = [
      { type: PacketType.Ping },
      { type: PacketType.Barrier, epoch: 5 },
      { type: PacketType.BarrierAck, epoch: 5, writes: 2 },
      samples()[7]!, // Protocol
    ];
    for (const packet of connectionWide) {
      const bytes = wire(packet);
      bytes.writeUInt16BE(9, HEADER_VOLUME_OFFSET);
      decoder.push(bytes);
    }
    expect(out).toEqual(connectionWide);
    for (const p of out) expect('volume' in p).toBe(false);
  });

  it('names the unknown volume in DRBD config_unknown_volume\'s words', () => {
    expect(unknownVolumeMessage(PacketType.Sizes, 3)).toBe('Sizes packet received for volume 3, which is not configured locally');
    expect(unknownVolumeMessage(PacketType.Data, 65535)).toBe('Data packet received for volume 65535, which is not configured locally');
  });

  it('skips a configuration packet for a volume not configured locally, reports it, and goes on with the next frame (whole or byte by byte)', () => {
    const configSamples = perVolumeSamples().filter((p) => volumeScope(p.type) === 'config');
    expect(configSamples.map((p) => p.type).sort()).toEqual(
      [PacketType.SyncParam, PacketType.Sizes, PacketType.Uuids, PacketType.State, PacketType.StateChangeRequest].sort(),
    );
    for (const sample of configSamples) {
      const ping = wire({ type: PacketType.Ping });
      const known = { ...sample, volume: 0 } as WirePacket;
      const stream = Buffer.concat([ping, wire({ ...sample, volume: 3 } as WirePacket), wire(known), ping]);
      for (const pieces of [[stream], [...stream].map((b) => Buffer.from([b]))]) {
        const out: WirePacket[] = [];
        const skipped: Array<[number, number]> = [];
        const decoder = new FrameDecoder((p) => out.push(p), { volumes: new Set([0]), onUnknownVolume: (type, volume) => skipped.push([type, volume]) });
        for (const piece of pieces) decoder.push(piece);
        expect(out).toEqual([{ type: PacketType.Ping }, known, { type: PacketType.Ping }]);
        expect(skipped).toEqual([[sample.type, 3]]);
        expect(decoder.framesSkipped).toBe(1);
        expect(decoder.midFrame).toBe(false);
      }
    }
  });

  it('refuses a data-path packet for a volume not configured locally as soon as its header is in (the link breaks)', () => {
    const dataTypes = Object.values(PacketType).filter((t) => volumeScope(t) === 'data');
    expect(dataTypes).toContain(PacketType.Data);
    expect(dataTypes).toContain(PacketType.WriteAck);
    expect(dataTypes).toContain(PacketType.Bitmap);
    for (const type of dataTypes) {
      const out: WirePacket[] = [];
      const skipped: number[] = [];
      const decoder = new FrameDecoder((p) => out.push(p), { volumes: new Set([0]), onUnknownVolume: (t) => skipped.push(t) });
      const sample = perVolumeSamples().find((p) => p.type === type)!;
      const frame = wire({ ...sample, volume: 3 } as WirePacket);
      let caught: unknown;
      try {
        decoder.push(frame.subarray(0, HEADER_BYTES)); // the body never arrives
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(ProtocolError);
      expect((caught as Error).message).toBe(unknownVolumeMessage(type, 3));
      expect(out).toEqual([]);
      expect(skipped).toEqual([]);
      expect(() => decoder.push(wire({ type: PacketType.Ping }))).toThrow(/after a ProtocolError/);
    }
    expectProtocolError(
      wire({ type: PacketType.Data, volume: 1, offsetBytes: 0, blockId: 1, epoch: 1, flags: 0, payload: pattern(512, 1) }),
      /^Data packet received for volume 1, which is not configured locally$/,
      new Set([0]),
    );
  });

  it('takes the configured volumes as its parameter: with volume 2 configured, volume 0 is the unknown one', () => {
    const out: WirePacket[] = [];
    const skipped: number[] = [];
    const decoder = new FrameDecoder((p) => out.push(p), { volumes: new Set([2]), onUnknownVolume: (_t, v) => skipped.push(v) });
    const sizes = (volume: number): WirePacket => ({ type: PacketType.Sizes, volume, diskSizeBytes: 4096, userSizeBytes: 0, currentSizeBytes: 4096, maxRequestBytes: 4096, ddsFlags: 0 });
    decoder.push(Buffer.concat([wire(sizes(2)), wire(sizes(0))]));
    expect(out).toEqual([sizes(2)]);
    expect(skipped).toEqual([0]);
    expect(() => decoder.push(wire({ type: PacketType.OutOfSync, volume: 0, offsetBytes: 0, lengthBytes: 512 }))).toThrow(
      'OutOfSync packet received for volume 0, which is not configured locally',
    );
  });

  it('refuses a version-1 frame (12-byte header without a volume) by its version', () => {
    // A version-1 peer's first frame: its Hello, header {magic, version 1, type, length} and body.
    const body = Buffer.from([0, 1, 0, 1, 1, 0, 'b'.charCodeAt(0)]);
    const v1 = Buffer.alloc(12);
    v1.writeUInt32BE(FRAME_MAGIC, 0);
    v1.writeUInt16BE(1, 4);
    v1.writeUInt16BE(SetupPacketType.Hello, 6);
    v1.writeUInt32BE(body.length, 8);
    expect(PROTOCOL_VERSION).toBe(2);
    expect(HEADER_BYTES).toBe(14);
    expectProtocolError(Buffer.concat([v1, body]), /^incompatible frame version 1 \(speak 2\.\.2\)$/);
  });

  it('refuses to encode a volume the u16 cannot carry', () => {
    const sizes = { type: PacketType.Sizes, diskSizeBytes: 4096, userSizeBytes: 0, currentSizeBytes: 0, maxRequestBytes: 4096, ddsFlags: 0 } as const;
    expect(() => encodeHead({ ...sizes, volume: 65536 })).toThrow(/volume fits u16/);
    expect(() => encodeHead({ ...sizes, volume: -1 })).toThrow(/volume fits u16/);
    expect(() => encodeHead({ ...sizes, volume: 1.5 })).toThrow(/volume fits u16/);
  });
});
