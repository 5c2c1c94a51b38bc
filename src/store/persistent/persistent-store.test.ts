import { describe, expect, it } from 'vitest';
import { openStore } from '../open-store.ts';
import { StoreTestDevice, settle } from '../../../test/support/store-test-device.ts';
import { CHUNK, CS, DurabilityWatch, commitMany, fresh, loadAll, recordsOf } from '../../../test/support/store-helpers.ts';
import { makeRng } from '../../../test/support/prng.ts';
import { decodeHeader } from './format.ts';

describe('commits', () => {
  it('zero the next area, flush, then write the full area with FUA, and count metadata at commit', async () => {
    const { dev, store } = await fresh(100);
    dev.bytes.fill(0xee, 34 * CHUNK, 35 * CHUNK); // stale bytes where area 1 will be
    await commitMany(store, 31);
    expect(store.status()).toBe('33/100 2');
    const n = store.prepare();
    dev.calls.length = 0;
    await store.commit(999, n);
    expect(dev.calls).toEqual([
      { op: 'write', offset: 34 * CHUNK, length: CHUNK, fua: false },
      { op: 'flush', offset: 0, length: 0, fua: false },
      { op: 'write', offset: 1 * CHUNK, length: CHUNK, fua: true },
    ]);
    expect(dev.bytes.subarray(34 * CHUNK, 35 * CHUNK).every((b) => b === 0)).toBe(true);
    expect(store.status()).toBe('35/100 3');
    expect(recordsOf(dev, 1)).toHaveLength(32);
    await commitMany(store, 1, 500);
    expect(recordsOf(dev, 34)).toEqual([[500, 35]]);
  });

  it('survive a reopen at and across area boundaries', async () => {
    const { dev, store } = await fresh(200);
    const chunks = await commitMany(store, 70);
    const again = await openStore('P', dev, { chunkSectors: CS });
    expect(again.status()).toBe(store.status());
    expect(again.recordCount).toBe(70);
    expect(loadAll(again)).toEqual(chunks.map((n, i) => [100 + i, n]));
    expect(again.prepare()).toBe(store.prepare());
  });

  it('are grouped: commits arriving during a metadata write share the next one', async () => {
    const { dev, store } = await fresh(100);
    const [a, b, c] = [store.prepare(), store.prepare(), store.prepare()];
    dev.holdWrite = (offset) => offset === CHUNK;
    const done: string[] = [];
    const pa = store.commit(10, a).then(() => done.push('a'));
    await settle();
    expect(dev.heldCount).toBe(1);
    const pb = store.commit(11, b).then(() => done.push('b'));
    const pc = store.commit(12, c).then(() => done.push('c'));
    await settle();
    expect(done).toEqual([]);
    dev.holdWrite = () => false;
    dev.release();
    await Promise.all([pa, pb, pc]);
    expect(done).toEqual(['a', 'b', 'c']);
    expect(dev.calls.filter((call) => call.fua)).toHaveLength(2);
    expect(recordsOf(dev, 1)).toEqual([[10, a], [11, b], [12, c]]);
  });

  it('go to disk in allocation order: a later chunk waits for every earlier prepared one', async () => {
    const { dev, store } = await fresh(100);
    const [a, b] = [store.prepare(), store.prepare()];
    let bDone = false;
    const pb = store.commit(21, b).then(() => (bDone = true));
    await settle();
    expect(bDone).toBe(false);
    expect(dev.calls).toEqual([]);
    await store.commit(20, a);
    await pb;
    expect(recordsOf(dev, 1)).toEqual([[20, a], [21, b]]);
  });

  it('keep the kernel order under concurrent commits across area boundaries: data, zeroed next area, then record, then resolve', async () => {
    const { dev, store } = await fresh(120);
    for (const image of [dev.bytes, dev.durable]) for (const area of [34, 67, 100]) image.fill(0xee, area * CHUNK, (area + 1) * CHUNK); // stale bytes where areas 1-3 will be
    const watch = new DurabilityWatch(dev);
    const rng = makeRng(7);
    const commits: Promise<number>[] = [];
    let old = 0;
    for (const burst of [1, 5, 17, 3, 40, 2, 1, 29, 8]) {
      for (let i = 0; i < burst; i++) commits.push(watch.commitWithData(store, old++));
      for (let i = rng.int(0, 3); i > 0; i--) await settle(); // let the writer get part-way through
    }
    const chunks = await Promise.all(commits);
    expect(watch.problems).toEqual([]);
    expect(watch.areaWrites).toBeGreaterThan(watch.fuaAreaWrites); // some batches were pipelined
    expect(store.status()).toBe('111/120 5'); // 106 records: areas 0-2 full, area 3 current
    const again = await openStore('P', dev, { chunkSectors: CS });
    expect(loadAll(again)).toEqual(chunks.map((n, i) => [i, n]));
  });

  it('are pipelined: with commits arriving continuously, K batches cost K+1 syncs, not 2K', async () => {
    const { dev, store } = await fresh(100);
    const watch = new DurabilityWatch(dev);
    const K = 5;
    dev.holdFlush = () => true;
    const batches: Promise<number[]>[] = [];
    const resolvedOrder: number[] = [];
    const startBatch = (k: number) => {
      // The first commit starts the writer on its own; later ones arrive while a flush is held, so each group is one batch.
      const batch = watch.commitAllWithData(store, k === 0 ? [0] : [10 * k, 10 * k + 1, 10 * k + 2]);
      batches.push(batch.then((chunks) => (resolvedOrder.push(k), chunks)));
    };
    startBatch(0);
    for (let k = 1; k <= K; k++) {
      await settle();
      expect(dev.heldCount).toBe(1); // batch k-1's flush (which also covers batch k-2's area write)
      expect(resolvedOrder).toEqual(Array.from({ length: Math.max(0, k - 2) }, (_, i) => i));
      if (k < K) {
        startBatch(k); // committed while that flush is in flight: the next batch
        await settle();
      } else {
        dev.holdFlush = () => false;
      }
      dev.release();
    }
    await Promise.all(batches);
    expect(resolvedOrder).toEqual([0, 1, 2, 3, 4]);
    expect(watch.problems).toEqual([]);
    const flushes = dev.calls.filter((c) => c.op === 'flush').length;
    const fuaWrites = dev.calls.filter((c) => c.fua).length;
    expect({ flushes, fuaWrites, areaWrites: watch.areaWrites }).toEqual({ flushes: K, fuaWrites: 1, areaWrites: K });
    expect(flushes + fuaWrites).toBe(K + 1); // fdatasyncs on a FileDevice (FUA is write + fdatasync); 2K before pipelining
  });

  it('span areas in one turn when many are ready: every successor zeroed, one flush, then each area with FUA', async () => {
    const { dev, store } = await fresh(200); // cs=1: 32 records per area, area N at chunk 1 + 33N
    const watch = new DurabilityWatch(dev);
    dev.holdFlush = () => true;
    const lone = watch.commitAllWithData(store, [0]); // record 0: starts the writer, its flush is held
    await settle();
    expect(dev.heldCount).toBe(1);
    // Records 1-70 arrive meanwhile: they fill area 0 and area 1 and put 7 into area 2.
    const many = watch.commitAllWithData(store, Array.from({ length: 70 }, (_, i) => 100 + i));
    await settle();
    dev.calls.length = 0;
    dev.holdFlush = () => false;
    dev.release();
    await Promise.all([lone, many]);
    expect(watch.problems).toEqual([]);
    const at = (area: number) => (1 + 33 * area) * CHUNK;
    const plain = dev.calls.filter((c) => c.op === 'write' && !c.fua).map((c) => c.offset);
    const fua = dev.calls.filter((c) => c.fua).map((c) => c.offset);
    const flushes = dev.calls.map((c, i) => (c.op === 'flush' ? i : -1)).filter((i) => i >= 0);
    expect(flushes).toHaveLength(2); // the held one, and one for the 70 records' data and both zeroings
    expect(plain).toEqual([at(0), at(1), at(2)]); // record 0's area (pipelined), then the two successors zeroed
    expect(fua.sort((a, b) => a - b)).toEqual([at(0), at(1), at(2)]);
    const lastZeroing = dev.calls.findIndex((c) => c.offset === at(2) && !c.fua);
    expect(lastZeroing).toBeLessThan(flushes[1]!);
    expect(dev.calls.findIndex((c) => c.fua)).toBeGreaterThan(flushes[1]!);
    expect([recordsOf(dev, 1).length, recordsOf(dev, 34).length, recordsOf(dev, 67).length]).toEqual([32, 32, 7]);
  });

  it('are written with FUA when their records cross a logical block, even with a next batch ready (no torn area)', async () => {
    const { dev, store } = await fresh(200, 'P', 2); // cs=2: a 1 KiB area, records 0-31 in its first sector, 32-63 in its second
    const watch = new DurabilityWatch(dev, 2);
    await commitMany(store, 30);
    dev.calls.length = 0;
    dev.holdFlush = () => true;
    const first = watch.commitAllWithData(store, [500]); // record 30
    await settle();
    const crossing = watch.commitAllWithData(store, [501, 502, 503, 504]); // records 31-34
    await settle();
    dev.release(); // record 30: plain (the crossing batch is ready), then the crossing batch's flush, held
    await settle();
    const last = watch.commitAllWithData(store, [505]); // ready while the crossing batch is written
    await settle();
    dev.holdFlush = () => false;
    dev.release();
    await Promise.all([first, crossing, last]);
    expect(watch.problems).toEqual([]);
    expect(dev.calls.filter((c) => c.op === 'write' && c.offset === 2 * CHUNK).map((c) => c.fua)).toEqual([false, true, true]);
  });

  it('reject a commit of a chunk that was not prepared', async () => {
    const { store } = await fresh(100);
    await expect(store.commit(1, 7)).rejects.toThrow(/not prepared/);
  });
});

