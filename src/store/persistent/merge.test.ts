// The kernel's persistent_prepare_merge / persistent_commit_merge: runs come from the end of the
// table, consecutive in both chunks, never across an area; each commit leaves a store that opens
// with exactly the records not merged yet; a fully merged store's status is METADATA/TOTAL METADATA.
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../block/memory-device.ts';
import type { MergeRun } from '../exception-store.ts';
import { openStore } from '../open-store.ts';
import { PersistentStore } from './persistent-store.ts';

const CS = 1; // 512-byte chunks: 32 records per area, so a few dozen exceptions span areas

async function freshStore(cow: MemoryDevice): Promise<PersistentStore> {
  const store = (await openStore('P', cow, { chunkSectors: CS })) as PersistentStore;
  store.load(() => undefined);
  return store;
}

async function records(cow: MemoryDevice): Promise<[number, number][]> {
  const copy = new MemoryDevice(cow.size, { data: Buffer.from(cow.bytes) });
  const store = await openStore('P', copy, { chunkSectors: CS });
  const out: [number, number][] = [];
  store.load((o, n) => out.push([o, n]));
  await store.close();
  return out;
}

/** The kernel's runs for a table, by areas of `epa` records: from the end, consecutive, within an area. */
function modelRuns(table: [number, number][], epa: number): MergeRun[] {
  const runs: MergeRun[] = [];
  let end = table.length;
  while (end > 0) {
    const areaStart = Math.floor((end - 1) / epa) * epa;
    const [lastOld, lastNew] = table[end - 1];
    let count = 1;
    while (end - 1 - count >= areaStart && table[end - 1 - count][0] === lastOld - count && table[end - 1 - count][1] === lastNew - count) count++;
    runs.push({ count, oldChunk: lastOld + 1 - count, newChunk: lastNew + 1 - count });
    end -= count;
  }
  return runs;
}

describe('merging a persistent store', () => {
  it('gives the kernel runs, each commit durable, down to an empty table', async () => {
    const cow = new MemoryDevice(400 * 512);
    const store = await freshStore(cow);
    // Runs of consecutive origin chunks, some broken, 80 exceptions: three areas.
    const olds = [...Array(80).keys()].map((i) => (i % 7 === 3 ? 1000 + i : 10 + i + Math.floor(i / 11) * 5));
    const table: [number, number][] = [];
    for (const old of olds) {
      const n = store.prepare();
      table.push([old, n]);
      await store.commit(old, n);
    }
    expect(await records(cow)).toEqual(table);
    const expected = modelRuns(table, 32);
    const got: MergeRun[] = [];
    let left = table.length;
    for (;;) {
      const [run] = await store.prepareMerge();
      if (!run) break;
      got.push(run);
      await store.commitMerge(run.count);
      left -= run.count;
      expect(await records(cow)).toEqual(table.slice(0, left));
    }
    expect(got).toEqual(expected);
    expect(left).toBe(0);
    expect(store.status()).toBe(`2/400 2`);
    expect(await store.prepareMerge()).toEqual([]);
  });

  it('batches runs across areas and commits them in one go, with the same disk as run by run', async () => {
    const cow = new MemoryDevice(400 * 512);
    const store = await freshStore(cow);
    const table: [number, number][] = [];
    for (let i = 0; i < 90; i++) {
      const old = i % 5 === 0 ? 500 + i : 10 + i;
      const n = store.prepare();
      table.push([old, n]);
      await store.commit(old, n);
    }
    const runs = modelRuns(table, 32);
    let left = table.length;
    let taken = 0;
    while (taken < runs.length) {
      const batch = await store.prepareMerge(40);
      expect(batch).toEqual(runs.slice(taken, taken + batch.length));
      const count = batch.reduce((n, r) => n + r.count, 0);
      expect(count).toBeGreaterThanOrEqual(Math.min(40, left));
      await store.commitMerge(count);
      taken += batch.length;
      left -= count;
      expect(await records(cow)).toEqual(table.slice(0, left));
    }
    expect(store.status()).toBe('2/400 2');
  });

  it('a commit that fails leaves the records on disk and stops the merge until a restart', async () => {
    const cow = new MemoryDevice(64 * 512);
    const store = await freshStore(cow);
    for (const old of [5, 6, 7]) await store.commit(old, store.prepare());
    const [run] = await store.prepareMerge();
    expect(run).toEqual({ count: 3, oldChunk: 5, newChunk: 2 });
    const write = cow.write.bind(cow);
    cow.write = () => Promise.reject(new Error('EIO'));
    await expect(store.commitMerge(3)).rejects.toThrow('EIO');
    cow.write = write;
    await expect(store.prepareMerge()).rejects.toThrow(/restart/);
    expect(await records(cow)).toEqual([[5, 2], [6, 3], [7, 4]]);
  });

  it('resumes from what the disk says after a restart mid-merge', async () => {
    const cow = new MemoryDevice(200 * 512);
    const store = await freshStore(cow);
    for (let i = 0; i < 40; i++) await store.commit(i * 2, store.prepare()); // no two consecutive: runs of one
    await store.commitMerge((await store.prepareMerge())[0].count);
    await store.commitMerge((await store.prepareMerge())[0].count);
    await store.close();
    const again = (await openStore('P', cow, { chunkSectors: CS })) as PersistentStore;
    const loaded: number[] = [];
    again.load((o) => loaded.push(o));
    expect(loaded).toHaveLength(38);
    expect(await again.prepareMerge()).toEqual([{ count: 1, oldChunk: 37 * 2, newChunk: expect.any(Number) }]);
  });
});
