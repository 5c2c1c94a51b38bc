// Reading the metadata areas of an existing persistent store at open time (the kernel's
// read_exceptions): areas 0, 1, 2... until the first one that is not full, with reads issued
// ahead so that a large store loads at the device's speed. The raw area chunks are kept for
// ExceptionStore.load(), which replays them into the caller's table without another copy.
import type { BlockDevice } from '../../block/device.ts';
import { CorruptStoreError } from '../errors.ts';
import { FIRST_DATA_CHUNK, RECORD_BYTES, SECTOR_BYTES, areaLocation, exceptionsPerArea, skipMetadataChunk, summarizeArea } from './format.ts';

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

/** Read and scan every metadata area. Throws CorruptStoreError if a needed area lies past the end of the COW. */
export async function readAreas(cow: BlockDevice, chunkSectors: number): Promise<AreaScan> {
  const chunkBytes = chunkSectors * SECTOR_BYTES;
  const epa = exceptionsPerArea(chunkSectors);
  const window = Math.max(1, Math.min(PREFETCH_MAX_AREAS, Math.floor(PREFETCH_BYTES / chunkBytes)));
  const inFlight: Promise<Buffer>[] = [];
  let issued = 0;
  const slabs = new SlabAllocator(chunkBytes);
  const issue = (upTo: number): void => {
    while (issued < upTo && (areaLocation(issued, epa) + 1) * chunkBytes <= cow.size) {
      const buf = slabs.take();
      const read = cow.read(buf, areaLocation(issued, epa) * chunkBytes).then(() => buf);
      read.catch(() => {}); // read-ahead past the current area may fail harmlessly; needed reads are awaited below
      inFlight.push(read);
      issued++;
    }
  };
  const fullAreas: Uint8Array[] = [];
  let maxNew = -1;
  let recordCount = 0;
  for (let area = 0; ; area++) {
    issue(area + window);
    const read = inFlight.shift();
    if (!read) {
      const at = areaLocation(area, epa) * chunkBytes;
      throw new CorruptStoreError(`metadata area ${area} (bytes ${at}-${at + chunkBytes - 1}) lies past the end of the COW (${cow.size} bytes): truncated store?`);
    }
    const buf = await read;
    const { length, maxNewChunk } = summarizeArea(buf);
    recordCount += length;
    maxNew = Math.max(maxNew, maxNewChunk);
    if (length === epa) {
      fullAreas.push(buf);
      continue;
    }
    const current = chunkBytes < SLAB_BYTES ? Buffer.from(buf) : buf; // do not pin a whole slab
    current.fill(0, length * RECORD_BYTES); // records after the terminator are garbage: never let a later commit revive them
    const nextFree = skipMetadataChunk(Math.max(FIRST_DATA_CHUNK, maxNew + 1), epa);
    return { fullAreas, current, currentArea: area, currentCommitted: length, nextFree, recordCount };
  }
}
