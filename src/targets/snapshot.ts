// The `snapshot` target: a writable device showing the origin as it was when the snapshot was
// activated, plus the snapshot's own writes. Design notes (after the kernel's dm-snap.c):
//
// - Chunk c of the snapshot lives in the COW store if the store has an exception for c, else it
//   is still the origin's chunk c. Reads go to one or the other; writes only ever go to the COW.
// - An exception is made by allocating a COW chunk (store.prepare, synchronous, so allocation
//   order is request order), filling it (copying the origin chunk, or a snapshot write that covers
//   the whole chunk), committing it (durable), inserting it in the table, and waiting until no
//   snapshot read is still reading the origin chunk. Only then is it released: origin writes
//   blocked on it may overwrite the origin chunk, and parked snapshot writes go to the COW.
// - One pending exception per chunk: origin writes and snapshot writes racing on a chunk join it,
//   so no chunk ever gets two COW chunks. Lookups check pending before complete for origin writes,
//   so the origin chunk stays untouched until the pending exception is gone.
// - Invalid (full non-PO store, I/O error): every snapshot I/O fails with EIO, origin writes skip
//   the snapshot. Overflow (PO full from a snapshot write): reads work, all writes fail.
// - Memory: a copy from the origin takes its buffers as leases from the pool, whose leased bytes
//   are capped (block/buffer-pool.ts), in pieces of at most COPY_PIECE_BYTES (origin-copy.ts), so
//   a 1 GiB chunk or a burst of copies for many chunks and snapshots waits for room instead of
//   allocating it. A fill holds leases only while it reads and writes; it releases them before the
//   commit, so nothing holding a lease ever waits for one (docs/memory.md).
import { BufferPool } from '../block/buffer-pool.ts';
import type { BlockDevice, WriteOptions, ZeroOptions } from '../block/device.ts';
import { BlockError, isBlockError } from '../block/errors.ts';
import { splitByUnit } from '../block/ranges.ts';
import type { ExceptionStore } from '../store/exception-store.ts';
import type { CarriedTransient } from '../store/transient-store.ts';
import { ExceptionTable } from '../store/exception-table.ts';
import { silentLogger, type Logger } from '../log.ts';
import { ChangedMap } from './changed-map.ts';
import { allPieces } from './all-pieces.ts';
import { ChunkTracker } from './chunk-tracker.ts';
import { CowRun } from './cow-run.ts';
import { COPY_PIECE_BYTES, copyOriginRange } from './origin-copy.ts';
import type { SharedOriginRead } from './shared-origin-read.ts';
import { newPendingException, type PendingException } from './pending-exception.ts';
import { SNAPSHOT_CAPS, writeZeroes } from './zero-write.ts';

/**
 * flush false: leave writes not yet flushed in the page cache (a live restart: the successor opens
 * the same files, and a client's next FLUSH there syncs them, since fdatasync covers the whole file).
 */
export interface CloseOptions {
  flush?: boolean;
}

export interface SnapshotOptions {
  logger?: Logger;
  /** Where copy-out buffers come from (shared with the NBD server in the daemon). */
  bufferPool?: BufferPool;
  /** Metrics hook, told of every copy-out that completed (see CopyObserver). */
  onCopy?: CopyObserver;
}

/**
 * Told of each origin chunk copied into the COW once its exception is complete (copied, committed
 * durable, published), with the time since it was allocated in ms: what an origin write waits for.
 */
export type CopyObserver = (snapshot: Snapshot, durationMs: number) => void;

/** Who asked for an exception: it decides what a full PO store does (overflow vs invalidate). */
type Cause = 'origin' | 'snapshot';

/** The whole-chunk exceptions one request makes, and the COW writes that carry their data. */
interface WholeChunks {
  exceptions: PendingException[];
  written: Promise<void>[];
}

