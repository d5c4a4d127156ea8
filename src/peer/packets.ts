/**
 * peer/packets — the messages two udrbd resource processes exchange, named
 * after their DRBD 8.4 counterparts (P_DATA, P_WRITE_ACK, P_BARRIER, ...).
 * Types, plus which packets are per volume (volumeScope) and their log names:
 * the byte format is peer/codec.ts; the data path that sends and answers them
 * is replication/. Offsets and lengths are bytes of the data
 * area (multiples of 512); `blockId` matches an ack to its request.
 */
import type { GenerationUuids } from '../meta/types.js';
import type { AfterSb0Policy, AfterSb1Policy, AfterSb2Policy } from '../resource/after-sb.js';

export const PacketType = {
  // connection set-up (peer/ handles these itself)
  AuthChallenge: 0x10,
  AuthResponse: 0x11,
  AuthResult: 0x12,
  // handshake parameters (peer/ exchanges them; resource/ decides)
  Protocol: 0x20,
  Uuids: 0x21,
  Sizes: 0x22,
  State: 0x23,
  SyncUuid: 0x24,
  StateChangeRequest: 0x25,
  StateChangeReply: 0x26,
  /** DRBD's P_PROTOCOL_UPDATE: net-options changed the protocol on a live connection; the peer adopts it. */
  ProtocolUpdate: 0x27,
  /** DRBD's P_SYNC_PARAM: disk-options / net-options changed the resync parameters; the peer adopts them. */
  SyncParam: 0x28,
  // application writes
  Data: 0x30,
  RecvAck: 0x31,
  WriteAck: 0x32,
  NegAck: 0x33,
  Barrier: 0x34,
  BarrierAck: 0x35,
  // bitmap exchange and resync
  Bitmap: 0x40,
  RsDataRequest: 0x41,
  RsDataReply: 0x42,
  RsWriteAck: 0x43,
  RsNegAck: 0x44,
  OutOfSync: 0x45,
  /** DRBD's P_CSUM_RS_REQUEST: a resync request carrying the SyncTarget's digest of the blocks (csums-alg). */
  CsumRsRequest: 0x46,
  /** DRBD's P_RS_IS_IN_SYNC: the SyncSource's blocks hash the same; nothing to copy. */
  RsIsInSync: 0x47,
  // online verify
  OvRequest: 0x50,
  OvReply: 0x51,
  OvResult: 0x52,
  // liveness and teardown
  Ping: 0x60,
  PingAck: 0x61,
  Disconnect: 0x62,
} as const;
export type PacketType = (typeof PacketType)[keyof typeof PacketType];

/**
 * DP_* flags carried on Data packets. The ack bits say which ack this write
 * asks for, fixed when it was sent (DRBD's DP_SEND_RECEIVE_ACK /
 * DP_SEND_WRITE_ACK): the protocol can change online (`adjust`) while writes
 * are in flight, and each write is answered as its sender expects. A Data
 * packet without any ack bit is answered by the receiver's own protocol.
 */
export const DataFlag = { fua: 0x1, flush: 0x2, ackReceive: 0x4, ackWrite: 0x8, ackNone: 0x10 } as const;

/** The after-sb policies travel as the names resource/after-sb defines. */
export type AfterSb0 = AfterSb0Policy;
export type AfterSb1 = AfterSb1Policy;
export type AfterSb2 = AfterSb2Policy;

export interface AuthChallenge { type: typeof PacketType.AuthChallenge; challenge: Buffer }
export interface AuthResponse { type: typeof PacketType.AuthResponse; response: Buffer }
export interface AuthResult { type: typeof PacketType.AuthResult; ok: boolean }

/** P_PROTOCOL at connect, P_PROTOCOL_UPDATE (same body) when `adjust` changes it on a live connection. */
export interface ProtocolPacket {
  type: typeof PacketType.Protocol | typeof PacketType.ProtocolUpdate;
  protocol: 'A' | 'B' | 'C';
  afterSb0pri: AfterSb0;
  afterSb1pri: AfterSb1;
  afterSb2pri: AfterSb2;
  allowTwoPrimaries: boolean;
  discardMyData: boolean;
  /** Peer's node name (its `on HOST`), for discard-node-NAME and logs. */
  nodeName: string;
  /**
   * The sender's data-integrity-alg ('' = none), as DRBD appends integrity_alg
   * to p_protocol: every Data / RsDataReply frame it sends after this packet
   * carries that digest (peer/integrity).
   */
  integrityAlg: string;
}

