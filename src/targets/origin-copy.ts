// One copy of an origin range to one or more destinations (the COW chunks of the snapshots that
// need it), in bounded pieces: the kernel's kcopyd job, which splits a copy into sub-jobs and runs
// a few of them at once. Each piece is read once into a buffer leased from the pool (bounded, see
// block/buffer-pool.ts), written to every destination, and its lease ended before the next piece
// of that worker starts, so a copy never holds a lease while it waits for another one. A chunk up
// to COPY_PIECE_BYTES is one piece: one buffer, one read, one write per destination.
//
// Errors, as with the kernel's separate reads per snapshot: a failed piece read fails the first
// destination still copying and is tried again for the others; a failed write fails only its own
// destination. Every destination's promise settles once no piece of the copy is still running
// (kcopyd reports a job once all its sub-jobs are done), with the first error it got.
import type { BufferPool } from '../block/buffer-pool.ts';
import type { BlockDevice } from '../block/device.ts';

/**
 * The piece size. Chunks up to it are copied whole (as before pieces existed: the 8- to
 * 2048-sector chunks that LVM and the benchmarks use); bigger ones piece by piece. 1 MiB keeps a
 * piece's syscalls cheap against its data, and a 1 GiB chunk's copy in flight at 4 MiB.
 */
export const COPY_PIECE_BYTES = 1024 * 1024;
/** Pieces of one copy in flight at once (kcopyd runs 8 sub-jobs of 64 KiB per job). */
export const COPY_PIECES_IN_FLIGHT = 4;

/**
 * Writes `data`, the range's bytes from `within` on, to a destination; `data` is not kept.
 * `background`: other destinations are written at the same time (see WriteOptions).
 */
export type PieceWrite = (data: Uint8Array, within: number, background?: boolean) => Promise<void>;

interface Destination {
  write: PieceWrite;
  failed: boolean;
  error: unknown;
  resolve(): void;
  reject(err: unknown): void;
}

export class OriginCopy {
  private readonly source: BlockDevice;
  private readonly pool: BufferPool;
  private readonly start: number;
  private readonly length: number;
  private readonly all: Destination[] = [];
  /** Destinations that have not failed, in the order they joined. */
  private live: Destination[] = [];
  /** Offset (within the range) of the next piece no worker has taken yet. */
  private nextPiece = 0;
  private workers = 0;
  private written = false;

  /** Copies the origin's bytes [start, start+length); it starts with the first join(). */
  constructor(source: BlockDevice, pool: BufferPool, start: number, length: number) {
    this.source = source;
    this.pool = pool;
    this.start = start;
    this.length = length;
  }

  /** True once a piece has been written somewhere: a destination joining now would miss it. */
  get sealed(): boolean {
    return this.written;
  }

  /** Add a destination (only while not sealed); settles once the whole copy is over. */
  join(write: PieceWrite): Promise<void> {
    if (this.written) throw new Error('OriginCopy: join after the first piece was written');
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const dest: Destination = { write, failed: false, error: undefined, resolve, reject };
    this.all.push(dest);
    this.live.push(dest);
    if (this.all.length === 1) this.run();
    return done;
  }

  private run(): void {
    const pieces = Math.ceil(this.length / COPY_PIECE_BYTES);
    this.workers = Math.max(1, Math.min(COPY_PIECES_IN_FLIGHT, pieces));
    for (let i = 0; i < this.workers; i++) void this.work();
  }

  /** Take pieces until none is left or no destination still wants them. Never throws. */
  private async work(): Promise<void> {
    while (this.live.length > 0 && this.nextPiece < this.length) {
      const within = this.nextPiece;
      const length = Math.min(COPY_PIECE_BYTES, this.length - within);
      this.nextPiece += length;
      const buf = this.pool.tryLease(length) ?? (await this.pool.lease(length));
      try {
        await this.copyPiece(buf, within);
      } finally {
        this.pool.endLease(buf);
      }
    }
    if (--this.workers === 0) this.settle();
  }

  private async copyPiece(buf: Buffer, within: number): Promise<void> {
    for (;;) {
      if (this.live.length === 0) return;
      try {
        await this.source.read(buf, this.start + within);
        break;
      } catch (err) {
        this.fail(this.live[0], err);
      }
    }
    this.written = true;
    const dests = this.live;
    if (dests.length === 1) return this.writeTo(dests[0], buf, within);
    // Several snapshots: all but the last are written on the threadpool while the event loop
    // writes the last, so the copies of one piece (page cache copies, on another core) overlap.
    const last = dests.length - 1;
    await Promise.all(dests.map((d, i) => this.writeTo(d, buf, within, i < last)));
  }

  /** Write a piece to one destination; a failure (even a synchronous throw) fails only that one. */
  private async writeTo(dest: Destination, buf: Buffer, within: number, background = false): Promise<void> {
    try {
      await dest.write(buf, within, background);
    } catch (err) {
      this.fail(dest, err);
    }
  }

  private fail(dest: Destination, err: unknown): void {
    if (dest.failed) return;
    dest.failed = true;
    dest.error = err;
    this.live = this.live.filter((d) => d !== dest);
  }

  private settle(): void {
    for (const d of this.all) {
      if (d.failed) d.reject(d.error);
      else d.resolve();
    }
  }
}

/** Copy the origin's [start, start+length) to one destination, in pieces (no sharing). */
export function copyOriginRange(source: BlockDevice, pool: BufferPool, start: number, length: number, write: PieceWrite): Promise<void> {
  return new OriginCopy(source, pool, start, length).join(write);
}
