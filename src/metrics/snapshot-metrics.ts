// Per-snapshot metrics (labels `snapshot`, `origin`): the `dmsetup status` numbers in bytes, Data%
// as a ratio, exceptions, state, and the copy-outs' count and latency.
import type { Registry } from 'prom-client';
import { SECTOR_BYTES } from '../common/sectors.ts';
import { collectedCounter, collectedGauge, type Emit } from './collected.ts';
import type { CopyStats } from './copy-stats.ts';
import { collectedHistogram } from './histogram-metric.ts';
import { SNAPSHOT_STATES, type SnapshotSample } from './source.ts';

type Samples = () => SnapshotSample[];

const LABELS = ['snapshot', 'origin'];

function labelsOf(s: SnapshotSample): { snapshot: string; origin: string } {
  return { snapshot: s.name, origin: s.origin };
}

/** Emit `value(s)` for every snapshot where it is known. */
function each(samples: Samples, value: (s: SnapshotSample) => number | null): (emit: Emit) => void {
  return (emit) => {
    for (const s of samples()) {
      const v = value(s);
      if (v !== null) emit(labelsOf(s), v);
    }
  };
}

function bytes(sectors: number | null): number | null {
  return sectors === null ? null : sectors * SECTOR_BYTES;
}

function gauges(registry: Registry, samples: Samples): void {
  const gauge = (name: string, help: string, value: (s: SnapshotSample) => number | null): void =>
    void collectedGauge(registry, { name, help, labelNames: LABELS, read: each(samples, value) });
  gauge('nbdsnap_snapshot_cow_allocated_bytes', 'COW store space in use, metadata included (dmsetup status <allocated> x 512).', (s) => bytes(s.allocatedSectors));
  gauge('nbdsnap_snapshot_cow_size_bytes', 'COW store size (dmsetup status <total> x 512).', (s) => bytes(s.totalSectors));
  gauge('nbdsnap_snapshot_cow_metadata_bytes', 'COW store space taken by the header and metadata areas (dmsetup status <metadata> x 512).', (s) => bytes(s.metadataSectors));
  gauge('nbdsnap_snapshot_data_ratio', 'Data% / 100 as lvs and `nbdsnap snapshot list` show it: allocated / size, 0 while only metadata is allocated; valid snapshots only.', (s) => (s.dataPercent === null ? null : s.dataPercent / 100));
  gauge('nbdsnap_snapshot_exceptions', 'Completed exceptions (chunks held in the COW store).', (s) => s.exceptions);
  gauge('nbdsnap_snapshot_merge_ratio', 'Merge progress (MERGE% / 100: chunks merged back into the origin over those to merge); merging snapshots only.', (s) => s.mergeRatio);
}

export function registerSnapshotMetrics(registry: Registry, samples: Samples, copies: CopyStats): void {
  gauges(registry, samples);
  collectedGauge(registry, {
    name: 'nbdsnap_snapshot_state',
    help: 'State of the snapshot: 1 for the current state, 0 for the others (merging: being merged into its origin).',
    labelNames: [...LABELS, 'state'],
    read: (emit) => {
      for (const s of samples()) for (const state of SNAPSHOT_STATES) emit({ ...labelsOf(s), state }, s.state === state ? 1 : 0);
    },
  });
  collectedCounter(registry, {
    name: 'nbdsnap_snapshot_cow_copies_total',
    help: 'Chunks copied from the origin into the COW store since the daemon started (origin writes, partial snapshot writes).',
    labelNames: LABELS,
    read: each(samples, (s) => copies.of(s.target).count),
  });
  collectedHistogram(registry, {
    name: 'nbdsnap_snapshot_cow_copy_duration_seconds',
    help: 'Time to make a copy-out: allocate, copy the origin chunk, commit it durably (what the origin write waits for).',
    read: () => samples().map((s) => ({ labels: labelsOf(s), counts: copies.of(s.target) })),
  });
}
