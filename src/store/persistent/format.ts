// The kernel's persistent exception-store format (dm-snap-persistent.c, on-disk version 1).
// This module is the only place that reads or writes its little-endian fields.
//
// Units: a sector is 512 bytes; a chunk is `cs` sectors (a power of two); chunk N starts at
// byte N * cs * 512 of the COW device.
//
// Chunk 0, the header. The whole chunk is written; bytes 16 onward are zero.
//   +0  u32 magic       0x70416E53 ("SnAp"); 0 means "no store yet" (a fresh, wiped COW)
//   +4  u32 valid       1 valid, 0 invalidated for good (any non-zero value reads as valid)
//   +8  u32 version     must be 1
//   +12 u32 chunk_size  in sectors; it wins over the chunk size the table asked for
//
// Metadata areas. epa (exceptions per area) = cs * 512 / 16 = 32 * cs. Area N lives in chunk
// loc(N) = 1 + N * (epa + 1) and is followed by its epa data chunks, so the stride is epa + 1
// and a chunk c is a metadata chunk exactly when c mod (epa + 1) == 1. An area chunk holds epa
// 16-byte records:
//   +0  u64 old_chunk   origin chunk (0 is a legal value)
//   +8  u64 new_chunk   COW chunk holding that origin chunk's data
// The first record with new_chunk == 0 (which would point at the header) ends the table: its
// index is the number of committed records in that area, the "current area". An area without
// one is full and the table continues in the next area. Records after the terminator are
// ignored; records are not checked for range, duplicates or order (the kernel does not either).
//
// Allocation: next_free starts at 2 (after the header and area 0) and skips metadata chunks.
// On load next_free = max(new_chunk) + 1 (at least 2), then the same skip: holes are leaked.
// Commit rewrites the whole current area chunk after a flush that makes the data it names
// durable (persistent-store.ts); before a full area is written, the next area is zeroed and
// flushed, so a full area on disk always has a zeroed successor.
import { SECTOR_BYTES } from '../../common/sectors.ts';
import { CorruptStoreError } from '../errors.ts';

/** Re-exported for scripts/bench-store.ts and test/support/crash-cow-check.ts; src imports it from common/sectors.ts. */
export { SECTOR_BYTES };
export const SNAP_MAGIC = 0x70416e53;
export const DISK_VERSION = 1;
export const HEADER_BYTES = 16;
export const RECORD_BYTES = 16;
/** next_free of a fresh store: chunk 0 is the header, chunk 1 is area 0. */
export const FIRST_DATA_CHUNK = 2;

const TWO_32 = 2 ** 32;
/** Largest high word that keeps a u64 within Number.MAX_SAFE_INTEGER. */
const MAX_SAFE_HIGH = 0x1fffff;

export interface DiskHeader {
  magic: number;
  valid: number;
  version: number;
  chunkSectors: number;
}

/** Decode the first 16 bytes of chunk 0. */
export function decodeHeader(buf: Uint8Array): DiskHeader {
  const view = new DataView(buf.buffer, buf.byteOffset, HEADER_BYTES);
  return {
    magic: view.getUint32(0, true),
    valid: view.getUint32(4, true),
    version: view.getUint32(8, true),
    chunkSectors: view.getUint32(12, true),
  };
}

/** The header chunk as the kernel writes it (write_header): 16 bytes of fields, zeroes after; `bytes` of it. */
export function encodeHeader(chunkSectors: number, valid: boolean, bytes = chunkSectors * SECTOR_BYTES): Buffer {
  const buf = Buffer.alloc(bytes);
  const view = new DataView(buf.buffer, buf.byteOffset, HEADER_BYTES);
  view.setUint32(0, SNAP_MAGIC, true);
  view.setUint32(4, valid ? 1 : 0, true);
  view.setUint32(8, DISK_VERSION, true);
  view.setUint32(12, chunkSectors, true);
  return buf;
}

