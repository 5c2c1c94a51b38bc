// Randomized model-based test of snapshot-origin + snapshot: random batches of concurrent origin
// writes, snapshot writes, write-zeroes, reads and flushes (on jittery devices, so they really
// interleave), plus snapshot creation, removal and reopen between batches, and merges of a P/PO
// snapshot into the origin that run in the background under the following batches (see
// test/support/model-merge.ts: origin = the snapshot's image at the start + later writes, other
// snapshots unchanged, the merged one gone, checked at every step of the merge and at its end);
// every device is compared with the reference model after every batch. NBDSNAP_MODEL_SEEDS=N runs
// more seeds (long mode), NBDSNAP_MODEL_SEED=S replays one.
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/block/memory-device.ts';
import type { BlockDevice } from '../../src/block/device.ts';
import { openStore } from '../../src/store/open-store.ts';
import type { StoreKind } from '../../src/store/exception-store.ts';
import { SnapshotOrigin } from '../../src/targets/snapshot-origin.ts';
import { jitter } from '../support/jitter-device.ts';
import { ModelMerge, type LiveSnapshot } from '../support/model-merge.ts';
import { makeRng, type Rng } from '../support/prng.ts';
import { SnapshotModel, allocatedDataChunks, pattern } from '../support/snapshot-model.ts';

const ORIGIN_BYTES = 256 * 1024;
const SECTOR = 512;

interface Op {
  target: string; // 'origin' or a snapshot name
  kind: 'write' | 'zero' | 'read' | 'flush';
  offset: number;
  length: number;
}

class Harness {
  readonly rng: Rng;
  readonly model = new SnapshotModel(ORIGIN_BYTES);
  readonly origin: SnapshotOrigin;
  readonly originMem = new MemoryDevice(ORIGIN_BYTES);
  readonly live = new Map<string, LiveSnapshot>();
  merging: ModelMerge | null = null;
  mergesDone = 0;
  private counter = 0;
  step = 0;

  constructor(seed: number) {
    this.rng = makeRng(seed);
    this.origin = new SnapshotOrigin(jitter(this.originMem, this.rng));
  }

  device(target: string): BlockDevice {
    return target === 'origin' ? this.origin : this.live.get(target)!.snap;
  }

  async create(kind = this.rng.pick<StoreKind>(['P', 'PO', 'N'])): Promise<void> {
    const chunkSectors = this.rng.pick([1, 2, 8, 16, 64]);
    // Room for every origin chunk plus header and metadata areas: the store never fills here.
    const chunks = ORIGIN_BYTES / (chunkSectors * SECTOR);
    const cow = new MemoryDevice((chunks + 2 + Math.ceil(chunks / (chunkSectors * 32))) * chunkSectors * SECTOR);
    const store = await openStore(kind, jitter(cow, this.rng), { chunkSectors });
    const name = `s${this.counter++}`;
    const snap = await this.origin.createSnapshot(store);
    this.model.create(name);
    this.live.set(name, { name, kind, chunkSectors, cow, snap });
  }

  async remove(name: string): Promise<void> {
    await this.origin.removeSnapshot(this.live.get(name)!.snap);
    this.live.delete(name);
    this.model.remove(name);
  }

  /** Close and reopen a persistent snapshot from its COW: everything must come back. */
  async reopen(name: string): Promise<void> {
    const entry = this.live.get(name)!;
    await this.origin.removeSnapshot(entry.snap);
    const store = await openStore(entry.kind, jitter(entry.cow, this.rng), { chunkSectors: entry.chunkSectors });
    entry.snap = await this.origin.createSnapshot(store);
  }

  randomOp(): Op {
    const targets = ['origin', 'origin', ...this.live.keys()];
    const target = this.rng.pick(targets);
    const kind = this.rng.pick<Op['kind']>(['write', 'write', 'write', 'zero', 'read', 'read', 'flush']);
    const unaligned = this.rng.chance(0.15);
    const length = unaligned ? this.rng.int(1, 3 * 4096) : this.rng.int(1, 64) * SECTOR;
    const max = ORIGIN_BYTES - length;
    let offset = unaligned ? this.rng.int(0, max) : this.rng.int(0, max / SECTOR) * SECTOR;
    // While merging, half the origin I/O aims at the chunks the merge takes next, to race its runs.
    if (target === 'origin' && this.merging && this.rng.chance(0.5)) offset = Math.min(max, this.merging.nextOffset(unaligned ? 1 : SECTOR));
    return { target, kind, offset, length };
  }

  async runOp(op: Op): Promise<void> {
    const dev = this.device(op.target);
    if (op.kind === 'flush') return dev.flush();
    if (op.kind === 'read') {
      const buf = Buffer.alloc(op.length);
      await dev.read(buf, op.offset);
      const want = op.target === 'origin' ? this.model.origin : this.model.get(op.target).image;
      expect(buf.equals(want.subarray(op.offset, op.offset + op.length)), `read ${JSON.stringify(op)} step ${this.step}`).toBe(true);
      return;
    }
    const data = op.kind === 'zero' ? Buffer.alloc(op.length) : pattern(op.length, this.step, this.rng.next);
    if (op.kind === 'zero') await dev.zero(op.length, op.offset);
    else await dev.write(data, op.offset, { fua: this.rng.chance(0.1) });
    if (op.target === 'origin') this.model.writeOrigin(data, op.offset);
    else this.model.writeSnapshot(op.target, data, op.offset);
  }

