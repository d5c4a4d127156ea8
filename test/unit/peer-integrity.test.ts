/**
 * data-integrity-alg on the wire: where the digest sits in Data / RsDataReply
 * frames (after the fixed part, counted in the length, as DRBD 8.4's
 * drbd_send_dblock puts it after p_data), that the stream decoder recomputes
 * it, and that a mismatch is the IntegrityError with read_in_block's text and
 * the packet is never delivered. Digests are checked against node:crypto.
 */
import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  FRAME_BYTES_MAX,
  FrameDecoder,
  HEADER_BYTES,
  INTEGRITY_DIGEST_BYTES_MAX,
  PAYLOAD_BYTES_MAX,
  ProtocolError,
  encodePacket,
} from '../../src/peer/codec.js';
import { IntegrityError, integrityDigest } from '../../src/peer/integrity.js';
import { PacketType, type DataPacket, type RsDataReply, type WirePacket } from '../../src/peer/packets.js';
import { UdrbdError } from '../../src/util/errors.js';
import { DIRECT_IO_ALIGN_BYTES, alignedMemoryAvailable } from '../../src/disk/direct-buffers.js';

const DATA_FIXED_BYTES = 24;
const RS_REPLY_FIXED_BYTES = 16;

function randomPayload(bytes: number): Buffer {
  return crypto.randomBytes(bytes);
}

function sha(alg: string, data: Buffer): Buffer {
  return crypto.createHash(alg).update(data).digest();
}

