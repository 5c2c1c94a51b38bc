import { describe, expect, it } from 'vitest';
import { ExceptionTable } from '../exception-table.ts';
import { openStore } from '../open-store.ts';
import type { ExceptionStore, StoreKind } from '../exception-store.ts';
import { StoreTestDevice, settle } from '../../../test/support/store-test-device.ts';
import { decodeHeader, scanArea } from './format.ts';

// cs = 1 sector: 32 exceptions per area, stride 33; area N at chunk 1 + 33N.
const CS = 1;
const CHUNK = 512;

async function fresh(chunks: number, kind: StoreKind = 'P', cs = CS) {
  const dev = new StoreTestDevice(chunks * cs * 512);
  const store = await openStore(kind, dev, { chunkSectors: cs });
  dev.calls.length = 0;
  return { dev, store };
}

function loadAll(store: ExceptionStore): [number, number][] {
  const out: [number, number][] = [];
  store.load((o, n) => out.push([o, n]));
  return out;
}

async function commitMany(store: ExceptionStore, count: number, firstOld = 100): Promise<number[]> {
  const chunks: number[] = [];
  for (let i = 0; i < count; i++) {
    const n = store.prepare();
    await store.commit(firstOld + i, n);
    chunks.push(n);
  }
  return chunks;
}

function recordsOf(dev: StoreTestDevice, areaChunk: number, cs = CS): [number, number][] {
  const out: [number, number][] = [];
  scanArea(dev.bytes.subarray(areaChunk * cs * 512, (areaChunk + 1) * cs * 512), (o, n) => out.push([o, n]));
  return out;
}

describe('a new persistent store', () => {
  it('writes the kernel header and zeroes area 0 on a blank COW, leaving data chunks alone', async () => {
    const dev = new StoreTestDevice(64 * 8192);
    dev.bytes.fill(0xaa);
    dev.bytes.fill(0, 0, 4);
    const store = await openStore('P', dev, { chunkSectors: 16 });
    expect([...dev.bytes.subarray(0, 16)]).toEqual([0x53, 0x6e, 0x41, 0x70, 1, 0, 0, 0, 1, 0, 0, 0, 0x10, 0, 0, 0]);
    expect(dev.bytes.subarray(16, 16384).every((b) => b === 0)).toBe(true);
    expect(dev.bytes[16384]).toBe(0xaa);
    expect(store.status()).toBe('32/1024 32');
    store.prepare();
    expect(store.status()).toBe('48/1024 32');
  });

  it('defaults the chunk size to 32 sectors, or the COW block size if larger', async () => {
    expect((await openStore('P', new StoreTestDevice(1 << 20), { chunkSectors: 0 })).chunkSectors).toBe(32);
    const big = new StoreTestDevice(1 << 22, { blockSize: 32768 });
    expect((await openStore('P', big, { chunkSectors: 0 })).chunkSectors).toBe(64);
  });

  it('allocates after the header and area 0, skipping every metadata chunk', async () => {
    const { store } = await fresh(100);
    const chunks = Array.from({ length: 34 }, () => store.prepare());
    expect(chunks.slice(0, 3)).toEqual([2, 3, 4]);
    expect(chunks[31]).toBe(33);
    expect(chunks.slice(32)).toEqual([35, 36]); // 34 = area 1
  });
});

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

  it('make the data durable before the record: flush precedes every metadata write', async () => {
    const { dev, store } = await fresh(100);
    await Promise.all(Array.from({ length: 5 }, (_, i) => store.commit(i, store.prepare())));
    const metadata = dev.calls.map((call, i) => ({ call, i })).filter(({ call }) => call.fua);
    for (const { i } of metadata) expect(dev.calls[i - 1].op).toBe('flush');
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

describe('reading existing stores', () => {
  it('ignores records after the terminator, and never revives them', async () => {
    const { dev, store } = await fresh(100);
    await commitMany(store, 3);
    await store.close();
    dev.bytes.writeUInt32LE(77, CHUNK + 16 * 4); // garbage right after the terminator (index 3)
    dev.bytes.writeUInt32LE(88, CHUNK + 16 * 4 + 8);
    const again = await openStore('P', dev, { chunkSectors: CS });
    expect(again.recordCount).toBe(3);
    expect(again.prepare()).toBe(5);
    await again.commit(50, 5);
    const third = await openStore('P', dev, { chunkSectors: CS });
    expect(loadAll(third).map(([o]) => o)).toEqual([100, 101, 102, 50]);
  });

  it('rejects a bad magic, an unknown version and an illegal on-disk chunk size', async () => {
    const { dev } = await fresh(100);
    const header = Buffer.from(dev.bytes.subarray(0, 16));
    dev.bytes.write('SNAP', 0, 'latin1');
    await expect(openStore('P', dev, { chunkSectors: CS })).rejects.toThrow(/Invalid or corrupt snapshot: bad magic 0x50414e53/);
    await expect(openStore('P', dev, { chunkSectors: CS })).rejects.toMatchObject({ name: 'CorruptStoreError' });
    header.copy(dev.bytes);
    dev.bytes.writeUInt32LE(2, 8);
    await expect(openStore('P', dev, { chunkSectors: CS })).rejects.toThrow(/disk version 2/);
    header.copy(dev.bytes);
    dev.bytes.writeUInt32LE(3, 12);
    await expect(openStore('P', dev, { chunkSectors: CS })).rejects.toThrow(/on-disk chunk size 3.*power of 2/);
    header.copy(dev.bytes);
    dev.bytes.writeUInt32LE(7, 4); // any non-zero valid reads as valid
    expect((await openStore('P', dev, { chunkSectors: CS })).state).toBe('valid');
  });

  it('rejects a COW truncated before a metadata area it needs', async () => {
    const { dev, store } = await fresh(200);
    await commitMany(store, 64); // areas 0 and 1 full, area 2 (chunk 67) current
    dev.resize(67 * CHUNK);
    await expect(openStore('P', dev, { chunkSectors: CS })).rejects.toThrow(/metadata area 2 .* past the end/);
    dev.resize(68 * CHUNK);
    expect((await openStore('P', dev, { chunkSectors: CS })).recordCount).toBe(64);
  });

  it('rejects record fields above 2^53', async () => {
    const { dev, store } = await fresh(100);
    await commitMany(store, 1);
    dev.bytes.writeUInt32LE(0x00400000, CHUNK + 4); // old_chunk high word: 2^54
    await expect(openStore('P', dev, { chunkSectors: CS })).rejects.toThrow(/exceeds 2\^53/);
  });

  it('load() replays into a table once', async () => {
    const { dev, store } = await fresh(100);
    await commitMany(store, 5);
    const again = await openStore('P', dev, { chunkSectors: CS });
    const table = new ExceptionTable(again.recordCount);
    again.load((o, n) => table.insert(o, n));
    expect(table.lookup(104)).toBe(6);
    expect(() => again.load(() => {})).toThrow(/once/);
  });
});

describe('close', () => {
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
