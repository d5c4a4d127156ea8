/**
 * frontend/nbd/handshake-newstyle — the fixed newstyle handshake of one NBD
 * connection (nbdkit: protocol-handshake-newstyle.c): the greeting, the
 * client's flags, and option haggling (NBD_OPT_EXPORT_NAME, ABORT, LIST,
 * INFO, GO; everything else is answered NBD_REP_ERR_UNSUP). It writes its
 * replies through a small I/O interface and returns how haggling ended; the
 * connection (connection.ts) owns the socket, its byte queue, the handshake
 * timeout and the switch to transmission. Knows nothing of requests.
 */
import type { Logger } from '../../util/log.js';
import * as P from './protocol.js';
import type { ExportConfig } from './connection.js';

/** Options per connection before we decide the client is looping. */
const HANDSHAKE_OPTIONS_MAX = 64;
/** Largest option payload we read (names are <= 4096 bytes plus info requests). */
export const OPTION_DATA_MAX_BYTES = 16 * 1024;

const EMPTY = Buffer.alloc(0);

/** What the handshake needs of the connection's socket. */
export interface HandshakeIo {
  write(bytes: Buffer): void;
  cork(): void;
  uncork(): void;
  /** Resolves with exactly `bytes` bytes from the client; rejects when it hangs up. */
  readExact(bytes: number): Promise<Buffer>;
}

/** How option haggling ended: go to transmission, end with `lastReply` (NBD_OPT_ABORT), or drop the client. */
export type HandshakeOutcome = { kind: 'transmission' } | { kind: 'abort'; lastReply: Buffer } | { kind: 'hang-up' };

/** Runs the handshake up to its outcome; throws (with the reason) on a client that breaks the protocol. */
export async function haggleOptions(io: HandshakeIo, config: ExportConfig, log: Logger): Promise<HandshakeOutcome> {
  io.write(P.encodeGreeting());
  const clientFlags = (await io.readExact(4)).readUInt32BE(0);
  if ((clientFlags & ~P.CLIENT_FLAGS_KNOWN) !== 0) {
    throw new Error(`client set unknown handshake flags 0x${clientFlags.toString(16)}`);
  }
  const noZeroes = (clientFlags & P.FLAG_C_NO_ZEROES) !== 0;
  for (let n = 0; n < HANDSHAKE_OPTIONS_MAX; n++) {
    const header = P.decodeOptionHeader(await io.readExact(P.OPTION_HEADER_BYTES));
    if (!header.magicOk) throw new Error('bad option magic (not an NBD client?)');
    if (header.lengthBytes > OPTION_DATA_MAX_BYTES) {
      throw new Error(`option ${header.option} carries ${header.lengthBytes} bytes (limit ${OPTION_DATA_MAX_BYTES})`);
    }
    const data = header.lengthBytes === 0 ? EMPTY : await io.readExact(header.lengthBytes);
    const outcome = handleOption(io, config, log, noZeroes, header.option, data);
    if (outcome !== null) return outcome;
  }
  throw new Error(`more than ${HANDSHAKE_OPTIONS_MAX} options`);
}

/** Answers one option; the outcome when option haggling is over, else null. */
function handleOption(io: HandshakeIo, c: ExportConfig, log: Logger, noZeroes: boolean, option: number, data: Buffer): HandshakeOutcome | null {
  switch (option) {
    case P.OPT_EXPORT_NAME: {
      const name = data.toString('utf8');
      if (!nameMatches(c, name)) {
        // This option cannot be answered with an error: the spec says hang up.
        log.warn({ export: name }, 'nbd: client asked for an unknown export');
        return { kind: 'hang-up' };
      }
      io.write(P.encodeExportNameReply(c.sizeBytes, c.transmissionFlags, noZeroes));
      return { kind: 'transmission' };
    }
    case P.OPT_ABORT:
      return { kind: 'abort', lastReply: P.encodeOptionReply(option, P.REP_ACK) };
    case P.OPT_LIST:
      if (data.length !== 0) {
        optionError(io, option, P.REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
        return null;
      }
      io.cork();
      io.write(P.encodeOptionReply(option, P.REP_SERVER, P.encodeServerReplyPayload(c.exportName)));
      io.write(P.encodeOptionReply(option, P.REP_ACK));
      io.uncork();
      return null;
    case P.OPT_INFO:
    case P.OPT_GO: {
      const request = P.decodeInfoRequest(data);
      if (!request) {
        optionError(io, option, P.REP_ERR_INVALID, 'malformed NBD_OPT_INFO/NBD_OPT_GO data');
        return null;
      }
      if (!nameMatches(c, request.exportName)) {
        optionError(io, option, P.REP_ERR_UNKNOWN, `export '${request.exportName}' does not exist`);
        return null;
      }
      io.cork();
      io.write(P.encodeOptionReply(option, P.REP_INFO, P.encodeInfoExport(c.sizeBytes, c.transmissionFlags)));
      // Block size constraints are sent whether or not they were asked for (allowed by the spec).
      io.write(P.encodeOptionReply(option, P.REP_INFO, P.encodeInfoBlockSize(P.BLOCK_SIZE_MIN_BYTES, P.BLOCK_SIZE_PREFERRED_BYTES, c.maxPayloadBytes)));
      if (request.infoTypes.includes(P.INFO_NAME)) {
        io.write(P.encodeOptionReply(option, P.REP_INFO, P.encodeInfoString(P.INFO_NAME, c.exportName)));
      }
      if (request.infoTypes.includes(P.INFO_DESCRIPTION)) {
        io.write(P.encodeOptionReply(option, P.REP_INFO, P.encodeInfoString(P.INFO_DESCRIPTION, c.description)));
      }
      io.write(P.encodeOptionReply(option, P.REP_ACK));
      io.uncork();
      return option === P.OPT_GO ? { kind: 'transmission' } : null;
    }
    default:
      // NBD_OPT_STARTTLS, NBD_OPT_STRUCTURED_REPLY, meta contexts, extended headers, unknown.
      optionError(io, option, P.REP_ERR_UNSUP, `option ${option} is not supported by this server`);
      return null;
  }
}

function nameMatches(c: ExportConfig, name: string): boolean {
  return name === c.exportName || name === '';
}

function optionError(io: HandshakeIo, option: number, replyType: number, message: string): void {
  io.write(P.encodeOptionReply(option, replyType, Buffer.from(message, 'utf8')));
}
