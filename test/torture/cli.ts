/**
 * test/torture/cli — `npm run torture -- --seconds N --seed S [--episode K]`:
 * runs test/torture/torture for at most N seconds (default 120) with seed S
 * (default: from the clock, printed first), or only episode K of seed S (a
 * replay), and prints the figures per fault type. Exit 0 clean, 1 on a
 * violated check (the seed and the episode are printed), 2 on bad arguments.
 */
import os from 'node:os';
import path from 'node:path';
import { runTorture, TortureFailure } from './torture.js';

const SECONDS_MAX = 24 * 3600;

function parseArgs(argv: string[]): { seconds: number; seed: number; episode?: number; lane: 0 | 1 } {
  let seconds = 120;
  let seed = Date.now() % 1_000_000;
  let episode: number | undefined;
  let lane: 0 | 1 = 0;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    const num = Number(value);
    if ((flag === '--seconds' || flag === '--seed' || flag === '--episode' || flag === '--lane') && (value === undefined || !Number.isSafeInteger(num) || num < 0)) {
      throw new Error(`${flag} needs a whole number, not ${String(value)}`);
    }
    if (flag === '--seconds') seconds = Math.min(num, SECONDS_MAX);
    else if (flag === '--seed') seed = num;
    else if (flag === '--episode') episode = num;
    else if (flag === '--lane') {
      if (num !== 0 && num !== 1) throw new Error(`--lane is 0 (uto1/uto2, CI's) or 1 (utl1/utl2), not ${num}`);
      lane = num;
    }
    else throw new Error(`unknown argument '${String(flag)}' (usage: npm run torture -- --seconds N --seed S [--episode K] [--lane 0|1])`);
    i++;
  }
  return episode === undefined ? { seconds, seed, lane } : { seconds, seed, episode, lane };
}

async function main(): Promise<number> {
  let args: ReturnType<typeof parseArgs>;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`torture: ${(err as Error).message}\n`);
    return 2;
  }
  try {
    await runTorture({ ...args, baseDir: path.join(os.tmpdir() === '/tmp' ? '/var/tmp' : os.tmpdir(), args.lane === 1 ? 'utl-torture' : 'uto-torture') });
    return 0;
  } catch (err) {
    process.stderr.write(`${err instanceof TortureFailure ? err.message : String((err as Error).stack)}\n`);
    return 1;
  }
}

process.exitCode = await main();
