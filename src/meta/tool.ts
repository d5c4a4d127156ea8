/**
 * meta/tool — drbdmeta-like offline operations on a backing disk path, or on a
 * meta device with external meta-data (indexed slot or flexible):
 * create-md (with drbdmeta's prompts and refusals), dump-md, show-gi, get-gi,
 * set-gi, apply-al, wipe-md, dstate. Output text and exit codes follow
 * drbdmeta (drbd-utils 9.22, v08 internal) line for line, with one deliberate
 * difference: dump-md prints the real v08 `flags` word. drbd-utils 8.9–9.3x
 * print 0x00000000 there (a bug fixed upstream in 2025, "v08 dump-md: dump
 * actual flags, not 0x0"; drbd 8.4's own drbdmeta printed the real value), and
 * a restore-md of such a dump silently drops MDF_AL_CLEAN. Everything else in
 * the dump is byte-identical. Talks to the operator only through `ToolIo`;
 * knows nothing of configuration files or the daemon.
 */
import os from 'node:os';
import { FileDisk } from '../disk/file-disk.js';
import { UdrbdError, ExitCode } from '../util/errors.js';
import { applyAlSync, ppsize, readMetaSync } from './metadata.js';
import { initializedAlArea } from './activity-log.js';
import {
  SECTOR_BYTES,
  SUPERBLOCK_BYTES,
  bitmapBytesForSectors,
  computeLayout,
  encodeSuperblock,
  freshSuperblock,
  hex32,
  hex64,
  isUnclean,
  INTERNAL,
  type MetaLayout,
  type MetaPlacement,
  type Superblock,
} from './superblock.js';
import { MdFlag } from './types.js';

export interface ToolIo {
  out(text: string): void;
  err(text: string): void;
  /** --force: skip every confirmation. */
  force: boolean;
  /** Whether stdin is a terminal a person can answer on. */
  stdinIsTty: boolean;
  /** Reads one line from stdin (without newline), or null at end of input. */
  readLine(): Promise<string | null>;
}

/** Bytes create-md scans for file-system signatures (reiserfs superblock is at 64 KiB). */
const SCAN_BYTES = 68 * 1024;
/** Largest chunk written when zeroing the bitmap. */
const ZERO_CHUNK_BYTES = 4 * 1024 * 1024;

/** What the no-TTY refusal of create-md tells the operator to run instead. */
const CREATE_MD_FORCE = 'overwrite without confirmation (udrbdadm create-md --force <resource>)';

/** Thrown after the message was already printed (drbdmeta prints, then exits). */
function quietExit(code: number): UdrbdError {
  return new UdrbdError('', code);
}

/**
 * drbdmeta's confirmed(): question on stderr, then --force, no-TTY refusal, or
 * exactly "yes". The no-TTY refusal keeps drbdmeta's line first and then says
 * how to force (`howToForce`, e.g. "overwrite without confirmation (udrbdadm
 * create-md --force <resource>)"), since nobody can answer the prompt.
 */
async function confirmed(io: ToolIo, question: string, howToForce: string): Promise<boolean> {
  io.err(`\n${question}\n`);
  if (io.force) {
    io.err('*** confirmation forced via --force option ***\n');
    return true;
  }
  if (!io.stdinIsTty) {
    io.err('stdin not a TTY, not waiting for confirmation\n');
    io.err(`Operation refused. Run with --force to ${howToForce}.\n`);
    return false;
  }
  io.err("[need to type 'yes' to confirm] ");
  const answer = await io.readLine();
  io.err('\n');
  return answer === 'yes';
}

/**
 * What a verb works on: a backing disk path (internal meta-data), or the meta
 * device and placement of external meta-data, with the data disk when known
 * (create-md then zeroes enough bitmap for it).
 */
export type MetaTarget = string | { mdPath: string; placement: MetaPlacement; dataPath?: string };

interface ResolvedTarget {
  mdPath: string;
  placement: MetaPlacement;
  dataPath: string | undefined;
}

function resolveTarget(target: MetaTarget): ResolvedTarget {
  return typeof target === 'string'
    ? { mdPath: target, placement: INTERNAL, dataPath: undefined }
    : { mdPath: target.mdPath, placement: target.placement, dataPath: target.dataPath };
}

/** How open errors name the device: the backing disk, or the meta-data device of external meta-data. */
function roleOf(placement: MetaPlacement): string {
  return placement.kind === 'internal' ? 'backing disk' : 'meta-data device';
}

