/**
 * control/protocol — the control protocol between udrbdadm and a resource
 * process: line-delimited JSON over the root-only unix socket.
 *   request  {"id":1,"verb":"primary","args":{"force":true}}
 *   reply    {"id":1,"ok":true,"exitCode":0,"stdout":"","stderr":""}
 *   event    {"id":1,"event":{...}}   (after an `events` request, one per state change)
 * Diagnostic requests used only by the test harness (not drbdadm verbs):
 *   io.write {offsetBytes, base64}   write through the replicated volume (Primary only)
 *   io.read  {offsetBytes, lengthBytes} → stdout = base64
 *   io.flush {}
 * Knows nothing of what the verbs do.
 */

/** Longest request/reply line accepted (io.write carries up to 4 MiB as base64). */
export const CONTROL_LINE_BYTES_MAX = 8 * 1024 * 1024;
/** Largest diagnostic io.write / io.read payload. */
export const DIAGNOSTIC_IO_BYTES_MAX = 4 * 1024 * 1024;

export interface ControlRequest {
  id: number;
  verb: string;
  args?: Record<string, unknown>;
}

export interface ControlReply {
  id: number;
  ok: boolean;
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** One state-change notification, like a drbdsetup events2 line. */
export interface ControlEvent {
  /** The events2 line with every field (no statistics), e.g. `change connection name:r0 peer-node-id:0 conn-name:peer connection:Connected role:Secondary`. */
  text: string;
  /** Structured form of the same change. */
  kind: 'exists' | 'change' | 'create' | 'destroy' | 'call' | 'response';
  object: 'resource' | 'connection' | 'device' | 'peer-device' | 'helper' | '-';
  fields: Record<string, string>;
  /** events2 statistics sent with the notification (drbdsetup prints them with --statistics); see daemon/events2. */
  statistics?: Record<string, string>;
  /** More events of the same notification follow (drbdsetup stamps them with one time). */
  continues?: boolean;
}

export interface ControlEventLine {
  id: number;
  event: ControlEvent;
}

export function okReply(id: number, stdout = '', stderr = ''): ControlReply {
  return { id, ok: true, exitCode: 0, stdout, stderr };
}

export function errorReply(id: number, exitCode: number, stderr: string, stdout = ''): ControlReply {
  return { id, ok: false, exitCode, stdout, stderr };
}

/**
 * Splits a byte stream into lines without unbounded growth: a line longer
 * than `lineBytesMax` is reported via onOverflow and the stream is dropped.
 */
export class LineSplitter {
  private pending: Buffer[] = [];
  private pendingLineBytes = 0;

  constructor(
    private readonly onLine: (line: string) => void,
    private readonly onOverflow: () => void,
    private readonly lineBytesMax: number = CONTROL_LINE_BYTES_MAX,
  ) {}

  /** Bytes of a line started but not yet ended by a newline. */
  get pendingBytes(): number {
    return this.pendingLineBytes;
  }

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      if (this.pendingLineBytes + piece.length > this.lineBytesMax) return this.overflow();
      let line: string;
      if (this.pending.length > 0) {
        this.pending.push(piece);
        line = Buffer.concat(this.pending, this.pendingLineBytes + piece.length).toString('utf8');
        this.pending = [];
        this.pendingLineBytes = 0;
      } else {
        line = piece.toString('utf8');
      }
      if (line.length > 0) this.onLine(line);
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      if (this.pendingLineBytes + rest.length > this.lineBytesMax) return this.overflow();
      this.pending.push(Buffer.from(rest));
      this.pendingLineBytes += rest.length;
    }
  }

  private overflow(): void {
    this.pending = [];
    this.pendingLineBytes = 0;
    this.onOverflow();
  }
}
