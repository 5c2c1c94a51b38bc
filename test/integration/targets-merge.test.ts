// Merging a snapshot into its origin (the kernel's snapshot-merge): from the start of the merge
// the origin shows the snapshot's content, concurrent origin writes land (to the COW chunk while
// unmerged, to the origin after), other snapshots keep their point in time (copy-outs before the
// merge overwrites an origin chunk), and at the end the origin is the snapshot's content plus the
// writes made during the merge, and the store is empty. Jittery devices make it all interleave.
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/block/memory-device.ts';
import { silentLogger } from '../../src/log.ts';
import { openStore } from '../../src/store/open-store.ts';
import { SnapshotOrigin } from '../../src/targets/snapshot-origin.ts';
import type { Snapshot } from '../../src/targets/snapshot.ts';
import type { BlockDevice } from '../../src/block/device.ts';
import { jitter } from '../support/jitter-device.ts';
import { makeRng, type Rng } from '../support/prng.ts';

const ORIGIN = 256 * 1024;
const SECTOR = 512;

function randomBytes(rng: Rng, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rng.next() * 256);
  return b;
}

async function readAll(dev: BlockDevice): Promise<Buffer> {
  const b = Buffer.alloc(dev.size);
  await dev.read(b, 0);
  return b;
}

async function snapshotOf(origin: SnapshotOrigin, rng: Rng, chunkSectors: number): Promise<Snapshot> {
  const chunks = ORIGIN / (chunkSectors * SECTOR);
  const cow = new MemoryDevice((chunks * 2 + 8) * chunkSectors * SECTOR);
  return origin.createSnapshot(await openStore('P', jitter(cow, rng), { chunkSectors }));
}

/** Random sector-aligned writes to `dev`, recorded in `image`; `count` of them, `depth` at a time. */
async function randomWrites(dev: BlockDevice, image: Buffer | null, rng: Rng, count: number, depth: number): Promise<void> {
  const one = async () => {
    const length = (1 + Math.floor(rng.next() * 24)) * SECTOR;
    const offset = Math.floor(rng.next() * ((dev.size - length) / SECTOR)) * SECTOR;
    const data = randomBytes(rng, length);
    image?.set(data, offset); // writes of one batch never overlap (below), so order does not matter
    await dev.write(data, offset);
  };
  for (let done = 0; done < count; done += depth) await Promise.all(Array.from({ length: Math.min(depth, count - done) }, one));
}

