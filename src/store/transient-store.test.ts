import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../block/memory-device.ts';
import { openStore } from './open-store.ts';

describe('transient store (N)', () => {
  it('has no header: chunk 0 holds data, nothing is written, status counts sectors', async () => {
    const cow = new MemoryDevice(4 * 8192);
    cow.bytes.fill(0x11);
    const store = await openStore('N', cow, { chunkSectors: 16 });
    expect(store.status()).toBe('0/64 0');
    expect(store.recordCount).toBe(0);
    const chunks = [store.prepare(), store.prepare()];
    expect(chunks).toEqual([0, 1]);
    await store.commit(40, 0);
    await store.commit(41, 1);
    expect(cow.bytes.every((b) => b === 0x11)).toBe(true);
    expect(store.status()).toBe('32/64 0');
  });

  it('is full when next_free + cs passes the COW end; growth makes room; invalid stays invalid', async () => {
    const cow = new MemoryDevice(2 * 8192 + 4096);
    const store = await openStore('N', cow, { chunkSectors: 16 });
    store.prepare();
    store.prepare();
    expect(() => store.prepare()).toThrow(expect.objectContaining({ errno: 'ENOSPC' }));
    expect(() => store.overflow()).toThrow();
    cow.resize(3 * 8192);
    expect(store.resize()).toBe(3 * 8192);
    expect(store.prepare()).toBe(2);
    await store.invalidate('full');
    expect(store.status()).toBe('Invalid');
    expect(() => store.prepare()).toThrow(expect.objectContaining({ errno: 'EIO' }));
    await expect(store.commit(1, 2)).rejects.toMatchObject({ errno: 'EIO' });
    const loaded: number[] = [];
    store.load((o) => loaded.push(o));
    expect(loaded).toEqual([]);
  });
});
