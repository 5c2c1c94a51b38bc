// The persistent exception store (P and PO): the kernel's on-disk format (see format.ts), with
// the kernel's allocation, group commit, durability order, invalidation and status numbers.
//
// Commit path (persistent_commit_exception), pipelined so that one flush serves two batches. A
// writer loop runs while a batch is ready or an area write is not yet durable; each turn:
//   1. Committed exceptions are taken in allocation order (a later chunk waits for every earlier
//      prepared one): the batch. Their records go into the in-memory current area (free: the
//      previous turn's area write has completed); when it fills, on into the next (step 5).
//   2. For every area that fills, its successor's chunk is zeroed on disk (a plain write).
//   3. cow.flush(), which makes durable: the data of every chunk in the batch (written before
//      its commit() was called), step 2's zeroing, and the previous turn's area write (step 4).
//      The previous turn's batch resolves now.
//   4. The area chunks are written. When the batch spans areas, each is written with FUA, in
//      parallel (every full area's successor is durable already, so any completion order is
//      safe), and the batch resolves. Otherwise the one area chunk is written: as a plain write
//      if a further batch is ready and the new records lie in one logical block of the area:
//      the next turn's flush (step 3) makes it durable, and a power cut before that leaves the
//      block old or new, never records after a terminator. Otherwise with FUA (the kernel's PREFLUSH+FUA): the batch resolves when the
//      write completes, and the loop ends unless more commits arrived meanwhile.
//   5. A full area makes the next one current (in memory: zeroed) at once, in step 1.
// So every exception keeps the kernel's order: its data is durable before the record naming it
// is written, a full area is written only after its zeroed successor is durable, and a commit
// resolves only once its record is durable. A lone commit costs two syncs, as in the kernel
// (flush, FUA write); under a steady stream a batch costs one, the flush that covers its data
// also covering the previous batch's area write (two when its records cross a block boundary).
// Any failure in 2-4 invalidates the store (valid=0 on disk) and rejects every batch not yet
// resolved, the one written in the previous turn included. Unlike the kernel, a batch is written
// as soon as the oldest prepared exception is committed; the kernel also waits for every other
// exception in flight, which only adds latency here.
import { BlockError } from '../../block/errors.ts';
import type { BlockDevice } from '../../block/device.ts';
import { errorText } from '../../common/error-text.ts';
import { SECTOR_BYTES } from '../../common/sectors.ts';
import type { PersistentKind } from '../../common/snapshot-kind.ts';
import type { Logger } from '../../log.ts';
import type { MergeableStore, MergeRun, StoreState, StoreUsage } from '../exception-store.ts';
import { cowSectors, formatStatus, refreshDeviceSize } from '../usage.ts';
import { AllocationQueue, type QueuedCommit } from './allocation-queue.ts';
import type { AreaScan } from './area-reader.ts';
import { areaHead, isBigChunk, readAreaChunk, writeHeader, writeZeroes } from './big-chunks.ts';
import { RECORD_BYTES, areaLocation, clearRecord, exceptionsPerArea, readRecord, scanArea, skipMetadataChunk, writeRecord } from './format.ts';

/** An area chunk to write in a commit turn, with the indexes of the records it gains. */
interface AreaWrite {
  offset: number;
  data: Buffer;
  first: number;
  last: number;
}

export interface PersistentStoreInit {
  kind: PersistentKind;
  cow: BlockDevice;
  chunkSectors: number;
  logger: Logger;
  /** false: the header says valid=0; the store opens invalid and loads nothing. */
  valid: boolean;
  scan: AreaScan;
}

export class PersistentStore implements MergeableStore {
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
  /** Taken from the queue, not settled: the batch being written and the previous one, written but not yet durable. */
  private unsynced: QueuedCommit[] = [];
  private writing = false;
  private idle: Promise<void> = Promise.resolve();
  private zeroChunk: Buffer | null = null;
  private headerWrite: Promise<void> | null = null;
  /** Areas before the current one read back for a merge batch, by index. */
  private readonly mergeAreas = new Map<number, Buffer>();
  private mergeBroken = false;

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

  /** Start the writer loop unless it runs already or nothing is ready. */
  private kick(): void {
    if (this.writing || !this.queue.headReady()) return;
    this.writing = true;
    this.idle = this.writeBatches();
  }

