// Merging a snapshot back into its origin: the kernel's snapshot-merge target (dm-snap.c:
// snapshot_merge_next_chunks, merge_callback, snapshot_merge_map, remove_single_exception_chunk).
// From the moment a merge starts, the origin shows the snapshot's content, and it keeps serving:
//
// - I/O routing (snapshot_merge_map): a chunk the snapshot still has an exception for is read
//   from, and written to, its COW chunk; any other chunk goes to the origin, writes through the
//   origin's normal path (copy-outs to the other snapshots; never to the merging one). A write to
//   a chunk of the run being merged waits until the run is committed, then goes to the origin.
//   Once the store is invalid (a failed merge write), everything goes to the origin, as the
//   kernel redirects an invalid merging snapshot.
// - The engine (snapshot_merge_next_chunks + merge_callback), one run at a time: the store gives
//   the run of consecutive exceptions at the end of its table (prepareMerge); the origin chunks it
//   will overwrite are first preserved in every other snapshot (origin_write_extent); writes to
//   the run's COW chunks in flight drain; the COW chunks are copied to the origin (in bounded
//   pieces); the origin is flushed; the store drops the run's records durably (commitMerge: flush,
//   then the area with FUA); the run's exceptions leave the table; waiting writes go on.
// A crash at any point leaves records that are either still there (the run is copied again: the
// same bytes, since no write reached those origin chunks meanwhile) or durably gone after the
// origin was flushed, so restarting the merge from what the store holds loses nothing.
import type { BufferPool } from '../block/buffer-pool.ts';
import type { BlockDevice, WriteOptions } from '../block/device.ts';
import { splitByUnit } from '../block/ranges.ts';
import { errorText } from '../common/error-text.ts';
import { isMergeable, type MergeableStore, type MergeRun } from '../store/exception-store.ts';
import type { Logger } from '../log.ts';
import { allPieces } from './all-pieces.ts';
import { ChunkTracker } from './chunk-tracker.ts';
import { copyOriginRange } from './origin-copy.ts';
import type { Snapshot } from './snapshot.ts';

/** What the merge needs of the origin it merges into. */
export interface MergeHost {
  /** The origin's real device. */
  readonly next: BlockDevice;
  readonly pool: BufferPool;
  /** Preserve the origin's bytes [offset, offset+length) in every other snapshot (origin_write_extent). */
  preserveOthers(offset: number, length: number): Promise<void>;
  /** The origin's normal write path: copy-outs to the other snapshots, then the origin. */
  originWrite(buf: Uint8Array, offset: number, opts?: WriteOptions): Promise<void>;
}

export type MergeState = 'merging' | 'done' | 'failed' | 'stopped';

/** The runs being merged now (a batch), and when they are committed. */
interface Batch {
  runs: MergeRun[];
  committed: Promise<void>;
}

/**
 * Chunks merged per batch: several of the kernel's runs (one per area at most with small chunks)
 * share one origin flush and one store commit, which is what a merge costs. Writes to a batch's
 * chunks wait for its commit, so a batch stays small enough to keep that wait short.
 */
export const MERGE_BATCH_BYTES = 16 * 1024 * 1024;
/** At most this many runs copied at once within a batch. */
const COPIES_IN_FLIGHT = 4;

export interface MergeOptions {
  totalChunks?: number;
  batchBytes?: number;
  afterBatch?: () => void | Promise<void>;
}

function inBatch(batch: Batch, chunk: number): boolean {
  return batch.runs.some((r) => chunk >= r.oldChunk && chunk < r.oldChunk + r.count);
}

export class SnapshotMerge {
  readonly snapshot: Snapshot;
  /** Chunks to merge when the merge started (given when it resumes after a restart). */
  readonly totalChunks: number;
  state: MergeState = 'merging';
  error: string | null = null;
  /** Settles (never rejects) when the merge is done, has failed, or was stopped. */
  readonly finished: Promise<void>;
  private readonly host: MergeHost;
  private readonly store: MergeableStore;
  private readonly log: Logger;
  private readonly cowWrites = new ChunkTracker();
  private current: Batch | null = null;
  private stopping = false;
  /** Resolves when stop() is called: a wait in afterBatch does not hold up a stop. */
  private readonly stopRequested: Promise<void>;
  private requestStop!: () => void;

  private readonly batchBytes: number;
  private readonly afterBatch: MergeOptions['afterBatch'];

  /**
   * `batchBytes`: chunk bytes merged per batch (default MERGE_BATCH_BYTES; one run at least).
   * `afterBatch`: called after each batch is committed (the daemon's crash-injection point and
   * test hold); the next batch waits for what it returns, or for a stop.
   */
  constructor(host: MergeHost, snapshot: Snapshot, log: Logger, opts: MergeOptions = {}) {
    if (!isMergeable(snapshot.store)) throw new Error(`a ${snapshot.store.kind} snapshot cannot be merged`);
    this.host = host;
    this.snapshot = snapshot;
    this.store = snapshot.store;
    this.log = log;
    this.totalChunks = Math.max(opts.totalChunks ?? 0, snapshot.exceptionCount);
    this.batchBytes = opts.batchBytes ?? MERGE_BATCH_BYTES;
    this.afterBatch = opts.afterBatch;
    this.stopRequested = new Promise<void>((resolve) => (this.requestStop = resolve));
    this.finished = this.loop();
  }

