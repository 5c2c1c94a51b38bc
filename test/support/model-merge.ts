// Merges in the randomized model test (test/integration/targets-model.test.ts): a P/PO snapshot
// with exceptions is merged into the origin while the test's random batches keep running against
// the origin and the other snapshots. What the model says (the kernel's snapshot-merge):
// - from startMerge on, the origin is the snapshot's image at that moment (origin writes racing
//   with the start are drained first, so they are rolled back), plus every write made after;
// - the other snapshots keep their point in time (their model images never change for a merge);
// - once done, the merged snapshot is gone: its store is empty on disk, it is no longer among the
//   origin's snapshots, its device is closed, and the raw origin device is byte-identical to the
//   model.
// Between batches, at any point of the merge, what the origin shows is also checked at one instant
// on the raw devices: each chunk from its COW chunk while the snapshot still maps it, else from
// the origin device. So a chunk dropped from the table before its copy landed, or a write that
// went to the origin while its chunk was unmerged (and was then copied over), shows at once.
// A merge may be restarted (stopped, its store reopened from the COW, resumed), as the daemon does
// at its next start.
import { expect } from 'vitest';
import type { MemoryDevice } from '../../src/block/memory-device.ts';
import { silentLogger } from '../../src/log.ts';
import { openStore } from '../../src/store/open-store.ts';
import type { StoreKind } from '../../src/store/exception-store.ts';
import type { SnapshotMerge } from '../../src/targets/merge.ts';
import type { SnapshotOrigin } from '../../src/targets/snapshot-origin.ts';
import type { Snapshot } from '../../src/targets/snapshot.ts';
import { jitter } from './jitter-device.ts';
import type { Rng } from './prng.ts';
import type { SnapshotModel } from './snapshot-model.ts';

/** A snapshot of the model test, with the raw COW it lives on. */
export interface LiveSnapshot {
  name: string;
  kind: StoreKind;
  chunkSectors: number;
  cow: MemoryDevice;
  snap: Snapshot;
}

/** What a merge needs of the model test's harness. */
export interface MergeWorld {
  readonly rng: Rng;
  readonly model: SnapshotModel;
  readonly origin: SnapshotOrigin;
  /** The origin's raw device (under the jitter layer). */
  readonly originMem: MemoryDevice;
  readonly live: Map<string, LiveSnapshot>;
  readonly step: number;
}

export class ModelMerge {
  private readonly w: MergeWorld;
  readonly entry: LiveSnapshot;
  private readonly batchBytes: number;
  private readonly totalChunks: number;
  merge: SnapshotMerge;
  restarts = 0;

  private constructor(w: MergeWorld, entry: LiveSnapshot, merge: SnapshotMerge, batchBytes: number) {
    this.w = w;
    this.entry = entry;
    this.merge = merge;
    this.batchBytes = batchBytes;
    this.totalChunks = merge.totalChunks;
  }

  /**
   * Merge snapshot `name` (P/PO, no I/O of its own in flight). Origin writes the caller issued just
   * before are drained by startMerge, so they are rolled back; `during`, called once the merge was
   * asked for, issues origin writes that wait for the start and land on the snapshot's image.
   */
  static async start(w: MergeWorld, name: string, during: () => Promise<void>): Promise<ModelMerge> {
    const entry = w.live.get(name)!;
    const cb = entry.chunkSectors * 512;
    // Small batches make a merge last several steps, so the batches run into it at every stage.
    const batchBytes = w.rng.pick([cb, 3 * cb, 16 * 1024, 1 << 30]);
    const starting = w.origin.startMerge(entry.snap, silentLogger(), { batchBytes });
    w.model.origin.set(w.model.get(name).image);
    w.model.remove(name);
    w.live.delete(name);
    const [merge] = await Promise.all([starting, during()]);
    const m = new ModelMerge(w, entry, merge, batchBytes);
    await m.checkOriginRead(); // at once: the snapshot's content, whatever was merged yet
    return m;
  }

  get finished(): boolean {
    return this.merge.state !== 'merging';
  }