  private async writeBatches(): Promise<void> {
    try {
      while (this.currentState !== 'invalid' && (this.unsynced.length > 0 || this.queue.headReady())) await this.commitTurn();
    } finally {
      this.writing = false; // synchronously after the last check: a commit arriving later kicks again
      this.unsynced = []; // empty, or rejected already by the invalidation that stopped the loop
    }
  }

  /**
   * Take every ready commit into the in-memory areas (step 1), going on into the next area when
   * one fills (step 5). Returns the batch, the area chunks to write and the areas to zero first.
   */
  private takeBatch(): { batch: QueuedCommit[]; areaWrites: AreaWrite[]; zeroings: number[] } {
    const batch: QueuedCommit[] = [];
    const areaWrites: AreaWrite[] = [];
    const zeroings: number[] = [];
    for (;;) {
      const taken = this.queue.takeReady(this.epa - this.currentCommitted);
      if (taken.length === 0) break;
      const first = this.currentCommitted;
      for (const entry of taken) writeRecord(this.area, this.currentCommitted++, entry.oldChunk, entry.newChunk);
      for (const entry of taken) batch.push(entry); // not push(...taken): an area of a big chunk holds more records than call arguments fit
      const last = this.currentCommitted - 1;
      const write = { offset: this.areaOffset(this.currentArea), data: areaHead(this.cow, this.area, last), first, last };
      areaWrites.push(write);
      if (this.currentCommitted < this.epa) break;
      // Full: its successor is zeroed on disk before it is written (step 2); the next area
      // becomes current in memory, and the full one keeps its own buffer until written.
      zeroings.push(this.areaOffset(this.currentArea + 1));
      this.currentArea++;
      this.currentCommitted = 0;
      this.area = Buffer.alloc(this.chunkBytes);
    }
    return { batch, areaWrites, zeroings };
  }

  /** One turn of the commit path (see the top of this file). */
  private async commitTurn(): Promise<void> {
    const previous = this.unsynced; // its area write has completed but is not durable yet
    const { batch, areaWrites, zeroings } = this.takeBatch();
    this.unsynced = [...previous, ...batch];
    try {
      for (const offset of zeroings) await this.zeroArea(offset);
      await this.cow.flush();
      this.unsynced = batch;
      this.settle(previous);
      if (batch.length === 0 || this.currentState === 'invalid') return;
      if (areaWrites.length > 1) {
        // Several areas (a full one and the next): each written with FUA, in parallel. Any
        // order is safe: a full area's successor is already durable (zeroed), and an area is
        // read only after a full predecessor.
        // allSettled: a failure is handled only once no write is still in flight (close() may follow).
        const results = await Promise.allSettled(areaWrites.map((w) => this.cow.write(w.data, w.offset, { fua: true })));
        for (const r of results) if (r.status === 'rejected') throw r.reason;
      } else {
        // Plain only if a next batch's flush will cover it and a torn write cannot leave records
        // after a terminator (the new records lie in one logical block, which is written atomically).
        const [w] = areaWrites;
        const fua = this.blockOf(w.first) !== this.blockOf(w.last) || !this.queue.headReady();
        await this.cow.write(w.data, w.offset, { fua });
        if (!fua) return;
      }
      this.unsynced = [];
      this.settle(batch);
    } catch (err) {
      const failed = this.unsynced;
      this.unsynced = [];
      const failure = new BlockError('EIO', `metadata write failed: ${errorText(err)}`, { cause: err });
      for (const entry of failed) entry.reject(failure);
      await this.invalidate(failure.message);
    }
  }

  /** Settle commits whose records are durable: resolved, unless the store was invalidated meanwhile. */
  private settle(entries: QueuedCommit[]): void {
    if (this.currentState === 'invalid') {
      for (const entry of entries) entry.reject(new BlockError('EIO', 'snapshot was invalidated during the commit'));
    } else {
      for (const entry of entries) entry.resolve();
    }
  }

  /** The logical block of the area chunk that holds record `index`. */
  private blockOf(index: number): number {
    return Math.floor((index * RECORD_BYTES) / this.cow.blockSize);
  }

  private areaOffset(area: number): number {
    return areaLocation(area, this.epa) * this.chunkBytes;
  }

  /** Zero an area chunk on disk (plain writes): one kept chunk of zeroes, or pieces for a big chunk. */
  private zeroArea(offset: number): Promise<void> {
    if (isBigChunk(this.chunkBytes)) return writeZeroes(this.cow, offset, this.chunkBytes);
    this.zeroChunk ??= Buffer.alloc(this.chunkBytes);
    return this.cow.write(this.zeroChunk, offset);
  }

