/**
 * test/fuzz/target-meta — fuzzes the v08 meta-data decoder (src/meta/): a
 * create-md superblock and activity-log transactions, mutated (AL blocks half
 * the time with their crc32c recomputed, so the content checks behind the crc
 * are reached). The pure decoders must judge every superblock without
 * throwing (a valid one describes a layout inside the device) and replay any
 * ring; on a real file, dump-md / get-gi / show-gi / dstate and MetaData.open
 * must print or refuse with UdrbdError and write nothing, and attach
 * (apply-al) may write only inside the meta-data area.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { FileDisk } from '../../src/disk/file-disk.js';
import { crc32c } from '../../src/meta/crc32c.js';
import {
  AL_BLOCK_BYTES,
  AL_EXTENTS_MAX,
  AL_TR_UPDATE,
  encodeAlTransaction,
  initializedAlArea,
  replayActivityLog,
} from '../../src/meta/activity-log.js';
import { MetaData } from '../../src/meta/metadata.js';
import {
  MD_MAGIC_84_UNCLEAN,
  SUPERBLOCK_BYTES,
  computeLayout,
  decodeSuperblock,
  encodeSuperblock,
  freshSuperblock,
  superblockProblem,
  validateSuperblock,
  type MetaLayout,
} from '../../src/meta/superblock.js';
import { type ToolIo, dstate, dumpMd, getGi, showGi } from '../../src/meta/tool.js';
import { MdFlag } from '../../src/meta/types.js';
import { UdrbdError } from '../../src/util/errors.js';
import { mutatedInputs, type Sample } from './mutate.js';
import { type FuzzBudget, type PropertyResult, runProperty, share, withinHangBound } from './runner.js';

/** Backing file for the on-disk property: 1 MiB data area plus internal meta-data. */
const DEVICE_BYTES = 1024 * 1024 + 64 * 1024;
/** The on-disk property costs a file write, read and fsync per input: it gets 1/4 of a run count. */
const ON_DISK_RUNS_DIVISOR = 4;
/** The crc32c field of an AL transaction block (drbd 8.4 struct al_transaction_on_disk). */
const AL_CRC_OFFSET = 8;
/** Superblock fields worth setting to extremes: la-size, flags, md_size, al_offset, al_nr_extents, bm_offset, bm_bytes_per_bit, al stripes. */
const SUPERBLOCK_FIELD_OFFSETS = [0x00, 0x04, 0x38, 0x3c, 0x40, 0x44, 0x48, 0x4c, 0x50, 0x54, 0x58, 0x5c];
/** AL block fields: tr_number, type, n_updates, context_size, context_start_slot, first update slot. */
const AL_FIELD_OFFSETS = [0x04, 0x0c, 0x0e, 0x10, 0x12, 0x24, 0xa4];

function exactly(bytes: Buffer, lengthBytes: number): Buffer {
  const out = Buffer.alloc(lengthBytes);
  bytes.copy(out, 0, 0, Math.min(bytes.length, lengthBytes));
  return out;
}

function superblockSamples(layout: MetaLayout): Sample[] {
  const fresh = freshSuperblock(layout);
  const unclean = { ...fresh, magic: MD_MAGIC_84_UNCLEAN, flags: (fresh.flags | MdFlag.primaryInd) & ~MdFlag.alClean, laSizeSectors: layout.dataSizeBytes / 512 };
  return [fresh, unclean].map((sb) => ({ bytes: encodeSuperblock(sb), lengthFieldOffsets: SUPERBLOCK_FIELD_OFFSETS }));
}

function alSamples(): Sample[] {
  const context = Array.from({ length: 40 }, (_v, i) => (i % 3 === 0 ? 0xffffffff : i));
  const transactions = [
    { trNumber: 1, type: AL_TR_UPDATE, updates: [{ slot: 0, extent: 0 }], contextSize: 61, contextStartSlot: 0, context },
    { trNumber: 0xffffffff, type: AL_TR_UPDATE, updates: [{ slot: 3, extent: 7 }, { slot: 60, extent: 1 }], contextSize: 61, contextStartSlot: 40, context: [] },
  ];
  return transactions.map((tr) => ({ bytes: encodeAlTransaction(tr), lengthFieldOffsets: AL_FIELD_OFFSETS }));
}

/** A mutated AL block, its crc recomputed when `fixCrc` (so the checks behind the crc see it). */
function alBlock(bytes: Buffer, fixCrc: boolean): Buffer {
  const block = exactly(bytes, AL_BLOCK_BYTES);
  if (fixCrc) {
    block.writeUInt32BE(0, AL_CRC_OFFSET);
    block.writeUInt32BE(crc32c(block), AL_CRC_OFFSET);
  }
  return block;
}

interface MetaInput {
  superblock: Buffer;
  /** (ring block index, block) replacements in the AL area. */
  blocks: { at: number; bytes: Buffer }[];
}

function metaInputs(layout: MetaLayout): fc.Arbitrary<MetaInput> {
  const ringBlocks = layout.alBytes / AL_BLOCK_BYTES;
  const block = fc.record({ at: fc.nat({ max: ringBlocks - 1 }), raw: mutatedInputs(alSamples(), { randomBytesMax: 64 }), fixCrc: fc.boolean() });
  return fc.record({
    superblock: mutatedInputs(superblockSamples(layout), { randomBytesMax: 128 }).map((b) => exactly(b, SUPERBLOCK_BYTES)),
    blocks: fc.array(block, { maxLength: 4 }).map((list) => list.map((b) => ({ at: b.at, bytes: alBlock(b.raw, b.fixCrc) }))),
  });
}