export class Snapshot implements BlockDevice {
  readonly store: ExceptionStore;
  readonly size: number;
  readonly blockSize: number;
  readonly readOnly = false;
  readonly caps = SNAPSHOT_CAPS;
  readonly chunkBytes: number;
  /** The chunks that changed since the snapshot was taken (its exceptions, pending ones included). */
  readonly changed: ChangedMap;
  private readonly source: BlockDevice;
  private readonly table: ExceptionTable;
  private readonly pending = new Map<number, PendingException>();
  private readonly tracked = new ChunkTracker();
  private readonly log: Logger;
  private readonly pool: BufferPool;
  private readonly onCopy: CopyObserver | undefined;
  private closed = false;
  /** Settles once the invalidation (valid=0 header) is written; origin writes wait for it. */
  private invalidation: Promise<void> | undefined;

  /** `source` is the origin's underlying device; `size` the snapshot's length (the origin's at creation). */
  constructor(source: BlockDevice, store: ExceptionStore, size: number, opts: SnapshotOptions = {}) {
    this.source = source;
    this.store = store;
    this.size = size;
    this.blockSize = Math.max(source.blockSize, store.cow.blockSize);
    this.chunkBytes = store.chunkBytes;
    this.log = opts.logger ?? silentLogger();
    this.onCopy = opts.onCopy;
    this.pool = opts.bufferPool ?? new BufferPool(8 * Math.min(store.chunkBytes, COPY_PIECE_BYTES));
    this.table = new ExceptionTable(store.recordCount);
    this.changed = new ChangedMap(size, store.chunkBytes);
    this.table.insertAll((add) => store.load((oldChunk, newChunk) => (this.changed.mark(oldChunk), add(oldChunk, newChunk))));
  }

  /** An N snapshot's in-memory state for a live restart's successor; undefined for P/PO. */
  carryTransient(): CarriedTransient | undefined {
    const state = this.store.carry?.();
    if (!state) return undefined;
    const exceptions = new Float64Array(this.table.size * 2);
    let i = 0;
    for (const [oldChunk, newChunk] of this.table.entries()) {
      exceptions[i++] = oldChunk;
      exceptions[i++] = newChunk;
    }
    return { ...state, exceptions };
  }

  /** Number of completed exceptions. */
  get exceptionCount(): number {
    return this.table.size;
  }

  /** The COW chunk holding origin chunk `chunk`, or -1 (merge.ts routes the origin's I/O by it). */
  mappedChunk(chunk: number): number {
    return this.table.lookup(chunk);
  }

  /** Drop a completed exception whose chunk was merged back into the origin (merge.ts). */
  forgetException(chunk: number): void {
    this.table.delete(chunk);
  }

  /** The info field of `dmsetup status` for this snapshot (total: the COW's current size). */
  status(): string {
    this.refreshCowSize();
    return this.store.status();
  }

  /** Re-read the COW's size, so a COW grown underneath shows at once (as the kernel's get_dev_size). */
  refreshCowSize(): void {
    if (!this.closed) this.store.resize();
  }

  // ---- called by the snapshot-origin for each chunk an origin write touches

  /**
   * Ensure `chunk` is preserved before the origin overwrites it. Undefined: nothing to wait for.
   * `shared` reads the origin chunk once for every snapshot preserving it for the same write.
   */
  preserve(chunk: number, shared: SharedOriginRead): Promise<void> | undefined {
    if (this.closed) return undefined;
    if (this.store.state === 'invalid') return this.invalidation;
    const pe = this.pending.get(chunk);
    if (pe) return pe.settled;
    if (this.table.lookup(chunk) >= 0) return undefined;
    const created = this.allocate(chunk, 'origin');
    if (!created) return this.invalidation; // full: the origin write waits for valid=0 on disk
    void this.complete([created], () => this.copyShared(created, shared), true);
    return created.settled;
  }

  // ---- BlockDevice

