// Merges in the power-cut simulation (crash-powercut-run.ts): a P/PO snapshot is merged into the
// origin while the workload goes on, and the power is cut at random operations of the merge
// (copies, origin flushes, area writes) as of anything else. The merging snapshot leaves the world's
// slots (no workload, no copy-outs; it is the daemon's catalog row 'merging' that is kept here).
// - Start: the origin and the snapshot are quiesced, the snapshot is flushed and read back; from
//   then on the model's origin is that image (the flush makes it the durable value of each
//   sector), and startMerge makes the origin show it at once. A cut before that leaves no merge.
// - A cut: the old engine is stopped (the power is gone), the COW image is checked like the
//   others, the device restarts from its surviving image, and once the world is rebuilt the store
//   is reopened and the merge resumed before any I/O, as the daemon does at its next start.
// - Done (checked between cuts): the store is empty, the merge is ended, and the origin device
//   itself holds, per sector, the model's value (snapshot at merge start + guaranteed writes).
import { silentLogger } from '../../src/log.ts';
import { openStore } from '../../src/store/open-store.ts';
import type { SnapshotMerge } from '../../src/targets/merge.ts';
import { checkCowImage } from './crash-cow-check.ts';
import { SECTOR } from './crash-pattern.ts';
import { ORIGIN, type PowercutWorld, type SnapSlot } from './crash-powercut-world.ts';
import { jitter } from './jitter-device.ts';
import { PowercutDevice } from './powercut-device.ts';

/** What the merges add to the power-cut results. */
export interface MergeCounts {
  mergesStarted: number;
  merges: number;
  /** Cuts that hit a merge still running. */
  cutsDuringMerge: number;
  /** Merging COWs a cut left with stale records after the terminator of a torn multi-area commit (see cut()). */
  tornMergeCommits: number;
}

export class PowercutMerge {
  private readonly w: PowercutWorld;
  private readonly counts: MergeCounts;
  private readonly failures: string[];
  private slot: SnapSlot | null = null;
  private merge: SnapshotMerge | null = null;
  private batchBytes = 0;
  private totalChunks = 0;

  constructor(w: PowercutWorld, counts: MergeCounts, failures: string[]) {
    this.w = w;
    this.counts = counts;
    this.failures = failures;
  }

  get active(): boolean {
    return this.slot !== null;
  }

  /** During the load: merge a random P/PO snapshot with exceptions (unless the power goes first). */
  async startDuringLoad(): Promise<void> {
    const w = this.w;
    const slots = [...w.snaps.values()].filter((s) => s.kind !== 'N' && s.confirmed && s.snap!.exceptionCount > 0);
    if (slots.length === 0 || w.rail.isCut) return;
    const slot = w.rng.pick(slots);
    await w.workload.quiesce(ORIGIN);
    try {
      await w.workload.quiesce(slot.name);
      const token = w.model.beginFlush(slot.name);
      await slot.snap!.flush();
      if (w.rail.isCut) return;
      w.model.endFlush(slot.name, token);
      const image = Buffer.alloc(w.originBytes);
      await slot.snap!.read(image, 0);
      if (w.rail.isCut) return;
      this.failures.push(...w.model.checkImage(slot.name, image));
      w.model.settle(ORIGIN, image);
      w.forget(slot);
      w.rail.attach(slot.dev); // forget() took it off the rail: it still is the merging COW
      this.slot = slot;
      this.batchBytes = w.rng.pick([1, 4, 32, 128]) * slot.chunkSectors * SECTOR;
      this.counts.mergesStarted++;
      this.merge = await w.origin.startMerge(slot.snap!, silentLogger(), { batchBytes: this.batchBytes });
      this.totalChunks = this.merge.totalChunks;
    } finally {
      w.workload.resume(ORIGIN);
      if (!this.slot) w.workload.resume(slot.name);
    }
  }

  /** The power went: the engine stops with it; the COW image must be a consistent store. Before restartDevices(). */
  async cut(): Promise<void> {
    const slot = this.slot;
    if (!slot) return;
    if (this.merge?.state === 'merging') this.counts.cutsDuringMerge++;
    await this.merge?.stop();
    this.merge = null;
    const check = checkCowImage(this.w.rail.imageOf(slot.dev), slot.chunkSectors, Math.ceil(this.w.originBytes / (slot.chunkSectors * SECTOR)));
    if (check.state !== 'valid') this.failures.push(`merging ${slot.name}: COW ${check.state} after a power cut`);
    for (const p of check.problems) {
      // A cut inside a commit that clears records in several areas (plain writes, then one flush)
      // may keep a lower sector of an area's write and lose a higher one: cleared records, then
      // stale ones after the new terminator. No loader reads past a terminator (nor the kernel's),
      // and a merging store only ever moves its terminator down, never appends: they cannot come
      // back. (The kernel's one FUA area write can tear the same way on a real disk.)
      if (/non-zero bytes after the terminator/.test(p)) this.counts.tornMergeCommits++;
      else this.failures.push(`merging ${slot.name} (cs=${slot.chunkSectors}, batch ${this.batchBytes}) COW: ${p}`);
    }
    this.w.rail.detach(slot.dev);
    slot.dev = new PowercutDevice(this.w.rail, this.w.rail.imageOf(slot.dev));
  }

  /** After the world was rebuilt, before any I/O: reopen the store and resume the merge. */
  async resume(): Promise<void> {
    const slot = this.slot;
    if (!slot) return;
    const store = await openStore(slot.kind, jitter(slot.dev, this.w.rng), { chunkSectors: slot.chunkSectors });
    slot.snap = await this.w.origin.createSnapshot(store);
    this.merge = await this.w.origin.startMerge(slot.snap, silentLogger(), { totalChunks: this.totalChunks, batchBytes: this.batchBytes });
  }

  /** At the end of a run: let a merge still running finish (no load, no cut), then as finishIfDone. */
  async drain(): Promise<void> {
    await this.merge?.finished;
    await this.finishIfDone();
  }

  /** Between cuts (nothing running): a finished merge is ended and the origin device checked. */
  async finishIfDone(): Promise<void> {
    const { slot, merge } = this;
    if (!slot || !merge || merge.state === 'merging') return;
    if (merge.state !== 'done') this.failures.push(`merge of ${slot.name} ${merge.state}: ${merge.error}`);
    if (!/^(\d+)\/\d+ \1$/.test(slot.snap!.store.status())) this.failures.push(`merged ${slot.name}: store not empty (${slot.snap!.store.status()})`);
    await this.w.origin.endMerge();
    this.w.rail.detach(slot.dev);
    this.slot = null;
    this.merge = null;
    const image = Buffer.alloc(this.w.originBytes);
    await this.w.originDev.read(image, 0); // the raw device: no routing left
    this.failures.push(...this.w.model.checkImage(ORIGIN, image).map((f) => `origin device after the merge of ${slot.name}: ${f}`));
    this.counts.merges++;
  }
}
