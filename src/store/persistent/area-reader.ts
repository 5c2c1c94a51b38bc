// Reading the metadata areas of an existing persistent store at open time (the kernel's
// read_exceptions): areas 0, 1, 2... until the first one that is not full, with reads issued
// ahead so that a large store loads at the device's speed. The raw area chunks are kept for
// ExceptionStore.load(), which replays them into the caller's table without another copy.
import type { BlockDevice } from '../../block/device.ts';
import { SECTOR_BYTES } from '../../common/sectors.ts';
import { CorruptStoreError } from '../errors.ts';
import { isBigChunk, readBigArea } from './big-chunks.ts';
import { FIRST_DATA_CHUNK, RECORD_BYTES, areaLocation, exceptionsPerArea, skipMetadataChunk, summarizeArea } from './format.ts';

/** Area reads kept in flight ahead of the scan, bounded in bytes. */
const PREFETCH_BYTES = 8 << 20;
const PREFETCH_MAX_AREAS = 64;
const SLAB_BYTES = 1 << 20;

export interface AreaScan {
  /** The full areas, in order: load() replays them. */
  fullAreas: Uint8Array[];
  /** The current (not full) area's chunk, zeroed past its terminator: the store's in-memory area. */
  current: Buffer;
  currentArea: number;
  /** Records in the current area (index of its terminator). */
  currentCommitted: number;
  /** max(new_chunk) + 1, at least 2, metadata chunk skipped. */
  nextFree: number;
  /** Records in all areas. */
  recordCount: number;
}

/** The scan of a store with no records (fresh, or invalid and therefore not read). */
export function emptyScan(chunkSectors: number): AreaScan {
  return {
    fullAreas: [],
    current: Buffer.alloc(chunkSectors * SECTOR_BYTES),
    currentArea: 0,
    currentCommitted: 0,
    nextFree: FIRST_DATA_CHUNK,
    recordCount: 0,
  };
}

/** Area buffers carved from 1 MiB slabs: tens of thousands of small areas, few allocations. */
class SlabAllocator {
  private slab: Buffer = Buffer.alloc(0);
  private used = 0;
  private readonly slabBytes: number;
  private readonly chunkBytes: number;

  constructor(chunkBytes: number) {
    this.chunkBytes = chunkBytes;
    this.slabBytes = Math.max(chunkBytes, SLAB_BYTES);
  }

  take(): Buffer {
    if (this.used + this.chunkBytes > this.slab.length) {
      this.slab = Buffer.allocUnsafeSlow(this.slabBytes);
      this.used = 0;
    }
    this.used += this.chunkBytes;
    return this.slab.subarray(this.used - this.chunkBytes, this.used);
  }
}

/** Reads areas 0, 1, 2... in order, keeping up to `window` reads in flight ahead of the consumer. */
class AreaPrefetcher {
  private readonly inFlight: Promise<Buffer>[] = [];
  private issued = 0;
  private readonly slabs: SlabAllocator;
  private readonly cow: BlockDevice;
  private readonly epa: number;
  private readonly chunkBytes: number;
  private readonly window: number;

  constructor(cow: BlockDevice, chunkSectors: number) {
    this.cow = cow;
    this.chunkBytes = chunkSectors * SECTOR_BYTES;
    this.epa = exceptionsPerArea(chunkSectors);
    this.window = Math.max(1, Math.min(PREFETCH_MAX_AREAS, Math.floor(PREFETCH_BYTES / this.chunkBytes)));
    this.slabs = new SlabAllocator(this.chunkBytes);
  }

  /** Area `area`'s chunk (areas must be asked for in order). Throws CorruptStoreError if it lies past the end. */
  next(area: number): Promise<Buffer> {
    while (this.issued < area + this.window && (areaLocation(this.issued, this.epa) + 1) * this.chunkBytes <= this.cow.size) {
      const buf = this.slabs.take();
      const read = this.cow.read(buf, areaLocation(this.issued, this.epa) * this.chunkBytes).then(() => buf);
      read.catch(() => {}); // read-ahead past the current area may fail harmlessly; needed reads are awaited
      this.inFlight.push(read);
      this.issued++;
    }
    const read = this.inFlight.shift();
    if (read) return read;
    throw pastTheEnd(area, areaLocation(area, this.epa) * this.chunkBytes, this.chunkBytes, this.cow.size);
  }
}

function pastTheEnd(area: number, at: number, chunkBytes: number, size: number): CorruptStoreError {
  return new CorruptStoreError(`metadata area ${area} (bytes ${at}-${at + chunkBytes - 1}) lies past the end of the COW (${size} bytes): truncated store?`);
}

/** The scan's result once the current (not full) area is found. */
function scanned(fullAreas: Uint8Array[], current: Buffer, area: number, length: number, maxNew: number, recordCount: number, epa: number): AreaScan {
  const nextFree = skipMetadataChunk(Math.max(FIRST_DATA_CHUNK, maxNew + 1), epa);
  return { fullAreas, current, currentArea: area, currentCommitted: length, nextFree, recordCount };
}

/** readAreas for big chunks: one area at a time, each read in pieces up to its terminator (big-chunks.ts). */
async function readBigAreas(cow: BlockDevice, chunkSectors: number): Promise<AreaScan> {
  const epa = exceptionsPerArea(chunkSectors);
  const chunkBytes = chunkSectors * SECTOR_BYTES;
  const fullAreas: Uint8Array[] = [];
  let maxNew = -1;
  let recordCount = 0;
  for (let area = 0; ; area++) {
    const at = areaLocation(area, epa) * chunkBytes;
    if (at + chunkBytes > cow.size) throw pastTheEnd(area, at, chunkBytes, cow.size);
    const { area: buf, summary } = await readBigArea(cow, at, chunkBytes);
    recordCount += summary.length;
    maxNew = Math.max(maxNew, summary.maxNewChunk);
    if (summary.length < epa) return scanned(fullAreas, buf, area, summary.length, maxNew, recordCount, epa);
    fullAreas.push(buf);
  }
}

/** Read and scan every metadata area up to the first one that is not full. */
export async function readAreas(cow: BlockDevice, chunkSectors: number): Promise<AreaScan> {
  if (isBigChunk(chunkSectors * SECTOR_BYTES)) return readBigAreas(cow, chunkSectors);
  const epa = exceptionsPerArea(chunkSectors);
  const areas = new AreaPrefetcher(cow, chunkSectors);
  const fullAreas: Uint8Array[] = [];
  let maxNew = -1;
  let recordCount = 0;
  for (let area = 0; ; area++) {
    const buf = await areas.next(area);
    const { length, maxNewChunk } = summarizeArea(buf);
    recordCount += length;
    maxNew = Math.max(maxNew, maxNewChunk);
    if (length === epa) {
      fullAreas.push(buf);
      continue;
    }
    const current = buf.length < SLAB_BYTES ? Buffer.from(buf) : buf; // do not pin a whole slab
    current.fill(0, length * RECORD_BYTES); // records after the terminator are garbage: never let a later commit revive them
    return scanned(fullAreas, current, area, length, maxNew, recordCount, epa);
  }
}
