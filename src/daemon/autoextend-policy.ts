// Which auto-extend policy a snapshot runs with: its own settings, else the daemon's defaults,
// and only for a COW file the daemon created (an external --cow, file or block device, is never
// resized by nbdsnap; a grown one is still seen at its next allocation).
import type { SnapshotRow } from '../catalog/catalog.ts';
import type { AutoExtendPolicy } from '../store/auto-extend.ts';
import type { DaemonConfig } from './config.ts';

export function autoextendPolicy(config: DaemonConfig, row: SnapshotRow): AutoExtendPolicy | undefined {
  if (!row.cowCreated) return undefined;
  const threshold = row.autoextendThreshold ?? config.autoextendThreshold;
  if (threshold >= 100) return undefined;
  return { threshold, percent: row.autoextendPercent ?? config.autoextendPercent };
}
