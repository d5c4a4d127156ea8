/**
 * test/fuzz/target-control — fuzzes the control-socket protocol
 * (src/daemon/protocol.ts and control-server.ts): the line splitter against a
 * reference split with a small line limit, and a live ControlServer fed
 * mutated request lines over its unix socket. Every line gets one reply line
 * of valid JSON; the handler only ever sees a request with a numeric id, a
 * string verb and an object of args; a request sent after the garbage is still
 * answered; nothing is left open.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { ControlServer } from '../../src/control/control-server.js';
import { LineSplitter, okReply, type ControlRequest } from '../../src/control/protocol.js';
import { silentLogger } from '../../src/util/log.js';
import { chunkSizes, chunked, mutatedInputs, type Sample } from './mutate.js';
import { type FuzzBudget, type PropertyResult, runAsyncProperty, runProperty, share, withinHangBound } from './runner.js';

const REQUESTS = [
  '{"id":1,"verb":"status","args":{}}',
  '{"id":2,"verb":"primary","args":{"force":true}}',
  '{"id":3,"verb":"io.write","args":{"offsetBytes":4096,"base64":"AAAA"}}',
  '{"id":4,"verb":"io.read","args":{"offsetBytes":0,"lengthBytes":512}}',
  '{"id":5,"verb":"connect","args":{"discardMyData":false}}',
];
const JSON_TOKENS = ['{', '}', '[', ']', '"', ':', ',', 'null', 'true', '1e400', '-0', '"args"', '"id"', '"verb"', '\\u0000', '\\ud800', '\n', '[[[[[[[[', '{"__proto__":{}}'];
/** The verb of the request sent after the garbage; its reply proves the connection still works. */
const SENTINEL_VERB = 'fz-sentinel';
const SENTINEL_ID = 900_001;
/** Line limit for the splitter property: small, so overflow is exercised. */
const SPLITTER_LINE_BYTES_MAX = 48;

function splitterProperty(budget: FuzzBudget): PropertyResult {
  return runProperty(
    'control: the line splitter yields exactly the reference lines and drops the stream at the first overlong one',
    fc.tuple(mutatedInputs(REQUESTS.map((r) => ({ bytes: Buffer.from(`${r}\n${r}\n`) })), { tokens: JSON_TOKENS }), chunkSizes(20)),
    ([stream, sizes]) => {
      const lines: string[] = [];
      let overflowed = false;
      const splitter = new LineSplitter((line) => lines.push(line), () => (overflowed = true), SPLITTER_LINE_BYTES_MAX);
      withinHangBound('LineSplitter', () => {
        for (const piece of chunked(stream, sizes)) {
          if (overflowed) break;
          splitter.push(piece);
        }
      });
      // Reference: complete lines in order until the first one (or the unterminated rest) is too long.
      const expected: string[] = [];
      let expectOverflow = false;
      let start = 0;
      for (;;) {
        const nl = stream.indexOf(0x0a, start);
        const end = nl < 0 ? stream.length : nl;
        if (end - start > SPLITTER_LINE_BYTES_MAX) {
          expectOverflow = true;
          break;
        }
        if (nl < 0) break;
        if (end > start) expected.push(stream.toString('utf8', start, end));
        start = nl + 1;
      }
      if (overflowed !== expectOverflow) throw new Error(`overflow ${overflowed}, reference says ${expectOverflow}`);
      // Lines before the overflowing chunk are delivered; a splitter may stop at the chunk that overflowed.
      const prefixOk = lines.every((line, i) => line === expected[i]);
      if (!prefixOk || (!expectOverflow && lines.length !== expected.length)) {
        throw new Error(`lines ${JSON.stringify(lines)} differ from the reference ${JSON.stringify(expected)}`);
      }
    },
    budget,
  );
}

/** Sends `bytes`, then a sentinel request; resolves with every reply line once the sentinel is answered. */
function converse(socketPath: string, bytes: Buffer): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let text = '';
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
      const lines = text.split('\n');
      const done = lines.some((l) => l.includes(`"id":${SENTINEL_ID},`));
      if (done) {
        socket.end();
        resolve(lines.filter((l) => l.length > 0));
      }
    });
    socket.on('close', () => reject(new Error(`control connection closed before the sentinel was answered; got ${JSON.stringify(text)}`)));
    socket.on('connect', () => {
      socket.write(bytes);
      socket.write(`\n${JSON.stringify({ id: SENTINEL_ID, verb: SENTINEL_VERB })}\n`);
    });
  });
}

/** Well-formed JSON lines whose id, verb and args are any JSON value (or missing). */
function structuredRequests(): fc.Arbitrary<Buffer> {
  const request = fc.record(
    { id: fc.oneof(fc.integer(), fc.double(), fc.jsonValue()), verb: fc.oneof(fc.constantFrom('status', 'io.read'), fc.jsonValue()), args: fc.jsonValue() },
    { requiredKeys: [] },
  );
  return fc.array(request, { minLength: 1, maxLength: 4 }).map((list) => Buffer.from(list.map((r) => `${JSON.stringify(r)}\n`).join('')));
}

function isPlainObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export async function fuzzControl(budget: FuzzBudget): Promise<PropertyResult[]> {
  const results = [splitterProperty(share(budget, 2))];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-fz-ctl-'));
  const socketPath = path.join(dir, 'ctl.sock');
  const seen: ControlRequest[] = [];
  const server = new ControlServer(socketPath, (request) => {
    seen.push(request);
    return Promise.resolve(okReply(request.id, `${request.verb}\n`));
  }, silentLogger(), () => []);
  const samples: Sample[] = REQUESTS.map((r) => ({ bytes: Buffer.from(`${r}\n`) }));
  try {
    await server.listen();
    results.push(
      await runAsyncProperty(
        'control: mutated request lines get one JSON reply each, the handler sees only well-formed requests, the connection stays usable',
        fc.oneof(mutatedInputs(samples, { tokens: JSON_TOKENS }), structuredRequests()),
        async (bytes) => {
          seen.length = 0;
          const replies = await converse(socketPath, bytes);
          const lineCount = `${bytes.toString('utf8')}\n`.split('\n').filter((l) => l.length > 0).length + 1;
          if (replies.length !== lineCount) throw new Error(`${lineCount} request lines got ${replies.length} replies`);
          for (const reply of replies) {
            const parsed = JSON.parse(reply) as { id?: unknown; exitCode?: unknown };
            if (typeof parsed.id !== 'number' || typeof parsed.exitCode !== 'number') throw new Error(`reply without id/exitCode: ${reply}`);
          }
          for (const request of seen) {
            if (!Number.isSafeInteger(request.id) || typeof request.verb !== 'string' || !isPlainObject(request.args)) {
              throw new Error(`handler got a malformed request: ${JSON.stringify(request)}`);
            }
          }
          if (seen.at(-1)?.verb !== SENTINEL_VERB) throw new Error('the sentinel request did not reach the handler last');
        },
        share(budget, 2),
      ),
    );
  } finally {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return results;
}
