/**
 * frontend/nbd/transmission — executing admitted transmission-phase requests
 * on the device (nbdkit's protocol.c role): READ, WRITE (with FUA emulated by
 * a flush where the device has no FUA), FLUSH, TRIM and WRITE_ZEROES in
 * bounded chunks, each answered through the connection's ReplySink only
 * after the device operation (and any flush it needs) resolved.
 *
 * A Slot is one in-flight request, preallocated per connection with its
 * callbacks bound once, so the hot path allocates no closures.
 *
 * Knows nothing of sockets, parsing or the connection's lifecycle
 * (connection.ts) nor of option haggling (handshake-newstyle.ts).
 */
import { type BlockDevice, type WriteFlags, BYPASS_CACHE } from '../../disk/block-device.js';
import type { Logger } from '../../util/log.js';
import { assert } from '../../util/assert.js';
import { BufferPool } from '../../disk/buffer-pool.js';
import { directPool } from '../../disk/direct-buffers.js';
import * as P from './protocol.js';

/** WRITE_ZEROES writes this shared all-zero buffer repeatedly (never written into). */
const ZERO_CHUNK_BYTES = 4 * 1024 * 1024;
/** TRIM is issued to the device in pieces of at most this many bytes. */
const TRIM_CHUNK_BYTES = 64 * 1024 * 1024;
/**
 * Payload buffers (READ data, WRITE payloads reassembled from socket chunks)
 * kept for reuse across all connections of this process, in bytes. Sized for
 * a few 1 MiB requests per slot of a busy client without holding much RSS.
 */
const PAYLOAD_POOL_MAX_BYTES = 24 * 1024 * 1024;
export const payloadPool = new BufferPool(PAYLOAD_POOL_MAX_BYTES);
/**
 * READs of at least this many bytes bypass the backing disk's page cache
 * (O_DIRECT into an aligned buffer where the disk can), as DRBD's reads do:
 * the client — a file system with its own page cache, or a sequential
 * reader — caches what it reads, so a second copy here only costs memory and
 * (on a virtual machine, after the host reclaimed free pages) a host fault
 * per fresh 4 KiB page. Smaller, random reads keep the page cache's hits.
 */
const BYPASS_CACHE_READ_BYTES_MIN = 256 * 1024;

const ZERO_CHUNK = Buffer.alloc(ZERO_CHUNK_BYTES);
const FUA: WriteFlags = Object.freeze({ fua: true });

/** Where finished requests go: the connection sends the reply and frees the slot once it is written. */
export interface ReplySink {
  reply(slot: Slot, error: number): void;
  replyWritten(slot: Slot): void;
}

export const enum Stage {
  /** Next device completion is the final one: reply. */
  reply,
  /** The write/trim/zero is done; flush now (FUA emulation), then reply. */
  flushThenReply,
  /** WRITE_ZEROES by writing zero chunks: continue at `progressBytes`. */
  zeroChunks,
  /** TRIM in chunks: continue at `progressBytes`. */
  trimChunks,
}

/** One in-flight request: preallocated, with its callbacks bound once. */
export class Slot {
  /** Simple reply header; the magic is set once, error and handle per request. */
  readonly replyHeader = Buffer.alloc(P.SIMPLE_REPLY_HEADER_BYTES);
  type = 0;
  flags = 0;
  offsetBytes = 0;
  lengthBytes = 0;
  /** Bytes counted against inflightBytesMax. */
  costBytes = 0;
  data: Buffer | null = null;
  /** The pool slot.data came from (given back on release); null when not pooled. */
  pool: BufferPool | null = null;
  /** For a WRITE being received: bytes of payload received so far. */
  payloadFillBytes = 0;
  /** Error decided at admission, replied after the payload (if any) is discarded. */
  presetError = 0;
  stage = Stage.reply;
  progressBytes = 0;
  readonly onDeviceDone: () => void;
  readonly onDeviceError: (err: unknown) => void;
  readonly onReplyWritten: (err?: Error | null) => void;

  constructor(executor: RequestExecutor, sink: ReplySink) {
    this.replyHeader.writeUInt32BE(P.SIMPLE_REPLY_MAGIC, 0);
    this.onDeviceDone = () => executor.deviceDone(this);
    this.onDeviceError = (err: unknown) => executor.deviceFailed(this, err);
    this.onReplyWritten = () => sink.replyWritten(this);
  }
}

/** Runs one connection's admitted requests on its device. */
export class RequestExecutor {
  constructor(
    private readonly device: BlockDevice,
    /** The export's largest payload; WRITE_ZEROES chunks never exceed it. */
    private readonly maxPayloadBytes: number,
    private readonly sink: ReplySink,
    private readonly log: Logger,
  ) {}