describe('failures', () => {
  it('a failed metadata write invalidates the store and rejects its whole batch', async () => {
    const { dev, store } = await fresh(100);
    const [a, b, c] = [store.prepare(), store.prepare(), store.prepare()];
    dev.holdWrite = (offset) => offset === CHUNK;
    const pa = store.commit(1, a);
    await settle();
    const pb = store.commit(2, b);
    const pc = store.commit(3, c);
    dev.holdWrite = () => false;
    dev.failWrite = (offset) => offset === CHUNK;
    dev.release();
    await expect(pa).rejects.toMatchObject({ errno: 'EIO' });
    await expect(pb).rejects.toMatchObject({ errno: 'EIO' });
    await expect(pc).rejects.toMatchObject({ errno: 'EIO' });
    expect(store.state).toBe('invalid');
    expect(decodeHeader(dev.bytes).valid).toBe(0);
    expect(() => store.prepare()).toThrow(expect.objectContaining({ errno: 'EIO' }));
  });

  it('a failed flush rejects the batch written but not yet durable as well as the current one', async () => {
    const { dev, store } = await fresh(100);
    const watch = new DurabilityWatch(dev);
    const [a, b, c] = [store.prepare(), store.prepare(), store.prepare()];
    let flushes = 0;
    dev.holdFlush = () => flushes === 0;
    dev.failFlush = () => ++flushes === 2;
    const pa = store.commit(1, a);
    await settle();
    const pb = store.commit(2, b); // arrives during a's flush: a's area write is plain, b's flush covers it
    const pc = store.commit(3, c);
    dev.release();
    await expect(pa).rejects.toMatchObject({ errno: 'EIO' });
    await expect(pb).rejects.toMatchObject({ errno: 'EIO' });
    await expect(pc).rejects.toMatchObject({ errno: 'EIO' });
    expect(watch.areaWrites).toBe(1); // a's record was written, never made durable
    expect(watch.isDurable(1, a)).toBe(false);
    expect(store.state).toBe('invalid');
    expect(decodeHeader(dev.bytes).valid).toBe(0);
  });

  it('a failed area write after the flush: the previous batch is durable and resolves, the current one fails', async () => {
    const { dev, store } = await fresh(100);
    const [a, b] = [store.prepare(), store.prepare()];
    dev.holdFlush = () => true;
    let areaWrites = 0;
    dev.failWrite = (offset) => offset === CHUNK && ++areaWrites === 2;
    const pa = store.commit(1, a);
    await settle();
    const pb = store.commit(2, b);
    dev.holdFlush = () => false;
    dev.release();
    await expect(pa).resolves.toBeUndefined();
    await expect(pb).rejects.toMatchObject({ errno: 'EIO' });
    expect(recordsOf(dev, 1)).toEqual([[1, a]]);
    expect(store.state).toBe('invalid');
  });

  it('invalidate() while a batch is written but not yet durable rejects it too', async () => {
    const { dev, store } = await fresh(100);
    const [a, b] = [store.prepare(), store.prepare()];
    dev.holdFlush = () => true;
    const pa = store.commit(1, a);
    await settle();
    const pb = store.commit(2, b);
    dev.release(); // a's area write (plain), then b's flush, held
    await settle();
    expect(dev.heldCount).toBe(1);
    expect(recordsOf(dev, 1)).toEqual([[1, a]]);
    await store.invalidate('test');
    await expect(pa).rejects.toMatchObject({ errno: 'EIO' });
    await expect(pb).rejects.toMatchObject({ errno: 'EIO' });
    dev.holdFlush = () => false;
    dev.release();
    await store.close();
    expect(recordsOf(dev, 1)).toEqual([[1, a]]); // b's record was never written
  });

  it('invalidate() fails pending commits, writes the kernel header with valid=0, and survives reopen', async () => {
    const { dev, store } = await fresh(100);
    await commitMany(store, 3);
    const [a, b] = [store.prepare(), store.prepare()];
    const pb = store.commit(9, b);
    await store.invalidate('test');
    await expect(pb).rejects.toMatchObject({ errno: 'EIO' });
    await expect(store.commit(8, a)).rejects.toMatchObject({ errno: 'EIO' });
    expect(store.status()).toBe('Invalid');
    expect([...dev.bytes.subarray(0, 16)]).toEqual([0x53, 0x6e, 0x41, 0x70, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]);
    expect(dev.bytes.subarray(16, CHUNK).every((x) => x === 0)).toBe(true);
    const again = await openStore('P', dev, { chunkSectors: CS });
    expect(again.state).toBe('invalid');
    expect(again.status()).toBe('Invalid');
    expect(loadAll(again)).toEqual([]);
    await again.invalidate('again'); // a no-op
    expect(recordsOf(dev, 1)).toHaveLength(3); // the records stay; only the header changed
  });

  it('the terminator edge: a COW ending exactly at the next area goes Invalid when the area fills', async () => {
    // The doc's example: cs=16, a 514-chunk COW, 512 exceptions.
    const { dev, store } = await fresh(514, 'P', 16);
    const chunks = Array.from({ length: 512 }, () => store.prepare());
    expect(chunks.at(-1)).toBe(513);
    const results = await Promise.allSettled(chunks.map((n, i) => store.commit(i, n)));
    expect(results.some((r) => r.status === 'rejected')).toBe(true);
    expect(store.state).toBe('invalid');
    expect(decodeHeader(dev.bytes).valid).toBe(0);
    expect((await openStore('P', dev, { chunkSectors: 16 })).status()).toBe('Invalid');
  });

  it('the terminator edge, serially: earlier commits stand, the one filling the area fails', async () => {
    const { store } = await fresh(34); // area 1 would be chunk 34
    await commitMany(store, 31);
    const last = store.prepare();
    expect(last).toBe(33);
    await expect(store.commit(7, last)).rejects.toMatchObject({ errno: 'EIO' });
    expect(store.status()).toBe('Invalid');
  });
});

