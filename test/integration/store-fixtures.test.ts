// The kernel-written fixtures: nbdsnap's persistent store parses them, rebuilds the exception
// table, reproduces the snapshot's content (sha256) from COW + origin and the kernel's status.
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/block/memory-device.ts';
import { ExceptionTable } from '../../src/store/exception-table.ts';
import { openStore } from '../../src/store/open-store.ts';
import { decodeHeader, scanArea } from '../../src/store/persistent/format.ts';
import { SECTOR, loadFixture, originAfter, sha256, snapshotImage } from '../support/store-fixtures.ts';

describe.each(['small-cs16', 'multiarea-cs8'])('kernel fixture %s', (name) => {
  const fixture = loadFixture(name);
  const { manifest } = fixture;

  it('reproduces status_after, the origin and the snapshot sha256', async () => {
    const cow = new MemoryDevice(0, { data: Buffer.from(fixture.cow) });
    const store = await openStore('P', cow, { chunkSectors: manifest.chunk_sectors });
    expect(store.state).toBe('valid');
    expect(store.status()).toBe(manifest.status_after);
    const table = new ExceptionTable(store.recordCount);
    table.insertAll((add) => store.load(add));
    expect(table.size).toBe(store.recordCount);
    const origin = originAfter(fixture);
    expect(sha256(origin)).toBe(manifest.origin_after_sha256);
    const image = snapshotImage(origin, fixture.cow, store.chunkSectors, (chunk) => table.lookup(chunk));
    expect(sha256(image)).toBe(manifest.snapshot_sha256);
  });

  it('takes the chunk size from the header whatever the table says', async () => {
    for (const asked of [0, manifest.chunk_sectors * 2]) {
      const cow = new MemoryDevice(0, { data: Buffer.from(fixture.cow) });
      const store = await openStore('PO', cow, { chunkSectors: asked });
      expect(store.chunkSectors).toBe(manifest.chunk_sectors);
      expect(store.status()).toBe(manifest.status_after);
    }
  });
});

describe('kernel fixture overflow-cs8', () => {
  const fixture = loadFixture('overflow-cs8');

  it('loads as invalid, with valid=0 in the header and 126 committed exceptions on disk', async () => {
    const cow = new MemoryDevice(0, { data: Buffer.from(fixture.cow) });
    const store = await openStore('P', cow, { chunkSectors: 8 });
    expect(store.state).toBe('invalid');
    expect(store.status()).toBe(fixture.manifest.status_after);
    expect(store.recordCount).toBe(0);
    const loaded: number[] = [];
    store.load((oldChunk) => loaded.push(oldChunk));
    expect(loaded).toEqual([]);
    expect(() => store.prepare()).toThrow(expect.objectContaining({ errno: 'EIO' }));
    await expect(store.commit(1, 2)).rejects.toMatchObject({ errno: 'EIO' });

    const header = decodeHeader(fixture.cow);
    expect(header).toEqual({ magic: 0x70416e53, valid: 0, version: 1, chunkSectors: 8 });
    const area0 = fixture.cow.subarray(8 * SECTOR, 16 * SECTOR);
    const seen: number[] = [];
    expect(scanArea(area0, (_old, newChunk) => seen.push(newChunk))).toBe(126);
    expect(seen).toEqual(Array.from({ length: 126 }, (_, i) => i + 2));
  });
});
