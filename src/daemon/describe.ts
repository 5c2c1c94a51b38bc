// Builds the control API's read results (lists, dmsetup-style status and table lines) from the
// lifecycle's live objects, falling back to catalog rows for failed entries.
import fs from 'node:fs';
import { SECTOR_BYTES } from '../common/sectors.ts';
import type { OriginInfo, SnapshotInfo, StatusLine, TableLine } from '../control/api.ts';
import { AutoExtendingStore } from '../store/auto-extend.ts';
import type { SnapshotMerge } from '../targets/merge.ts';
import type { OriginEntry, SnapshotEntry } from './lifecycle.ts';

export type ConnectionCount = (name: string) => number;

function originSize(origin: OriginEntry): number {
  return origin.target?.size ?? origin.row.sizeBytes;
}

function fileSize(p: string): number | null {
  try {
    return fs.statSync(p).size;
  } catch {
    return null; // missing: the snapshot is failed and says why
  }
}

export function describeOrigin(origin: OriginEntry, connections: ConnectionCount): OriginInfo {
  return {
    name: origin.row.name,
    path: origin.row.path,
    sizeBytes: originSize(origin),
    state: origin.target ? 'active' : 'failed',
    error: origin.error,
    snapshots: [...origin.snapshots.keys()],
    connections: connections(origin.row.name),
    createdAt: origin.row.createdAt,
  };
}

/** lvs Snap%: allocated/total; 0 while only the header and metadata are allocated. */
function dataPercent(allocated: number, total: number, metadata: number): number {
  if (total === 0 || allocated <= metadata) return 0;
  return Math.round((allocated / total) * 10000) / 100;
}

/** The snapshot's length: recorded when it was taken (older rows: the origin's size). */
function snapshotSize(origin: OriginEntry, snap: SnapshotEntry): number {
  return snap.target?.size ?? snap.row.sizeBytes ?? originSize(origin);
}

function autoextendInfo(snap: SnapshotEntry): SnapshotInfo['autoextend'] {
  const store = snap.target?.store;
  if (!(store instanceof AutoExtendingStore)) return null;
  return { ...store.policy, extensions: store.extensions };
}

/** The merge of `snap` into its origin, if it is the one merging. */
function mergeOf(origin: OriginEntry, snap: SnapshotEntry): SnapshotMerge | null {
  const merge = origin.target?.merge;
  return merge && snap.target && merge.snapshot === snap.target ? merge : null;
}

function mergeInfo(snap: SnapshotEntry, merge: SnapshotMerge | null): SnapshotInfo['merge'] {
  if (!merge) {
    if (!snap.merged) return null;
    const { totalChunks, chunkBytes } = snap.merged; // done, the snapshot is being removed
    return { percent: 100, mergedChunks: totalChunks, totalChunks, mergedBytes: totalChunks * chunkBytes, totalBytes: totalChunks * chunkBytes };
  }
  const chunk = merge.snapshot.chunkBytes;
  const { mergedChunks, totalChunks } = merge;
  return { percent: merge.percent, mergedChunks, totalChunks, mergedBytes: mergedChunks * chunk, totalBytes: totalChunks * chunk };
}

function snapshotState(snap: SnapshotEntry, merge: SnapshotMerge | null): SnapshotInfo['state'] {
  const store = snap.target?.store;
  if (snap.merged) return snap.error ? 'merge-failed' : 'merging'; // done and being removed, as LVM shows it to the end
  if (!store) return snap.state === 'removing' ? 'removing' : 'failed';
  if (merge) return merge.state === 'failed' ? 'merge-failed' : 'merging';
  return store.state === 'valid' ? 'active' : store.state;
}

export function describeSnapshot(origin: OriginEntry, snap: SnapshotEntry, connections: ConnectionCount): SnapshotInfo {
  snap.target?.refreshCowSize(); // a COW grown underneath shows its new size and Data% at once
  const store = snap.target?.store;
  const usage = store?.usage();
  const merge = mergeOf(origin, snap);
  const state = snapshotState(snap, merge);
  return {
    name: snap.row.name,
    origin: origin.row.name,
    cowPath: snap.row.cowPath,
    cowCreated: snap.row.cowCreated,
    kind: snap.row.kind,
    chunkSectors: store?.chunkSectors ?? snap.row.chunkSectors,
    sizeBytes: snapshotSize(origin, snap),
    cowSizeBytes: store ? store.cow.size : fileSize(snap.row.cowPath),
    autoextend: autoextendInfo(snap),
    merge: mergeInfo(snap, merge),
    dataPercent: usage && store?.state === 'valid' ? dataPercent(usage.allocatedSectors, usage.totalSectors, usage.metadataSectors) : null,
    allocatedSectors: usage?.allocatedSectors ?? null,
    totalSectors: usage?.totalSectors ?? null,
    metadataSectors: usage?.metadataSectors ?? null,
    state,
    error: merge?.error ? `Merge failed: ${merge.error}` : snap.error,
    connections: connections(snap.row.name),
    createdAt: snap.row.createdAt,
  };
}

/** A merging origin is the kernel's snapshot-merge target, whose status is its snapshot's ("Merge failed" once failed). */
export function originStatus(origin: OriginEntry): StatusLine {
  const sectors = Math.floor(originSize(origin) / SECTOR_BYTES);
  const merge = origin.target?.merge;
  if (!merge) return { name: origin.row.name, start: 0, sectors, target: 'snapshot-origin', info: '' };
  return { name: origin.row.name, start: 0, sectors, target: 'snapshot-merge', info: merge.state === 'failed' ? 'Merge failed' : merge.snapshot.status() };
}

export function snapshotStatus(origin: OriginEntry, snap: SnapshotEntry): StatusLine {
  const sectors = Math.floor(snapshotSize(origin, snap) / SECTOR_BYTES);
  return { name: snap.row.name, start: 0, sectors, target: 'snapshot', info: snap.target ? snap.target.status() : 'Failed' };
}

export function originTable(origin: OriginEntry): TableLine {
  const { info: _info, ...line } = originStatus(origin);
  const merge = origin.target?.merge;
  const merging = merge && [...origin.snapshots.values()].find((s) => s.target === merge.snapshot);
  if (!merge || !merging) return { ...line, args: [origin.row.path] };
  // snapshot-merge <origin-real> <cow> <P|PO> <chunk>, as dmsetup table shows it
  return { ...line, args: [origin.row.path, merging.row.cowPath, merging.row.kind, String(merge.snapshot.store.chunkSectors)] };
}

export function snapshotTable(origin: OriginEntry, snap: SnapshotEntry): TableLine {
  const chunk = snap.target?.store.chunkSectors ?? snap.row.chunkSectors;
  const { info: _info, ...line } = snapshotStatus(origin, snap);
  return { ...line, args: [origin.row.name, snap.row.cowPath, snap.row.kind, String(chunk)] };
}