describe('a full store', () => {
  it('fails prepare with ENOSPC at the kernel capacity and status (100 MiB, cs=16)', async () => {
    const { store } = await fresh(12800, 'P', 16);
    const chunks: number[] = [];
    expect(() => {
      for (;;) chunks.push(store.prepare());
    }).toThrow(expect.objectContaining({ errno: 'ENOSPC' }));
    expect(chunks).toHaveLength(12774);
    await Promise.all(chunks.map((n, i) => store.commit(i, n)));
    expect(store.status()).toBe('204800/204800 416');
  });

  it('P: the caller invalidates; overflow() is refused', async () => {
    const { dev, store } = await fresh(40);
    await expect(commitMany(store, 38)).rejects.toMatchObject({ errno: 'ENOSPC' });
    expect(store.status()).toBe('40/40 3');
    expect(() => store.overflow()).toThrow(/PO/);
    await store.invalidate('Unable to allocate exception.');
    expect(decodeHeader(dev.bytes).valid).toBe(0);
  });

  it('PO: overflow is not persisted, keeps reads (state), survives growth, and clears on reopen', async () => {
    const { dev, store } = await fresh(40, 'PO');
    await commitMany(store, 37);
    expect(() => store.prepare()).toThrow(expect.objectContaining({ errno: 'ENOSPC' }));
    store.overflow();
    expect(store.status()).toBe('Overflow');
    expect(decodeHeader(dev.bytes).valid).toBe(1);
    dev.resize(80 * CHUNK);
    expect(store.resize()).toBe(80 * CHUNK);
    expect(store.prepare()).toBe(40); // origin writes may still allocate
    expect(store.status()).toBe('Overflow');
    const again = await openStore('PO', dev, { chunkSectors: CS });
    expect(again.state).toBe('valid');
    expect(again.status()).toBe('40/80 3');
  });

  it('growing the COW makes new space usable but does not revive an invalid store', async () => {
    const { dev, store } = await fresh(40);
    await commitMany(store, 37);
    expect(() => store.prepare()).toThrow(expect.objectContaining({ errno: 'ENOSPC' }));
    dev.resize(50 * CHUNK);
    store.resize();
    expect(store.prepare()).toBe(40);
    expect(store.status()).toBe('41/50 3');
    await store.invalidate('x');
    dev.resize(60 * CHUNK);
    store.resize();
    expect(store.status()).toBe('Invalid');
  });
});

