import { describe, it, expect } from 'vitest';
import * as P from '../../src/frontend/nbd/protocol.js';
import { checkRequest, type ExportLimits } from '../../src/frontend/nbd/request-check.js';
import { exportConfigFor } from '../../src/frontend/nbd/server.js';
import { MemoryDisk } from '../../src/disk/memory-disk.js';
import type { BlockDevice } from '../../src/disk/block-device.js';
import { silentLogger } from '../../src/util/log.js';

const MiB = 1024 * 1024;

describe('NBD wire encoding', () => {
  it('greets with NBDMAGIC, IHAVEOPT and fixed-newstyle + no-zeroes flags', () => {
    const g = P.encodeGreeting();
    expect(g.toString('latin1', 0, 16)).toBe('NBDMAGICIHAVEOPT');
    expect(g.readUInt16BE(16)).toBe(P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES);
  });

  it('encodes option replies with the 0x3e889045565a9 magic', () => {
    const r = P.encodeOptionReply(P.OPT_GO, P.REP_ERR_UNSUP, Buffer.from('no'));
    expect(r.readUInt32BE(0)).toBe(0x0003e889);
    expect(r.readUInt32BE(4)).toBe(0x045565a9);
    expect(r.readUInt32BE(8)).toBe(P.OPT_GO);
    expect(r.readUInt32BE(12)).toBe(0x80000001);
    expect(r.readUInt32BE(16)).toBe(2);
    expect(r.toString('utf8', 20)).toBe('no');
  });

  it('encodes NBD_INFO_EXPORT with a 64-bit size beyond 4 GiB', () => {
    const b = P.encodeInfoExport(5 * 1024 * MiB, 0x10d);
    expect(b.readUInt16BE(0)).toBe(P.INFO_EXPORT);
    expect(P.readUInt64BE(b, 2)).toBe(5 * 1024 * MiB);
    expect(b.readUInt16BE(10)).toBe(0x10d);
  });

  it('encodes NBD_INFO_BLOCK_SIZE and refuses inconsistent sizes', () => {
    const b = P.encodeInfoBlockSize(512, 4096, 32 * MiB);
    expect([b.readUInt16BE(0), b.readUInt32BE(2), b.readUInt32BE(6), b.readUInt32BE(10)]).toEqual([3, 512, 4096, 32 * MiB]);
    expect(() => P.encodeInfoBlockSize(500, 4096, 8192)).toThrow(/power of two/);
    expect(() => P.encodeInfoBlockSize(512, 4096, 1024)).toThrow(/min <= preferred <= max/);
  });

  it('sends 124 zero bytes after NBD_OPT_EXPORT_NAME unless no-zeroes was agreed', () => {
    expect(P.encodeExportNameReply(MiB, 1, false)).toHaveLength(134);
    const short = P.encodeExportNameReply(MiB, 1, true);
    expect(short).toHaveLength(10);
    expect(P.readUInt64BE(short, 0)).toBe(MiB);
  });

  it('decodes NBD_OPT_GO data and rejects lengths that do not add up', () => {
    const name = Buffer.from('r0');
    const ok = Buffer.alloc(4 + 2 + 2 + 4);
    ok.writeUInt32BE(2, 0);
    name.copy(ok, 4);
    ok.writeUInt16BE(2, 6);
    ok.writeUInt16BE(P.INFO_BLOCK_SIZE, 8);
    ok.writeUInt16BE(P.INFO_NAME, 10);
    expect(P.decodeInfoRequest(ok)).toEqual({ exportName: 'r0', infoTypes: [3, 1] });
    expect(P.decodeInfoRequest(ok.subarray(0, 11))).toBeNull();
    expect(P.decodeInfoRequest(Buffer.concat([ok, Buffer.alloc(1)]))).toBeNull();
    const nameTooLong = Buffer.from(ok);
    nameTooLong.writeUInt32BE(1000, 0);
    expect(P.decodeInfoRequest(nameTooLong)).toBeNull();
  });

  it('decodes a request header and flags 64-bit offsets beyond 2^53 as -1', () => {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(P.REQUEST_MAGIC, 0);
    h.writeUInt16BE(P.CMD_FLAG_FUA, 4);
    h.writeUInt16BE(P.CMD_WRITE, 6);
    h.writeUInt32BE(0xdeadbeef, 12);
    P.writeUInt64BE(h, 6 * 1024 * MiB, 16);
    h.writeUInt32BE(4096, 24);
    const out: P.RequestHeader = { magic: 0, flags: 0, type: 0, offsetBytes: 0, lengthBytes: 0 };
    P.decodeRequestHeader(h, 0, out);
    expect(out).toEqual({ magic: P.REQUEST_MAGIC, flags: 1, type: 1, offsetBytes: 6 * 1024 * MiB, lengthBytes: 4096 });
    h.writeUInt32BE(0xffffffff, 16);
    P.decodeRequestHeader(h, 0, out);
    expect(out.offsetBytes).toBe(-1);

    const reply = Buffer.alloc(16);
    P.encodeSimpleReplyHeader(reply, P.NBD_EINVAL, h, 0);
    expect(reply.readUInt32BE(0)).toBe(P.SIMPLE_REPLY_MAGIC);
    expect(reply.readUInt32BE(4)).toBe(22);
    expect(reply.readUInt32BE(12)).toBe(0xdeadbeef);
  });

  it('maps device errors to NBD error values', () => {
    const e = (code: string): Error => Object.assign(new Error(code), { code });
    expect(P.nbdErrorFor(e('ENOSPC'))).toBe(P.NBD_ENOSPC);
    expect(P.nbdErrorFor(e('EROFS'))).toBe(P.NBD_EPERM);
    expect(P.nbdErrorFor(e('ENOMEM'))).toBe(P.NBD_ENOMEM);
    expect(P.nbdErrorFor(new RangeError('outside'))).toBe(P.NBD_EINVAL);
    expect(P.nbdErrorFor(e('EIO'))).toBe(P.NBD_EIO);
    expect(P.nbdErrorFor(new Error('anything else'))).toBe(P.NBD_EIO);
  });
});