export function exceptionsPerArea(chunkSectors: number): number {
  return (chunkSectors * SECTOR_BYTES) / RECORD_BYTES;
}

/** Chunk index of metadata area `area`. */
export function areaLocation(area: number, epa: number): number {
  return 1 + area * (epa + 1);
}

/** The next allocatable chunk at or after `chunk`: metadata chunks are skipped. */
export function skipMetadataChunk(chunk: number, epa: number): number {
  return chunk % (epa + 1) === 1 ? chunk + 1 : chunk;
}

function readU64(view: DataView, offset: number): number {
  const high = view.getUint32(offset + 4, true);
  if (high > MAX_SAFE_HIGH) {
    throw new CorruptStoreError(`exception record field at area byte ${offset} exceeds 2^53 (high word ${high})`);
  }
  return high * TWO_32 + view.getUint32(offset, true);
}

function writeU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % TWO_32, true);
  view.setUint32(offset + 4, Math.floor(value / TWO_32), true);
}

/** Store record `index` of an area buffer. */
export function writeRecord(area: Uint8Array, index: number, oldChunk: number, newChunk: number): void {
  const view = new DataView(area.buffer, area.byteOffset + index * RECORD_BYTES, RECORD_BYTES);
  writeU64(view, 0, oldChunk);
  writeU64(view, 8, newChunk);
}

/** Read record `index` of an area buffer. */
export function readRecord(area: Uint8Array, index: number): { oldChunk: number; newChunk: number } {
  const view = new DataView(area.buffer, area.byteOffset + index * RECORD_BYTES, RECORD_BYTES);
  return { oldChunk: readU64(view, 0), newChunk: readU64(view, 8) };
}

/** Zero record `index` of an area buffer (the kernel's clear_exception). */
export function clearRecord(area: Uint8Array, index: number): void {
  area.fill(0, index * RECORD_BYTES, (index + 1) * RECORD_BYTES);
}

/**
 * Visit the records of one area chunk in order, stopping at the terminator (new_chunk == 0).
 * Returns the number of records before it: the area's length, equal to epa when it is full.
 * Throws CorruptStoreError for a field that does not fit in a JS number (above 2^53).
 */
export function scanArea(area: Uint8Array, visit: (oldChunk: number, newChunk: number) => void): number {
  const view = new DataView(area.buffer, area.byteOffset, area.byteLength);
  const epa = area.byteLength / RECORD_BYTES;
  for (let i = 0; i < epa; i++) {
    const at = i * RECORD_BYTES;
    if (view.getUint32(at + 8, true) === 0 && view.getUint32(at + 12, true) === 0) return i;
    visit(readU64(view, at), readU64(view, at + 8));
  }
  return epa;
}

export interface AreaSummary {
  /** Records before the terminator (epa when the area is full). */
  length: number;
  /** Largest new_chunk among them (-1 if none). */
  maxNewChunk: number;
}

/** scanArea without a callback, for the open-time pass: the area's length and largest new_chunk. */
export function summarizeArea(area: Uint8Array): AreaSummary {
  const view = new DataView(area.buffer, area.byteOffset, area.byteLength);
  const epa = area.byteLength / RECORD_BYTES;
  let maxNewChunk = -1;
  for (let i = 0; i < epa; i++) {
    const at = i * RECORD_BYTES;
    const oldHigh = view.getUint32(at + 4, true);
    const newLow = view.getUint32(at + 8, true);
    const newHigh = view.getUint32(at + 12, true);
    if (newLow === 0 && newHigh === 0) return { length: i, maxNewChunk };
    if (oldHigh > MAX_SAFE_HIGH || newHigh > MAX_SAFE_HIGH) readU64(view, oldHigh > MAX_SAFE_HIGH ? at : at + 8); // throws
    const newChunk = newHigh * TWO_32 + newLow;
    if (newChunk > maxNewChunk) maxNewChunk = newChunk;
  }
  return { length: epa, maxNewChunk };
}