  /** Chunks merged so far (since the merge started, restarts included). */
  get mergedChunks(): number {
    return this.totalChunks - this.snapshot.exceptionCount;
  }

  /** Merged so far, in percent of what there was to merge (100 when there was nothing). */
  get percent(): number {
    return this.totalChunks === 0 ? 100 : Math.floor((this.mergedChunks / this.totalChunks) * 10000) / 100;
  }

  /** Stop after the run in progress (daemon shutdown); the store keeps the rest for the next start. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.requestStop();
    await this.finished;
  }

  // ---- I/O on the origin while merging (snapshot_merge_map)

  read(buf: Uint8Array, offset: number): Promise<void> {
    const cb = this.snapshot.chunkBytes;
    const parts: Promise<void>[] = [];
    for (const p of splitByUnit(offset, buf.length, cb)) {
      const piece = buf.subarray(p.bufOffset, p.bufOffset + p.length);
      const mapped = this.mapped(Math.floor(p.offset / cb));
      parts.push(mapped >= 0 ? this.store.cow.read(piece, mapped * cb + (p.offset % cb)) : this.host.next.read(piece, p.offset));
    }
    return parts.length === 1 ? parts[0] : allPieces(parts);
  }

  write(buf: Uint8Array, offset: number, opts?: WriteOptions): Promise<void> {
    const cb = this.snapshot.chunkBytes;
    const parts: Promise<void>[] = [];
    for (const p of splitByUnit(offset, buf.length, cb)) parts.push(this.writePiece(buf.subarray(p.bufOffset, p.bufOffset + p.length), p.offset, opts));
    return parts.length === 1 ? parts[0] : allPieces(parts);
  }

  /** Both devices: writes may have gone to either. */
  async flush(): Promise<void> {
    await Promise.all([this.host.next.flush(), this.store.cow.flush()]);
  }

  /** The COW chunk of origin chunk `chunk` while it is still unmerged, else -1. */
  private mapped(chunk: number): number {
    if (this.store.state === 'invalid') return -1;
    return this.snapshot.mappedChunk(chunk);
  }

  private async writePiece(data: Uint8Array, offset: number, opts?: WriteOptions): Promise<void> {
    const cb = this.snapshot.chunkBytes;
    const chunk = Math.floor(offset / cb);
    for (;;) {
      const batch = this.current;
      if (batch && inBatch(batch, chunk) && this.mapped(chunk) >= 0) {
        await batch.committed; // the kernel queues it (bios_queued_during_merge) until the run is merged
        continue;
      }
      const mapped = this.mapped(chunk);
      if (mapped < 0) return this.host.originWrite(data, offset, opts);
      this.cowWrites.add(chunk); // synchronously after the lookup: a run starting now waits for it
      try {
        return await this.store.cow.write(data, mapped * cb + (offset % cb), opts);
      } finally {
        this.cowWrites.remove(chunk);
      }
    }
  }

  // ---- the engine

  private async loop(): Promise<void> {
    try {
      for (;;) {
        if (this.stopping) {
          this.state = 'stopped';
          return;
        }
        const runs = await this.store.prepareMerge(Math.max(1, Math.floor(this.batchBytes / this.snapshot.chunkBytes)));
        if (runs.length === 0) break;
        await this.mergeBatch(runs);
        const after = this.afterBatch?.();
        if (after) await Promise.race([after, this.stopRequested]);
      }
      this.state = 'done';
      this.log.info({ chunks: this.mergedChunks }, 'merge complete');
    } catch (err) {
      this.state = 'failed';
      this.error = errorText(err);
      this.log.error({ err }, 'Merge failed: shutting down merge');
    }
  }

  private async mergeBatch(runs: MergeRun[]): Promise<void> {
    const cb = this.snapshot.chunkBytes;
    const next = this.host.next;
    const extent = (r: MergeRun) => ({ start: r.oldChunk * cb, length: Math.min(r.count * cb, next.size - r.oldChunk * cb) });
    for (const r of runs) {
      const { start, length } = extent(r);
      await this.host.preserveOthers(start, length); // origin_write_extent: other snapshots first
    }
    let release!: () => void;
    this.current = { runs, committed: new Promise<void>((resolve) => (release = resolve)) };
    try {
      for (const r of runs) {
        for (let c = r.oldChunk; c < r.oldChunk + r.count; c++) {
          const writes = this.cowWrites.drained(c);
          if (writes) await writes;
        }
      }
      const copy = async (r: MergeRun) => {
        const { start, length } = extent(r);
        await copyOriginRange(this.store.cow, this.host.pool, r.newChunk * cb, length, (data, within) => next.write(data, start + within));
      };
      for (let i = 0; i < runs.length; i += COPIES_IN_FLIGHT) await allPieces(runs.slice(i, i + COPIES_IN_FLIGHT).map(copy));
      await next.flush();
      await this.store.commitMerge(runs.reduce((n, r) => n + r.count, 0));
      for (const r of runs) for (let c = r.oldChunk; c < r.oldChunk + r.count; c++) this.snapshot.forgetException(c);
    } finally {
      this.current = null;
      release();
    }
  }
}