function alArea(layout: MetaLayout, blocks: MetaInput['blocks']): Buffer {
  const area = initializedAlArea(layout.alStripes, layout.alStripeSize4k);
  for (const b of blocks) b.bytes.copy(area, b.at * AL_BLOCK_BYTES);
  return area;
}

/** Tool output goes nowhere; the verbs are judged by what they throw and write. */
const quietIo: ToolIo = { out: () => undefined, err: () => undefined, force: false, stdinIsTty: false, readLine: () => Promise.resolve(null) };

function sha(bytes: Buffer): string {
  return crypto.createHash('sha256').update(bytes).digest('hex');
}

function pureProperties(layout: MetaLayout, budget: FuzzBudget): PropertyResult[] {
  const b = share(budget, 2);
  return [
    runProperty(
      'meta: any superblock is judged without throwing; an accepted one describes meta-data inside the device',
      mutatedInputs(superblockSamples(layout), { randomBytesMax: 128 }).map((bytes) => exactly(bytes, SUPERBLOCK_BYTES)),
      (bytes) => {
        withinHangBound('superblock decoder', () => {
          const sb = decodeSuperblock(bytes);
          const problem = superblockProblem(sb, DEVICE_BYTES);
          try {
            const checked = validateSuperblock(sb, DEVICE_BYTES, '/dev/fz');
            if (problem !== null) throw new Error(`validateSuperblock accepted what superblockProblem refused: ${problem}`);
            if (checked.mdOffsetBytes + SUPERBLOCK_BYTES > DEVICE_BYTES || checked.dataSizeBytes <= 0 || checked.bmOffsetBytes !== checked.dataSizeBytes) {
              throw new Error(`accepted superblock gives a layout outside the device: ${JSON.stringify(checked)}`);
            }
          } catch (error) {
            if (!(error instanceof UdrbdError) || problem === null) throw error;
          }
        });
      },
      b,
    ),
    runProperty(
      'meta: any activity-log ring replays without throwing, to sorted distinct extents',
      fc.array(fc.record({ at: fc.nat({ max: 7 }), raw: mutatedInputs(alSamples(), { randomBytesMax: 64 }), fixCrc: fc.boolean() }), { minLength: 1, maxLength: 8 }),
      (list) => {
        const area = alArea(layout, list.map((x) => ({ at: x.at, bytes: alBlock(x.raw, x.fixCrc) })));
        const replay = withinHangBound('activity-log replay', () => replayActivityLog(area, layout.alStripes, layout.alStripeSize4k));
        const sorted = replay.extents.every((e, i) => i === 0 || e > replay.extents[i - 1]!);
        if (!sorted || replay.extents.length > AL_EXTENTS_MAX) throw new Error(`replay gave ${replay.extents.length} extents, sorted: ${sorted}`);
      },
      b,
    ),
  ];
}

export function fuzzMeta(budget: FuzzBudget): PropertyResult[] {
  const layout = computeLayout(DEVICE_BYTES);
  const results = pureProperties(layout, share(budget, 2));
  // A file round trip per input: a quarter of the pure properties' runs.
  const onDisk = budget.numRuns === undefined ? share(budget, 2) : { ...budget, numRuns: Math.max(1, Math.floor(budget.numRuns / ON_DISK_RUNS_DIVISOR)) };
  // Every attach ends in fdatasync: on tmpfs that costs nothing.
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'udrbd-fz-meta-'));
  const file = path.join(dir, 'disk.img');
  const dataArea = Buffer.alloc(layout.dataSizeBytes);
  for (let i = 0; i < dataArea.length; i += 512) dataArea.writeUInt32BE(i, i);
  const dataHash = sha(dataArea);
  const bitmapZero = Buffer.alloc(layout.bmAreaBytes);
  try {
    results.push(
      runProperty(
        'meta: on a file, open refuses bad meta-data with UdrbdError writing nothing; attach writes only inside the meta-data area',
        metaInputs(layout),
        (input) => {
          const image = Buffer.concat([dataArea, bitmapZero, alArea(layout, input.blocks), input.superblock]);
          fs.writeFileSync(file, image);
          const imageHash = sha(image);
          // The read-only meta-data verbs (drbdmeta dump-md, get-gi, show-gi, dstate) print or refuse, and never write.
          for (const verb of [() => dumpMd(file, quietIo, { commandLine: 'udrbdadm dump-md fz', hostname: 'fz', now: new Date(0) }), () => getGi(file, quietIo), () => showGi(file, quietIo), () => dstate(file, quietIo)]) {
            try {
              withinHangBound('meta-data tool', verb);
            } catch (error) {
              if (!(error instanceof UdrbdError)) throw error;
            }
          }
          if (sha(fs.readFileSync(file)) !== imageHash) throw new Error('a read-only meta-data verb changed the disk');
          const disk = FileDisk.open(file);
          try {
            let md: MetaData;
            try {
              md = MetaData.open(disk);
            } catch (error) {
              if (!(error instanceof UdrbdError)) throw error;
              if (sha(fs.readFileSync(file)) !== imageHash) throw new Error('MetaData.open refused the meta-data but changed the disk');
              return;
            }
            try {
              md.attach();
              md.close({ clean: true });
            } catch (error) {
              if (!(error instanceof UdrbdError)) throw error;
            }
          } finally {
            disk.closeSync();
          }
          const after = fs.readFileSync(file);
          if (after.length !== DEVICE_BYTES || sha(after.subarray(0, layout.dataSizeBytes)) !== dataHash) {
            throw new Error('attaching the meta-data changed the data area');
          }
        },
        onDisk,
      ),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return results;
}
