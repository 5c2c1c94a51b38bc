// Activating a persistent store (the kernel's read_header + persistent_read_metadata): read the
// header; a blank COW (magic 0) gets a fresh store; otherwise the header's chunk size wins, the
// version must be 1, an invalidated store opens as invalid, and a valid one has its areas read.
import type { BlockDevice } from '../../block/device.ts';
import { SECTOR_BYTES } from '../../common/sectors.ts';
import type { PersistentKind } from '../../common/snapshot-kind.ts';
import type { Logger } from '../../log.ts';
import { CorruptStoreError, StoreConfigError } from '../errors.ts';
import { validateChunkSize } from '../chunk-size.ts';
import { emptyScan, readAreas } from './area-reader.ts';
import { writeHeader, zeroChunk } from './big-chunks.ts';
import { DISK_VERSION, SNAP_MAGIC, decodeHeader, type DiskHeader } from './format.ts';
import { PersistentStore } from './persistent-store.ts';

/**
 * The kernel's DM_CHUNK_SIZE_DEFAULT_SECTORS (16 KiB): the chunk size read_header gives a new
 * store whose table said chunk size 0. Not nbdsnap's default (common/chunk-sectors.ts), which the
 * daemon always passes; only a caller of openStore with chunkSectors 0 gets this one.
 */
const DM_CHUNK_SIZE_DEFAULT_SECTORS = 32;

async function readHeader(cow: BlockDevice): Promise<DiskHeader> {
  const length = Math.max(SECTOR_BYTES, cow.blockSize);
  if (cow.size < length) throw new CorruptStoreError(`COW device too small (${cow.size} bytes) to hold a snapshot header`);
  const buf = Buffer.alloc(length);
  await cow.read(buf, 0);
  return decodeHeader(buf);
}

/** A blank COW: write the header and zero area 0 (plain writes; the first commit's flush makes them durable). */
async function initialise(cow: BlockDevice, chunkSectors: number): Promise<void> {
  const chunkBytes = chunkSectors * SECTOR_BYTES;
  if (cow.size < 2 * chunkBytes) {
    throw new StoreConfigError(`COW device too small (${cow.size} bytes) for a persistent store with ${chunkBytes}-byte chunks: it needs at least 2 chunks`);
  }
  await writeHeader(cow, chunkSectors, true, { whole: true });
  await zeroChunk(cow, chunkBytes, chunkBytes);
}

/** The chunk size an existing header imposes (validated as the kernel re-validates it). */
function headerChunkSize(header: DiskHeader, tableSectors: number, supplied: boolean, cow: BlockDevice, logger: Logger): number {
  if (header.chunkSectors === tableSectors) return tableSectors;
  try {
    validateChunkSize(header.chunkSectors, cow.blockSize);
  } catch (err) {
    throw new CorruptStoreError(`invalid on-disk chunk size ${header.chunkSectors}: ${(err as Error).message}`, { cause: err });
  }
  if (supplied) logger.warn(`chunk size ${header.chunkSectors} in device metadata overrides table chunk size of ${tableSectors}`);
  return header.chunkSectors;
}

/** `chunkSectors` 0: the default for a new store, the header's value for an existing one. Validated by the caller. */
export async function openPersistent(kind: PersistentKind, cow: BlockDevice, chunkSectors: number, logger: Logger): Promise<PersistentStore> {
  const tableSectors = chunkSectors || Math.max(DM_CHUNK_SIZE_DEFAULT_SECTORS, cow.blockSize / SECTOR_BYTES);
  const header = await readHeader(cow);
  if (header.magic === 0) {
    await initialise(cow, tableSectors);
    return new PersistentStore({ kind, cow, chunkSectors: tableSectors, logger, valid: true, scan: emptyScan(tableSectors) });
  }
  if (header.magic !== SNAP_MAGIC) {
    const found = header.magic.toString(16).padStart(8, '0');
    throw new CorruptStoreError(`Invalid or corrupt snapshot: bad magic 0x${found} in the COW header (expected 0x${SNAP_MAGIC.toString(16)} "SnAp")`);
  }
  const effective = headerChunkSize(header, tableSectors, chunkSectors !== 0, cow, logger);
  if (header.version !== DISK_VERSION) {
    throw new CorruptStoreError(`unable to handle snapshot disk version ${header.version} (only ${DISK_VERSION} is known)`);
  }
  if (header.valid === 0) {
    logger.warn('Snapshot is marked invalid');
    return new PersistentStore({ kind, cow, chunkSectors: effective, logger, valid: false, scan: emptyScan(0) });
  }
  const scan = await readAreas(cow, effective);
  return new PersistentStore({ kind, cow, chunkSectors: effective, logger, valid: true, scan });
}
