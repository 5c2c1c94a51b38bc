// What --metrics reads at scrape time, taken from the daemon's live objects: the served exports
// and their connections, the NBD server's bytes in flight, and each snapshot as `snapshot list`
// describes it (the same Data% and state). metrics/ sees only these plain samples.
import type { MetricsSource, SnapshotSample, SnapshotStateLabel } from '../metrics/source.ts';
import type { NbdServer } from '../nbd/server.ts';
import { describeSnapshot } from './describe.ts';
import type { ExportLifecycle, OriginEntry, SnapshotEntry } from './lifecycle.ts';

const NOT_COUNTED = (): number => 0;

/** `snapshot list` states -> the metric's state labels ('active' is the store's 'valid'). */
const STATE_LABELS: Readonly<Record<string, SnapshotStateLabel>> = {
  active: 'valid',
  invalid: 'invalid',
  overflow: 'overflow',
  failed: 'failed',
  merging: 'merging',
  'merge-failed': 'invalid', // a failed merge sends all I/O to the origin: the snapshot is unusable
};

function sample(origin: OriginEntry, snap: SnapshotEntry): SnapshotSample {
  const info = describeSnapshot(origin, snap, NOT_COUNTED);
  return {
    name: info.name,
    origin: info.origin,
    state: STATE_LABELS[info.state] ?? 'failed',
    allocatedSectors: info.allocatedSectors,
    totalSectors: info.totalSectors,
    metadataSectors: info.metadataSectors,
    dataPercent: info.dataPercent,
    exceptions: snap.target?.exceptionCount ?? null,
    mergeRatio: info.merge ? info.merge.percent / 100 : null,
    target: snap.target,
  };
}

export function metricsSource(exports: ExportLifecycle, nbd: NbdServer): MetricsSource {
  return {
    exportNames: () => exports.list().map((exp) => exp.name),
    connectionCount: (name) => nbd.connectionCount(name),
    inflightBytes: () => nbd.inflightBytes,
    // A snapshot being removed is gone for the metrics already.
    snapshots: () => exports.snapshots().filter(({ snapshot }) => snapshot.state !== 'removing').map(({ origin, snapshot }) => sample(origin, snapshot)),
  };
}
