// The one entry point that turns (store kind, COW device, chunk size) into an ExceptionStore, with
// the kernel's argument checks (dm_exception_store_create + snapshot_ctr).
import type { BlockDevice } from '../block/device.ts';
import { isSnapshotKind, type SnapshotKind } from '../common/snapshot-kind.ts';
import { silentLogger, type Logger } from '../log.ts';
import type { ExceptionStore } from './exception-store.ts';
import { validateChunkSize } from './chunk-size.ts';
import { StoreConfigError } from './errors.ts';
import { openPersistent } from './persistent/open-persistent.ts';
import { TransientStore, type CarriedTransient } from './transient-store.ts';

export { CorruptStoreError, StoreConfigError } from './errors.ts';
export { parseStoreKind, validateChunkSize } from './chunk-size.ts';

export interface OpenStoreOptions {
  /** Chunk size in sectors from the table; 0 = default (P/PO only). An existing P/PO header wins. */
  chunkSectors: number;
  logger?: Logger;
  /** N only: the state a previous daemon carried over (live restart). */
  carried?: CarriedTransient;
}

/**
 * Open the exception store on `cow`. P/PO read the header now (a blank COW is initialised, as the
 * kernel does at table load) and every metadata area; call load() to receive the exceptions.
 * Throws StoreConfigError for illegal arguments, CorruptStoreError for a COW that does not hold a
 * usable store, and the device's error if reading it fails.
 */
export async function openStore(kind: SnapshotKind, cow: BlockDevice, opts: OpenStoreOptions): Promise<ExceptionStore> {
  const logger = opts.logger ?? silentLogger();
  if (!isSnapshotKind(kind)) throw new StoreConfigError(`Unknown exception store type "${String(kind)}"`);
  if (opts.chunkSectors !== 0) validateChunkSize(opts.chunkSectors, cow.blockSize);
  if (kind === 'N') {
    if (opts.chunkSectors === 0) throw new StoreConfigError('Chunk size not set');
    return new TransientStore(cow, opts.chunkSectors, opts.carried);
  }
  return openPersistent(kind, cow, opts.chunkSectors, logger);
}
