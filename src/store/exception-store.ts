// The exception-store contract (the equivalent of the kernel's dm_exception_store_type): the
// durable map from origin chunks to COW chunks, kept inside the COW device itself. Two
// implementations: persistent (P, PO; the kernel's on-disk format) and transient (N).
// Data chunk I/O does not go through the store: callers read and write `cow` directly at
// newChunk * chunkBytes; the store only allocates chunks and records exceptions.
import type { BlockDevice } from '../block/device.ts';
import type { SnapshotKind } from '../common/snapshot-kind.ts';

/** Alias of SnapshotKind, for the tests and support code that import it from here. */
export type StoreKind = SnapshotKind;

/** valid: normal. invalid: all snapshot I/O fails (persisted for P/PO). overflow: PO only, writes fail, reads work (not persisted). */
export type StoreState = 'valid' | 'invalid' | 'overflow';

/** The numbers `dmsetup status` prints for a snapshot, in 512-byte sectors. */
export interface StoreUsage {
  allocatedSectors: number;
  totalSectors: number;
  metadataSectors: number;
}

export interface ExceptionStore {
  readonly kind: SnapshotKind;
  /** Chunk size in sectors (for an existing persistent store: the header's value). */
  readonly chunkSectors: number;
  /** Chunk size in bytes. */
  readonly chunkBytes: number;
  /** The COW device the data chunks live on. */
  readonly cow: BlockDevice;
  readonly state: StoreState;
  /** How many exceptions load() will deliver (size the ExceptionTable with it). 0 for N and invalid stores. */
  readonly recordCount: number;
  /**
   * Call `add` for every committed exception found on disk, in record order (nothing for N or an
   * invalid store). Synchronous: openStore already read the areas. Call it once, before committing.
   */
  load(add: (oldChunk: number, newChunk: number) => void): void;
  /** Reserve the next free COW chunk (synchronous). Throws BlockError ENOSPC when the store is full. */
  prepare(): number;
  /**
   * Record oldChunk -> newChunk (newChunk from prepare()). Resolves once the record is durable, and
   * only after the chunk's data written before this call is durable too (group commit; records go
   * to disk in allocation order). Rejects with BlockError EIO if the store is or becomes invalid.
   */
  commit(oldChunk: number, newChunk: number): Promise<void>;
  /** Mark the store invalid for good (P/PO write valid=0 to the header); fails pending commits. */
  invalidate(reason: string): Promise<void>;
  /** PO only: enter the overflow state (snapshot writes fail; nothing written to disk). */
  overflow(): void;
  /** Re-read the COW size so that a grown COW becomes usable. Returns the size in bytes. */
  resize(): number;
  usage(): StoreUsage;
  /** The info field of `dmsetup status`: "Invalid", "Overflow" or "<alloc>/<total> <metadata>". */
  status(): string;
  /** N only: next_free and validity, for a live restart's successor (see CarriedTransient). */
  carry?(): { nextFreeSector: number; invalid: boolean } | undefined;
  /** Wait for in-flight commits, then release the store (not the COW device). */
  close(): Promise<void>;
}

/** A run of exceptions to merge back into the origin: `count` chunks from oldChunk (origin) and newChunk (COW). */
export interface MergeRun {
  count: number;
  oldChunk: number;
  newChunk: number;
}

/**
 * A store that can merge its exceptions back into the origin (the kernel's prepare_merge and
 * commit_merge; persistent stores only, as in the kernel). No new exception may be committed
 * while merging.
 */
export interface MergeableStore extends ExceptionStore {
  /**
   * The next runs, from the end of the table backwards: each run is the kernel's (consecutive in
   * both chunks, within one area); runs are added until they hold `maxChunks` chunks (default 1:
   * one run, as the kernel). Empty when every exception is merged.
   */
  prepareMerge(maxChunks?: number): Promise<MergeRun[]>;
  /** Drop the last `count` records, durably (the caller copied their chunks to the origin and flushed it). */
  commitMerge(count: number): Promise<void>;
}

export function isMergeable(store: ExceptionStore): store is MergeableStore {
  return store.kind !== 'N' && typeof (store as Partial<MergeableStore>).prepareMerge === 'function';
}