describe('request admission (checkRequest)', () => {
  const all =
    P.TFLAG_HAS_FLAGS | P.TFLAG_SEND_FLUSH | P.TFLAG_SEND_FUA | P.TFLAG_SEND_TRIM | P.TFLAG_SEND_WRITE_ZEROES;
  const limits: ExportLimits = { sizeBytes: 64 * MiB, maxPayloadBytes: 32 * MiB, transmissionFlags: all };
  const check = (type: number, offset: number, length: number, flags = 0, l: ExportLimits = limits): number =>
    checkRequest(type, flags, offset, length, l);

  it('accepts aligned in-range reads, writes, trims, zeroes and flushes', () => {
    expect(check(P.CMD_READ, 0, 4096)).toBe(P.NBD_OK);
    expect(check(P.CMD_WRITE, 64 * MiB - 512, 512, P.CMD_FLAG_FUA)).toBe(P.NBD_OK);
    expect(check(P.CMD_TRIM, 0, 64 * MiB)).toBe(P.NBD_OK);
    expect(check(P.CMD_WRITE_ZEROES, 0, 64 * MiB, P.CMD_FLAG_NO_HOLE | P.CMD_FLAG_FUA)).toBe(P.NBD_OK);
    expect(check(P.CMD_FLUSH, 0, 0)).toBe(P.NBD_OK);
  });

  it('answers EINVAL for reads and ENOSPC for writes past the end', () => {
    expect(check(P.CMD_READ, 64 * MiB, 512)).toBe(P.NBD_EINVAL);
    expect(check(P.CMD_READ, 64 * MiB - 512, 1024)).toBe(P.NBD_EINVAL);
    expect(check(P.CMD_TRIM, 64 * MiB, 512)).toBe(P.NBD_EINVAL);
    expect(check(P.CMD_WRITE, 64 * MiB, 512)).toBe(P.NBD_ENOSPC);
    expect(check(P.CMD_WRITE_ZEROES, 63 * MiB, 2 * MiB)).toBe(P.NBD_ENOSPC);
    expect(check(P.CMD_WRITE, -1, 512)).toBe(P.NBD_ENOSPC);
    expect(check(P.CMD_READ, -1, 512)).toBe(P.NBD_EINVAL);
  });

  it('answers EINVAL for unaligned and zero-length requests', () => {
    expect(check(P.CMD_READ, 1, 512)).toBe(P.NBD_EINVAL);
    expect(check(P.CMD_READ, 0, 100)).toBe(P.NBD_EINVAL);
    expect(check(P.CMD_WRITE, 4096, 4097)).toBe(P.NBD_EINVAL);
    expect(check(P.CMD_READ, 0, 0)).toBe(P.NBD_EINVAL);
    expect(check(P.CMD_WRITE, 0, 0)).toBe(P.NBD_EINVAL);
    expect(check(P.CMD_WRITE_ZEROES, 0, 0)).toBe(P.NBD_EINVAL);
  });

  it('answers EOVERFLOW for READ/WRITE above the maximum payload, but lets TRIM/WRITE_ZEROES exceed it', () => {
    const big: ExportLimits = { ...limits, sizeBytes: 1024 * MiB };
    expect(check(P.CMD_READ, 0, 32 * MiB + 512, 0, big)).toBe(P.NBD_EOVERFLOW);
    expect(check(P.CMD_WRITE, 0, 32 * MiB + 512, 0, big)).toBe(P.NBD_EOVERFLOW);
    expect(check(P.CMD_READ, 0, 32 * MiB, 0, big)).toBe(P.NBD_OK);
    expect(check(P.CMD_WRITE_ZEROES, 0, 512 * MiB, 0, big)).toBe(P.NBD_OK);
    expect(check(P.CMD_TRIM, 0, 512 * MiB, 0, big)).toBe(P.NBD_OK);
  });

  it('answers EINVAL for unknown commands, unadvertised commands and stray flags', () => {
    expect(check(P.CMD_CACHE, 0, 4096)).toBe(P.NBD_EINVAL);
    expect(check(P.CMD_BLOCK_STATUS, 0, 4096)).toBe(P.NBD_EINVAL);
    expect(check(42, 0, 4096)).toBe(P.NBD_EINVAL);
    expect(check(P.CMD_READ, 0, 4096, P.CMD_FLAG_FUA)).toBe(P.NBD_EINVAL);
    expect(check(P.CMD_WRITE, 0, 4096, P.CMD_FLAG_NO_HOLE)).toBe(P.NBD_EINVAL);
    expect(check(P.CMD_WRITE, 0, 4096, 1 << 7)).toBe(P.NBD_EINVAL);
    expect(check(P.CMD_FLUSH, 0, 512)).toBe(P.NBD_EINVAL);
    const noTrim: ExportLimits = { ...limits, transmissionFlags: P.TFLAG_HAS_FLAGS | P.TFLAG_SEND_WRITE_ZEROES };
    expect(check(P.CMD_TRIM, 0, 4096, 0, noTrim)).toBe(P.NBD_EINVAL);
    expect(check(P.CMD_FLUSH, 0, 0, 0, noTrim)).toBe(P.NBD_EINVAL);
    expect(check(P.CMD_WRITE, 0, 4096, P.CMD_FLAG_FUA, noTrim)).toBe(P.NBD_EINVAL);
  });

  it('answers EPERM for writes to a read-only export', () => {
    const ro: ExportLimits = { ...limits, transmissionFlags: P.TFLAG_HAS_FLAGS | P.TFLAG_READ_ONLY | P.TFLAG_SEND_FLUSH };
    expect(check(P.CMD_WRITE, 0, 4096, 0, ro)).toBe(P.NBD_EPERM);
    expect(check(P.CMD_READ, 0, 4096, 0, ro)).toBe(P.NBD_OK);
    expect(check(P.CMD_FLUSH, 0, 0, 0, ro)).toBe(P.NBD_OK);
  });
});

