// snapshot resize: grow a snapshot's COW file (lvextend of a snapshot). The store uses the new
// room at its next allocation, as the kernel does when a COW device grows. A COW is never shrunk
// (the kernel cannot use a smaller one), and a block device is grown by its owner, not by us: the
// daemon sees its new size by itself.
import fs from 'node:fs';
import { ControlError, type RequestMap } from '../control/api.ts';
import type { DaemonContext } from './context.ts';
import type { OriginEntry, SnapshotEntry } from './lifecycle.ts';
import { toControlError } from './conflicts.ts';

type ResizeRequest = RequestMap['snapshot.resize'];

function isBlockDevice(p: string): boolean {
  try {
    return fs.statSync(p).isBlockDevice();
  } catch {
    return false;
  }
}

export function resizeSnapshot(ctx: DaemonContext, req: ResizeRequest): { origin: OriginEntry; snapshot: SnapshotEntry } {
  const found = ctx.exports.findSnapshot(req.name);
  if (!found) {
    const hint = ctx.catalog.nameOwner(req.name) === 'origin' ? ' (it is an origin)' : '';
    throw new ControlError('NOT_FOUND', `no snapshot named ${req.name}${hint}`);
  }
  const snap = found.snapshot;
  const cow = snap.target?.store.cow;
  if (!snap.target || !cow || snap.state !== 'serving') {
    throw new ControlError('INVALID', `snapshot ${req.name} is ${snap.error ? `failed: ${snap.error}` : snap.state}; only an active snapshot's COW can be resized`);
  }
  if (isBlockDevice(snap.row.cowPath)) {
    throw new ControlError('INVALID', `the COW of ${req.name} is the block device ${snap.row.cowPath}: grow the device itself (e.g. lvextend); nbdsnap uses the new size at once`);
  }
  snap.target.refreshCowSize();
  const current = cow.size;
  const wanted = req.sizeBytes ?? current + req.growBytes!;
  if (wanted < current) throw new ControlError('INVALID', `size: a COW cannot shrink (${req.name}'s is ${current} bytes, asked for ${wanted})`);
  let size: number;
  try {
    size = ctx.exports.resizeCow(snap, wanted);
  } catch (err) {
    throw toControlError(err, `cannot resize the COW ${snap.row.cowPath}`);
  }
  snap.log.info({ from: current, to: size, cow: snap.row.cowPath }, 'COW resized');
  return found;
}
