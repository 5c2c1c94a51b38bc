import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../block/memory-device.ts';
import { StoreConfigError, openStore, parseStoreKind, validateChunkSize } from './open-store.ts';

describe('validateChunkSize', () => {
  it('accepts powers of two up to 2^21 sectors that are multiples of every block size', () => {
    for (const cs of [1, 8, 16, 1024, 2 ** 21]) expect(() => validateChunkSize(cs, 512)).not.toThrow();
    expect(() => validateChunkSize(8, 4096, 512)).not.toThrow();
  });

  it.each([
    [0, [512], /not a power of 2/],
    [12, [512], /not a power of 2/],
    [4, [4096], /not a multiple of device blocksize/],
    [8, [512, 8192], /not a multiple of device blocksize/],
    [2 ** 22, [512], /too high/],
    [1.5, [512], /Invalid chunk size/],
    [-8, [512], /Invalid chunk size/],
  ])('rejects %s for block sizes %j', (cs, sizes, message) => {
    expect(() => validateChunkSize(cs, ...sizes)).toThrow(message);
    expect(() => validateChunkSize(cs, ...sizes)).toThrow(StoreConfigError);
  });
});

describe('parseStoreKind', () => {
  it('reads only what the kernel reads', () => {
    expect(['P', 'p', 'PO', 'po', 'pOverflow', 'N', 'n', 'Nonsense'].map(parseStoreKind)).toEqual(['P', 'P', 'PO', 'PO', 'PO', 'N', 'N', 'N']);
    expect(() => parseStoreKind('PX')).toThrow(/Unsupported persistent store option/);
    expect(() => parseStoreKind('X')).toThrow(StoreConfigError);
    expect(() => parseStoreKind('')).toThrow(StoreConfigError);
  });
});

describe('openStore arguments', () => {
  it('N needs a chunk size', async () => {
    await expect(openStore('N', new MemoryDevice(1 << 20), { chunkSectors: 0 })).rejects.toThrow('Chunk size not set');
  });

  it('rejects an illegal table chunk size before touching the COW', async () => {
    const cow = new MemoryDevice(1 << 20);
    await expect(openStore('P', cow, { chunkSectors: 24 })).rejects.toThrow(StoreConfigError);
    await expect(openStore('N', new MemoryDevice(1 << 20, { blockSize: 4096 }), { chunkSectors: 4 })).rejects.toThrow(/blocksize/);
    expect(cow.bytes.every((b) => b === 0)).toBe(true);
  });

  it('rejects an unknown kind and a COW too small for a persistent store', async () => {
    await expect(openStore('X' as 'P', new MemoryDevice(1 << 20), { chunkSectors: 8 })).rejects.toThrow(StoreConfigError);
    await expect(openStore('P', new MemoryDevice(4096), { chunkSectors: 8 })).rejects.toThrow(/at least 2 chunks/);
  });
});
