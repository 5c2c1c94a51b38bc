// The one owner of every export's life in the daemon: which origins and snapshots are open,
// attached, failed or served, and the order in which they may change. Everything that opens,
// serves, unserves, detaches or closes an export does it through these verbs (create, remove,
// startup restore and shutdown alike); the ops files around it keep only their catalog steps and
// fault points. It is the NBD server's ExportProvider: clients see an export only while it is
// in state 'serving'.
//
// The ordering rules, enforced here and nowhere else:
// - A snapshot is attached to its origin (the point in time) before it is served, and served only
//   once its creator says it is fully made (serveSnapshot).
// - An origin is served only when every snapshot registered under it is attached or failed, so
//   no origin write can arrive before a snapshot that should preserve it is attached.
// - An export is unserved and its clients disconnected before it is detached or closed.
// - An origin is closed only after all of its snapshots are detached.
import type { BufferPool } from '../block/buffer-pool.ts';
import type { FileDevice } from '../block/file-device.ts';
import type { OriginRow, SnapshotRow } from '../catalog/catalog.ts';
import type { Logger } from '../log.ts';
import type { ExportProvider, NbdExport } from '../nbd/exports.ts';
import { AutoExtendingStore, type AutoExtendPolicy } from '../store/auto-extend.ts';
import { openStore, validateChunkSize } from '../store/open-store.ts';
import type { CarriedTransient } from '../store/transient-store.ts';
import { SnapshotOrigin } from '../targets/snapshot-origin.ts';
import type { SnapshotMerge } from '../targets/merge.ts';
import type { CloseOptions, CopyObserver, Snapshot } from '../targets/snapshot.ts';
import { dirtyBitmapsFor } from './dirty-bitmaps.ts';
import { mergeHold } from './merge-hold.ts';
import { faultPoint } from './faults.ts';

/** Where an export is in its life. 'failed' entries have no target and are never served. */
export type ExportState = 'opening' | 'serving' | 'failed' | 'removing' | 'merging';

export interface SnapshotEntry {
  row: SnapshotRow;
  /** null when the COW could not be opened (see error) or the origin failed. */
  target: Snapshot | null;
  error: string | null;
  log: Logger;
  state: ExportState;
  /** Its merge, done, once detachSnapshot ended it: listed as merging at 100% until forgotten. */
  merged?: { totalChunks: number; chunkBytes: number };
}

export interface OriginEntry {
  row: OriginRow;
  /** null when the origin file or device could not be opened (see error). */
  target: SnapshotOrigin | null;
  error: string | null;
  log: Logger;
  state: ExportState;
  snapshots: Map<string, SnapshotEntry>;
}

/** What the lifecycle needs of the NBD server: its clients per export. */
export interface ExportConnections {
  connectionCount(exportName: string): number;
  disconnectExport(exportName: string): Promise<void>;
}

/** Steps of attachSnapshot a caller can observe (create's crash-injection points). */
export type AttachStep = 'store' | 'activate';

export interface AttachOptions {
  /** The table's chunk size (0 = the store's default or its header's). */
  chunkSectors: number;
  /** Called after each step, in order. Must not throw (create's crash-injection points kill the process). */
  checkpoint?: (step: AttachStep) => void;
  /** Grow the COW file before it fills (only for a COW file the daemon created). */
  autoextend?: AutoExtendPolicy;
  /** N only: the state the previous daemon carried over (live restart). */
  carried?: CarriedTransient;
}

/** Closes what was opened if `body` throws, then rethrows. */
async function closingOnError<T>(close: () => Promise<void>, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    await close();
    throw err;
  }
}

export class ExportLifecycle implements ExportProvider {
  private readonly originMap = new Map<string, OriginEntry>();
  private readonly served = new Map<string, NbdExport>();
  private clients: ExportConnections = { connectionCount: () => 0, disconnectExport: async () => undefined };
  private readonly bufferPool: BufferPool | undefined;
  private readonly onCopy: CopyObserver | undefined;
  private readonly mergeBatchBytes: number | undefined;
  /** The COW device of each attached snapshot (resizeCow grows it). */
  private readonly cows = new WeakMap<SnapshotEntry, FileDevice>();

