// Metadata I/O for stores with big chunks (up to 1 GiB), without chunk-sized buffers. The kernel
// writes the header and each area as a whole chunk and zeroes areas with a chunk of zeroes (three
// chunk-sized vmallocs per store); done the same way here, a 1 GiB-chunk snapshot would keep
// gigabytes resident. Above BIG_CHUNK_BYTES the store instead:
// - writes only the meaningful head of a chunk (the header block; an area's records up to the
//   block holding the last one) and zeroes the rest in pieces from one shared zero buffer;
// - keeps an area buffer that is allocated zeroed and touched only where records are (untouched
//   pages of a zeroed allocation take no memory);
// - reads the current area at open in pieces, up to the piece holding its terminator, and checks
//   the rest on disk is zero (scrubbing it if not), so that writing only an area's head later
//   always leaves zeroes after the last record, as a whole-area write would.
// The on-disk bytes are the same as with whole-chunk writes; only the I/O sizes differ.
import type { BlockDevice } from '../../block/device.ts';
import { SECTOR_BYTES } from '../../common/sectors.ts';
import { HEADER_BYTES, RECORD_BYTES, encodeHeader, summarizeArea, type AreaSummary } from './format.ts';

/** Chunks larger than this take the piecewise paths (smaller ones are written whole, as the kernel). */
export const BIG_CHUNK_BYTES = 1 << 20;
/** Piece size for zeroing, checking and reading big chunks. */
export const PIECE_BYTES = 1 << 20;

const ZERO_PIECE = Buffer.alloc(PIECE_BYTES);

export function isBigChunk(chunkBytes: number): boolean {
  return chunkBytes > BIG_CHUNK_BYTES;
}

/** Bytes [0, n) rounded up to whole logical blocks of the COW. */
function wholeBlocks(cow: BlockDevice, n: number): number {
  const block = Math.max(SECTOR_BYTES, cow.blockSize);
  return Math.ceil(n / block) * block;
}

/** Write zeroes over [offset, offset+length) in pieces (plain writes). */
export async function writeZeroes(cow: BlockDevice, offset: number, length: number): Promise<void> {
  for (let done = 0; done < length; done += PIECE_BYTES) {
    await cow.write(ZERO_PIECE.subarray(0, Math.min(PIECE_BYTES, length - done)), offset + done);
  }
}

/** Zero the chunk at `offset`: whole for a small chunk (one write), in pieces for a big one. */
export async function zeroChunk(cow: BlockDevice, offset: number, chunkBytes: number): Promise<void> {
  if (!isBigChunk(chunkBytes)) return cow.write(Buffer.alloc(chunkBytes), offset);
  return writeZeroes(cow, offset, chunkBytes);
}

/** Write the header chunk (chunk 0). A big chunk's header is its first block; `whole` also zeroes the rest. */
export async function writeHeader(cow: BlockDevice, chunkSectors: number, valid: boolean, opts: { whole: boolean; fua?: boolean }): Promise<void> {
  const chunkBytes = chunkSectors * SECTOR_BYTES;
  if (!isBigChunk(chunkBytes)) return cow.write(encodeHeader(chunkSectors, valid), 0, { fua: opts.fua });
  const head = encodeHeader(chunkSectors, valid, wholeBlocks(cow, HEADER_BYTES));
  if (opts.whole) await writeZeroes(cow, head.length, chunkBytes - head.length);
  await cow.write(head, 0, { fua: opts.fua });
}

/** The part of an area buffer to write: all of it for a small chunk, else through record `last`'s block. */
export function areaHead(cow: BlockDevice, area: Buffer, last: number): Buffer {
  if (!isBigChunk(area.length)) return area;
  return area.subarray(0, Math.min(area.length, wholeBlocks(cow, (last + 1) * RECORD_BYTES)));
}

/**
 * Read the big area chunk at `offset` into a fresh zeroed buffer, piece by piece up to the piece
 * holding the terminator, and make sure the rest of the chunk on disk is zero. Returns the buffer
 * (zero after the records read) and its summary.
 */
export async function readBigArea(cow: BlockDevice, offset: number, chunkBytes: number): Promise<{ area: Buffer; summary: AreaSummary }> {
  const area = Buffer.alloc(chunkBytes);
  let maxNewChunk = -1;
  for (let at = 0; at < chunkBytes; at += PIECE_BYTES) {
    const piece = area.subarray(at, Math.min(chunkBytes, at + PIECE_BYTES));
    await cow.read(piece, offset + at);
    const s = summarizeArea(piece);
    maxNewChunk = Math.max(maxNewChunk, s.maxNewChunk);
    if (s.length * RECORD_BYTES < piece.length) {
      const length = at / RECORD_BYTES + s.length;
      piece.fill(0, s.length * RECORD_BYTES); // records after the terminator are garbage
      await scrubTail(cow, offset, chunkBytes, (length + 1) * RECORD_BYTES);
      return { area, summary: { length, maxNewChunk } };
    }
  }
  return { area, summary: { length: chunkBytes / RECORD_BYTES, maxNewChunk } };
}

/**
 * Bytes [from, chunkBytes) of the area (everything after its terminator record) must be zero on
 * disk, or a head-only area write could leave garbage right after new records. Checked piece by
 * piece with one scratch buffer; a piece that is not zero is overwritten with zeroes.
 */
async function scrubTail(cow: BlockDevice, offset: number, chunkBytes: number, from: number): Promise<void> {
  const scratch = Buffer.allocUnsafe(PIECE_BYTES);
  for (let at = from; at < chunkBytes; ) {
    const length = Math.min(PIECE_BYTES, chunkBytes - at);
    const buf = scratch.subarray(0, length);
    await cow.read(buf, offset + at);
    if (ZERO_PIECE.compare(buf, 0, length, 0, length) !== 0) await writeZeroes(cow, offset + at, length);
    at += length;
  }
}

/** Read a whole area chunk (a full one, going back while merging): one read, or pieces for a big chunk. */
export async function readAreaChunk(cow: BlockDevice, offset: number, chunkBytes: number): Promise<Buffer> {
  if (isBigChunk(chunkBytes)) return (await readBigArea(cow, offset, chunkBytes)).area;
  const area = Buffer.alloc(chunkBytes);
  await cow.read(area, offset);
  return area;
}
