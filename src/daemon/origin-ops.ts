// origin add / remove. add opens the file or device first and writes the catalog row last, so
// there is nothing to repair if it crashes. remove marks the origin 'removing' first; startup
// finishes an interrupted removal (daemon/repair.ts).
import { SECTOR_BYTES } from '../common/sectors.ts';
import { FileDevice } from '../block/file-device.ts';
import { ControlError } from '../control/api.ts';
import type { DaemonContext } from './context.ts';
import { ensureNameFree, ensurePathFree, toControlError } from './conflicts.ts';
import { faultPoint } from './faults.ts';
import { checkUserPath } from './paths.ts';
import type { OriginEntry } from './lifecycle.ts';
import { removeSnapshotEntry } from './snapshot-ops.ts';

function openOriginDevice(realPath: string): FileDevice {
  let device: FileDevice;
  try {
    device = FileDevice.open(realPath);
  } catch (err) {
    throw toControlError(err, `cannot open ${realPath}`);
  }
  if (device.size === 0 || device.size % SECTOR_BYTES !== 0) {
    void device.close();
    throw new ControlError('INVALID', `path: ${realPath} is ${device.size} bytes; an origin must be a non-empty multiple of ${SECTOR_BYTES} bytes`);
  }
  return device;
}

export function addOrigin(ctx: DaemonContext, name: string, userPath: string): OriginEntry {
  ensureNameFree(ctx, name);
  const checked = checkUserPath(userPath, 'path', ctx.config.dataDir);
  ensurePathFree(ctx, checked, 'path');
  const device = openOriginDevice(checked.realPath);
  let row;
  try {
    row = ctx.catalog.addOrigin({ name, path: checked.realPath, sizeBytes: device.size });
  } catch (err) {
    void device.close();
    throw toControlError(err, 'origin add');
  }
  faultPoint('origin-add:after-row');
  const log = ctx.log.child({ export: name });
  const entry = ctx.exports.addOrigin(row, device, log);
  ctx.exports.serveOrigin(entry);
  log.info({ path: checked.realPath, sizeBytes: device.size }, 'origin added');
  return entry;
}

function busyReason(ctx: DaemonContext, origin: OriginEntry): string | undefined {
  const snapshots = [...origin.snapshots.keys()];
  if (snapshots.length > 0) return `origin ${origin.row.name} has snapshots (${snapshots.join(', ')}); remove them first or use --force`;
  const connections = ctx.exports.connectionCount(origin.row.name);
  if (connections > 0) return `origin ${origin.row.name} has ${connections} connected client(s); detach them or use --force`;
  return undefined;
}

/** Remove an origin; with force, its snapshots first (disconnecting every client). Returns the names removed. */
export async function removeOrigin(ctx: DaemonContext, name: string, force: boolean): Promise<string[]> {
  const origin = ctx.exports.origins.get(name);
  if (!origin) {
    const hint = ctx.catalog.nameOwner(name) === 'snapshot' ? ' (it is a snapshot: use snapshot remove)' : '';
    throw new ControlError('NOT_FOUND', `no origin named ${name}${hint}`);
  }
  const busy = busyReason(ctx, origin);
  if (busy && !force) throw new ControlError('BUSY', busy);
  ctx.catalog.setOriginState(name, 'removing');
  faultPoint('origin-remove:after-mark');
  await ctx.exports.unserveOrigin(origin);
  const removed: string[] = [];
  for (const snap of [...origin.snapshots.values()]) {
    await removeSnapshotEntry(ctx, origin, snap);
    removed.push(snap.row.name);
  }
  faultPoint('origin-remove:after-snapshots');
  await ctx.exports.closeOrigin(origin);
  faultPoint('origin-remove:after-close');
  ctx.catalog.deleteOrigin(name);
  origin.log.info({ snapshots: removed }, 'origin removed');
  return [...removed, name];
}
