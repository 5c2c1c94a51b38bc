import { describe, expect, it } from 'vitest';
import { ExceptionTable } from '../exception-table.ts';
import { openStore } from '../open-store.ts';
import { StoreTestDevice } from '../../../test/support/store-test-device.ts';
import { CHUNK, CS, commitMany, fresh, loadAll } from '../../../test/support/store-helpers.ts';

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
