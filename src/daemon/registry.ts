// The daemon's live objects: every origin and snapshot in the catalog, opened or failed, and the
// subset that is served over NBD. It is the NBD server's ExportProvider: an export is visible to
// clients only once serve() was called for it, which the daemon does only for fully made
// snapshots and for origins whose snapshots are all attached.
import type { Logger } from '../log.ts';
import type { OriginRow, SnapshotRow } from '../catalog/catalog.ts';
import type { ExportProvider, NbdExport } from '../nbd/exports.ts';
import type { SnapshotOrigin } from '../targets/snapshot-origin.ts';
import type { Snapshot } from '../targets/snapshot.ts';
import type { BlockDevice } from '../block/device.ts';

export interface SnapshotEntry {
  row: SnapshotRow;
  /** null when the COW could not be opened (see error) or the origin failed. */
  target: Snapshot | null;
  error: string | null;
  log: Logger;
}

export interface OriginEntry {
  row: OriginRow;
  /** null when the origin file or device could not be opened (see error). */
  target: SnapshotOrigin | null;
  error: string | null;
  log: Logger;
  snapshots: Map<string, SnapshotEntry>;
}

export class Registry implements ExportProvider {
  readonly origins = new Map<string, OriginEntry>();
  private readonly served = new Map<string, NbdExport>();

  get(name: string): NbdExport | undefined {
    return this.served.get(name);
  }

  list(): NbdExport[] {
    return [...this.served.values()];
  }

  isServed(name: string): boolean {
    return this.served.has(name);
  }

  serve(name: string, device: BlockDevice, description: string): void {
    this.served.set(name, { name, device, description });
  }

  unserve(name: string): void {
    this.served.delete(name);
  }

  findSnapshot(name: string): { origin: OriginEntry; snapshot: SnapshotEntry } | undefined {
    for (const origin of this.origins.values()) {
      const snapshot = origin.snapshots.get(name);
      if (snapshot) return { origin, snapshot };
    }
    return undefined;
  }

  /** Every snapshot, grouped by origin in catalog order. */
  snapshots(): { origin: OriginEntry; snapshot: SnapshotEntry }[] {
    return [...this.origins.values()].flatMap((origin) => [...origin.snapshots.values()].map((snapshot) => ({ origin, snapshot })));
  }
}