  /** Stop the merge as a daemon shutdown does, reopen the store from its COW and resume, as at the next start. */
  async restart(): Promise<void> {
    await this.w.origin.endMerge();
    expect(this.merge.state).toMatch(/stopped|done/);
    const e = this.entry;
    const store = await openStore(e.kind, jitter(e.cow, this.w.rng), { chunkSectors: e.chunkSectors });
    e.snap = await this.w.origin.createSnapshot(store);
    expect(e.snap.exceptionCount, 'exceptions left after a restart').toBe(this.totalChunks - this.merge.mergedChunks);
    this.merge = await this.w.origin.startMerge(e.snap, silentLogger(), { totalChunks: this.totalChunks, batchBytes: this.batchBytes });
    this.restarts++;
    await this.checkOriginRead();
  }

  /** An offset (a multiple of `align`) in one of the chunks the merge takes next (the last exceptions made), or anywhere once none is left. */
  nextOffset(align: number): number {
    const snap = this.merge.snapshot;
    const cb = this.entry.chunkSectors * 512;
    const next: { chunk: number; mapped: number }[] = [];
    for (let chunk = 0; chunk * cb < this.w.model.origin.length; chunk++) {
      const mapped = snap.mappedChunk(chunk);
      if (mapped >= 0) next.push({ chunk, mapped });
    }
    next.sort((a, b) => b.mapped - a.mapped);
    const chunk = next.length > 0 ? this.w.rng.pick(next.slice(0, 4)).chunk : this.w.rng.int(0, this.w.model.origin.length / cb - 1);
    return chunk * cb + Math.floor(this.w.rng.int(0, cb - 1) / align) * align;
  }

  /** What the origin shows, from the raw devices at this instant (no origin write may be in flight). */
  checkRawView(): void {
    const { origin } = this.w.model;
    const cb = this.entry.chunkSectors * 512;
    const snap = this.merge.snapshot;
    for (let chunk = 0; chunk * cb < origin.length; chunk++) {
      const mapped = snap.mappedChunk(chunk);
      const raw = mapped >= 0 ? this.entry.cow.bytes.subarray(mapped * cb, (mapped + 1) * cb) : this.w.originMem.bytes.subarray(chunk * cb, (chunk + 1) * cb);
      if (!raw.equals(origin.subarray(chunk * cb, (chunk + 1) * cb))) {
        expect.fail(`merge of ${this.entry.name} (cs=${this.entry.chunkSectors}) after step ${this.w.step}: chunk ${chunk} ${mapped >= 0 ? `in COW chunk ${mapped}` : 'on the origin'} differs from the model`);
      }
    }
  }

  /** The merge is done: end it and check that the snapshot is gone and the origin device is the model. */
  async finish(): Promise<void> {
    const e = this.entry;
    expect(this.merge.state, `merge of ${e.name}: ${this.merge.error}`).toBe('done');
    expect(this.merge.percent).toBe(100);
    expect(e.snap.exceptionCount).toBe(0);
    expect(e.snap.store.status()).toMatch(/^(\d+)\/\d+ \1$/); // allocated == metadata: nothing left
    await this.w.origin.endMerge();
    expect(this.w.origin.merge).toBeNull();
    expect(this.w.origin.snapshots).not.toContain(e.snap);
    await expect(e.snap.read(Buffer.alloc(512), 0)).rejects.toThrow(/closed/);
    expect(this.w.originMem.bytes.equals(this.w.model.origin), `origin device after the merge of ${e.name} (step ${this.w.step})`).toBe(true);
    // On disk too: the COW reopens with no exception left.
    const reopened = await openStore(e.kind, e.cow, { chunkSectors: e.chunkSectors });
    expect(reopened.recordCount).toBe(0);
    await reopened.close();
  }

  private async checkOriginRead(): Promise<void> {
    const buf = Buffer.alloc(this.w.model.origin.length);
    await this.w.origin.read(buf, 0);
    expect(buf.equals(this.w.model.origin), `origin right after the merge of ${this.entry.name} started (step ${this.w.step})`).toBe(true);
  }
}