describe('what an export advertises (exportConfigFor)', () => {
  const logger = silentLogger();
  const withCaps = (caps: Partial<BlockDevice['capabilities']>, sizeBytes = 8 * MiB): BlockDevice => {
    const d = new MemoryDisk(sizeBytes);
    return Object.assign(Object.create(d) as BlockDevice, { capabilities: { ...d.capabilities, ...caps } });
  };

  it('advertises flush, FUA, trim, zeroes and multi-conn for a device that can do them all', () => {
    const c = exportConfigFor({ device: new MemoryDisk(8 * MiB), exportName: 'r0', logger });
    expect(c.transmissionFlags).toBe(
      P.TFLAG_HAS_FLAGS | P.TFLAG_SEND_FLUSH | P.TFLAG_SEND_FUA | P.TFLAG_SEND_TRIM | P.TFLAG_SEND_WRITE_ZEROES | P.TFLAG_CAN_MULTI_CONN,
    );
    expect(c.maxPayloadBytes).toBe(32 * MiB);
  });

  it('does not advertise trim when the device cannot trim', () => {
    const c = exportConfigFor({ device: withCaps({ canTrim: false }), exportName: 'r0', logger });
    expect(c.transmissionFlags & P.TFLAG_SEND_TRIM).toBe(0);
    expect(c.transmissionFlags & P.TFLAG_SEND_WRITE_ZEROES).not.toBe(0);
  });

  it('advertises neither flush, FUA nor multi-conn when the device cannot flush', () => {
    const c = exportConfigFor({ device: withCaps({ canFlush: false, canFua: false }), exportName: 'r0', logger });
    expect(c.transmissionFlags & (P.TFLAG_SEND_FLUSH | P.TFLAG_SEND_FUA | P.TFLAG_CAN_MULTI_CONN)).toBe(0);
  });

  it('caps the maximum payload at the device maximum rounded to 512 bytes', () => {
    const c = exportConfigFor({ device: withCaps({ maxRequestBytes: MiB + 100 }), exportName: 'r0', logger });
    expect(c.maxPayloadBytes).toBe(MiB);
    expect(() => exportConfigFor({ device: withCaps({ maxRequestBytes: 1024 }), exportName: 'r0', logger })).toThrow(/below 4096/);
  });

  it('marks a read-only export and advertises no write-type commands on it', () => {
    const c = exportConfigFor({ device: new MemoryDisk(8 * MiB), exportName: 'r0', logger, readOnly: true });
    expect(c.transmissionFlags & P.TFLAG_READ_ONLY).not.toBe(0);
    expect(c.transmissionFlags & (P.TFLAG_SEND_TRIM | P.TFLAG_SEND_WRITE_ZEROES)).toBe(0);
  });

  it('exports whole sectors only', () => {
    const c = exportConfigFor({ device: new MemoryDisk(8 * MiB + 100), exportName: 'r0', logger });
    expect(c.sizeBytes).toBe(8 * MiB);
  });

  it('refuses a bad maxInflight', () => {
    expect(() => exportConfigFor({ device: new MemoryDisk(MiB), exportName: 'r0', logger, maxInflight: 0 })).toThrow(/maxInflight/);
  });
});
