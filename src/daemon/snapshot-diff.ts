// snapshot diff: the extents that changed since a snapshot was taken, in the origin or in the
// snapshot, read from its changed-chunk map (targets/changed-map.ts) as merged runs. The map only
// grows, so every change acknowledged before the request is in the answer
// (docs/incremental-backup.md). The map is read in batches with the event loop let go in between,
// so a fragmented map does not stall NBD requests; one too fragmented for a control reply is
// refused with a pointer to the NBD meta context, which serves any map in windows.
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { ControlError, MAX_REPLY_BYTES, type SnapshotDiff } from '../control/api.ts';
import type { ChangedExtent, ChangedMap } from '../targets/changed-map.ts';
import type { DaemonContext } from './context.ts';
import { usableSnapshot, type SnapshotLike } from './dirty-bitmaps.ts';

/** Reply bytes one extent may take: `{"offset":N,"length":N},` with 16-digit numbers is 54. */
const EXTENT_REPLY_BYTES = 56;
/** Most extents in one reply, leaving 64 KiB of the reply limit for the rest of it. */
export const MAX_DIFF_EXTENTS = Math.floor((MAX_REPLY_BYTES - 64 * 1024) / EXTENT_REPLY_BYTES);
/** Extents read between two turns of the event loop. */
const BATCH_EXTENTS = 16384;

function unusable(name: string, snapshot: SnapshotLike & { error: string | null }): ControlError {
  const why = snapshot.error ? `failed: ${snapshot.error}`
    : snapshot.target?.store.state === 'invalid' ? 'invalid: origin writes since were not recorded in it' : snapshot.state;
  return new ControlError('INVALID', `snapshot ${name} is ${why}; it has no changed-chunk map to report`);
}

/** Every changed extent of `map`, or undefined past `max` of them. */
async function readExtents(map: ChangedMap, max: number): Promise<ChangedExtent[] | undefined> {
  const out: ChangedExtent[] = [];
  for (let offset = 0; ;) {
    const batch = map.changedExtents(offset, BATCH_EXTENTS);
    for (const extent of batch) {
      const last = out[out.length - 1];
      if (last && last.offset + last.length === extent.offset) last.length += extent.length; // marked since the last batch
      else if (out.length === max) return undefined;
      else out.push(extent);
    }
    if (batch.length < BATCH_EXTENTS) return out;
    offset = out[out.length - 1].offset + out[out.length - 1].length;
    await yieldToEventLoop();
  }
}

export async function snapshotDiff(ctx: DaemonContext, name: string): Promise<SnapshotDiff> {
  const found = ctx.exports.findSnapshot(name);
  if (!found) {
    const hint = ctx.catalog.nameOwner(name) === 'origin' ? ' (it is an origin; diff takes a snapshot)' : '';
    throw new ControlError('NOT_FOUND', `no snapshot named ${name}${hint}`);
  }
  const { origin, snapshot } = found;
  const target = usableSnapshot(snapshot);
  if (!target) throw unusable(name, snapshot);
  const extents = await readExtents(target.changed, MAX_DIFF_EXTENTS);
  if (!usableSnapshot(snapshot)) throw unusable(name, snapshot); // invalidated or removed meanwhile
  if (!extents) {
    throw new ControlError(
      'INVALID',
      `snapshot ${name} has more than ${MAX_DIFF_EXTENTS} changed extents, too many for one reply: read its map over NBD ` +
        `in windows instead, e.g. nbdinfo --map=qemu:dirty-bitmap:${name} 'nbd+unix:///${origin.row.name}?socket=${ctx.config.nbdSocket}'`,
    );
  }
  const changedBytes = extents.reduce((sum, e) => sum + e.length, 0);
  return { name, origin: origin.row.name, sizeBytes: target.size, chunkBytes: target.chunkBytes, changedBytes, extents };
}