  newSlot(): Slot {
    return new Slot(this, this.sink);
  }


  start(slot: Slot): void {
    const device = this.device;
    try {
      switch (slot.type) {
        case P.CMD_READ:
          if (slot.lengthBytes >= BYPASS_CACHE_READ_BYTES_MIN) {
            slot.pool = directPool;
            slot.data = directPool.take(slot.lengthBytes);
            device.read(slot.data, slot.offsetBytes, BYPASS_CACHE).then(slot.onDeviceDone, slot.onDeviceError);
          } else {
            slot.pool = payloadPool;
            slot.data = payloadPool.take(slot.lengthBytes);
            device.read(slot.data, slot.offsetBytes).then(slot.onDeviceDone, slot.onDeviceError);
          }
          return;
        case P.CMD_FLUSH:
          device.flush().then(slot.onDeviceDone, slot.onDeviceError);
          return;
        case P.CMD_TRIM:
          slot.stage = Stage.trimChunks;
          this.continueChunks(slot);
          return;
        case P.CMD_WRITE_ZEROES:
          if (device.capabilities.canTrim && (slot.flags & P.CMD_FLAG_NO_HOLE) === 0) {
            // A trimmed range reads back as zeroes (BlockDevice contract).
            slot.stage = Stage.trimChunks;
          } else {
            slot.stage = Stage.zeroChunks;
          }
          this.continueChunks(slot);
          return;
        default:
          assert(false, `start() got a request checkRequest refuses: ${P.commandName(slot.type)}`);
      }
    } catch (err) {
      this.deviceFailed(slot, err);
    }
  }

  startWrite(slot: Slot): void {
    const device = this.device;
    const fua = (slot.flags & P.CMD_FLAG_FUA) !== 0;
    try {
      if (fua && !device.capabilities.canFua) {
        slot.stage = Stage.flushThenReply;
        device.write(slot.data!, slot.offsetBytes).then(slot.onDeviceDone, slot.onDeviceError);
      } else {
        device.write(slot.data!, slot.offsetBytes, fua ? FUA : undefined).then(slot.onDeviceDone, slot.onDeviceError);
      }
    } catch (err) {
      this.deviceFailed(slot, err);
    }
  }

  /** Issues the next chunk of a TRIM / WRITE_ZEROES, or moves on when all are done. */
  private continueChunks(slot: Slot): void {
    const remaining = slot.lengthBytes - slot.progressBytes;
    const device = this.device;
    if (remaining === 0) {
      const fua = (slot.flags & P.CMD_FLAG_FUA) !== 0;
      if (fua) {
        slot.stage = Stage.reply;
        device.flush().then(slot.onDeviceDone, slot.onDeviceError);
      } else {
        this.sink.reply(slot, P.NBD_OK);
      }
      return;
    }
    const at = slot.offsetBytes + slot.progressBytes;
    if (slot.stage === Stage.trimChunks) {
      const n = Math.min(remaining, TRIM_CHUNK_BYTES);
      slot.progressBytes += n;
      device.trim(at, n).then(slot.onDeviceDone, slot.onDeviceError);
    } else {
      const n = Math.min(remaining, ZERO_CHUNK_BYTES, this.maxPayloadBytes);
      slot.progressBytes += n;
      device.write(ZERO_CHUNK.subarray(0, n), at).then(slot.onDeviceDone, slot.onDeviceError);
    }
  }

  /** Called (via the slot's bound callback) when a device operation resolved. */
  deviceDone(slot: Slot): void {
    switch (slot.stage) {
      case Stage.reply:
        this.sink.reply(slot, P.NBD_OK);
        return;
      case Stage.flushThenReply:
        slot.stage = Stage.reply;
        try {
          this.device.flush().then(slot.onDeviceDone, slot.onDeviceError);
        } catch (err) {
          this.deviceFailed(slot, err);
        }
        return;
      case Stage.zeroChunks:
      case Stage.trimChunks:
        try {
          this.continueChunks(slot);
        } catch (err) {
          this.deviceFailed(slot, err);
        }
        return;
    }
  }

  deviceFailed(slot: Slot, err: unknown): void {
    const error = P.nbdErrorFor(err);
    this.log.warn(
      { cmd: P.commandName(slot.type), offset: slot.offsetBytes, length: slot.lengthBytes, error, err: (err as Error)?.message },
      'nbd: device operation failed',
    );
    this.sink.reply(slot, error);
  }
}
