// Copy-outs per snapshot (the targets' CopyObserver hook): count and latency, kept in plain
// numbers keyed by the Snapshot object itself, so a removed snapshot's stats go with it.
import { BucketCounts } from './buckets.ts';

export class CopyStats {
  private readonly bySnapshot = new WeakMap<object, BucketCounts>();

  /** The hook given to the snapshots (called once per completed copy-out, off the plain request path). */
  readonly observe = (snapshot: object, durationMs: number): void => {
    let counts = this.bySnapshot.get(snapshot);
    if (!counts) {
      counts = new BucketCounts();
      this.bySnapshot.set(snapshot, counts);
    }
    counts.observe(durationMs);
  };

  /** The copy-outs of `snapshot` (the target object), zero if none yet. */
  of(snapshot: object | null): BucketCounts {
    return (snapshot && this.bySnapshot.get(snapshot)) || EMPTY;
  }
}

const EMPTY = new BucketCounts();
