// A tiny serial copy-on-write driver over an ExceptionStore, enough to replay the fixtures'
// workloads the way dm-snapshot handles them: every write is split at chunk boundaries and each
// piece is handled on its own, one at a time.
//   origin write: a chunk without exception gets one (prepare, copy the origin chunk into the COW,
//                 commit) before the origin is written.
//   snapshot write: an existing exception is written in place; otherwise prepare, then a whole
//                 chunk is written straight to the COW, a partial one after copying the origin
//                 chunk, then commit.
// A full store (ENOSPC) invalidates the snapshot (or overflows a PO store on a snapshot write);
// origin writes then go on without COW and snapshot writes fail.
import { isBlockError } from '../../src/block/errors.ts';
import type { MemoryDevice } from '../../src/block/memory-device.ts';
import type { ExceptionStore } from '../../src/store/exception-store.ts';
import { ExceptionTable } from '../../src/store/exception-table.ts';

export class CowDriver {
  readonly table = new ExceptionTable();
  /** Snapshot writes that failed (EIO), by the seq given to write(). */
  readonly failed: number[] = [];
  private readonly store: ExceptionStore;
  private readonly origin: MemoryDevice;

  constructor(store: ExceptionStore, origin: MemoryDevice) {
    this.store = store;
    this.origin = origin;
    store.load((oldChunk, newChunk) => this.table.insert(oldChunk, newChunk));
  }

  private get chunkBytes(): number {
    return this.store.chunkBytes;
  }

  async write(target: 'origin' | 'snap', offset: number, data: Buffer, seq = -1): Promise<void> {
    let pos = 0;
    while (pos < data.length) {
      const at = offset + pos;
      const length = Math.min(data.length - pos, this.chunkBytes - (at % this.chunkBytes));
      const piece = data.subarray(pos, pos + length);
      if (target === 'origin') await this.writeOrigin(at, piece);
      else if (!(await this.writeSnapshot(at, piece))) this.failed.push(seq);
      pos += length;
    }
  }

  private async copyOriginChunk(chunk: number, newChunk: number): Promise<void> {
    const buf = Buffer.alloc(this.chunkBytes);
    await this.origin.read(buf, chunk * this.chunkBytes);
    await this.store.cow.write(buf, newChunk * this.chunkBytes);
  }

  /** prepare(), or null after handling a full store. */
  private async allocate(snapshotWrite: boolean): Promise<number | null> {
    try {
      return this.store.prepare();
    } catch (err) {
      if (!isBlockError(err) || err.errno !== 'ENOSPC') throw err;
      if (snapshotWrite && this.store.kind === 'PO') this.store.overflow();
      else await this.store.invalidate('Unable to allocate exception.');
      return null;
    }
  }

  private async writeOrigin(offset: number, piece: Buffer): Promise<void> {
    const chunk = Math.floor(offset / this.chunkBytes);
    if (this.store.state !== 'invalid' && this.table.lookup(chunk) < 0) {
      const newChunk = await this.allocate(false);
      if (newChunk !== null) {
        await this.copyOriginChunk(chunk, newChunk);
        await this.store.commit(chunk, newChunk);
        this.table.insert(chunk, newChunk);
      }
    }
    await this.origin.write(piece, offset);
  }

  /** Returns false when the write fails (invalid or overflowed snapshot). */
  private async writeSnapshot(offset: number, piece: Buffer): Promise<boolean> {
    if (this.store.state !== 'valid') return false;
    const chunk = Math.floor(offset / this.chunkBytes);
    const within = offset % this.chunkBytes;
    const existing = this.table.lookup(chunk);
    if (existing >= 0) {
      await this.store.cow.write(piece, existing * this.chunkBytes + within);
      return true;
    }
    const newChunk = await this.allocate(true);
    if (newChunk === null) return false;
    if (piece.length < this.chunkBytes) await this.copyOriginChunk(chunk, newChunk);
    await this.store.cow.write(piece, newChunk * this.chunkBytes + within);
    await this.store.commit(chunk, newChunk);
    this.table.insert(chunk, newChunk);
    return true;
  }
}
