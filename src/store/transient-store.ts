// The transient exception store (N, dm-snap-transient.c): nothing on disk but the data. There is
// no header and chunk 0 holds data; the map lives only in the caller's ExceptionTable, so a
// reopened transient store starts empty. next_free is counted in sectors, as the kernel does.
// The one way to reopen it with its exceptions is a live restart (the kernel's table reload
// handover): the daemon carries them, with next_free, to its successor (CarriedTransient).
import { BlockError } from '../block/errors.ts';
import type { BlockDevice } from '../block/device.ts';
import { SECTOR_BYTES } from '../common/sectors.ts';
import type { ExceptionStore, StoreState, StoreUsage } from './exception-store.ts';
import { cowSectors, formatStatus, refreshDeviceSize } from './usage.ts';

/** An N store's in-memory state, carried to a live restart's successor. */
export interface CarriedTransient {
  nextFreeSector: number;
  invalid: boolean;
  /** The exception map: (oldChunk, newChunk) pairs. */
  exceptions: Float64Array;
}

export class TransientStore implements ExceptionStore {
  readonly kind = 'N' as const;
  readonly chunkSectors: number;
  readonly chunkBytes: number;
  readonly cow: BlockDevice;
  readonly recordCount: number;
  private currentState: StoreState = 'valid';
  private closed = false;
  /** Next free position in sectors. */
  private nextFreeSector = 0;

  private carried: CarriedTransient | undefined;

  /** `carried`: the state the previous daemon had (a live restart), else empty. */
  constructor(cow: BlockDevice, chunkSectors: number, carried?: CarriedTransient) {
    this.cow = cow;
    this.chunkSectors = chunkSectors;
    this.chunkBytes = chunkSectors * SECTOR_BYTES;
    this.carried = carried;
    this.recordCount = carried ? carried.exceptions.length / 2 : 0;
    if (carried) {
      this.nextFreeSector = carried.nextFreeSector;
      if (carried.invalid) this.currentState = 'invalid';
    }
  }

  get state(): StoreState {
    return this.currentState;
  }

  load(add: (oldChunk: number, newChunk: number) => void): void {
    // Nothing survives a transient store, but what a previous daemon carried over.
    const e = this.carried?.exceptions;
    this.carried = undefined;
    if (e) for (let i = 0; i < e.length; i += 2) add(e[i], e[i + 1]);
  }

  /** next_free and validity, for a successor (the exceptions are the snapshot's table). */
  carry(): { nextFreeSector: number; invalid: boolean } {
    return { nextFreeSector: this.nextFreeSector, invalid: this.currentState === 'invalid' };
  }

  prepare(): number {
    if (this.closed) throw new BlockError('ESHUTDOWN', 'exception store is closed');
    if (this.currentState === 'invalid') throw new BlockError('EIO', 'snapshot is invalid');
    const total = cowSectors(this.cow);
    if (this.nextFreeSector + this.chunkSectors > total) {
      throw new BlockError('ENOSPC', `transient COW store full (${total} sectors)`);
    }
    const chunk = this.nextFreeSector / this.chunkSectors;
    this.nextFreeSector += this.chunkSectors;
    return chunk;
  }

  async commit(_oldChunk: number, _newChunk: number): Promise<void> {
    if (this.closed) throw new BlockError('ESHUTDOWN', 'exception store is closed');
    if (this.currentState === 'invalid') throw new BlockError('EIO', 'snapshot is invalid');
  }

  async invalidate(_reason: string): Promise<void> {
    this.currentState = 'invalid'; // nothing to persist: a transient store has no header
  }

  overflow(): void {
    throw new Error('overflow() is for PO stores only; a full N store is invalidated');
  }

  resize(): number {
    return refreshDeviceSize(this.cow);
  }

  usage(): StoreUsage {
    return { allocatedSectors: this.nextFreeSector, totalSectors: cowSectors(this.cow), metadataSectors: 0 };
  }

  status(): string {
    return formatStatus(this.currentState, this.usage());
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
