// The sector: the 512-byte unit dm tables, COW chunk sizes, device sizes in sysfs and
// `dmsetup status` count in, whatever a device's logical block size is.

/** Bytes in a sector. */
export const SECTOR_BYTES = 512;
