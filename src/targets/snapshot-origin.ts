// The `snapshot-origin` target: reads pass straight through to the origin device; a write first
// makes sure every valid snapshot has a committed (durable) exception for every chunk it touches,
// copying the original chunk into each snapshot's COW store where needed, and only then reaches
// the origin. Origin writes never fail because of a snapshot: one that cannot preserve a chunk is
// invalidated instead.
//
// The kernel splits origin writes at the smallest snapshot chunk size and runs each piece through
// this check; here a write checks every chunk it touches in every snapshot (ascending chunk order,
// so allocation order is the kernel's) and is written whole once all of them are preserved. The
// effect on every device is the same.
//
// Copies are bounded (docs/memory.md): each one goes through an OriginCopy in pieces of at most
// COPY_PIECE_BYTES, with buffers leased from the pool, whose cap on leased bytes makes copies
// wait, in order, once that much is being copied (the kernel throttles with cow_count).
import { BufferPool } from '../block/buffer-pool.ts';
import type { BlockDevice, WriteOptions, ZeroOptions } from '../block/device.ts';
import { BlockError } from '../block/errors.ts';
import type { ExceptionStore } from '../store/exception-store.ts';
import { silentLogger, type Logger } from '../log.ts';
import { SnapshotMerge, type MergeHost, type MergeOptions } from './merge.ts';
import { SharedOriginRead } from './shared-origin-read.ts';
import { Snapshot, type CloseOptions, type CopyObserver } from './snapshot.ts';
import { WriteGate } from './write-gate.ts';
import { SNAPSHOT_CAPS, writeZeroes } from './zero-write.ts';

export interface SnapshotOriginOptions {
  logger?: Logger;
  /** Copy-out buffers for its snapshots (the daemon shares the NBD server's); its lease cap bounds their copies. */
  bufferPool?: BufferPool;
  /** Metrics hook given to each of its snapshots (Snapshot's CopyObserver). */
  onCopy?: CopyObserver;
}

export class SnapshotOrigin implements BlockDevice {
  /** The real origin device (the kernel's `-real` linear device). */
  readonly next: BlockDevice;
  readonly readOnly = false;
  readonly caps = SNAPSHOT_CAPS;
  private active: Snapshot[] = [];
  private readonly gate = new WriteGate();
  private readonly log: Logger;
  private readonly pool: BufferPool;
  private readonly onCopy: CopyObserver | undefined;
  /** The snapshot being merged into this origin (the kernel's snapshot-merge target), if any. */
  private merging: SnapshotMerge | null = null;

  constructor(next: BlockDevice, opts: SnapshotOriginOptions = {}) {
    this.next = next;
    this.log = opts.logger ?? silentLogger();
    this.pool = opts.bufferPool ?? new BufferPool(16 * 1024 * 1024);
    this.onCopy = opts.onCopy;
  }

  get size(): number {
    return this.next.size;
  }

  get blockSize(): number {
    return this.next.blockSize;
  }

  get snapshots(): readonly Snapshot[] {
    return this.active;
  }

  /** The merge in progress (or failed, still routing I/O), if any. */
  get merge(): SnapshotMerge | null {
    return this.merging;
  }

  /**
   * Start merging `snapshot` into this origin (see merge.ts): from now on the origin shows the
   * snapshot's content, the snapshot gets no more copy-outs, and its exceptions go back to the
   * origin in the background. Origin writes in flight are drained first.
   */
  async startMerge(snapshot: Snapshot, log: Logger, opts: MergeOptions = {}): Promise<SnapshotMerge> {
    if (this.merging) throw new BlockError('EINVAL', 'a snapshot of this origin is already merging');
    if (!this.active.includes(snapshot)) throw new BlockError('EINVAL', 'not a snapshot of this origin');
    const reopen = await this.gate.close();
    try {
      this.active = this.active.filter((s) => s !== snapshot);
      const host: MergeHost = {
        next: this.next,
        pool: this.pool,
        preserveOthers: async (offset, length) => {
          const waits = this.preserveRange(offset, length);
          if (waits.length > 0) await Promise.all(waits);
        },
        originWrite: (buf, offset, opts) => this.writeThrough(buf, offset, opts),
      };
      this.merging = new SnapshotMerge(host, snapshot, log, opts);
      return this.merging;
    } finally {
      reopen();
    }
  }

