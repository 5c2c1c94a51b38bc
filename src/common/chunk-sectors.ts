// Snapshot chunk sizes, in sectors (a chunk is the unit the COW store copies and maps).

/**
 * The chunk size when the user gives none: LVM's default for snapshots (4 KiB, `lvcreate -s`).
 * Not the kernel's DM_CHUNK_SIZE_DEFAULT_SECTORS (32), which applies only to a dm table that says
 * chunk size 0 (see store/persistent/open-persistent.ts).
 */
export const DEFAULT_CHUNK_SECTORS = 8;

/**
 * The largest legal chunk size: the kernel refuses more than INT_MAX >> SECTOR_SHIFT sectors and
 * a chunk size is a power of two, so 2^21 sectors (1 GiB).
 */
export const MAX_CHUNK_SECTORS = 2 ** 21;