function openDisk(path: string, readOnly: boolean, role: string): FileDisk {
  const disk = FileDisk.open(path, { readOnly, role });
  if (disk.sizeBytes < SCAN_BYTES) {
    disk.closeSync();
    throw new UdrbdError(`${path} is only ${disk.sizeBytes} bytes. That's not enough.`, ExitCode.configInvalid);
  }
  return disk;
}

/** Opens the (meta) disk and its valid meta-data or prints "No valid meta data found" and exits 1. */
function openValid(target: MetaTarget, readOnly: boolean): { disk: FileDisk; sb: Superblock; layout: MetaLayout } {
  const { mdPath, placement } = resolveTarget(target);
  const disk = openDisk(mdPath, readOnly, roleOf(placement));
  const read = readMetaSync(disk, placement);
  if (!read.ok) {
    disk.closeSync();
    throw new UdrbdError(`${mdPath}: ${read.reason}\nNo valid meta data found`, ExitCode.usage);
  }
  return { disk, sb: read.sb, layout: read.layout };
}

// ---- file-system detection (what drbdmeta's check_for_existing_data recognises) ----

interface FoundData {
  type: string;
  /** Bytes the detected content claims, or 'refuse' (always refuse), or 'unknown' (size unknown: refuse). */
  sizeBytes: number | 'refuse' | 'unknown';
}

function detectExistingData(head: Buffer): FoundData | null {
  let allZero = true;
  for (let i = 0; i < head.length; i += 8) {
    if (head.readBigUInt64LE(i) !== 0n) {
      allZero = false;
      break;
    }
  }
  if (allZero) return null;
  const text = (at: number, len: number) => head.toString('latin1', at, at + len);
  if (['SWAP-SPACE', 'SWAPSPACE2'].some((m) => text(4096 - 10, 10) === m || text(8192 - 10, 10) === m)) {
    return { type: 'swap space signature', sizeBytes: 'refuse' };
  }
  if (text(0x218, 4) === 'LVM2') return { type: 'LVM2 physical volume signature', sizeBytes: 'unknown' };
  if (head.readUInt16LE(0x438) === 0xef53) {
    const type = (head[0x45c]! & 4) === 4 ? 'ext3 filesystem' : 'ext2 filesystem';
    const blocks = head.readUInt32LE(0x404);
    const logSize = head.readUInt32LE(0x418);
    const blockBytes = logSize === 0 ? 1024 : logSize === 1 ? 2048 : 4096;
    return { type, sizeBytes: blocks * blockBytes };
  }
  if (head.readUInt32BE(0) === 0x58465342) {
    return { type: 'xfs filesystem', sizeBytes: head.readUInt32BE(4) * Number(head.readBigUInt64BE(8)) };
  }
  if (text(0x8000, 4) === 'JFS1') {
    return { type: 'JFS filesystem', sizeBytes: Number(head.readBigUInt64LE(0x8008)) * head.readUInt32LE(0x8018) };
  }
  if (text(0x10034, 8) === 'ReIsErFs' || text(0x10034, 9) === 'ReIsEr2Fs') {
    return { type: 'reiser filesystem', sizeBytes: head.readUInt32LE(0x10000) * head.readUInt16LE(0x1002c) };
  }
  return { type: 'some data', sizeBytes: 0 };
}

const TRUNCATE_REFUSAL =
  "\nDevice size would be truncated, which\nwould corrupt data and result in\n'access beyond end of device' errors.\n" +
  'You need to either\n   * use external meta data (recommended)\n   * shrink that filesystem first\n' +
  '   * zero out the device (destroy the filesystem)\nOperation refused.\n\n';