/**
 * The volume a per-volume packet is about: DRBD 8.4's `pi->vnr`, carried in
 * the frame header (p_header100.volume; peer/wire-layout). Connection-wide
 * packets (Hello, Chosen, Auth*, Protocol, ProtocolUpdate, Barrier,
 * BarrierAck, Ping, PingAck, Disconnect) have none: they go out with volume 0
 * and the volume of a received one is ignored, as DRBD's conn_* senders and
 * receivers do.
 */
export interface VolumeAddressed {
  /** Volume number (the config's `volume N`, 0..65535). */
  volume: number;
}

/** Resync parameters (DRBD's p_rs_param_95): resync-rate, the c-* controller settings, verify-alg, csums-alg ('' = none). */
export interface SyncParamPacket extends VolumeAddressed {
  type: typeof PacketType.SyncParam;
  resyncRateKiBps: number;
  cPlanAheadDs: number;
  cDelayTargetDs: number;
  cFillTargetSectors: number;
  cMaxRateKiBps: number;
  verifyAlg: string;
  csumsAlg: string;
}

export interface UuidsPacket extends VolumeAddressed {
  type: typeof PacketType.Uuids;
  uuids: GenerationUuids;
  /** Number of set bits in the sender's bitmap (DRBD's uuid[UI_SIZE]). */
  bitsSet: number;
  /** UUID flags: 1 discard-my-data, 2 crashed primary, 4 inconsistent, 8 skip initial sync. */
  uuidFlags: number;
}

export interface SizesPacket extends VolumeAddressed {
  type: typeof PacketType.Sizes;
  /** Usable data size of the sender's backing disk (udrbd: already capped by its u_size). */
  diskSizeBytes: number;
  /** u_size: the sender's requested size (`resize --size`, `disk { size }`); 0 = none (DRBD's p_sizes.u_size). */
  userSizeBytes: number;
  /** Size the sender currently exposes (0 if nothing agreed yet, or: answer with your sizes — DRBD's trigger_reply). */
  currentSizeBytes: number;
  maxRequestBytes: number;
  /** dds_flags of a `resize` (daemon/device-size DdsFlag: forced, no-resync); 0 at connect. */
  ddsFlags: number;
}

export interface StatePacket extends VolumeAddressed {
  type: typeof PacketType.State;
  role: number; // resource/states Role
  disk: number; // resource/states DiskState
  conn: number; // resource/states ConnState
  /** Resync suspended by the user on the sender (pause-sync). */
  userIsp: boolean;
}

export interface SyncUuidPacket extends VolumeAddressed { type: typeof PacketType.SyncUuid; uuid: bigint }
export interface StateChangeRequest extends VolumeAddressed { type: typeof PacketType.StateChangeRequest; requestId: number; role?: number; conn?: number; disk?: number }
/** `result` is 1 for success or a negative DRBD SS_* code. */
export interface StateChangeReply extends VolumeAddressed { type: typeof PacketType.StateChangeReply; requestId: number; result: number }

export interface DataPacket extends VolumeAddressed {
  type: typeof PacketType.Data;
  offsetBytes: number;
  blockId: number;
  /** Epoch (barrier number) the write belongs to. */
  epoch: number;
  flags: number; // DataFlag bits
  payload: Buffer;
}
export interface AckPacket extends VolumeAddressed {
  type: typeof PacketType.RecvAck | typeof PacketType.WriteAck | typeof PacketType.NegAck
    | typeof PacketType.RsWriteAck | typeof PacketType.RsNegAck | typeof PacketType.RsIsInSync;
  offsetBytes: number;
  lengthBytes: number;
  blockId: number;
}
export interface BarrierPacket { type: typeof PacketType.Barrier; epoch: number }
export interface BarrierAckPacket { type: typeof PacketType.BarrierAck; epoch: number; writes: number }

export interface BitmapPacket extends VolumeAddressed {
  type: typeof PacketType.Bitmap;
  /** Index of the first bitmap byte carried. */
  firstByte: number;
  /** Raw bitmap bytes (LE bit order as on disk); a codec may compress on the wire. */
  bits: Buffer;
  last: boolean;
}
export interface RsDataRequest extends VolumeAddressed { type: typeof PacketType.RsDataRequest; offsetBytes: number; lengthBytes: number; blockId: number }
export interface RsDataReply extends VolumeAddressed { type: typeof PacketType.RsDataReply; offsetBytes: number; blockId: number; payload: Buffer }
/** One digest (csums-alg) over the whole requested range, as DRBD's read_for_csum computes it. */
export interface CsumRsRequest extends VolumeAddressed { type: typeof PacketType.CsumRsRequest; offsetBytes: number; lengthBytes: number; blockId: number; digest: Buffer }
export interface OutOfSyncPacket extends VolumeAddressed { type: typeof PacketType.OutOfSync; offsetBytes: number; lengthBytes: number }

