// test/helpers/failover-writer — the durability witness for the hard-failover
// test: writes files of random bytes into DIR, fsyncs each file and DIR, and
// only after both fsyncs returned appends "NAME SHA256" to LOG (itself
// fsynced, on a disk outside the volume). Runs until a write fails (the
// Primary died) or a bound is hit. Usage: node failover-writer.mjs DIR LOG RUNTIME_MS
import fs from 'node:fs';
import crypto from 'node:crypto';
import path from 'node:path';

const [dir, logPath, runtimeArg] = process.argv.slice(2);
const runtimeMs = Number(runtimeArg);
const FILES_MAX = 100_000;
const FILE_BYTES_MIN = 4096;
const FILE_BYTES_MAX = 256 * 1024;
const deadline = Date.now() + runtimeMs;
const log = fs.openSync(logPath, 'a');
const dirFd = fs.openSync(dir, 'r');
let written = 0;
try {
  for (let i = 0; i < FILES_MAX && Date.now() < deadline; i++) {
    const size = FILE_BYTES_MIN + Math.floor(Math.random() * (FILE_BYTES_MAX - FILE_BYTES_MIN));
    const data = crypto.randomBytes(size);
    const name = `w${String(i).padStart(6, '0')}`;
    const fd = fs.openSync(path.join(dir, name), 'w');
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.fsyncSync(dirFd);
    fs.writeSync(log, `${name} ${crypto.createHash('sha256').update(data).digest('hex')}\n`);
    fs.fsyncSync(log);
    written++;
  }
  process.stdout.write(`written ${written}\n`);
} catch (err) {
  process.stdout.write(`written ${written}, stopped: ${err.code ?? err.message}\n`);
}