/** Byte-at-a-time CRC32C (init and final xor ~0), the definition the fast versions must match. */
function crc32cReference(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function dataPacket(offsetBytes: number, payload: Buffer): DataPacket {
  return { type: PacketType.Data, volume: 0, offsetBytes, blockId: 77, epoch: 3, flags: 0, payload };
}

/** A decoder that checks `alg`, collecting what it delivers. */
function decoderFor(alg: string): { decoder: FrameDecoder; out: WirePacket[] } {
  const out: WirePacket[] = [];
  const decoder = new FrameDecoder((p) => out.push(p), { volumes: new Set([0]) });
  decoder.setPeerIntegrity(integrityDigest(alg));
  return { decoder, out };
}

describe('data-integrity-alg digest placement', () => {
  it('puts the sha1 of a Data payload between the fixed part and the payload, counted in the length', () => {
    const payload = randomPayload(4096);
    const [head, tail] = encodePacket(dataPacket(8192, payload), integrityDigest('sha1'));
    expect(tail).toBe(payload); // the payload is still sent uncopied
    expect(head!.length).toBe(HEADER_BYTES + DATA_FIXED_BYTES + 20);
    expect(head!.readUInt32BE(8)).toBe(DATA_FIXED_BYTES + 20 + 4096);
    expect(head!.subarray(HEADER_BYTES + DATA_FIXED_BYTES).equals(sha('sha1', payload))).toBe(true);
  });

  it('puts the digest after an RsDataReply\'s fixed part too (resync and read replies)', () => {
    const payload = randomPayload(65536);
    const reply: RsDataReply = { type: PacketType.RsDataReply, volume: 0, offsetBytes: 1 << 20, blockId: 9, payload };
    const [head] = encodePacket(reply, integrityDigest('md5'));
    expect(head!.length).toBe(HEADER_BYTES + RS_REPLY_FIXED_BYTES + 16);
    expect(head!.readUInt32BE(8)).toBe(RS_REPLY_FIXED_BYTES + 16 + 65536);
    expect(head!.subarray(HEADER_BYTES + RS_REPLY_FIXED_BYTES).equals(sha('md5', payload))).toBe(true);
  });

  it('crc32c is the Castagnoli CRC (check value 0xE3069283), 4 bytes', () => {
    const crc = integrityDigest('crc32c')!;
    expect(crc.digestBytes).toBe(4);
    const out = Buffer.alloc(4);
    crc.digestInto(Buffer.from('123456789'), out, 0);
    expect(out.readUInt32BE(0)).toBe(0xe3069283);
  });

  it('crc32c, native (native/udrbd-io SSE4.2) or not, writes the bytes util/digest\'s crc32c gives, at any offset and length', () => {
    const crc = integrityDigest('crc32c')!;
    const data = randomPayload(70_000);
    const out = Buffer.alloc(4);
    for (let offset = 0; offset < 9; offset++) {
      for (const length of [0, 1, 7, 8, 9, 15, 16, 17, 4096, 4099, 65536]) {
        const slice = data.subarray(offset, offset + length);
        crc.digestInto(slice, out, 0);
        expect(out.readUInt32BE(0), `offset ${offset} length ${length}`).toBe(crc32cReference(slice));
      }
    }
  });

  it('leaves frames without integrity byte-identical to before (no digest, no length change)', () => {
    const payload = randomPayload(512);
    const [head] = encodePacket(dataPacket(0, payload));
    expect(head!.length).toBe(HEADER_BYTES + DATA_FIXED_BYTES);
    expect(head!.readUInt32BE(8)).toBe(DATA_FIXED_BYTES + 512);
  });

  it('a 1 MiB payload with the longest (sha512) digest is exactly FRAME_BYTES_MAX', () => {
    const payload = randomPayload(PAYLOAD_BYTES_MAX);
    const [head] = encodePacket(dataPacket(0, payload), integrityDigest('sha512'));
    expect(integrityDigest('sha512')!.digestBytes).toBe(INTEGRITY_DIGEST_BYTES_MAX);
    expect(head!.length + payload.length).toBe(FRAME_BYTES_MAX);
    const { decoder, out } = decoderFor('sha512');
    decoder.push(Buffer.concat([head!, payload]));
    expect((out[0] as DataPacket).payload.equals(payload)).toBe(true);
  });
});

describe('data-integrity-alg on receive', () => {
  for (const alg of ['sha1', 'crc32c', 'sha256']) {
    it(`${alg}: decodes Data and RsDataReply payloads byte-identical, whole or split at every 1000th byte`, () => {
      const a = randomPayload(4096);
      const b = randomPayload(128 * 1024); // pooled assembly (≥ 64 KiB), RsDataReply page-aligned lead
      const digest = integrityDigest(alg);
      const stream = Buffer.concat([
        ...encodePacket(dataPacket(4096, a), digest),
        ...encodePacket({ type: PacketType.RsDataReply, volume: 0, offsetBytes: 0, blockId: 1, payload: b }, digest),
      ]);
      for (let split = 0; split < stream.length; split += 1000) {
        const { decoder, out } = decoderFor(alg);
        decoder.push(stream.subarray(0, split));
        decoder.push(stream.subarray(split));
        expect(out.map((p) => p.type)).toEqual([PacketType.Data, PacketType.RsDataReply]);
        expect((out[0] as DataPacket).payload.equals(a)).toBe(true);
        expect((out[1] as RsDataReply).payload.equals(b)).toBe(true);
      }
    });
  }

  it('an RsDataReply payload behind a digest still starts on a page boundary (the SyncTarget writes it with O_DIRECT as it is)', () => {
    const payload = randomPayload(256 * 1024);
    const frame = Buffer.concat(encodePacket({ type: PacketType.RsDataReply, volume: 0, offsetBytes: 0, blockId: 3, payload }, integrityDigest('sha1')));
    const { decoder, out } = decoderFor('sha1');
    // In pieces, as from a socket: the body is assembled in the buffer takeAssembly hands out.
    for (let at = 0; at < frame.length; at += 65536) decoder.push(Buffer.from(frame.subarray(at, at + 65536)));
    const received = (out[0] as RsDataReply).payload;
    expect(received.equals(payload)).toBe(true);
    // Without native/udrbd-io there is no aligned memory and the disk write stages a copy instead.
    expect(alignedMemoryAvailable, 'native/udrbd-io built (scripts/setup.sh builds it)').toBe(true);
    expect(received.byteOffset % DIRECT_IO_ALIGN_BYTES).toBe(0);
  });

  it('a flipped payload byte is "Digest integrity check FAILED: <sector>s +<bytes>"; the block is never delivered', () => {
    const good = randomPayload(4096);
    const bad = randomPayload(8192);
    const digest = integrityDigest('sha1');
    const badFrame = Buffer.concat(encodePacket(dataPacket(2048 * 512, bad), digest));
    badFrame[HEADER_BYTES + DATA_FIXED_BYTES + 20 + 5000]! ^= 0x01; // one bit of the payload, in flight
    const { decoder, out } = decoderFor('sha1');
    let thrown: unknown;
    try {
      decoder.push(Buffer.concat([...encodePacket(dataPacket(0, good), digest), badFrame]));
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(IntegrityError);
    expect(thrown).toBeInstanceOf(ProtocolError); // the session drops the link as a ProtocolError
    expect((thrown as Error).message).toBe('Digest integrity check FAILED: 2048s +8192');
    expect(out).toHaveLength(1); // the good frame before it, not the corrupted one
    expect((out[0] as DataPacket).payload.equals(good)).toBe(true);
  });

  it('a flipped digest byte fails the same way (RsDataReply)', () => {
    const payload = randomPayload(4096);
    const frame = Buffer.concat(encodePacket({ type: PacketType.RsDataReply, volume: 0, offsetBytes: 4096, blockId: 2, payload }, integrityDigest('crc32c')));
    frame[HEADER_BYTES + RS_REPLY_FIXED_BYTES + 2]! ^= 0x80;
    const { decoder, out } = decoderFor('crc32c');
    expect(() => decoder.push(frame)).toThrow('Digest integrity check FAILED: 8s +4096');
    expect(out).toHaveLength(0);
  });

  it('switches algorithm exactly at the frame that announces it (the frames behind it in the same chunk use the new one)', () => {
    const payload = randomPayload(1024);
    const out: WirePacket[] = [];
    const decoder = new FrameDecoder((p) => {
      out.push(p);
      // What peer/session does on a Protocol / ProtocolUpdate, synchronously.
      if (p.type === PacketType.ProtocolUpdate) decoder.setPeerIntegrity(integrityDigest(p.integrityAlg));
    }, { volumes: new Set([0]) });
    const update: WirePacket = {
      type: PacketType.ProtocolUpdate, protocol: 'C', afterSb0pri: 'disconnect', afterSb1pri: 'disconnect', afterSb2pri: 'disconnect',
      allowTwoPrimaries: false, discardMyData: false, nodeName: 'dia-a', integrityAlg: 'sha256',
    };
    decoder.push(Buffer.concat([
      ...encodePacket(dataPacket(0, payload)),
      ...encodePacket(update),
      ...encodePacket(dataPacket(1024, payload), integrityDigest('sha256')),
    ]));
    expect(out.map((p) => p.type)).toEqual([PacketType.Data, PacketType.ProtocolUpdate, PacketType.Data]);
    expect((out[1] as { integrityAlg: string }).integrityAlg).toBe('sha256');
    expect((out[2] as DataPacket).payload.equals(payload)).toBe(true);
  });

  it('a frame shorter than the digest it must carry is a ProtocolError', () => {
    const frame = Buffer.concat(encodePacket(dataPacket(0, Buffer.alloc(0))));
    const { decoder } = decoderFor('sha1');
    expect(() => decoder.push(frame)).toThrow(/shorter than its 20-byte integrity digest/);
  });
});

describe('data-integrity-alg names', () => {
  it('maps DRBD names to digests, "" to none', () => {
    expect(integrityDigest('')).toBeNull();
    expect(integrityDigest('sha1')!.digestBytes).toBe(20);
    expect(integrityDigest('md5')!.digestBytes).toBe(16);
    expect(integrityDigest('sha256')!.digestBytes).toBe(32);
    expect(integrityDigest('crc32c')!.digestBytes).toBe(4);
  });

  it('refuses an unknown name with DRBD\'s ERR_INTEGRITY_ALG text and what to use instead', () => {
    let thrown: unknown;
    try {
      integrityDigest('crc99');
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(UdrbdError);
    expect((thrown as Error).message).toBe(
      "data-integrity-alg 'crc99': The 'data-integrity-alg' you specified is not known (ERR_INTEGRITY_ALG); use a digest such as crc32c, md5, sha1 or sha256",
    );
  });
});