  /** Concurrent ops; two ops on one device never overlap if either writes (the model has no order for them). */
  batch(): Op[] {
    const ops: Op[] = [];
    const count = this.rng.int(1, 8);
    for (let i = 0; i < count; i++) {
      const op = this.randomOp();
      const clash = ops.some(
        (o) =>
          o.target === op.target &&
          (o.kind !== 'read' || op.kind !== 'read') &&
          o.offset < op.offset + op.length &&
          op.offset < o.offset + o.length,
      );
      if (!clash) ops.push(op);
    }
    return ops;
  }

  /** Origin writes of a random batch, issued at once and recorded in the model; resolves when all are done. */
  originWrites(): Promise<void> {
    const ops = this.batch().filter((o) => o.target === 'origin' && o.kind === 'write');
    const data = ops.map((op) => pattern(op.length, this.step, this.rng.next));
    const writes = ops.map((op, i) => this.origin.write(data[i], op.offset));
    ops.forEach((op, i) => this.model.writeOrigin(data[i], op.offset));
    return Promise.all(writes).then(() => undefined);
  }

  /** Merge snapshot `name` (P/PO, with exceptions), origin writes racing with the start on both sides. */
  async startMerge(name: string): Promise<void> {
    const before = this.originWrites(); // drained by the start: rolled back
    this.merging = await ModelMerge.start(this, name, () => this.originWrites());
    await before;
  }

  async finishMerge(): Promise<void> {
    await this.merging!.finish();
    this.merging = null;
    this.mergesDone++;
  }

  async verifyAll(): Promise<void> {
    this.merging?.checkRawView();
    const buf = Buffer.alloc(ORIGIN_BYTES);
    await this.origin.read(buf, 0);
    expect(buf.equals(this.model.origin), `origin after step ${this.step}`).toBe(true);
    for (const entry of this.live.values()) {
      await entry.snap.read(buf, 0);
      const want = this.model.get(entry.name).image;
      expect(firstDifference(buf, want), `snapshot ${entry.name} (${entry.kind} cs=${entry.chunkSectors}) after step ${this.step}`).toBe(-1);
      expect(entry.snap.status()).not.toMatch(/Invalid|Overflow/);
      // One COW chunk per exception: nothing allocated twice for one chunk. A merge running in
      // the background may have copy-outs to this snapshot in flight: checked once it is over.
      if (!this.merging) expect(allocatedDataChunks(entry.snap.store)).toBe(entry.snap.exceptionCount);
    }
  }
}

function firstDifference(a: Buffer, b: Buffer): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

async function runSeed(seed: number, steps: number): Promise<void> {
  const h = new Harness(seed);
  await h.create();
  for (h.step = 0; h.step < steps; h.step++) {
    if (h.merging?.finished) await h.finishMerge();
    const roll = h.rng.next();
    const names = [...h.live.keys()];
    const mergeable = names.filter((n) => h.live.get(n)!.kind !== 'N' && h.live.get(n)!.snap.exceptionCount > 0);
    const late = h.mergesDone === 0 && !h.merging && h.step >= steps / 2; // every seed merges at least once
    if (!h.merging && (roll < 0.1 || late) && mergeable.length > 0) await h.startMerge(h.rng.pick(mergeable));
    else if (late && !names.some((n) => h.live.get(n)!.kind === 'P')) await h.create('P');
    else if (h.merging && roll < 0.04) await h.merging.restart();
    else if (roll < 0.14 && names.length > 0) await h.remove(h.rng.pick(names));
    else if (h.merging) {
      // No snapshot is created (or reopened) while a merge runs: the origin refuses it.
      await Promise.all(h.batch().map((op) => h.runOp(op)));
    } else if (roll < 0.2 && h.live.size < 4) await h.create();
    else if (roll < 0.24 && names.length > 0) {
      const name = h.rng.pick(names);
      if (h.live.get(name)!.kind !== 'N') await h.reopen(name);
    } else if (roll < 0.28) {
      // Snapshot creation racing with origin writes in flight: creation drains them, so every
      // write issued before the snapshot was asked for is in its image.
      const writes = h.originWrites();
      await h.create();
      await writes;
    } else {
      await Promise.all(h.batch().map((op) => h.runOp(op)));
    }
    await h.verifyAll();
  }
  if (h.merging) {
    await h.merging.merge.finished;
    await h.finishMerge();
  }
  expect(h.mergesDone, 'merges completed in this seed').toBeGreaterThan(0);
  for (const name of [...h.live.keys()]) await h.remove(name);
}

const seedCount = Number(process.env.NBDSNAP_MODEL_SEEDS ?? 12);
const oneSeed = process.env.NBDSNAP_MODEL_SEED;
const seeds = oneSeed ? [Number(oneSeed)] : Array.from({ length: seedCount }, (_, i) => 1000 + i);

describe('snapshot targets against the reference model', () => {
  it.each(seeds)('seed %i', async (seed) => {
    await runSeed(seed, Number(process.env.NBDSNAP_MODEL_STEPS ?? 60));
  });
});