describe('merging a snapshot into its origin', () => {
  for (const seed of [1, 2, 3, 4]) {
    it(`gives the snapshot's content plus the writes made meanwhile, other snapshots intact (seed ${seed})`, async () => {
      const rng = makeRng(seed);
      const mem = new MemoryDevice(ORIGIN, { data: randomBytes(rng, ORIGIN) });
      const origin = new SnapshotOrigin(jitter(mem, rng));
      const merging = await snapshotOf(origin, rng, rng.pick([1, 8, 16]));
      const other = await snapshotOf(origin, rng, rng.pick([1, 8, 64]));
      // Before the merge: the origin, the merging snapshot and the other one diverge.
      await randomWrites(origin, null, rng, 60, 1);
      await randomWrites(merging, null, rng, 60, 1);
      await randomWrites(other, null, rng, 20, 1);
      const expected = await readAll(merging);
      const otherImage = await readAll(other);

      const merge = await origin.startMerge(merging, silentLogger());
      expect(merge.totalChunks).toBeGreaterThan(0);
      expect((await readAll(origin)).equals(expected)).toBe(true); // at once, before any run is merged
      await randomWrites(origin, expected, rng, 120, 1); // one at a time: overlapping writes stay ordered
      await merge.finished;
      expect(merge.state).toBe('done');
      expect(merge.percent).toBe(100);
      expect(merging.store.status()).toMatch(/^(\d+)\/\d+ \1$/); // allocated == metadata: empty
      await origin.endMerge();
      expect(origin.merge).toBeNull();
      expect(mem.bytes.equals(expected)).toBe(true);
      expect((await readAll(other)).equals(otherImage)).toBe(true);
      // Back to plain snapshot-origin: a write is preserved in the other snapshot.
      await randomWrites(origin, expected, rng, 20, 1);
      expect((await readAll(other)).equals(otherImage)).toBe(true);
      expect(mem.bytes.equals(expected)).toBe(true);
    });
  }

  it('stops at shutdown and resumes from the store, giving the same origin', async () => {
    const rng = makeRng(9);
    const mem = new MemoryDevice(ORIGIN, { data: randomBytes(rng, ORIGIN) });
    const origin = new SnapshotOrigin(mem);
    const cowMem = new MemoryDevice(((ORIGIN / 512) * 2 + 8) * 512);
    const merging = await origin.createSnapshot(await openStore('P', cowMem, { chunkSectors: 1 }));
    await randomWrites(merging, null, rng, 200, 1);
    await randomWrites(origin, null, rng, 50, 1);
    const expected = await readAll(merging);
    const merge = await origin.startMerge(merging, silentLogger());
    await origin.endMerge(); // stops after the run in progress; the store keeps the rest
    expect(merge.state).toBe('stopped');
    const origin2 = new SnapshotOrigin(mem);
    const reopened = await origin2.createSnapshot(await openStore('P', cowMem, { chunkSectors: 1 }));
    expect(reopened.exceptionCount).toBe(merge.totalChunks - merge.mergedChunks);
    const resumed = await origin2.startMerge(reopened, silentLogger());
    expect((await readAll(origin2)).equals(expected)).toBe(true);
    await resumed.finished;
    expect(resumed.state).toBe('done');
    await origin2.endMerge();
    expect(mem.bytes.equals(expected)).toBe(true);
  });

  it('waits after a batch for what afterBatch returns (the test hold), and a stop ends that wait', async () => {
    const rng = makeRng(11);
    const mem = new MemoryDevice(ORIGIN, { data: randomBytes(rng, ORIGIN) });
    const origin = new SnapshotOrigin(mem);
    const merging = await origin.createSnapshot(await openStore('P', new MemoryDevice(((ORIGIN / 512) * 2 + 8) * 512), { chunkSectors: 1 }));
    await randomWrites(merging, null, rng, 200, 1);
    let batches = 0;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let reached!: () => void;
    const firstBatch = new Promise<void>((resolve) => (reached = resolve));
    const merge = await origin.startMerge(merging, silentLogger(), { batchBytes: 512, afterBatch: () => (batches++, reached(), held) });
    await firstBatch;
    const mergedThen = merge.mergedChunks;
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve)); // room for a merge that did not wait
    expect([batches, merge.mergedChunks, merge.state]).toEqual([1, mergedThen, 'merging']);
    release();
    await new Promise<void>((resolve) => {
      const check = () => (batches >= 3 || merge.state !== 'merging' ? resolve() : setImmediate(check));
      check();
    });
    expect(batches).toBeGreaterThan(1); // released: it went on
    // A hold that never ends does not keep a stop waiting.
    const never = await mergeHeldForever(mem, rng);
    await never.origin.endMerge();
    expect(never.merge.state).toBe('stopped');
    await origin.endMerge();
  });

  it('refuses a second merge, a new snapshot while merging, and a transient snapshot', async () => {
    const rng = makeRng(5);
    const origin = new SnapshotOrigin(new MemoryDevice(ORIGIN));
    const n = await origin.createSnapshot(await openStore('N', new MemoryDevice(ORIGIN * 2), { chunkSectors: 8 }));
    await expect(origin.startMerge(n, silentLogger())).rejects.toThrow(/N snapshot cannot be merged/);
    const p = await snapshotOf(origin, rng, 8);
    await origin.startMerge(p, silentLogger());
    await expect(origin.startMerge(n, silentLogger())).rejects.toThrow(/already merging/);
    await expect(snapshotOf(origin, rng, 8)).rejects.toThrow(/merging/);
    await origin.endMerge();
  });
});

/** An origin merging a fresh snapshot whose afterBatch never settles. */
async function mergeHeldForever(mem: MemoryDevice, rng: Rng) {
  const origin = new SnapshotOrigin(new MemoryDevice(mem.size, { data: Buffer.from(mem.bytes) }));
  const snap = await origin.createSnapshot(await openStore('P', new MemoryDevice(((ORIGIN / 512) * 2 + 8) * 512), { chunkSectors: 1 }));
  await randomWrites(snap, null, rng, 50, 1);
  let reached!: () => void;
  const firstBatch = new Promise<void>((resolve) => (reached = resolve));
  const merge = await origin.startMerge(snap, silentLogger(), { batchBytes: 512, afterBatch: () => (reached(), new Promise<void>(() => {})) });
  await firstBatch;
  return { origin, merge };
}