  async read(buf: Uint8Array, offset: number): Promise<void> {
    this.checkUsable();
    const cb = this.chunkBytes;
    if (Math.floor(offset / cb) === Math.floor((offset + buf.length - 1) / cb)) {
      return this.readPiece(buf, Math.floor(offset / cb), offset % cb);
    }
    const parts: Promise<void>[] = [];
    for (const p of splitByUnit(offset, buf.length, cb)) {
      parts.push(this.readPiece(buf.subarray(p.bufOffset, p.bufOffset + p.length), Math.floor(p.offset / cb), p.offset % cb));
    }
    await allPieces(parts);
  }

  async write(buf: Uint8Array, offset: number, opts?: WriteOptions): Promise<void> {
    this.checkWritable();
    const cb = this.chunkBytes;
    const first = Math.floor(offset / cb);
    if (first === Math.floor((offset + buf.length - 1) / cb)) return this.writePiece(buf, first, offset % cb, opts);
    // Every piece is allocated synchronously, in ascending chunk order, before anything waits.
    // Whole-chunk pieces that get consecutive new COW chunks, and pieces of existing exceptions
    // that are consecutive on the COW, are written with one call per run.
    const fresh = new CowRun(buf, (data, at) => this.store.cow.write(data, at));
    const mapped = new CowRun(buf, (data, at) => this.store.cow.write(data, at, opts));
    const parts: Promise<void>[] = [];
    const whole: WholeChunks = { exceptions: [], written: [] };
    try {
      for (const p of splitByUnit(offset, buf.length, cb)) {
        const chunk = Math.floor(p.offset / cb);
        const newChunk = this.table.lookup(chunk);
        if (newChunk >= 0) parts.push(mapped.add(newChunk * cb + (p.offset % cb), p.bufOffset, p.length));
        else if (p.length === cb && !this.pending.has(chunk)) {
          const refused = this.writeWholeChunk(fresh, whole, chunk, p.bufOffset);
          if (refused) parts.push(refused);
        } else parts.push(this.writePiece(buf.subarray(p.bufOffset, p.bufOffset + p.length), chunk, p.offset % cb, opts));
      }
    } finally {
      // Every piece's exception completes (or fails) and every piece is awaited, whatever happened.
      fresh.flush();
      mapped.flush();
      const { exceptions, written } = whole;
      // They all settle alike: the first one's outcome is the request's.
      if (exceptions.length > 0) parts.push(this.complete(exceptions, () => allPieces(written)).then(() => exceptions[0].done));
    }
    await allPieces(parts);
  }

  /** An empty flush goes to the COW only (exceptions are already durable when acknowledged). */
  async flush(): Promise<void> {
    this.checkUsable();
    await this.store.cow.flush();
  }

  async trim(_length: number, _offset: number): Promise<void> {
    throw new BlockError('ENOTSUP', 'snapshots do not support discard');
  }

  zero(length: number, offset: number, opts?: ZeroOptions): Promise<void> {
    return writeZeroes((b, o, w) => this.write(b, o, w), length, offset, opts);
  }