async function checkForExistingData(disk: FileDisk, layout: MetaLayout, io: ToolIo): Promise<void> {
  const head = Buffer.alloc(SCAN_BYTES);
  disk.readSync(head, 0);
  const found = detectExistingData(head);
  if (found === null) return;
  io.out(`md_offset ${layout.mdOffsetBytes}\nal_offset ${layout.alOffsetBytes}\nbm_offset ${layout.bmOffsetBytes}\n`);
  io.out(`\nFound ${found.type}\n`);
  const maxUsableKiB = Math.floor(layout.dataSizeBytes / 1024);
  if (found.sizeBytes === 'refuse' || found.sizeBytes === 'unknown') {
    io.out(`${String(maxUsableKiB).padStart(12)} kB left usable by current configuration\n`);
    if (found.sizeBytes === 'unknown') io.out('Could not determine the size of the actually used data area.\n\n');
    io.out(
      "Device size would be truncated, which\nwould corrupt data and result in\n'access beyond end of device' errors.\n" +
        'If you want me to do this, you need to zero out the first part\nof the device (destroy the content).\n' +
        'You should be very sure that you mean it.\nOperation refused.\n\n',
    );
    throw quietExit(ExitCode.wouldTruncate);
  }
  if (found.sizeBytes > 0) {
    const fsKiB = Math.ceil(found.sizeBytes / 1024);
    io.out(`${String(fsKiB).padStart(12)} kB data area apparently used\n`);
    io.out(`${String(maxUsableKiB).padStart(12)} kB left usable by current configuration\n`);
    if (fsKiB > maxUsableKiB) {
      io.out(TRUNCATE_REFUSAL);
      throw quietExit(ExitCode.wouldTruncate);
    }
    io.out('\nEven though it looks like this would place the new meta data into\nunused space, you still need to confirm, as this is only a guess.\n');
  } else {
    io.out('\n ==> This might destroy existing data! <==\n');
  }
  if (!(await confirmed(io, 'Do you want to proceed?', CREATE_MD_FORCE))) {
    io.out('Operation canceled.\n');
    throw quietExit(ExitCode.usage);
  }
}

export interface CreateMdOptions {
  alStripes?: number;
  alStripeSize4k?: number;
}

/** create-md: refuses or asks like drbdmeta, then writes AL, zeroed bitmap and a fresh superblock. */
export async function createMd(target: MetaTarget, io: ToolIo, options: CreateMdOptions = {}): Promise<void> {
  const { mdPath: path, placement, dataPath } = resolveTarget(target);
  const disk = openDisk(path, false, roleOf(placement));
  try {
    const layout = computeLayout(disk.sizeBytes, { ...options, devicePath: path, placement });
    const existing = readMetaSync(disk, placement);
    if (existing.ok && placement.kind === 'internal') {
      io.err('You want me to create a v08 style flexible-size internal meta data block.\n');
      io.err(`There appears to be a v08 flexible-size internal meta data block\nalready in place on ${path} at byte offset ${existing.layout.mdOffsetBytes}\n`);
      if (!(await confirmed(io, 'Do you really want to overwrite the existing meta-data?', CREATE_MD_FORCE))) {
        io.out('Operation cancelled.\n');
        throw quietExit(ExitCode.usage);
      }
    } else if (existing.ok) {
      io.err('\nValid meta data seems to be in place.\n');
      if (!(await confirmed(io, 'Do you really want to overwrite?', CREATE_MD_FORCE))) {
        io.out('Operation cancelled.\n');
        throw quietExit(ExitCode.usage);
      }
    }
    // External meta-data shares no bytes with the data: nothing there to truncate.
    if (placement.kind === 'internal') await checkForExistingData(disk, layout, io);
    io.out('initializing activity log\n');
    disk.writeSync(initializedAlArea(layout.alStripes, layout.alStripeSize4k), layout.alOffsetBytes);
    const zeroBytes = bitmapBytesToZero(layout, disk.sizeBytes, dataPath);
    io.err(`initializing bitmap (${zeroBytes >> 10} KB) to all zero\n`);
    const zero = Buffer.alloc(Math.min(ZERO_CHUNK_BYTES, zeroBytes));
    for (let at = 0; at < zeroBytes; at += zero.length) {
      const n = Math.min(zero.length, zeroBytes - at);
      disk.writeSync(zero.subarray(0, n), layout.bmOffsetBytes + at);
    }
    io.out('Writing meta data...\n');
    disk.writeSync(encodeSuperblock(freshSuperblock(layout)), layout.mdOffsetBytes);
    disk.flushSync();
    io.out('New drbd meta data block successfully created.\n');
  } finally {
    disk.closeSync();
  }
}

/**
 * Bitmap bytes create-md zeroes. Internal: the whole area. External: what
 * drbdmeta zeroes (the bitmap for a data disk as large as the meta device),
 * or, when the data disk is known and larger, the bitmap for the data disk —
 * the resource process reads that much at attach; at most the area.
 */
function bitmapBytesToZero(layout: MetaLayout, mdDeviceBytes: number, dataPath: string | undefined): number {
  if (layout.placement.kind === 'internal') return layout.bmAreaBytes;
  let bytes = bitmapBytesForSectors(Math.floor(mdDeviceBytes / SECTOR_BYTES));
  if (dataPath !== undefined) {
    const data = FileDisk.open(dataPath, { readOnly: true });
    try {
      bytes = Math.max(bytes, bitmapBytesForSectors(Math.floor(data.sizeBytes / SECTOR_BYTES)));
    } finally {
      data.closeSync();
    }
  }
  return Math.min(bytes, layout.bmAreaBytes);
}