export interface OvRequest extends VolumeAddressed { type: typeof PacketType.OvRequest; offsetBytes: number; lengthBytes: number; blockId: number }
export interface OvReply extends VolumeAddressed { type: typeof PacketType.OvReply; offsetBytes: number; lengthBytes: number; blockId: number; digest: Buffer }
export interface OvResult extends VolumeAddressed { type: typeof PacketType.OvResult; offsetBytes: number; lengthBytes: number; inSync: boolean }

export interface PingPacket { type: typeof PacketType.Ping }
export interface PingAckPacket { type: typeof PacketType.PingAck }
export interface DisconnectPacket { type: typeof PacketType.Disconnect }

export type Packet =
  | AuthChallenge | AuthResponse | AuthResult
  | ProtocolPacket | SyncParamPacket | UuidsPacket | SizesPacket | StatePacket | SyncUuidPacket
  | StateChangeRequest | StateChangeReply
  | DataPacket | AckPacket | BarrierPacket | BarrierAckPacket
  | BitmapPacket | RsDataRequest | RsDataReply | OutOfSyncPacket | CsumRsRequest
  | OvRequest | OvReply | OvResult
  | PingPacket | PingAckPacket | DisconnectPacket;

// --- Connection set-up frames (added by peer/; never delivered to replication/) ---

/**
 * Frames only peer/connection exchanges before a link is handed out: they are
 * kept out of `PacketType`/`Packet` so switches over `Packet` stay exhaustive.
 */
export const SetupPacketType = {
  /** First frame on every socket: who I am, which wire versions I speak. */
  Hello: 0x01,
  /** Sent by the deciding node on the one socket it keeps; echoed to confirm. */
  Chosen: 0x02,
} as const;
export type SetupPacketType = (typeof SetupPacketType)[keyof typeof SetupPacketType];

export interface HelloPacket {
  type: typeof SetupPacketType.Hello;
  /** Sender's node name (its `on HOST`). */
  nodeName: string;
  versionMin: number;
  versionMax: number;
  /** cram-hmac-alg the sender requires, '' when auth is off. */
  authAlg: string;
}
export interface ChosenPacket { type: typeof SetupPacketType.Chosen }

/** Everything the codec can put on the wire. */
export type WirePacket = Packet | HelloPacket | ChosenPacket;

/**
 * How a receiver treats a packet by its type when the header names a volume
 * that is not configured locally (DRBD 8.4 drbd_receiver.c):
 * - 'connection': connection-wide, the header's volume is ignored;
 * - 'config': skipped with a warning (config_unknown_volume: receive_SyncParam,
 *   receive_sizes, receive_uuids, receive_state, receive_req_state);
 * - 'data': a protocol error that breaks the connection (-EIO: receive_Data,
 *   receive_DataRequest, receive_bitmap, the acks on the meta socket, ...).
 */
export type VolumeScope = 'connection' | 'config' | 'data';

const CONFIG_TYPES: ReadonlySet<number> = new Set([
  PacketType.SyncParam, PacketType.Sizes, PacketType.Uuids, PacketType.State, PacketType.StateChangeRequest,
]);
const CONNECTION_TYPES: ReadonlySet<number> = new Set([
  SetupPacketType.Hello, SetupPacketType.Chosen,
  PacketType.AuthChallenge, PacketType.AuthResponse, PacketType.AuthResult,
  PacketType.Protocol, PacketType.ProtocolUpdate,
  PacketType.Barrier, PacketType.BarrierAck,
  PacketType.Ping, PacketType.PingAck, PacketType.Disconnect,
]);

/** The VolumeScope of frame type `type` (a type this build knows). */
export function volumeScope(type: number): VolumeScope {
  if (CONNECTION_TYPES.has(type)) return 'connection';
  return CONFIG_TYPES.has(type) ? 'config' : 'data';
}

/** The name a log line gives frame type `type` (PacketType / SetupPacketType key), or its hex value. */
export function packetTypeName(type: number): string {
  for (const [name, value] of Object.entries(PacketType)) if (value === type) return name;
  for (const [name, value] of Object.entries(SetupPacketType)) if (value === type) return name;
  return `0x${type.toString(16)}`;
}
