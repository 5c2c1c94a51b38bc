// snapshot create / remove. Each step that leaves something on disk is preceded by a catalog
// change, so a crash at any point is repaired at the next start (daemon/repair.ts):
//   create: row 'creating' -> COW file (--size) -> store opened/initialised -> attached to the
//           origin (the point in time) -> row 'ready' -> served (daemon/lifecycle.ts does the
//           store, attach and serve steps and holds their ordering rules)
//   remove: row 'removing' -> unserved, clients disconnected (--force) -> detached (store closed,
//           flushed) -> COW file deleted if the daemon created it -> row deleted
// An error during create undoes the steps already done, in reverse, before replying.
import fs from 'node:fs';
import path from 'node:path';
import { FileDevice } from '../block/file-device.ts';
import { DEFAULT_CHUNK_SECTORS } from '../common/chunk-sectors.ts';
import { DEFAULT_SNAPSHOT_KIND } from '../common/snapshot-kind.ts';
import { ControlError, type RequestMap } from '../control/api.ts';
import type { SnapshotRow } from '../catalog/catalog.ts';
import type { DaemonContext } from './context.ts';
import { ensureNameFree, ensurePathFree, toControlError } from './conflicts.ts';
import { autoextendPolicy } from './autoextend-policy.ts';
import { faultPoint } from './faults.ts';
import { checkUserPath, makeDirs, pathIdentity } from './paths.ts';
import type { OriginEntry, SnapshotEntry } from './lifecycle.ts';

type CreateRequest = RequestMap['snapshot.create'];

function activeOrigin(ctx: DaemonContext, name: string): OriginEntry {
  const origin = ctx.exports.origins.get(name);
  if (!origin) {
    const hint = ctx.catalog.nameOwner(name) === 'snapshot' ? ' (it is a snapshot; snapshots of snapshots are not supported)' : '';
    throw new ControlError('NOT_FOUND', `no origin named ${name}${hint}`);
  }
  if (!origin.target) throw new ControlError('INVALID', `origin ${name} is not available: ${origin.error}`);
  if (origin.state === 'removing') throw new ControlError('INVALID', `origin ${name} is being removed`);
  return origin;
}

/** The COW path: <data-dir>/cow/<name>.cow for --size (built from the validated name), else the checked --cow. */
function planCow(ctx: DaemonContext, origin: OriginEntry, req: CreateRequest): { cowPath: string; created: boolean } {
  if (req.sizeBytes !== undefined) {
    const cowDir = path.join(ctx.config.dataDir, 'cow');
    makeDirs(cowDir, 0o700);
    const cowPath = path.join(cowDir, `${req.name}.cow`);
    if (fs.existsSync(cowPath)) throw new ControlError('EXISTS', `${cowPath} already exists (left over?); remove it or pass it with --cow`);
    return { cowPath, created: true };
  }
  const checked = checkUserPath(req.cow!, 'cow', ctx.config.dataDir);
  const originDevice = origin.row.path;
  if (checked.realPath === originDevice || checked.identity === pathIdentity(originDevice)) {
    throw new ControlError('INVALID', `cow: the COW device must not be the origin device (${originDevice})`);
  }
  ensurePathFree(ctx, checked, 'cow');
  return { cowPath: checked.realPath, created: false };
}