export interface DumpMdOptions {
  /** The command line shown in the header (drbdmeta shows its own argv). */
  commandLine: string;
  hostname?: string;
  now?: Date;
}

/** dump-md: the text drbdmeta dump-md prints (real flags; see the file header). */
export function dumpMd(target: MetaTarget, io: ToolIo, options: DumpMdOptions): void {
  const { disk, sb, layout } = openValid(target, true);
  try {
    io.out(formatDumpMd(disk, sb, layout, io, options));
  } finally {
    disk.closeSync();
  }
}

function formatDumpMd(disk: FileDisk, sb: Superblock, layout: MetaLayout, io: ToolIo, options: DumpMdOptions): string {
  const maxUsableSectors = layout.dataSizeBytes / SECTOR_BYTES;
  let laSize = sb.laSizeSectors;
  const lines: string[] = [];
  if (laSize > maxUsableSectors) {
    lines.push(`# la-size-sect was too big (${laSize}), truncated (${maxUsableSectors})!\n`);
    laSize = maxUsableSectors;
  }
  if (isUnclean(sb)) {
    io.err('Found meta data is "unclean", please apply-al first\n');
    if (!io.force) throw quietExit(ExitCode.usage);
  }
  const now = options.now ?? new Date();
  lines.push('# DRBD meta data dump\n');
  lines.push(`# ${formatLocalTime(now)} [${Math.floor(now.getTime() / 1000)}]\n`);
  lines.push(`# ${options.hostname ?? os.hostname()}> ${options.commandLine}\n#\n\n`);
  lines.push('version "v08";\n\n');
  if (isUnclean(sb)) {
    lines.push("This_is_an_unclean_meta_data_dump._Don't_trust_the_bitmap.\n# You should \"apply-al\" first, if you plan to restore this.\n\n");
  }
  lines.push(`# md_size_sect ${sb.mdSizeSectors}\n`);
  lines.push(`# md_offset ${layout.mdOffsetBytes}\n# al_offset ${layout.alOffsetBytes}\n# bm_offset ${layout.bmOffsetBytes}\n\n`);
  const u = sb.uuids;
  lines.push(`uuid {\n    0x${hex64(u.current)}; 0x${hex64(u.bitmap)}; 0x${hex64(u.historyStart)}; 0x${hex64(u.historyEnd)};\n`);
  lines.push(`    flags 0x${hex32(sb.flags)};\n}\n`);
  lines.push(`# al-extents ${sb.alNrExtents};\n`);
  lines.push(`la-size-sect ${laSize};\n`);
  lines.push(`bm-byte-per-bit ${sb.bmBytesPerBit};\n`);
  lines.push(`device-uuid 0x${hex64(sb.deviceUuid)};\n`);
  lines.push(`la-peer-max-bio-size ${sb.laPeerMaxBioSize | 0};\n`);
  lines.push(`al-stripes ${sb.alStripes};\nal-stripe-size-4k ${sb.alStripeSize4k};\n`);
  const bmBytes = bitmapBytesForSectors(laSize);
  lines.push(`# bm-bytes ${bmBytes};\n`);
  const bm = Buffer.alloc(bmBytes);
  disk.readSync(bm, layout.bmOffsetBytes);
  const { text, bitsSet } = formatBitmap(bm);
  lines.push(`bm ${text}`);
  lines.push(`# bits-set ${bitsSet};\n`);
  return lines.join('');
}

function formatLocalTime(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const offsetMin = -d.getTimezoneOffset();
  const sign = offsetMin >= 0 ? '+' : '-';
  const abs = Math.abs(offsetMin);
  return (
    `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} ` +
    `${sign}${p(Math.floor(abs / 60))}${p(abs % 60)}`
  );
}