  async invalidate(reason: string): Promise<void> {
    if (this.currentState === 'invalid') {
      await this.headerWrite;
      return;
    }
    this.currentState = 'invalid';
    this.logger.warn({ reason }, 'Invalidating snapshot');
    const err = new BlockError('EIO', `snapshot invalidated: ${reason}`);
    for (const entry of this.unsynced) entry.reject(err);
    this.queue.failAll(err);
    this.headerWrite = this.writeInvalidHeader();
    await this.headerWrite;
  }

  /** The kernel's drop_snapshot: the whole header chunk with valid=0 (with FUA here; the kernel does not flush). */
  private async writeInvalidHeader(): Promise<void> {
    try {
      await writeHeader(this.cow, this.chunkSectors, false, { whole: false, fua: true });
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

  // ---- merge (the kernel's persistent_prepare_merge and persistent_commit_merge): exceptions go
  // back to the origin from the end of the table, in runs of consecutive ones within an area. A
  // batch may take runs from several areas (going back); its commit clears them area by area.

  async prepareMerge(maxChunks = 1): Promise<MergeRun[]> {
    this.checkMergeable();
    while (this.writing) await this.idle;
    const runs: MergeRun[] = [];
    let area = this.currentArea;
    let committed = this.currentCommitted;
    for (let total = 0; total < maxChunks; ) {
      if (committed === 0) {
        if (area === 0) break; // every exception is merged
        area--;
        committed = this.epa; // an area before the current one is full
      }
      const buf = await this.areaForMerge(area);
      const last = readRecord(buf, committed - 1);
      let count = 1;
      for (; count < committed; count++) {
        const r = readRecord(buf, committed - 1 - count);
        if (r.oldChunk !== last.oldChunk - count || r.newChunk !== last.newChunk - count) break;
      }
      runs.push({ count, oldChunk: last.oldChunk + 1 - count, newChunk: last.newChunk + 1 - count });
      total += count;
      committed -= count;
    }
    return runs;
  }

  async commitMerge(count: number): Promise<void> {
    this.checkMergeable();
    const writes: { offset: number; data: Buffer }[] = [];
    for (let left = count; left > 0; ) {
      if (this.currentCommitted === 0) {
        if (this.currentArea === 0) throw new Error(`commitMerge(${count}): more records than the table holds`);
        this.area = await this.areaForMerge(this.currentArea - 1);
        this.mergeAreas.delete(this.currentArea - 1);
        this.currentArea--;
        this.currentCommitted = this.epa;
      }
      const n = Math.min(left, this.currentCommitted);
      const top = this.currentCommitted - 1;
      for (let i = 0; i < n; i++) clearRecord(this.area, top - i);
      this.currentCommitted -= n;
      left -= n;
      writes.push({ offset: this.areaOffset(this.currentArea), data: areaHead(this.cow, this.area, top) });
    }
    // As the kernel: next_free only feeds the status numbers now (nothing is allocated while merging).
    this.nextFree = areaLocation(this.currentArea, this.epa) + this.currentCommitted + 1;
    try {
      // PREFLUSH, then the area with FUA (the kernel's order). Several areas, highest first, then
      // one flush: any subset of them on disk after a crash only hides records whose data the
      // origin already holds durably (the caller flushed it), never revives a cleared one.
      await this.cow.flush();
      if (writes.length === 1) await this.cow.write(writes[0].data, writes[0].offset, { fua: true });
      else {
        for (const w of writes) await this.cow.write(w.data, w.offset);
        await this.cow.flush();
      }
    } catch (err) {
      this.mergeBroken = true; // memory is ahead of the disk now: a restart resumes from the disk
      throw err;
    }
  }

  private checkMergeable(): void {
    this.checkUsable();
    if (this.mergeBroken) throw new BlockError('EIO', 'a merge commit failed: restart the daemon to resume the merge from the COW');
  }

  /** Area `index` while merging: the current one, or one before it read back from disk (kept until merged). */
  private async areaForMerge(index: number): Promise<Buffer> {
    if (index === this.currentArea) return this.area;
    let buf = this.mergeAreas.get(index);
    if (!buf) {
      buf = await readAreaChunk(this.cow, this.areaOffset(index), this.chunkBytes);
      this.mergeAreas.set(index, buf);
    }
    return buf;
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
