// The transient exception store (N, dm-snap-transient.c): nothing on disk but the data. There is
// no header and chunk 0 holds data; the map lives only in the caller's ExceptionTable, so a
// reopened transient store starts empty. next_free is counted in sectors, as the kernel does.
import { BlockError } from '../block/errors.ts';
import type { BlockDevice } from '../block/device.ts';
import { SECTOR_BYTES } from '../common/sectors.ts';
import type { ExceptionStore, StoreState, StoreUsage } from './exception-store.ts';
import { cowSectors, formatStatus, refreshDeviceSize } from './usage.ts';

export class TransientStore implements ExceptionStore {
  readonly kind = 'N' as const;
  readonly chunkSectors: number;
  readonly chunkBytes: number;
  readonly cow: BlockDevice;
  readonly recordCount = 0;
  private currentState: StoreState = 'valid';
  private closed = false;
  /** Next free position in sectors. */
  private nextFreeSector = 0;

  constructor(cow: BlockDevice, chunkSectors: number) {
    this.cow = cow;
    this.chunkSectors = chunkSectors;
    this.chunkBytes = chunkSectors * SECTOR_BYTES;
  }

  get state(): StoreState {
    return this.currentState;
  }

  load(_add: (oldChunk: number, newChunk: number) => void): void {
    // Nothing survives a transient store: there is nothing to load.
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