function popcount32(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

/** Words (32-bit) per output line: 4 × 64-bit values. */
const DUMP_WORDS_PER_LINE = 8;
/** A "# at NkB" marker every 64 words (256 bitmap bytes = 8 MiB of data). */
const DUMP_WORDS_PER_MARK = 64;

/**
 * The `bm { … }` block of dump-md: four LE 64-bit words per line, printed as
 * 16 upper-case hex digits; a run of identical 32-bit words at a line start
 * that covers at least two whole lines is folded into "N times 0x…;" (its
 * whole lines only); a "# at <kB>" comment starts every 8 MiB of data.
 */
export function formatBitmap(bm: Buffer): { text: string; bitsSet: number } {
  const n = bm.length / 4;
  const word = (i: number) => bm.readUInt32LE(i * 4);
  const hex = (w: number) => w.toString(16).toUpperCase().padStart(8, '0');
  const parts: string[] = ['{'];
  let bitsSet = 0;
  let i = 0;
  while (i < n) {
    parts.push(i % DUMP_WORDS_PER_MARK === 0 ? `\n   # at ${128 * i}kB\n   ` : '\n   ');
    const v = word(i);
    let j = i + 1;
    while (j < n && word(j) === v) j++;
    const runWords = Math.floor((j - i) / DUMP_WORDS_PER_LINE) * DUMP_WORDS_PER_LINE;
    if (runWords > DUMP_WORDS_PER_LINE) {
      parts.push(` ${runWords / 2} times 0x${hex(v)}${hex(v)};`);
      bitsSet += runWords * popcount32(v);
      i += runWords;
      continue;
    }
    const end = Math.min(n, i + DUMP_WORDS_PER_LINE);
    for (; i < end; i += 2) {
      const low = word(i);
      const high = word(i + 1);
      parts.push(` 0x${hex(high)}${hex(low)};`);
      bitsSet += popcount32(low) + popcount32(high);
    }
  }
  parts.push('\n}\n');
  return { text: parts.join(''), bitsSet };
}

/** The get-gi line: UUIDs in upper-case hex and the 7 flag bits. */
export function formatGi(sb: Superblock): string {
  const u = sb.uuids;
  const f = (flag: number) => ((sb.flags & flag) !== 0 ? '1' : '0');
  return (
    `${hex64(u.current)}:${hex64(u.bitmap)}:${hex64(u.historyStart)}:${hex64(u.historyEnd)}:` +
    [MdFlag.consistent, MdFlag.wasUpToDate, MdFlag.primaryInd, MdFlag.connectedInd, MdFlag.fullSync, MdFlag.peerOutDated, MdFlag.crashedPrimary]
      .map(f)
      .join(':') +
    '\n'
  );
}

export function getGi(target: MetaTarget, io: ToolIo): void {
  const { disk, sb } = openValid(target, true);
  disk.closeSync();
  io.out(formatGi(sb));
}

const SHOW_GI_HEADER = `
       +--<  Current data generation UUID  >-
       |               +--<  Bitmap's base data generation UUID  >-
       |               |                 +--<  younger history UUID  >-
       |               |                 |         +-<  older history  >-
       V               V                 V         V
`;
const SHOW_GI_LEGEND = `                                                                    ^ ^ ^ ^ ^ ^ ^
                                      -<  Data consistency flag  >--+ | | | | | |
                             -<  Data was/is currently up-to-date  >--+ | | | | |
                                  -<  Node was/is currently primary  >--+ | | | |
                                  -<  Node was/is currently connected  >--+ | | |
         -<  Node was in the progress of setting all bits in the bitmap  >--+ | |
                        -<  The peer's disk was out-dated or inconsistent  >--+ |
      -<  This node was a crashed primary, and has not seen its peer since   >--+

`;

export function showGi(target: MetaTarget, io: ToolIo): void {
  const { disk, sb } = openValid(target, true);
  disk.closeSync();
  const has = (flag: number) => (sb.flags & flag) !== 0;
  const disk_ = has(MdFlag.consistent) ? (has(MdFlag.wasUpToDate) ? 'UpToDate' : 'Outdated') : 'Inconsistent';
  const flags =
    `${has(MdFlag.crashedPrimary) ? 'crashed ' : ''}${has(MdFlag.primaryInd) ? 'Primary' : 'Secondary'}, ` +
    `${has(MdFlag.connectedInd) ? 'Connected' : 'StandAlone'}, ${disk_}` +
    `${has(MdFlag.fullSync) ? ', need full sync' : ''}${has(MdFlag.peerOutDated) ? ', peer Outdated' : ''}`;
  let text = SHOW_GI_HEADER + formatGi(sb) + SHOW_GI_LEGEND + `flags: ${flags}\n`;
  text += `meta-data: ${has(MdFlag.alClean) ? 'clean' : 'need apply-al'}\n`;
  if (sb.laSizeSectors > 0) {
    text += `last agreed size: ${ppsize(Math.floor(sb.laSizeSectors / 2))} (${sb.laSizeSectors} sectors)\n`;
    text += `last agreed max bio size: ${sb.laPeerMaxBioSize} Byte\n`;
  } else {
    text += 'zero size device -- never seen peer yet?\n';
  }
  io.out(text);
}

/** Applies a get-gi style string: empty fields keep their value; UUIDs hex, flags 0/1 (drbdmeta's rules). */
export function parseGi(gi: string, sb: Superblock): Superblock {
  const next: Superblock = { ...sb, uuids: { ...sb.uuids } };
  const fields = gi.split(':');
  const uuidKeys = ['current', 'bitmap', 'historyStart', 'historyEnd'] as const;
  const flagBits = [MdFlag.consistent, MdFlag.wasUpToDate, MdFlag.primaryInd, MdFlag.connectedInd, MdFlag.fullSync, MdFlag.peerOutDated, MdFlag.crashedPrimary];
  for (let k = 0; k < fields.length && k < uuidKeys.length + flagBits.length; k++) {
    const field = fields[k]!;
    if (field === '') continue;
    if (k < uuidKeys.length) {
      if (!/^(0x)?[0-9a-fA-F]{1,16}$/.test(field)) throw new UdrbdError(`'${field}' is not a number.`, ExitCode.configInvalid);
      next.uuids[uuidKeys[k]!] = BigInt(`0x${field.replace(/^0x/i, '')}`);
    } else {
      if (!/^(0x)?[0-9a-fA-F]+$/.test(field)) throw new UdrbdError(`'${field}' is not a number.`, ExitCode.configInvalid);
      const d = Number(field.startsWith('0x') ? field : parseInt(field, 10));
      if (d > 1) throw new UdrbdError(`'${d}' is not 0 or 1.`, ExitCode.configInvalid);
      const bit = flagBits[k - uuidKeys.length]!;
      next.flags = d ? next.flags | bit : next.flags & ~bit;
    }
  }
  return next;
}

export async function setGi(target: MetaTarget, gi: string, io: ToolIo): Promise<void> {
  const { disk, sb, layout } = openValid(target, false);
  try {
    const next = parseGi(gi, sb);
    io.out(`previously ${formatGi(sb)}`);
    io.out(`set GI to  ${formatGi(next)}`);
    if (!(await confirmed(io, 'Write new GI to disk?', 'write the new GI without confirmation (udrbdadm set-gi --force <resource> <gi>)'))) {
      io.out('Operation canceled.\n');
      return;
    }
    disk.writeSync(encodeSuperblock(next), layout.mdOffsetBytes);
    disk.flushSync();
  } finally {
    disk.closeSync();
  }
}

export function applyAl(target: MetaTarget, io: ToolIo): void {
  const { disk, sb, layout } = openValid(target, false);
  try {
    const result = applyAlSync(disk, layout, sb);
    for (const m of result.messages) io.err(`${m}\n`);
    if (result.exitCode !== 0) throw quietExit(result.exitCode);
  } finally {
    disk.closeSync();
  }
}

export async function wipeMd(target: MetaTarget, io: ToolIo): Promise<void> {
  const { mdPath, placement } = resolveTarget(target);
  const disk = openDisk(mdPath, false, roleOf(placement));
  try {
    const read = readMetaSync(disk, placement);
    if (!read.ok) {
      io.err('There appears to be no drbd meta data to wipe out?\n');
      return;
    }
    if (!(await confirmed(io, 'Do you really want to wipe out the DRBD meta data?', 'wipe out the meta data without confirmation (udrbdadm wipe-md --force <resource>)'))) {
      io.out('Operation cancelled.\n');
      throw quietExit(ExitCode.usage);
    }
    io.out('Wiping meta data...\n');
    disk.writeSync(Buffer.alloc(SUPERBLOCK_BYTES), read.layout.mdOffsetBytes);
    disk.flushSync();
    io.out('DRBD meta data block successfully wiped out.\n');
  } finally {
    disk.closeSync();
  }
}

/** The offline disk state from the flags, as drbdmeta dstate prints it. */
export function dstateFromFlags(flags: number): string {
  if ((flags & MdFlag.consistent) === 0) return 'Inconsistent';
  if ((flags & MdFlag.wasUpToDate) === 0) return 'Outdated';
  return (flags & MdFlag.peerOutDated) !== 0 ? 'UpToDate' : 'Consistent';
}

export function dstate(target: MetaTarget, io: ToolIo): void {
  const { disk, sb } = openValid(target, true);
  disk.closeSync();
  io.out(`${dstateFromFlags(sb.flags)}\n`);
}
