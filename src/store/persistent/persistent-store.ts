// The persistent exception store (P and PO): the kernel's on-disk format (see format.ts), with
// the kernel's allocation, group commit, durability order, invalidation and status numbers.
//
// Commit path (persistent_commit_exception), for each batch:
//   1. Committed exceptions are taken in allocation order (a later chunk waits for every earlier
//      prepared one) and written into the in-memory current area, at most up to its end.
//   2. If that fills the area, the next area's chunk is zeroed on disk (a plain write).
//   3. cow.flush(): the data of every chunk in the batch, and step 2, are durable (the PREFLUSH).
//   4. The current area chunk is written with FUA. Only now do the batch's commits resolve.
//   5. A full area makes the next one current (in memory: zeroed).
// Exceptions committed while a batch is being written form the next batch (group commit). Any
// failure in 2-4 invalidates the store (valid=0 on disk) and rejects the whole batch.
// Unlike the kernel, a batch is written as soon as the oldest prepared exception is committed;
// the kernel also waits for every other exception in flight, which only adds latency here.
import { BlockError } from '../../block/errors.ts';
import type { BlockDevice } from '../../block/device.ts';
import { errorText } from '../../common/error-text.ts';
import { SECTOR_BYTES } from '../../common/sectors.ts';
import type { PersistentKind } from '../../common/snapshot-kind.ts';
import type { Logger } from '../../log.ts';
import type { ExceptionStore, StoreState, StoreUsage } from '../exception-store.ts';
import { cowSectors, formatStatus, refreshDeviceSize } from '../usage.ts';
import { AllocationQueue, type QueuedCommit } from './allocation-queue.ts';
import type { AreaScan } from './area-reader.ts';
import { areaLocation, encodeHeader, exceptionsPerArea, scanArea, skipMetadataChunk, writeRecord } from './format.ts';

export interface PersistentStoreInit {
  kind: PersistentKind;
  cow: BlockDevice;
  chunkSectors: number;
  logger: Logger;
  /** false: the header says valid=0; the store opens invalid and loads nothing. */
  valid: boolean;
  scan: AreaScan;
}

export class PersistentStore implements ExceptionStore {
  readonly kind: PersistentKind;
  readonly chunkSectors: number;
  readonly chunkBytes: number;
  readonly cow: BlockDevice;
  readonly recordCount: number;
  private readonly logger: Logger;
  private readonly epa: number;
  private currentState: StoreState;
  private closed = false;
  private unloaded: Uint8Array[] | null;
  private area: Buffer;
  private currentArea: number;
  private currentCommitted: number;
  private nextFree: number;
  private readonly queue = new AllocationQueue();
  private inFlight: QueuedCommit[] = [];
  private writing = false;
  private idle: Promise<void> = Promise.resolve();
  private zeroChunk: Buffer | null = null;
  private headerWrite: Promise<void> | null = null;

  constructor(init: PersistentStoreInit) {
    this.kind = init.kind;
    this.cow = init.cow;
    this.chunkSectors = init.chunkSectors;
    this.chunkBytes = init.chunkSectors * SECTOR_BYTES;
    this.logger = init.logger;
    this.epa = exceptionsPerArea(init.chunkSectors);
    this.currentState = init.valid ? 'valid' : 'invalid';
    const scan = init.scan;
    this.recordCount = scan.recordCount;
    this.unloaded = scan.fullAreas;
    this.area = scan.current;
    this.currentArea = scan.currentArea;
    this.currentCommitted = scan.currentCommitted;
    this.nextFree = scan.nextFree;
  }

  get state(): StoreState {
    return this.currentState;
  }

  load(add: (oldChunk: number, newChunk: number) => void): void {
    if (this.unloaded === null) throw new Error('load() may be called only once');
    const full = this.unloaded;
    this.unloaded = null; // the raw areas are released as soon as they are replayed
    if (this.currentState === 'invalid') return;
    for (const area of full) scanArea(area, add);
    scanArea(this.area, add);
  }

  prepare(): number {
    this.checkUsable();
    const chunk = this.nextFree;
    if ((chunk + 1) * this.chunkSectors > cowSectors(this.cow)) {
      throw new BlockError('ENOSPC', `persistent COW store full: chunk ${chunk} does not fit in ${this.cow.size} bytes`);
    }
    this.nextFree = skipMetadataChunk(chunk + 1, this.epa);
    this.queue.add(chunk);
    return chunk;
  }