  /**
   * End the merge: stop it if it still runs (it resumes from its store at the next start), drain
   * the origin's writes, go back to plain snapshot-origin I/O, and close the merged snapshot.
   */
  async endMerge(opts: CloseOptions = {}): Promise<void> {
    const merge = this.merging;
    if (!merge) return;
    await merge.stop();
    const reopen = await this.gate.close();
    try {
      this.merging = null;
    } finally {
      reopen();
    }
    await merge.snapshot.close(opts);
  }

  /**
   * Activate a snapshot backed by `store` at this moment: its exceptions are loaded, origin writes
   * in flight are drained and flushed, and every origin write acknowledged from now on is
   * preserved in it. Writes acknowledged before are in its image.
   */
  async createSnapshot(store: ExceptionStore, opts: { logger?: Logger; size?: number } = {}): Promise<Snapshot> {
    // `size`: the snapshot's length, recorded when it was taken (default: the origin's size now).
    // An origin that grew since leaves it unchanged; one shorter than it is refused.
    const size = opts.size ?? this.next.size;
    if (size > this.next.size) throw new BlockError('EINVAL', `the origin (${this.next.size} bytes) is shorter than the snapshot (${size} bytes)`);
    if (this.merging) throw new BlockError('EINVAL', 'a snapshot of this origin is merging: no new snapshot until it is done');
    const snapshot = new Snapshot(this.next, store, size, { logger: opts.logger ?? this.log, bufferPool: this.pool, onCopy: this.onCopy });
    const reopen = await this.gate.close();
    try {
      await this.next.flush();
      // Largest chunk first, as the kernel visits them.
      this.active = [...this.active, snapshot].sort((a, b) => b.chunkBytes - a.chunkBytes);
    } finally {
      reopen();
    }
    return snapshot;
  }

  /** Stop preserving chunks for `snapshot`, wait for its exceptions in flight, close its store and COW. */
  async removeSnapshot(snapshot: Snapshot, opts: CloseOptions = {}): Promise<void> {
    if (!this.active.includes(snapshot)) throw new BlockError('EINVAL', 'not a snapshot of this origin');
    this.active = this.active.filter((s) => s !== snapshot);
    await snapshot.close(opts);
  }

  read(buf: Uint8Array, offset: number): Promise<void> {
    return this.merging ? this.merging.read(buf, offset) : this.next.read(buf, offset);
  }

  async write(buf: Uint8Array, offset: number, opts?: WriteOptions): Promise<void> {
    const wait = this.gate.enter();
    if (wait) await wait;
    try {
      await (this.merging ? this.merging.write(buf, offset, opts) : this.writeThrough(buf, offset, opts));
    } finally {
      this.gate.leave();
    }
  }

  /** Preserve what the write overwrites in every active snapshot, then write the origin. */
  private writeThrough(buf: Uint8Array, offset: number, opts?: WriteOptions): Promise<void> {
    const preserving = this.preserveRange(offset, buf.length);
    if (preserving.length === 0) return this.next.write(buf, offset, opts);
    return Promise.all(preserving).then(() => this.next.write(buf, offset, opts));
  }

  flush(): Promise<void> {
    return this.merging ? this.merging.flush() : this.next.flush();
  }

  async trim(_length: number, _offset: number): Promise<void> {
    throw new BlockError('ENOTSUP', 'the origin does not support discard (it would bypass copy-on-write)');
  }

  zero(length: number, offset: number, opts?: ZeroOptions): Promise<void> {
    return writeZeroes((b, o, w) => this.write(b, o, w), length, offset, opts);
  }

  /** Close the origin device; every snapshot must have been removed first. */
  async close(): Promise<void> {
    if (this.active.length > 0 || this.merging) throw new BlockError('EINVAL', 'origin still has snapshots');
    await this.next.close();
  }

  /** Start (or join) the exceptions the write needs; the promises settle when each is done. */
  private preserveRange(offset: number, length: number): Promise<void>[] {
    const waits: Promise<void>[] = [];
    if (this.active.length === 0) return waits;
    const shared = new SharedOriginRead(this.next, this.pool);
    for (const snap of this.active) {
      const end = Math.min(offset + length, snap.size);
      if (offset >= end) continue; // a snapshot shorter than the origin ignores writes past its end
      const cb = snap.chunkBytes;
      const last = Math.floor((end - 1) / cb);
      for (let chunk = Math.floor(offset / cb); chunk <= last; chunk++) {
        const wait = snap.preserve(chunk, shared);
        if (wait) waits.push(wait);
      }
    }
    return waits;
  }
}
