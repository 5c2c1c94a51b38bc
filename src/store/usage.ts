// Helpers both stores share for the COW's size and the `dmsetup status` info field.
import type { BlockDevice } from '../block/device.ts';
import { SECTOR_BYTES } from '../common/sectors.ts';
import type { StoreState, StoreUsage } from './exception-store.ts';

/** The COW's current size in whole sectors (the kernel's get_dev_size). */
export function cowSectors(cow: BlockDevice): number {
  return Math.floor(cow.size / SECTOR_BYTES);
}

/** Re-read the size of a device that can change underneath (FileDevice); a MemoryDevice's size is live. */
export function refreshDeviceSize(cow: BlockDevice): number {
  const resizable = cow as BlockDevice & { refreshSize?: () => number };
  if (typeof resizable.refreshSize === 'function') resizable.refreshSize();
  return cow.size;
}

/** "Invalid", "Overflow" or "<allocated>/<total> <metadata>", first match wins (as snapshot_status). */
export function formatStatus(state: StoreState, usage: StoreUsage): string {
  if (state === 'invalid') return 'Invalid';
  if (state === 'overflow') return 'Overflow';
  return `${usage.allocatedSectors}/${usage.totalSectors} ${usage.metadataSectors}`;
}
