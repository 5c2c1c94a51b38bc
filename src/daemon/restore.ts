// Startup restore: open every origin in the catalog and attach all of its snapshots before the
// origin is served (an origin write before a snapshot is attached would skip its copy-out). A
// snapshot whose COW is missing or corrupt, or an origin that cannot be opened, is kept in the
// registry as failed with the reason; the rest start normally.
import { FileDevice } from '../block/file-device.ts';
import type { Catalog, OriginRow, SnapshotRow } from '../catalog/catalog.ts';
import type { Logger } from '../log.ts';
import { openStore } from '../store/open-store.ts';
import { SnapshotOrigin } from '../targets/snapshot-origin.ts';
import type { Registry, OriginEntry, SnapshotEntry } from './registry.ts';

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Open the COW, its store, and attach it to `origin`; on failure nothing stays open. */
async function attachSnapshot(origin: SnapshotOrigin, row: SnapshotRow, cow: FileDevice, log: Logger) {
  try {
    const store = await openStore(row.kind, cow, { chunkSectors: row.chunkSectors, logger: log });
    try {
      return await origin.createSnapshot(store, { logger: log });
    } catch (err) {
      await store.close();
      throw err;
    }
  } catch (err) {
    await cow.close();
    throw err;
  }
}

async function restoreSnapshot(catalog: Catalog, origin: OriginEntry, row: SnapshotRow, log: Logger): Promise<SnapshotEntry> {
  const entry: SnapshotEntry = { row, target: null, error: null, log };
  if (!origin.target) {
    entry.error = `origin ${origin.row.name} is not available`;
    return entry;
  }
  if (row.failure !== null) {
    entry.error = `${row.failure}; the origin was written without it since, so its point in time is lost: remove it`;
    return entry;
  }
  if (row.kind === 'N') {
    // A transient store keeps its exceptions in memory only: reopened empty it would show today's
    // origin instead of the point in time, so it is reported, never served (as after a reboot).
    entry.error = 'a transient (N) snapshot does not survive a daemon restart; remove it';
    log.warn('transient snapshot not restored');
    return entry;
  }
  try {
    entry.target = await attachSnapshot(origin.target, row, FileDevice.open(row.cowPath), log);
  } catch (err) {
    entry.error = reason(err);
    // The origin is about to be served without this snapshot: it will miss origin writes, so it
    // must never be served again, even if its COW is readable at the next start.
    catalog.setSnapshotFailure(row.name, `failed to start: ${entry.error}`);
    log.error({ err, cow: row.cowPath }, 'snapshot failed to start');
  }
  return entry;
}

function openOrigin(catalog: Catalog, row: OriginRow, log: Logger): OriginEntry {
  const entry: OriginEntry = { row, target: null, error: null, log, snapshots: new Map() };
  try {
    const device = FileDevice.open(row.path);
    if (device.size !== row.sizeBytes) {
      log.warn({ was: row.sizeBytes, now: device.size }, 'origin size changed since it was added');
      catalog.setOriginSize(row.name, device.size);
      entry.row = { ...row, sizeBytes: device.size };
    }
    entry.target = new SnapshotOrigin(device, { logger: log });
  } catch (err) {
    entry.error = reason(err);
    log.error({ err, path: row.path }, 'origin failed to start');
  }
  return entry;
}

/** Fill `registry` from the catalog (after repairCatalog) and serve what opened. */
export async function restoreAll(catalog: Catalog, registry: Registry, log: Logger): Promise<void> {
  for (const row of catalog.listOrigins()) {
    const origin = openOrigin(catalog, row, log.child({ export: row.name }));
    registry.origins.set(row.name, origin);
    for (const snapRow of catalog.listSnapshots(row.name)) {
      origin.snapshots.set(snapRow.name, await restoreSnapshot(catalog, origin, snapRow, log.child({ export: snapRow.name })));
    }
    for (const snap of origin.snapshots.values()) if (snap.target) registry.serve(snap.row.name, snap.target, `snapshot of ${row.name}`);
    // Last: every snapshot of this origin is attached before its first write can arrive.
    if (origin.target) registry.serve(row.name, origin.target, 'snapshot-origin');
  }
}
