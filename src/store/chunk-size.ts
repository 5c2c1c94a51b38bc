// Chunk-size and store-type validation, exactly as the kernel's dm-exception-store.c does it, so
// the snapshot target can reuse it for the origin device as well.
import { MAX_CHUNK_SECTORS } from '../common/chunk-sectors.ts';
import { SECTOR_BYTES } from '../common/sectors.ts';
import type { SnapshotKind } from '../common/snapshot-kind.ts';
import { StoreConfigError } from './errors.ts';

/**
 * Throw StoreConfigError unless `chunkSectors` is a legal chunk size for devices with these
 * logical block sizes (bytes): a power of two, a multiple of every block size in sectors, and at
 * most 2^21 sectors. 0 ("use the default") is not accepted here; callers resolve it first.
 */
export function validateChunkSize(chunkSectors: number, ...blockSizes: number[]): void {
  if (!Number.isInteger(chunkSectors) || chunkSectors < 0 || chunkSectors > 0xffffffff) {
    throw new StoreConfigError(`Invalid chunk size ${chunkSectors}`);
  }
  if (chunkSectors === 0 || (chunkSectors & (chunkSectors - 1)) !== 0) {
    throw new StoreConfigError(`Chunk size ${chunkSectors} is not a power of 2`);
  }
  for (const blockSize of blockSizes) {
    if (chunkSectors % Math.max(1, blockSize / SECTOR_BYTES) !== 0) {
      throw new StoreConfigError(`Chunk size ${chunkSectors} is not a multiple of device blocksize (${blockSize} bytes)`);
    }
  }
  // A power of two by now, so this is the kernel's INT_MAX >> SECTOR_SHIFT limit.
  if (chunkSectors > MAX_CHUNK_SECTORS) throw new StoreConfigError(`Chunk size ${chunkSectors} is too high (the largest is ${MAX_CHUNK_SECTORS} sectors)`);
}

/**
 * The store-type table argument as the kernel reads it: the first character, case-insensitive,
 * P (persistent) or N (transient); after a P only the first character of the option may follow
 * and it must be O (overflow: "PO"). Anything after an N is ignored.
 */
export function parseStoreKind(arg: string): SnapshotKind {
  const type = arg.charAt(0).toUpperCase();
  if (type === 'N') return 'N';
  if (type !== 'P') throw new StoreConfigError(`Unknown exception store type "${arg}"`);
  if (arg.length === 1) return 'P';
  if (arg.charAt(1).toUpperCase() === 'O') return 'PO';
  throw new StoreConfigError(`Unsupported persistent store option "${arg.slice(1)}"`);
}