  commit(oldChunk: number, newChunk: number): Promise<void> {
    try {
      this.checkUsable();
    } catch (err) {
      return Promise.reject(err);
    }
    const done = this.queue.commit(newChunk, oldChunk);
    this.kick();
    return done;
  }

  private checkUsable(): void {
    if (this.closed) throw new BlockError('ESHUTDOWN', 'exception store is closed');
    if (this.currentState === 'invalid') throw new BlockError('EIO', 'snapshot is invalid');
  }

  /** Start the batch writer unless it runs already or nothing is ready. */
  private kick(): void {
    if (this.writing || !this.queue.headReady()) return;
    this.writing = true;
    this.idle = this.writeBatches();
  }

  private async writeBatches(): Promise<void> {
    try {
      while (this.currentState !== 'invalid' && this.queue.headReady()) await this.writeBatch();
    } finally {
      this.writing = false; // synchronously after the last check: a commit arriving later kicks again
    }
  }

  private async writeBatch(): Promise<void> {
    const batch = this.queue.takeReady(this.epa - this.currentCommitted);
    for (const entry of batch) writeRecord(this.area, this.currentCommitted++, entry.oldChunk, entry.newChunk);
    const full = this.currentCommitted === this.epa;
    this.inFlight = batch;
    let failure: unknown = null;
    try {
      if (full) await this.cow.write(this.zeroes(), this.areaOffset(this.currentArea + 1));
      await this.cow.flush();
      await this.cow.write(this.area, this.areaOffset(this.currentArea), { fua: true });
    } catch (err) {
      failure = err;
    }
    this.inFlight = [];
    if (full) {
      this.currentArea++;
      this.currentCommitted = 0;
      this.area.fill(0);
    }
    if (failure !== null) {
      const err = new BlockError('EIO', `metadata write failed: ${errorText(failure)}`, { cause: failure });
      for (const entry of batch) entry.reject(err);
      await this.invalidate(err.message);
    } else if (this.currentState === 'invalid') {
      for (const entry of batch) entry.reject(new BlockError('EIO', 'snapshot was invalidated during the commit'));
    } else {
      for (const entry of batch) entry.resolve();
    }
  }

  private areaOffset(area: number): number {
    return areaLocation(area, this.epa) * this.chunkBytes;
  }

  private zeroes(): Buffer {
    this.zeroChunk ??= Buffer.alloc(this.chunkBytes);
    return this.zeroChunk;
  }

  async invalidate(reason: string): Promise<void> {
    if (this.currentState === 'invalid') {
      await this.headerWrite;
      return;
    }
    this.currentState = 'invalid';
    this.logger.warn({ reason }, 'Invalidating snapshot');
    const err = new BlockError('EIO', `snapshot invalidated: ${reason}`);
    for (const entry of this.inFlight) entry.reject(err);
    this.queue.failAll(err);
    this.headerWrite = this.writeInvalidHeader();
    await this.headerWrite;
  }

  /** The kernel's drop_snapshot: the whole header chunk with valid=0 (with FUA here; the kernel does not flush). */
  private async writeInvalidHeader(): Promise<void> {
    try {
      await this.cow.write(encodeHeader(this.chunkSectors, false), 0, { fua: true });
    } catch (err) {
      // As the kernel: the store is invalid in memory whatever happens; a failed header write is only logged.
      this.logger.error({ err }, 'writing the invalidated header failed');
    }
  }

  overflow(): void {
    if (this.kind !== 'PO') throw new Error('overflow() is for PO stores only; a full P store is invalidated');
    if (this.currentState === 'valid') this.currentState = 'overflow';
  }

  resize(): number {
    return refreshDeviceSize(this.cow);
  }

  usage(): StoreUsage {
    return {
      allocatedSectors: this.nextFree * this.chunkSectors,
      totalSectors: cowSectors(this.cow),
      metadataSectors: (this.currentArea + 2) * this.chunkSectors,
    };
  }

  status(): string {
    return formatStatus(this.currentState, this.usage());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.writing) await this.idle;
    await this.headerWrite;
    // Commits still queued wait for chunks that were prepared but never committed: fail them.
    this.queue.failAll(new BlockError('ESHUTDOWN', 'exception store closed before the commit'));
    this.unloaded = null;
  }
}