  /**
   * `bufferPool`: where snapshots take their copy-out buffers (the NBD server's, in the daemon).
   * `onCopy`: the metrics hook every snapshot reports its copy-outs to.
   * `mergeBatchBytes`: chunk bytes per merge batch (default: the engine's; tests make it small
   * so that a merge lasts long enough to watch).
   */
  constructor(opts: { bufferPool?: BufferPool; onCopy?: CopyObserver; mergeBatchBytes?: number } = {}) {
    this.bufferPool = opts.bufferPool;
    this.onCopy = opts.onCopy;
    this.mergeBatchBytes = opts.mergeBatchBytes;
  }

  /** The server whose clients unserve() disconnects (it is built after this provider). */
  bindServer(clients: ExportConnections): void {
    this.clients = clients;
  }

  // ExportProvider (looked up by the NBD server at handshake time).
  get(name: string): NbdExport | undefined {
    return this.served.get(name);
  }

  list(): NbdExport[] {
    return [...this.served.values()];
  }

  get origins(): ReadonlyMap<string, OriginEntry> {
    return this.originMap;
  }

  connectionCount(name: string): number {
    return this.clients.connectionCount(name);
  }

  findSnapshot(name: string): { origin: OriginEntry; snapshot: SnapshotEntry } | undefined {
    for (const origin of this.originMap.values()) {
      const snapshot = origin.snapshots.get(name);
      if (snapshot) return { origin, snapshot };
    }
    return undefined;
  }

  /** Every snapshot, grouped by origin in catalog order. */
  snapshots(): { origin: OriginEntry; snapshot: SnapshotEntry }[] {
    return [...this.originMap.values()].flatMap((origin) => [...origin.snapshots.values()].map((snapshot) => ({ origin, snapshot })));
  }

  /** Origins and snapshots that failed to start. */
  failedCount(): number {
    return [...this.originMap.values()].filter((o) => o.state === 'failed').length + this.snapshots().filter((s) => s.snapshot.state === 'failed').length;
  }

  /** Register an origin on its opened device, not served yet (attach its snapshots, then serveOrigin). */
  addOrigin(row: OriginRow, device: FileDevice, log: Logger): OriginEntry {
    const entry: OriginEntry = { row, target: new SnapshotOrigin(device, { logger: log, bufferPool: this.bufferPool, onCopy: this.onCopy }), error: null, log, state: 'opening', snapshots: new Map() };
    this.originMap.set(row.name, entry);
    return entry;
  }

  /** Register an origin that could not be opened: listed with its reason, never served. */
  addFailedOrigin(row: OriginRow, error: string, log: Logger): OriginEntry {
    const entry: OriginEntry = { row, target: null, error, log, state: 'failed', snapshots: new Map() };
    this.originMap.set(row.name, entry);
    return entry;
  }

  /** Serve an origin; every snapshot under it must already be served or failed. */
  serveOrigin(origin: OriginEntry): void {
    if (origin.state !== 'opening' || !origin.target) throw new Error(`lifecycle: origin ${origin.row.name} is ${origin.state}, cannot serve it`);
    const pending = [...origin.snapshots.values()].filter((s) => s.state === 'opening');
    if (pending.length > 0) throw new Error(`lifecycle: origin ${origin.row.name} served before snapshot ${pending[0]!.row.name} was ready`);
    origin.state = 'serving';
    this.served.set(origin.row.name, { name: origin.row.name, device: origin.target, description: 'snapshot-origin', dirtyBitmaps: dirtyBitmapsFor(origin) });
  }

  /**
   * Open the store on `cow` and attach it to the origin at this moment (its point in time), with
   * the kernel's chunk-size checks against both devices. Takes ownership of `cow`: on failure
   * everything opened here is closed and the error is thrown. The snapshot is registered but not
   * served until serveSnapshot.
   */
  async attachSnapshot(origin: OriginEntry, row: SnapshotRow, cow: FileDevice, log: Logger, opts: AttachOptions): Promise<SnapshotEntry> {
    const originTarget = origin.target;
    if (!originTarget || (origin.state !== 'opening' && origin.state !== 'serving')) {
      await cow.close();
      throw new Error(`lifecycle: origin ${origin.row.name} is ${origin.state}, cannot attach ${row.name}`);
    }
    const target = await closingOnError(
      () => cow.close(),
      async () => {
        // As the kernel's constructor: the table's chunk size, and the one the store settles on
        // (an existing header wins), must suit both devices' block sizes.
        if (opts.chunkSectors !== 0) validateChunkSize(opts.chunkSectors, originTarget.blockSize, cow.blockSize);
        const store = await openStore(row.kind, cow, { chunkSectors: opts.chunkSectors, logger: log, carried: opts.carried });
        return closingOnError(
          () => store.close(),
          async () => {
            validateChunkSize(store.chunkSectors, originTarget.blockSize, cow.blockSize);
            opts.checkpoint?.('store');
            const used = opts.autoextend ? new AutoExtendingStore(store, opts.autoextend, (size) => cow.grow(size), log) : store;
            return originTarget.createSnapshot(used, { logger: log, size: row.sizeBytes ?? undefined });
          },
        );
      },
    );
    const entry: SnapshotEntry = { row, target, error: null, log, state: 'opening' };
    this.cows.set(entry, cow);
    origin.snapshots.set(row.name, entry);
    opts.checkpoint?.('activate');
    return entry;
  }