export async function createSnapshot(ctx: DaemonContext, req: CreateRequest): Promise<SnapshotEntry> {
  ensureNameFree(ctx, req.name);
  const origin = activeOrigin(ctx, req.origin);
  const { cowPath, created } = planCow(ctx, origin, req);
  const kind = req.kind ?? DEFAULT_SNAPSHOT_KIND;
  const chunkSectors = req.chunkSectors ?? DEFAULT_CHUNK_SECTORS;
  const row = ctx.catalog.beginSnapshot({
    name: req.name,
    origin: origin.row.name,
    cowPath,
    kind,
    chunkSectors,
    cowCreated: created,
    sizeBytes: origin.target!.size, // the snapshot's length, for good (an origin grown later does not change it)
    autoextendThreshold: req.autoextendThreshold ?? null,
    autoextendPercent: req.autoextendPercent ?? null,
  });
  faultPoint('snapshot-create:after-row');
  const log = ctx.log.child({ export: req.name });
  let cow: FileDevice | undefined;
  let entry: SnapshotEntry | undefined;
  try {
    cow = created ? FileDevice.open(cowPath, { createSize: req.sizeBytes }) : FileDevice.open(cowPath);
    faultPoint('snapshot-create:after-cow-file');
    entry = await ctx.exports.attachSnapshot(origin, row, cow, log, {
      chunkSectors,
      autoextend: autoextendPolicy(ctx.config, row),
      checkpoint: (step) => faultPoint(`snapshot-create:after-${step}`),
    });
    ctx.catalog.setSnapshotState(req.name, 'ready', entry.target!.store.chunkSectors);
    faultPoint('snapshot-create:after-ready');
  } catch (err) {
    // O_EXCL lost a race with someone else's file: that file is not ours to delete.
    const ours = cow !== undefined || (err as NodeJS.ErrnoException).code !== 'EEXIST';
    await undoCreate(ctx, origin, row, entry, ours);
    throw toControlError(err, created ? `cannot create the COW ${cowPath}` : `cow ${cowPath}`);
  }
  ctx.exports.serveSnapshot(origin, entry, ctx.catalog.getSnapshot(req.name)!);
  log.info({ origin: origin.row.name, cow: cowPath, kind, chunkSectors: entry.target!.store.chunkSectors }, 'snapshot created');
  return entry;
}

/**
 * Undo a failed create in reverse, every step even if an earlier one fails (logged: the create's
 * own error is the one reported; a row left 'creating' is rolled back at the next start).
 */
async function undoCreate(ctx: DaemonContext, origin: OriginEntry, row: SnapshotRow, entry: SnapshotEntry | undefined, cowIsOurs: boolean): Promise<void> {
  const steps: [string, () => unknown][] = [
    ['detach', () => entry && ctx.exports.detachSnapshot(origin, entry)], // closes the store and the COW
    ['delete the COW', () => row.cowCreated && cowIsOurs && fs.rmSync(row.cowPath, { force: true })],
    ['delete the row', () => ctx.catalog.deleteSnapshot(row.name)],
    ['forget', () => entry && ctx.exports.forgetSnapshot(origin, entry)],
  ];
  for (const [what, step] of steps) {
    try {
      await step();
    } catch (err) {
      ctx.log.error({ err, snapshot: row.name }, `undoing a failed create: ${what} failed`);
    }
  }
}

/** Remove one snapshot (the caller checked BUSY). Leaves an external COW alone. */
export async function removeSnapshotEntry(ctx: DaemonContext, origin: OriginEntry, snap: SnapshotEntry): Promise<void> {
  const name = snap.row.name;
  ctx.catalog.setSnapshotState(name, 'removing');
  faultPoint('snapshot-remove:after-mark');
  await ctx.exports.detachSnapshot(origin, snap);
  faultPoint('snapshot-remove:after-detach');
  if (snap.row.cowCreated) fs.rmSync(snap.row.cowPath, { force: true });
  faultPoint('snapshot-remove:after-cow-delete');
  ctx.catalog.deleteSnapshot(name);
  ctx.exports.forgetSnapshot(origin, snap);
  snap.log.info({ cowDeleted: snap.row.cowCreated }, 'snapshot removed');
}

export async function removeSnapshot(ctx: DaemonContext, name: string, force: boolean): Promise<string[]> {
  const found = ctx.exports.findSnapshot(name);
  if (!found) {
    const hint = ctx.catalog.nameOwner(name) === 'origin' ? ' (it is an origin: use origin remove)' : '';
    throw new ControlError('NOT_FOUND', `no snapshot named ${name}${hint}`);
  }
  if (found.snapshot.state === 'merging' && !force) {
    throw new ControlError('BUSY', `snapshot ${name} is merging into ${found.origin.row.name}: it goes away by itself when the merge is done (--force stops the merge half-way)`);
  }
  const connections = ctx.exports.connectionCount(name);
  if (connections > 0 && !force) {
    throw new ControlError('BUSY', `snapshot ${name} has ${connections} connected client(s); detach them or use --force`);
  }
  await removeSnapshotEntry(ctx, found.origin, found.snapshot);
  return [name];
}
