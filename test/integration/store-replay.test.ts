// Replaying each fixture's workload serially through nbdsnap's store writes the COW the kernel
// wrote, byte for byte (the transient fixture: the same data chunks; its map is not on disk).
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/block/memory-device.ts';
import { openStore } from '../../src/store/open-store.ts';
import { CowDriver } from '../support/store-cow-driver.ts';
import { SECTOR, loadFixture, originAfter, originPattern, sha256, writeData } from '../support/store-fixtures.ts';

function firstDifference(a: Buffer, b: Buffer): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : length;
}

async function replay(name: string) {
  const fixture = loadFixture(name);
  const { manifest } = fixture;
  const origin = new MemoryDevice(0, { data: originPattern(manifest.origin_sectors) });
  const cow = new MemoryDevice(manifest.cow_bytes);
  const store = await openStore(manifest.store, cow, { chunkSectors: manifest.chunk_sectors });
  const driver = new CowDriver(store, origin);
  for (const w of fixture.writes) await driver.write(w.target, w.sector * SECTOR, writeData(w), w.seq);
  return { fixture, origin, cow, store, driver };
}

describe.each(['small-cs16', 'multiarea-cs8', 'transient-cs16'])('replaying %s', (name) => {
  it('produces the kernel COW byte for byte and the same status', async () => {
    const { fixture, origin, cow, store, driver } = await replay(name);
    expect(driver.failed).toEqual([]);
    expect(sha256(origin.bytes)).toBe(fixture.manifest.origin_after_sha256);
    expect(firstDifference(cow.bytes, fixture.cow)).toBe(-1);
    expect(store.status()).toBe(fixture.manifest.status_after);
    const image = Buffer.from(originAfter(fixture));
    for (const [oldChunk, newChunk] of driver.table.entries()) {
      cow.bytes.copy(image, oldChunk * store.chunkBytes, newChunk * store.chunkBytes, (newChunk + 1) * store.chunkBytes);
    }
    expect(sha256(image)).toBe(fixture.manifest.snapshot_sha256);
  });
});

describe('replaying overflow-cs8', () => {
  it('fills the store with the same 126 exceptions, then invalidates it as the kernel did', async () => {
    const { fixture, origin, cow, store, driver } = await replay('overflow-cs8');
    // An origin write found the store full: the snapshot was invalidated and the origin written
    // anyway. The next snapshot write failed (EIO), ending the workload, so it is not listed.
    expect(sha256(origin.bytes)).toBe(fixture.manifest.origin_after_sha256);
    expect(driver.failed).toEqual([]);
    expect(driver.table.size).toBe(126);
    expect(store.state).toBe('invalid');
    expect(store.status()).toBe(fixture.manifest.status_after);
    expect(firstDifference(cow.bytes, fixture.cow)).toBe(-1);
  });
});
