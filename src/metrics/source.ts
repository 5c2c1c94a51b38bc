// What metrics read from the daemon at scrape time. The daemon builds it from its live objects
// (daemon/metrics-source.ts), so metrics/ needs nothing of the catalog, the lifecycle or control.

/** The `state` label values of nbdsnap_snapshot_state (one is 1, the others 0). */
export const SNAPSHOT_STATES = ['valid', 'invalid', 'overflow', 'merging', 'failed'] as const;
export type SnapshotStateLabel = (typeof SNAPSHOT_STATES)[number];

export interface SnapshotSample {
  name: string;
  origin: string;
  state: SnapshotStateLabel;
  /** The `dmsetup status` numbers, in 512-byte sectors; null when unknown (failed). */
  allocatedSectors: number | null;
  totalSectors: number | null;
  metadataSectors: number | null;
  /** lvs Data% (0-100, as `snapshot list`); null unless valid. */
  dataPercent: number | null;
  /** Completed exceptions held now; null when not attached. */
  exceptions: number | null;
  /** Merge progress (MERGE% / 100) while the snapshot merges into its origin; null otherwise. */
  mergeRatio: number | null;
  /** The attached target (the key of its copy-out stats); null when not attached. */
  target: object | null;
}

export interface MetricsSource {
  /** The exports served now. */
  exportNames(): string[];
  /** Open transmission-phase connections to an export. */
  connectionCount(exportName: string): number;
  /** Bytes the NBD server holds for clients now (payloads in progress, unflushed replies). */
  inflightBytes(): number;
  snapshots(): SnapshotSample[];
}