  /** Wait for exceptions in flight, then close the store and its COW device. Idempotent. */
  async close(opts: CloseOptions = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.pending.values()].map((pe) => pe.settled));
    // Snapshot writes to existing exceptions may not be flushed yet; a failure here must not keep
    // the store and the device open, so it is logged (those writes were never promised durable).
    if (opts.flush !== false) await this.store.cow.flush().catch((err: unknown) => this.log.error({ err }, 'flushing the COW at close failed'));
    await this.store.close();
    await this.store.cow.close();
  }

  // ---- internals

  private checkUsable(): void {
    if (this.closed) throw new BlockError('EIO', 'snapshot is closed');
    if (this.store.state === 'invalid') throw new BlockError('EIO', 'snapshot is invalid');
  }

  private checkWritable(): void {
    this.checkUsable();
    if (this.store.state === 'overflow') throw new BlockError('EIO', 'snapshot overflowed (PO store full)');
  }

  private async readPiece(buf: Uint8Array, chunk: number, within: number): Promise<void> {
    const newChunk = this.table.lookup(chunk);
    if (newChunk >= 0) return this.store.cow.read(buf, newChunk * this.chunkBytes + within);
    this.tracked.add(chunk);
    try {
      await this.source.read(buf, chunk * this.chunkBytes + within);
    } finally {
      this.tracked.remove(chunk);
    }
  }

  /**
   * A write of all of a chunk without an exception: it is the chunk's data, no copy from the
   * origin. The exception joins `whole`, completed with the request's others (complete()).
   * Returns a rejected promise if no exception could be made.
   */
  private writeWholeChunk(run: CowRun, whole: WholeChunks, chunk: number, bufOffset: number): Promise<void> | undefined {
    let pe: PendingException | undefined;
    try {
      pe = this.allocate(chunk, 'snapshot'); // throws EIO once an earlier piece invalidated the store
    } catch (err) {
      return Promise.reject(err);
    }
    if (!pe) return Promise.reject(this.noRoom(chunk));
    const written = run.add(pe.newChunk * this.chunkBytes, bufOffset, this.chunkBytes);
    if (whole.written.at(-1) !== written) whole.written.push(written); // one promise per COW run
    whole.exceptions.push(pe);
    return undefined;
  }

  private noRoom(chunk: number): BlockError {
    return new BlockError('EIO', `snapshot ${this.store.state}: no room for chunk ${chunk}`);
  }

  /** A write within one chunk: to its exception, joining a pending one, or making one. */
  private async writePiece(data: Uint8Array, chunk: number, within: number, opts?: WriteOptions): Promise<void> {
    const cb = this.chunkBytes;
    const mapped = this.table.lookup(chunk);
    if (mapped >= 0) return this.store.cow.write(data, mapped * cb + within, opts);
    const pe = this.pending.get(chunk);
    if (!pe) {
      const created = this.allocate(chunk, 'snapshot');
      if (!created) throw this.noRoom(chunk);
      // A whole-chunk write is the chunk's data; otherwise the new chunk is the origin's with this
      // write laid over it. Either is written once, and the commit makes the write durable along
      // with the exception (so FUA needs nothing more).
      const whole = within === 0 && data.length === cb;
      void this.complete([created], () => (whole ? this.store.cow.write(data, created.newChunk * cb) : this.copyFromOrigin(created, data, within)), !whole);
      return created.done;
    }
    await pe.done;
    this.checkUsable(); // accepted before any overflow, like a bio the kernel already parked
    await this.store.cow.write(data, pe.newChunk * this.chunkBytes + within, opts);
  }

  /** Allocate a COW chunk for `chunk`; on a full store, overflow (PO, snapshot write) or invalidate. */
  private allocate(chunk: number, cause: Cause): PendingException | undefined {
    let newChunk: number;
    try {
      newChunk = this.prepareChunk();
    } catch (err) {
      if (!isBlockError(err) || err.errno !== 'ENOSPC') throw err;
      if (cause === 'snapshot' && this.store.kind === 'PO') {
        this.log.warn('COW store full: snapshot overflowed');
        this.store.overflow();
      } else {
        void this.invalidate('COW store full'); // preserve() hands this.invalidation to the origin write
      }
      return undefined;
    }
    const pe = newPendingException(chunk, newChunk);
    this.pending.set(chunk, pe);
    this.changed.mark(chunk); // before the chunk can read differently anywhere (changed-map.ts)
    return pe;
  }

  /**
   * store.prepare(), and when the store is full, once more after re-reading the COW's size: as in
   * the kernel, a COW grown while in use (a file extended, an LV resized) is used without a reload.
   */
  private prepareChunk(): number {
    try {
      return this.store.prepare();
    } catch (err) {
      if (!isBlockError(err) || err.errno !== 'ENOSPC') throw err;
      this.store.resize();
      return this.store.prepare();
    }
  }

  /**
   * Fill, commit, publish, drain tracked reads, release waiters, for exceptions made together: one,
   * or the whole chunks of one request (a 1 MiB write over 4 KiB chunks makes 256, and
   * per-exception promises and wake-ups were most of that path's CPU). Never throws: a failure
   * invalidates the snapshot and rejects every one of them. `copy`: the fill copies from the origin.
   */
  private async complete(exceptions: PendingException[], fill: () => Promise<void>, copy = false): Promise<void> {
    const observe = copy ? this.onCopy : undefined;
    const started = observe ? performance.now() : 0;
    try {
      await fill();
      await Promise.all(exceptions.map((pe) => this.store.commit(pe.oldChunk, pe.newChunk)));
      const reads: Promise<void>[] = [];
      for (const pe of exceptions) {
        this.table.insert(pe.oldChunk, pe.newChunk);
        const drained = this.tracked.drained(pe.oldChunk);
        if (drained) reads.push(drained);
      }
      if (reads.length > 0) await Promise.all(reads);
      for (const pe of exceptions) pe.resolve();
      observe?.(this, performance.now() - started);
    } catch (err) {
      const first = exceptions[0].oldChunk;
      const last = exceptions[exceptions.length - 1].oldChunk;
      await this.invalidate(`exception for chunk ${first === last ? first : `${first}-${last}`} failed: ${(err as Error).message}`);
      const failure = new BlockError('EIO', 'snapshot invalidated', { cause: err });
      for (const pe of exceptions) pe.reject(failure);
    } finally {
      for (const pe of exceptions) this.pending.delete(pe.oldChunk);
    }
  }


  /** Copy the origin chunk, read once for all snapshots by `shared`, to the new COW chunk. */
  private copyShared(pe: PendingException, shared: SharedOriginRead): Promise<void> {
    const start = pe.oldChunk * this.chunkBytes;
    const length = Math.min(this.chunkBytes, this.source.size - start);
    const at = pe.newChunk * this.chunkBytes;
    return shared.copy(start, length, (data, within, background) => this.store.cow.write(data, at + within, { background }));
  }

  /**
   * Copy the origin chunk to the new COW chunk, with `overlay` (a snapshot write) laid over it at
   * `within`. A chunk up to a copy piece is read into one leased buffer and written once; a bigger
   * one gets the write's bytes straight from the request and the rest from the origin in pieces.
   */
  private async copyFromOrigin(pe: PendingException, overlay: Uint8Array, within: number): Promise<void> {
    const cb = this.chunkBytes;
    const start = pe.oldChunk * cb;
    const length = Math.min(cb, this.source.size - start);
    const at = pe.newChunk * cb;
    if (length > COPY_PIECE_BYTES) return this.copyAround(start, length, at, overlay, within);
    const buf = this.pool.tryLease(length) ?? (await this.pool.lease(length));
    try {
      await this.source.read(buf, start);
      buf.set(overlay, within);
      await this.store.cow.write(buf, at);
    } finally {
      this.pool.endLease(buf);
    }
  }

  /** copyFromOrigin for a chunk bigger than a piece: origin bytes before and after the overlay, and the overlay. */
  private copyAround(start: number, length: number, at: number, overlay: Uint8Array, within: number): Promise<void> {
    const cow = this.store.cow;
    const end = within + overlay.length;
    const parts = [cow.write(overlay, at + within)];
    if (within > 0) parts.push(copyOriginRange(this.source, this.pool, start, within, (data, w) => cow.write(data, at + w)));
    if (end < length) parts.push(copyOriginRange(this.source, this.pool, start + end, length - end, (data, w) => cow.write(data, at + end + w)));
    return allPieces(parts);
  }

  /** Invalidate the snapshot for good (idempotent; persisted by P/PO stores). */
  invalidate(reason: string): Promise<void> {
    if (this.store.state !== 'invalid') this.log.error({ reason }, 'invalidating snapshot');
    // Always wait for the store: when it is already invalid, its valid=0 header write may still be
    // in flight, and origin writes released before it is durable could outrun it in a crash.
    this.invalidation = this.store.invalidate(reason).catch((err) => {
      // The header could not be written; the store is still invalid in memory, which is what matters now.
      this.log.error({ err }, 'could not persist snapshot invalidation');
    });
    return this.invalidation;
  }
}
