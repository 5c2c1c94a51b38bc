// Startup restore: open every origin in the catalog and attach all of its snapshots before the
// origin is served (the lifecycle refuses otherwise). A snapshot whose COW is missing or corrupt,
// or an origin that cannot be opened, is kept as failed with the reason; the rest start normally.
import { FileDevice } from '../block/file-device.ts';
import { errorText } from '../common/error-text.ts';
import type { Catalog, OriginRow, SnapshotRow } from '../catalog/catalog.ts';
import type { Logger } from '../log.ts';
import type { ExportLifecycle, OriginEntry } from './lifecycle.ts';

/** Why a snapshot in the catalog must not be started, or null. */
function refusal(origin: OriginEntry, row: SnapshotRow, log: Logger): string | null {
  if (!origin.target) return `origin ${origin.row.name} is not available`;
  if (row.failure !== null) return `${row.failure}; the origin was written without it since, so its point in time is lost: remove it`;
  if (row.kind === 'N') {
    // A transient store keeps its exceptions in memory only: reopened empty it would show today's
    // origin instead of the point in time, so it is reported, never served (as after a reboot).
    log.warn('transient snapshot not restored');
    return 'a transient (N) snapshot does not survive a daemon restart; remove it';
  }
  return null;
}

async function restoreSnapshot(exports: ExportLifecycle, catalog: Catalog, origin: OriginEntry, row: SnapshotRow, log: Logger): Promise<void> {
  const refused = refusal(origin, row, log);
  if (refused) {
    exports.addFailedSnapshot(origin, row, refused, log);
    return;
  }
  try {
    const snap = await exports.attachSnapshot(origin, row, FileDevice.open(row.cowPath), log, { chunkSectors: row.chunkSectors });
    exports.serveSnapshot(origin, snap);
  } catch (err) {
    const error = errorText(err);
    exports.addFailedSnapshot(origin, row, error, log);
    // The origin is about to be served without this snapshot: it will miss origin writes, so it
    // must never be served again, even if its COW is readable at the next start.
    catalog.setSnapshotFailure(row.name, `failed to start: ${error}`);
    log.error({ err, cow: row.cowPath }, 'snapshot failed to start');
  }
}

function openOrigin(exports: ExportLifecycle, catalog: Catalog, row: OriginRow, log: Logger): OriginEntry {
  let device: FileDevice | undefined;
  try {
    device = FileDevice.open(row.path);
    if (device.size !== row.sizeBytes) {
      log.warn({ was: row.sizeBytes, now: device.size }, 'origin size changed since it was added');
      catalog.setOriginSize(row.name, device.size);
      row = { ...row, sizeBytes: device.size };
    }
  } catch (err) {
    void device?.close();
    log.error({ err, path: row.path }, 'origin failed to start');
    return exports.addFailedOrigin(row, errorText(err), log);
  }
  return exports.addOrigin(row, device, log);
}

/** Open every export in the catalog (after repairCatalog) and serve what opened. */
export async function restoreAll(catalog: Catalog, exports: ExportLifecycle, log: Logger): Promise<void> {
  for (const row of catalog.listOrigins()) {
    const origin = openOrigin(exports, catalog, row, log.child({ export: row.name }));
    for (const snapRow of catalog.listSnapshots(row.name)) {
      await restoreSnapshot(exports, catalog, origin, snapRow, log.child({ export: snapRow.name }));
    }
    if (origin.target) exports.serveOrigin(origin);
  }
}
