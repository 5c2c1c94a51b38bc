// The snapshot store types of a dm snapshot table: P (persistent), PO (persistent, overflow
// makes writes fail instead of invalidating) and N (transient, nothing survives a restart).

export const SNAPSHOT_KINDS = ['P', 'PO', 'N'] as const;
export type SnapshotKind = (typeof SNAPSHOT_KINDS)[number];
/** The kinds kept in the kernel's on-disk format. */
export type PersistentKind = Exclude<SnapshotKind, 'N'>;

export function isSnapshotKind(value: unknown): value is SnapshotKind {
  return SNAPSHOT_KINDS.includes(value as SnapshotKind);
}

/** The store type when none is given (LVM's and dmsetup users' usual choice). */
export const DEFAULT_SNAPSHOT_KIND: SnapshotKind = 'P';