  /** Live restart: the in-memory state of every attached transient (N) snapshot, by name. */
  carryTransients(): Map<string, CarriedTransient> {
    const carried = new Map<string, CarriedTransient>();
    for (const origin of this.originMap.values()) {
      for (const snap of origin.snapshots.values()) {
        const state = snap.target?.carryTransient();
        if (state) carried.set(snap.row.name, state);
      }
    }
    return carried;
  }

  /** Live restart: the PO snapshots in Overflow (a state kept in memory only, as in the kernel). */
  overflowedSnapshots(): string[] {
    const names: string[] = [];
    for (const origin of this.originMap.values()) {
      for (const snap of origin.snapshots.values()) if (snap.target?.store.state === 'overflow') names.push(snap.row.name);
    }
    return names;
  }

  /** Register a snapshot that could not be started: listed with its reason, never served. */
  addFailedSnapshot(origin: OriginEntry, row: SnapshotRow, error: string, log: Logger): SnapshotEntry {
    const entry: SnapshotEntry = { row, target: null, error, log, state: 'failed' };
    origin.snapshots.set(row.name, entry);
    return entry;
  }

  /** Serve an attached snapshot (its creator has made it durable in the catalog). */
  serveSnapshot(origin: OriginEntry, snap: SnapshotEntry, row?: SnapshotRow): void {
    if (snap.state !== 'opening' || !snap.target) throw new Error(`lifecycle: snapshot ${snap.row.name} is ${snap.state}, cannot serve it`);
    if (row) snap.row = row;
    snap.state = 'serving';
    this.served.set(snap.row.name, {
      name: snap.row.name, device: snap.target, description: `snapshot of ${origin.row.name}`, dirtyBitmaps: dirtyBitmapsFor(origin, snap),
    });
  }

  /** Stop serving an export and disconnect its clients (in-flight requests are answered first). */
  private async unserve(name: string): Promise<void> {
    this.served.delete(name);
    await this.clients.disconnectExport(name);
  }

  /**
   * Unserve a snapshot and detach it from its origin (closing its store and COW). It stays listed
   * (state 'removing') until forgetSnapshot, once its catalog row is gone. Detaching is done even
   * if closing fails (the error is thrown), so a retry does not detach twice.
   */
  async detachSnapshot(origin: OriginEntry, snap: SnapshotEntry, opts: CloseOptions = {}): Promise<void> {
    snap.state = 'removing';
    await this.unserve(snap.row.name);
    const target = snap.target;
    snap.target = null;
    if (!target) return;
    // A merging snapshot is no longer among the origin's snapshots: ending the merge closes it.
    const merge = origin.target!.merge;
    if (merge?.snapshot === target) {
      if (merge.state === 'done') snap.merged = { totalChunks: merge.totalChunks, chunkBytes: target.chunkBytes };
      await origin.target!.endMerge(opts);
    } else await origin.target!.removeSnapshot(target, opts);
  }

  /**
   * Grow an attached snapshot's COW file to `size` bytes (snapshot resize); the store uses the
   * room at its next allocation. Returns the new size. Block devices are grown by their owner.
   */
  resizeCow(snap: SnapshotEntry, size: number): number {
    const cow = this.cows.get(snap);
    if (!cow || !snap.target || snap.state === 'removing') throw new Error(`lifecycle: snapshot ${snap.row.name} is ${snap.state}, cannot resize its COW`);
    return cow.grow(size);
  }

