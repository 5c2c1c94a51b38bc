// snapshot merge: roll an origin back to a snapshot, online (LVM's lvconvert --merge, the kernel's
// snapshot-merge target; the engine is targets/merge.ts). Steps, each recorded before it acts so a
// crash is resumed at the next start (daemon/restore.ts):
//   start:  row merge_total set (the merge is on for good) -> the snapshot unserved, its clients
//           disconnected -> the origin shows the snapshot's content, the engine runs
//   finish: (engine done) merged snapshot detached, its store closed -> row 'removing' -> COW file
//           deleted if the daemon created it -> row deleted: the origin is a plain snapshot-origin again
// A failed merge stays in place ("Merge failed" in status, I/O still routed through the COW);
// restarting the daemon resumes it.
import fs from 'node:fs';
import { errorText } from '../common/error-text.ts';
import { ControlError } from '../control/api.ts';
import type { SnapshotMerge } from '../targets/merge.ts';
import type { DaemonContext } from './context.ts';
import { faultPoint } from './faults.ts';
import type { OriginEntry, SnapshotEntry } from './lifecycle.ts';

/** Why `snap` cannot be merged now, or null. */
function refusal(ctx: DaemonContext, origin: OriginEntry, snap: SnapshotEntry): string | null {
  const name = snap.row.name;
  if (snap.state === 'merging') return `snapshot ${name} is already merging into ${origin.row.name}`;
  if (!snap.target || !origin.target) return `snapshot ${name} is not available: ${snap.error ?? origin.error ?? snap.state}`;
  if (snap.state !== 'serving') return `snapshot ${name} is ${snap.state}`;
  if (snap.row.kind === 'N') return `snapshot ${name} is transient (N): it has no exceptions on disk to merge (the kernel refuses it too)`;
  const state = snap.target.store.state;
  if (state === 'invalid') return `snapshot ${name} is invalid: it lost its point in time, so there is nothing sound to merge; remove it`;
  if (state === 'overflow') return `snapshot ${name} overflowed: it cannot be merged; remove it`;
  const other = origin.target.merge;
  if (other) return `snapshot ${other.snapshot === snap.target ? name : 'another snapshot'} of ${origin.row.name} is merging already; wait for it`;
  return null;
}

/** Start merging snapshot `name` into its origin; returns once the origin shows the snapshot's content. */
export async function mergeSnapshot(ctx: DaemonContext, name: string, force: boolean): Promise<{ origin: OriginEntry; snapshot: SnapshotEntry }> {
  const found = ctx.exports.findSnapshot(name);
  if (!found) {
    const hint = ctx.catalog.nameOwner(name) === 'origin' ? ' (it is an origin)' : '';
    throw new ControlError('NOT_FOUND', `no snapshot named ${name}${hint}`);
  }
  const { origin, snapshot: snap } = found;
  const refused = refusal(ctx, origin, snap);
  if (refused) throw new ControlError('INVALID', refused);
  const connections = ctx.exports.connectionCount(name);
  if (connections > 0 && !force) {
    throw new ControlError('BUSY', `snapshot ${name} has ${connections} connected client(s); a merge disconnects them: detach them or use --force`);
  }
  const total = snap.target!.exceptionCount;
  ctx.catalog.setSnapshotMerging(name, total);
  faultPoint('snapshot-merge:after-mark');
  const merge = await ctx.exports.startMerge(origin, snap, snap.log, total);
  snap.log.info({ origin: origin.row.name, chunks: total, force }, 'merge started');
  watchMerge(ctx, origin, snap, merge);
  return found;
}

/** When the engine is done, finish the merge in the background (serialised with control requests). */
export function watchMerge(ctx: DaemonContext, origin: OriginEntry, snap: SnapshotEntry, merge: SnapshotMerge): void {
  void merge.finished.then(() => {
    if (merge.state !== 'done') return; // failed: stays routed and reported; stopped: resumed at the next start
    return ctx.exclusive(() => finishMerge(ctx, origin, snap)).catch((err: unknown) => {
      // Listed as merge-failed with this reason (merge --wait stops); the next start finishes it.
      snap.error = `finishing the merge failed: ${errorText(err)}; restarting the daemon finishes it`;
      snap.log.error({ err }, 'finishing the merge failed');
    });
  });
}

async function finishMerge(ctx: DaemonContext, origin: OriginEntry, snap: SnapshotEntry): Promise<void> {
  if (origin.snapshots.get(snap.row.name) !== snap || snap.state !== 'merging') return; // removed meanwhile
  await ctx.exports.detachSnapshot(origin, snap); // ends the merge: the origin is plain again
  faultPoint('snapshot-merge:after-detach');
  // Recorded before the COW file goes, as in a remove: startup repair finishes a merge cut short
  // from here on. (A merging row whose COW is gone would block its origin at the next start.)
  ctx.catalog.setSnapshotState(snap.row.name, 'removing');
  if (snap.row.cowCreated) fs.rmSync(snap.row.cowPath, { force: true });
  faultPoint('snapshot-merge:after-cow-delete');
  ctx.catalog.deleteSnapshot(snap.row.name);
  ctx.exports.forgetSnapshot(origin, snap);
  snap.log.info({ origin: origin.row.name, cowDeleted: snap.row.cowCreated }, 'snapshot merged into its origin and removed');
}
