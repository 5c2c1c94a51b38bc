// Builds the control API's read results (lists, dmsetup-style status and table lines) from the
// lifecycle's live objects, falling back to catalog rows for failed entries.
import fs from 'node:fs';
import { SECTOR_BYTES } from '../common/sectors.ts';
import type { OriginInfo, SnapshotInfo, StatusLine, TableLine } from '../control/api.ts';
import { AutoExtendingStore } from '../store/auto-extend.ts';
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

export function describeSnapshot(origin: OriginEntry, snap: SnapshotEntry, connections: ConnectionCount): SnapshotInfo {
  snap.target?.refreshCowSize(); // a COW grown underneath shows its new size and Data% at once
  const store = snap.target?.store;
  const usage = store?.usage();
  const state = !store ? 'failed' : store.state === 'valid' ? 'active' : store.state;
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
    dataPercent: usage && store?.state === 'valid' ? dataPercent(usage.allocatedSectors, usage.totalSectors, usage.metadataSectors) : null,
    allocatedSectors: usage?.allocatedSectors ?? null,
    totalSectors: usage?.totalSectors ?? null,
    metadataSectors: usage?.metadataSectors ?? null,
    state,
    error: snap.error,
    connections: connections(snap.row.name),
    createdAt: snap.row.createdAt,
  };
}

export function originStatus(origin: OriginEntry): StatusLine {
  return { name: origin.row.name, start: 0, sectors: Math.floor(originSize(origin) / SECTOR_BYTES), target: 'snapshot-origin', info: '' };
}

export function snapshotStatus(origin: OriginEntry, snap: SnapshotEntry): StatusLine {
  const sectors = Math.floor(snapshotSize(origin, snap) / SECTOR_BYTES);
  return { name: snap.row.name, start: 0, sectors, target: 'snapshot', info: snap.target ? snap.target.status() : 'Failed' };
}

export function originTable(origin: OriginEntry): TableLine {
  const { info: _info, ...line } = originStatus(origin);
  return { ...line, args: [origin.row.path] };
}

export function snapshotTable(origin: OriginEntry, snap: SnapshotEntry): TableLine {
  const chunk = snap.target?.store.chunkSectors ?? snap.row.chunkSectors;
  const { info: _info, ...line } = snapshotStatus(origin, snap);
  return { ...line, args: [origin.row.name, snap.row.cowPath, snap.row.kind, String(chunk)] };
}