describe('close', () => {
  it('waits for the final flush of the pipeline, so every commit it accepted is settled', async () => {
    const { dev, store } = await fresh(100);
    const watch = new DurabilityWatch(dev);
    dev.holdFlush = () => true;
    const pa = watch.commitWithData(store, 1);
    await settle();
    const pb = watch.commitWithData(store, 2);
    await settle();
    let closed = false;
    const closing = store.close().then(() => (closed = true));
    dev.release(); // a's area write (plain), then the flush that covers it and b's data, held
    await settle();
    expect(dev.heldCount).toBe(1);
    expect(closed).toBe(false);
    dev.holdFlush = () => false;
    dev.release();
    await closing;
    await Promise.all([pa, pb]);
    expect(watch.problems).toEqual([]);
  });

  it('waits for the metadata write in flight and fails commits that can never be written', async () => {
    const { dev, store } = await fresh(100);
    const [a, b, c] = [store.prepare(), store.prepare(), store.prepare()];
    dev.holdWrite = (offset) => offset === CHUNK;
    const pa = store.commit(1, a);
    const pc = store.commit(3, c); // waits for b, which is never committed
    await settle();
    let closed = false;
    const closing = store.close().then(() => (closed = true));
    await settle();
    expect(closed).toBe(false);
    dev.holdWrite = () => false;
    dev.release();
    await closing;
    await expect(pa).resolves.toBeUndefined();
    await expect(pc).rejects.toMatchObject({ errno: 'ESHUTDOWN' });
    await expect(store.commit(2, b)).rejects.toMatchObject({ errno: 'ESHUTDOWN' });
  });
});
