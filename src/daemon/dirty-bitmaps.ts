// The dirty bitmaps an export of the daemon offers (NBD `qemu:dirty-bitmap:<snapshot>` contexts):
// one per usable snapshot of the same origin, read from the snapshots' changed-chunk maps
// (targets/changed-map.ts), in each snapshot's own chunk size.
//
// On an export E of origin O, bitmap S (a snapshot of O) is S's changed chunks, united with E's
// own when E is another snapshot:
// - E = the origin: a chunk outside S's exceptions was written neither in the origin nor in S since
//   S was taken, so it reads the same in both: dirty covers every chunk where O differs from S.
// - E = another snapshot S2 (taken before or after S): S2 and S both show the origin except where
//   one of them has an exception, so dirty = S's ∪ S2's covers every chunk where S2 differs from
//   S, including writes made to S2 itself (a writable snapshot).
// - E = S itself: S's changed chunks, i.e. where S differs from the origin now.
// Past S's end (an origin grown since) everything is dirty. A snapshot that is invalid (its map
// missed origin writes since), failed, merging or being removed offers no bitmap, and a selected
// one that becomes so fails BLOCK_STATUS (meta-contexts.ts). While a snapshot merges into the
// origin, the origin's export shows the merging snapshot's chunks, which no other snapshot's map
// describes: it offers no bitmaps until the merge has ended (snapshot exports read the real origin,
// whose merge writes make copy-outs, so theirs stay right).
import type { Extent } from '../block/device.ts';
import type { DirtyBitmaps } from '../nbd/exports.ts';
import { STATE_DIRTY } from '../nbd/wire.ts';
import { unionRuns, type ChangedRun } from '../targets/changed-map.ts';
import type { Snapshot } from '../targets/snapshot.ts';

/** What this needs of lifecycle.ts's entries (structural, so lifecycle.ts can import this file). */
export interface SnapshotLike {
  readonly row: { readonly name: string };
  readonly target: Snapshot | null;
  readonly state: string;
}
interface OriginLike {
  readonly snapshots: ReadonlyMap<string, SnapshotLike>;
  readonly target: { readonly merge: unknown } | null;
}

/** The snapshot's target when its map is trustworthy now. */
export function usableSnapshot(entry: SnapshotLike | undefined): Snapshot | undefined {
  const target = entry?.target;
  return entry?.state === 'serving' && target && target.store.state !== 'invalid' ? target : undefined;
}

function toExtents(runs: readonly ChangedRun[]): Extent[] {
  return runs.map((r) => ({ length: r.length, flags: r.changed ? STATE_DIRTY : 0 }));
}

/** The bitmaps of `origin`'s snapshots as seen on the export of the origin, or of its snapshot `self`. */
export function dirtyBitmapsFor(origin: OriginLike, self?: SnapshotLike): DirtyBitmaps {
  const merging = (): boolean => !self && origin.target?.merge != null;
  return {
    names: () => (merging() ? [] : [...origin.snapshots.values()].filter((s) => usableSnapshot(s)).map((s) => s.row.name)),
    extents(name, length, offset, maxExtents) {
      const entry = origin.snapshots.get(name);
      const snap = usableSnapshot(entry);
      const own = self && self !== entry ? usableSnapshot(self) : undefined;
      if (!snap || (self && self !== entry && !own) || merging()) return undefined;
      const runs = snap.changed.runs(offset, length, maxExtents);
      return toExtents(own ? unionRuns(runs, own.changed.runs(offset, length, maxExtents)) : runs);
    },
  };
}
