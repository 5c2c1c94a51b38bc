// Startup repair: finish or roll back every step a crash interrupted, before anything is opened.
// The catalog records each step before the daemon acts on files (daemon/snapshot-ops.ts, and
// daemon/snapshot-merge.ts, which marks a merged snapshot 'removing' before deleting its COW):
//   snapshot 'creating'  -> roll back: delete the COW file if the daemon created it, drop the row
//                           (the client never got a success reply; a half-made snapshot is never served)
//   snapshot 'removing'  -> finish: delete the COW file if the daemon created it, drop the row
//   origin 'removing'    -> finish: the same for each of its snapshots, then drop the origin row
// Every action is idempotent, so a crash during repair is repaired by the next start.
import fs from 'node:fs';
import type { Catalog, SnapshotRow } from '../catalog/catalog.ts';
import type { Logger } from '../log.ts';

export interface RepairReport {
  rolledBack: string[];
  finished: string[];
}

function dropSnapshot(catalog: Catalog, row: SnapshotRow): void {
  // Only a COW the daemon made itself is deleted; an external --cow is never touched.
  if (row.cowCreated) fs.rmSync(row.cowPath, { force: true });
  catalog.deleteSnapshot(row.name);
}

export function repairCatalog(catalog: Catalog, log: Logger): RepairReport {
  const report: RepairReport = { rolledBack: [], finished: [] };
  for (const row of catalog.listSnapshots()) {
    if (row.state === 'ready') continue;
    dropSnapshot(catalog, row);
    (row.state === 'creating' ? report.rolledBack : report.finished).push(row.name);
    log.warn({ snapshot: row.name, state: row.state, cow: row.cowPath, cowDeleted: row.cowCreated }, row.state === 'creating' ? 'rolled back an interrupted snapshot create' : 'finished an interrupted snapshot remove');
  }
  for (const origin of catalog.listOrigins()) {
    if (origin.state !== 'removing') continue;
    for (const row of catalog.listSnapshots(origin.name)) {
      dropSnapshot(catalog, row);
      report.finished.push(row.name);
    }
    catalog.deleteOrigin(origin.name);
    report.finished.push(origin.name);
    log.warn({ origin: origin.name }, 'finished an interrupted origin remove');
  }
  return report;
}