  /**
   * Start merging an attached snapshot into its origin: it stops being served (its clients are
   * disconnected, as the kernel's handover to snapshot-merge), gets no more copy-outs, and the
   * origin shows its content from now on. `totalChunks`: its count when the merge first started.
   */
  async startMerge(origin: OriginEntry, snap: SnapshotEntry, log: Logger, totalChunks?: number): Promise<SnapshotMerge> {
    const target = snap.target;
    if (!origin.target || !target || (snap.state !== 'serving' && snap.state !== 'opening')) {
      throw new Error(`lifecycle: snapshot ${snap.row.name} is ${snap.state}, cannot merge it`);
    }
    snap.state = 'merging';
    await this.unserve(snap.row.name);
    const afterBatch = (): Promise<void> => {
      faultPoint('snapshot-merge:after-batch');
      return mergeHold();
    };
    return origin.target.startMerge(target, log, { totalChunks, batchBytes: this.mergeBatchBytes, afterBatch });
  }

  /**
   * Give up an origin that was opened but must not be served (restore found its merging snapshot
   * unusable): detach whatever was attached to it, close it, and list it and its snapshots as
   * failed with `reason`. Nothing is recorded in the catalog: it starts again once fixed.
   */
  async failOrigin(origin: OriginEntry, reason: string): Promise<void> {
    if (origin.state !== 'opening') throw new Error(`lifecycle: origin ${origin.row.name} is ${origin.state}, cannot fail it`);
    for (const snap of origin.snapshots.values()) {
      if (snap.target) await this.detachSnapshot(origin, snap);
      if (snap.state !== 'failed') Object.assign(snap, { state: 'failed', error: `origin ${origin.row.name} is not available` });
    }
    const target = origin.target;
    Object.assign(origin, { target: null, state: 'failed', error: reason });
    await target?.close();
  }

  /** Drop a detached snapshot (its catalog row is deleted). */
  forgetSnapshot(origin: OriginEntry, snap: SnapshotEntry): void {
    if (snap.state !== 'removing' && snap.state !== 'failed') throw new Error(`lifecycle: snapshot ${snap.row.name} is still ${snap.state}`);
    origin.snapshots.delete(snap.row.name);
  }

  /** Unserve an origin and disconnect its clients; its snapshots are detached next, then closeOrigin. */
  async unserveOrigin(origin: OriginEntry): Promise<void> {
    origin.state = 'removing';
    await this.unserve(origin.row.name);
  }

  /** Close an unserved origin whose snapshots are all detached, and forget it. */
  async closeOrigin(origin: OriginEntry, opts: CloseOptions = {}): Promise<void> {
    if (origin.state !== 'removing' && origin.state !== 'failed') throw new Error(`lifecycle: origin ${origin.row.name} is still ${origin.state}`);
    if (origin.snapshots.size > 0) throw new Error(`lifecycle: origin ${origin.row.name} still has snapshots`);
    const target = origin.target;
    origin.target = null;
    this.originMap.delete(origin.row.name);
    if (target) {
      try {
        if (opts.flush !== false) await target.flush();
      } finally {
        await target.close();
      }
    }
  }

  /**
   * Shutdown (the NBD server is closed first): detach every snapshot and close every origin,
   * flushing each (not for a live restart: see CloseOptions). One export that fails to close does not leave the others open; the first
   * error is thrown at the end.
   */
  async closeAll(log: Logger, opts: CloseOptions = {}): Promise<void> {
    let failed: unknown;
    const attempt = async (what: string, step: () => Promise<void>): Promise<void> => {
      try {
        await step();
      } catch (err) {
        log.error({ err, export: what }, 'closing failed');
        failed ??= err;
      }
    };
    for (const origin of [...this.originMap.values()]) {
      // Unserved first, as in a remove: no origin write may arrive once a snapshot is detached.
      if (origin.state !== 'failed') await attempt(origin.row.name, () => this.unserveOrigin(origin));
      // A merging snapshot first: its engine must stop before any other snapshot stops getting
      // the copy-outs of the origin chunks it overwrites.
      const snaps = [...origin.snapshots.values()].sort((a, b) => Number(b.state === 'merging') - Number(a.state === 'merging'));
      for (const snap of snaps) await attempt(snap.row.name, () => this.detachSnapshot(origin, snap, opts));
      origin.snapshots.clear(); // a snapshot that failed to close is gone all the same
      await attempt(origin.row.name, () => this.closeOrigin(origin, opts));
    }
    this.originMap.clear();
    this.served.clear();
    if (failed) throw failed;
  }
}
