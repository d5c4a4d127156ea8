/**
 * test/fuzz/mutate — seeded input generators for the decoder fuzzers: valid
 * encodings (a corpus) mutated the way a broken or hostile peer would —
 * bit flips, truncation, length/count fields set to extremes, splices from
 * other samples, inserted dictionary tokens, deleted and repeated ranges —
 * plus plain random bytes and random chunkings of a byte stream. All
 * randomness comes from fast-check, so one seed replays one input sequence.
 * Knows nothing of any format beyond the offsets a caller names.
 */
import fc from 'fast-check';

/** A valid encoding and the offsets of its length/count fields (the "set to extremes" targets). */
export interface Sample {
  readonly bytes: Buffer;
  readonly lengthFieldOffsets?: readonly number[];
}

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'extreme'; field: number; width: 1 | 2 | 4; value: number; bigEndian: boolean }
  | { kind: 'splice'; at: number; from: number; fromAt: number; lengthBytes: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'token'; at: number; token: number }
  | { kind: 'delete'; at: number; lengthBytes: number }
  | { kind: 'repeat'; at: number; lengthBytes: number; times: number };

/** Values a length field is set to: the edges of every width and of signedness. */
const EXTREMES = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
/** Mutations applied to one sample (at least one). */
const MUTATIONS_PER_INPUT_MAX = 8;
/** Longest random insert / splice, in bytes. */
const INSERT_BYTES_MAX = 64;
/** Cap on a mutated input, so repeats cannot grow it without bound. */
export const MUTATED_INPUT_BYTES_MAX = 256 * 1024;

function mutationArbitrary(tokens: readonly Buffer[]): fc.Arbitrary<Mutation> {
  const choices: fc.Arbitrary<Mutation>[] = [
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({
      kind: fc.constant('extreme' as const),
      field: fc.nat(),
      width: fc.constantFrom(1 as const, 2 as const, 4 as const),
      value: fc.oneof(fc.constantFrom(...EXTREMES), fc.nat()),
      bigEndian: fc.boolean(),
    }),
    fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), from: fc.nat(), fromAt: fc.nat(), lengthBytes: fc.integer({ min: 1, max: INSERT_BYTES_MAX }) }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: INSERT_BYTES_MAX }) }),
    fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), lengthBytes: fc.integer({ min: 1, max: INSERT_BYTES_MAX }) }),
    fc.record({ kind: fc.constant('repeat' as const), at: fc.nat(), lengthBytes: fc.integer({ min: 1, max: INSERT_BYTES_MAX }), times: fc.integer({ min: 1, max: 16 }) }),
  ];
  if (tokens.length > 0) choices.push(fc.record({ kind: fc.constant('token' as const), at: fc.nat(), token: fc.nat() }));
  return fc.oneof(...choices);
}

function writeField(out: Buffer, at: number, width: 1 | 2 | 4, value: number, bigEndian: boolean): void {
  if (at + width > out.length) return;
  const v = value % 2 ** (8 * width);
  if (width === 1) out.writeUInt8(v, at);
  else if (width === 2) (bigEndian ? out.writeUInt16BE(v, at) : out.writeUInt16LE(v, at));
  else (bigEndian ? out.writeUInt32BE(v, at) : out.writeUInt32LE(v, at));
}

function apply(samples: readonly Sample[], index: number, mutations: readonly Mutation[], tokens: readonly Buffer[]): Buffer {
  const sample = samples[index % samples.length]!;
  let b = Buffer.from(sample.bytes);
  const pos = (n: number): number => n % (b.length + 1);
  for (const m of mutations) {
    switch (m.kind) {
      case 'flip':
        if (b.length > 0) {
          const at = m.at % b.length;
          b[at] = b[at]! ^ (1 << m.bit);
        }
        break;
      case 'truncate':
        b = b.subarray(0, pos(m.at));
        break;
      case 'extreme': {
        const offsets = sample.lengthFieldOffsets ?? [];
        // Half the time a declared length field, otherwise anywhere.
        const at = offsets.length > 0 && m.field % 2 === 0 ? offsets[(m.field >> 1) % offsets.length]! : b.length > 0 ? m.field % b.length : 0;
        b = Buffer.from(b);
        writeField(b, at, m.width, m.value, m.bigEndian);
        break;
      }
      case 'splice': {
        const other = samples[m.from % samples.length]!.bytes;
        const fromAt = other.length > 0 ? m.fromAt % other.length : 0;
        const piece = other.subarray(fromAt, fromAt + m.lengthBytes);
        const at = pos(m.at);
        b = Buffer.concat([b.subarray(0, at), piece, b.subarray(at)]);
        break;
      }
      case 'insert': {
        const at = pos(m.at);
        b = Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes), b.subarray(at)]);
        break;
      }
      case 'token': {
        const at = pos(m.at);
        b = Buffer.concat([b.subarray(0, at), tokens[m.token % tokens.length]!, b.subarray(at)]);
        break;
      }
      case 'delete': {
        const at = pos(m.at);
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.lengthBytes)]);
        break;
      }
      case 'repeat': {
        const at = pos(m.at);
        const piece = b.subarray(at, at + m.lengthBytes);
        b = Buffer.concat([b.subarray(0, at), ...Array.from({ length: m.times + 1 }, () => piece), b.subarray(at + piece.length)]);
        break;
      }
    }
    if (b.length > MUTATED_INPUT_BYTES_MAX) b = b.subarray(0, MUTATED_INPUT_BYTES_MAX);
  }
  return b;
}

export interface MutateOptions {
  /** Byte strings worth inserting whole (keywords, delimiters, magics). */
  readonly tokens?: readonly (string | Buffer)[];
  /** Weight of unmutated samples (default 1) against mutated ones (8) and random bytes (1). */
  readonly validWeight?: number;
  /** Longest random input (default 512 bytes). */
  readonly randomBytesMax?: number;
}

/** Inputs: mostly mutated samples, some random bytes, some samples as they are. */
export function mutatedInputs(samples: readonly Sample[], options: MutateOptions = {}): fc.Arbitrary<Buffer> {
  if (samples.length === 0) throw new Error('mutatedInputs needs at least one sample');
  const tokens = (options.tokens ?? []).map((t) => (typeof t === 'string' ? Buffer.from(t, 'utf8') : t));
  const mutated = fc
    .tuple(fc.nat(), fc.array(mutationArbitrary(tokens), { minLength: 1, maxLength: MUTATIONS_PER_INPUT_MAX }))
    .map(([index, mutations]) => apply(samples, index, mutations, tokens));
  const random = fc.uint8Array({ maxLength: options.randomBytesMax ?? 512 }).map((a) => Buffer.from(a));
  const valid = fc.nat().map((i) => Buffer.from(samples[i % samples.length]!.bytes));
  return fc.oneof({ arbitrary: mutated, weight: 8 }, { arbitrary: random, weight: 1 }, { arbitrary: valid, weight: options.validWeight ?? 1 });
}

/** Cut points for delivering a stream in pieces (each 1…maxBytes bytes, cycled). */
export function chunkSizes(maxBytes = 97): fc.Arbitrary<number[]> {
  return fc.array(fc.integer({ min: 1, max: maxBytes }), { minLength: 1, maxLength: 16 });
}

/** `stream` cut into pieces of the given sizes (cycled; the last piece takes the rest). */
export function chunked(stream: Buffer, sizes: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (let i = 0; at < stream.length; i++) {
    const n = sizes[i % sizes.length]!;
    out.push(stream.subarray(at, at + n));
    at += n;
  }
  return out;
}
