// Startup restore: open every origin in the catalog and attach all of its snapshots before the
// origin is served (the lifecycle refuses otherwise). Each snapshot keeps the length it was taken
// with: an origin grown since is served with its snapshots unchanged, one shrunk below a snapshot
// is failed. A snapshot whose COW is missing or corrupt,
// or an origin that cannot be opened, is kept as failed with the reason; the rest start normally.
import { FileDevice } from '../block/file-device.ts';
import { errorText } from '../common/error-text.ts';
import type { OriginRow, SnapshotRow } from '../catalog/catalog.ts';
import type { Logger } from '../log.ts';
import { autoextendPolicy } from './autoextend-policy.ts';
import type { DaemonContext } from './context.ts';
import type { OriginEntry } from './lifecycle.ts';
import { watchMerge } from './snapshot-merge.ts';

/** Why a snapshot in the catalog must not be started, or null. */
function refusal(origin: OriginEntry, row: SnapshotRow, carried: boolean, log: Logger): string | null {
  if (!origin.target) return `origin ${origin.row.name} is not available`;
  if (row.failure !== null) return `${row.failure}; the origin was written without it since, so its point in time is lost: remove it`;
  if (row.kind === 'N' && !carried) {
    // A transient store keeps its exceptions in memory only: reopened empty it would show today's
    // origin instead of the point in time, so it is reported, never served (as after a reboot).
    log.warn('transient snapshot not restored');
    return 'a transient (N) snapshot does not survive a daemon restart; remove it';
  }
  return null;
}

/** What restoring one snapshot leaves to do for its origin. */
interface Restored {
  /** Why the origin must not be served (a merging snapshot could not be opened: it would show a half-merged state). */
  blocked?: string;
  /** A merging snapshot, attached: its merge resumes once every snapshot is attached. */
  resume?: () => Promise<void>;
}

/** Attach one snapshot and serve it, or prepare its merge's resumption. */
async function restoreSnapshot(ctx: DaemonContext, origin: OriginEntry, row: SnapshotRow, log: Logger): Promise<Restored> {
  const { exports, catalog, config } = ctx;
  const carried = ctx.transients?.get(row.name);
  ctx.transients?.delete(row.name);
  const refused = refusal(origin, row, carried !== undefined, log);
  if (refused) {
    exports.addFailedSnapshot(origin, row, refused, log);
    return {};
  }
  try {
    const snap = await exports.attachSnapshot(origin, row, FileDevice.open(row.cowPath), log, {
      chunkSectors: row.chunkSectors,
      autoextend: autoextendPolicy(config, row),
      carried,
    });
    // Overflow lives in memory only (as in the kernel); a live restart carries it over.
    if (ctx.overflowed?.delete(row.name)) snap.target?.store.overflow();
    if (row.mergeTotal === null) {
      exports.serveSnapshot(origin, snap);
      return {};
    }
    // Merging when the daemon stopped: the merge resumes where the store says, before the origin
    // is served but after every other snapshot is attached (they get the merge's copy-outs).
    const total = row.mergeTotal;
    return {
      resume: async () => {
        const merge = await exports.startMerge(origin, snap, log, total);
        log.info({ left: snap.target!.exceptionCount, of: total }, 'merge resumed');
        watchMerge(ctx, origin, snap, merge);
      },
    };
  } catch (err) {
    const error = errorText(err);
    exports.addFailedSnapshot(origin, row, error, log);
    if (row.mergeTotal !== null) {
      log.error({ err, cow: row.cowPath }, 'merging snapshot failed to start: its origin is not served');
      return { blocked: `snapshot ${row.name} was merging into it and cannot be opened (${error}); the origin would show a half-merged state` };
    }
    // The origin is about to be served without this snapshot: it will miss origin writes, so it
    // must never be served again, even if its COW is readable at the next start.
    catalog.setSnapshotFailure(row.name, `failed to start: ${error}`);
    log.error({ err, cow: row.cowPath }, 'snapshot failed to start');
    return {};
  }
}

/**
 * Why an origin must not be served with its snapshots: it is shorter than one of them (shrunk
 * offline; LVM refuses to reduce an origin with snapshots). Serving it would lose access to the
 * snapshot's preserved chunks past the new end. Growing the origin back makes it usable again.
 */
function shrankBelow(size: number, snapshots: SnapshotRow[]): string | null {
  const longer = snapshots.filter((s) => s.sizeBytes !== null && s.sizeBytes > size);
  if (longer.length === 0) return null;
  const list = longer.map((s) => `${s.name} (${s.sizeBytes} bytes)`).join(', ');
  return `the origin is ${size} bytes, shorter than its snapshot(s) ${list}: it shrank since they were taken; grow it back to serve it`;
}

function openOrigin(ctx: DaemonContext, row: OriginRow, snapshots: SnapshotRow[], log: Logger): OriginEntry {
  const { exports, catalog } = ctx;
  let device: FileDevice | undefined;
  try {
    device = FileDevice.open(row.path);
    if (device.size !== row.sizeBytes) {
      log.warn({ was: row.sizeBytes, now: device.size }, 'origin size changed since it was added');
      catalog.setOriginSize(row.name, device.size);
      row = { ...row, sizeBytes: device.size };
    }
    const shrank = shrankBelow(device.size, snapshots);
    if (shrank) throw new Error(shrank);
  } catch (err) {
    void device?.close();
    log.error({ err, path: row.path }, 'origin failed to start');
    return exports.addFailedOrigin(row, errorText(err), log);
  }
  return exports.addOrigin(row, device, log);
}

/**
 * Snapshot rows made before lengths were recorded get one now: the origin's size, the best
 * knowledge there is (the origin cannot have changed while the daemon held it).
 */
function recordLengths(ctx: DaemonContext, origin: OriginEntry, snapshots: SnapshotRow[]): SnapshotRow[] {
  if (!origin.target) return snapshots;
  return snapshots.map((row) => {
    if (row.sizeBytes !== null) return row;
    ctx.catalog.setSnapshotSize(row.name, origin.row.sizeBytes);
    return { ...row, sizeBytes: origin.row.sizeBytes };
  });
}

/** Open every export in the catalog (after repairCatalog) and serve what opened. */
export async function restoreAll(ctx: DaemonContext): Promise<void> {
  for (const row of ctx.catalog.listOrigins()) {
    const snapshots = ctx.catalog.listSnapshots(row.name);
    const origin = openOrigin(ctx, row, snapshots, ctx.log.child({ export: row.name }));
    let blocked: string | undefined;
    const resumes: (() => Promise<void>)[] = [];
    for (const snapRow of recordLengths(ctx, origin, snapshots)) {
      const restored = await restoreSnapshot(ctx, origin, snapRow, ctx.log.child({ export: snapRow.name }));
      blocked ??= restored.blocked;
      if (restored.resume) resumes.push(restored.resume);
    }
    if (blocked) {
      await ctx.exports.failOrigin(origin, blocked);
      continue;
    }
    for (const resume of resumes) await resume();
    if (origin.target) ctx.exports.serveOrigin(origin);
  }
}
