// Stores with chunks above BIG_CHUNK_BYTES write heads and zero in pieces: the on-disk bytes must
// be exactly what whole-chunk writes give (the kernel's format), and a current area with garbage
// after its terminator must never let that garbage follow new records.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileDevice } from '../../block/file-device.ts';
import { MemoryDevice } from '../../block/memory-device.ts';
import { openStore } from '../open-store.ts';
import { BIG_CHUNK_BYTES } from './big-chunks.ts';
import { RECORD_BYTES, encodeHeader, exceptionsPerArea, writeRecord } from './format.ts';

const CS = 4096; // 2 MiB chunks
const CB = CS * 512;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'big-chunks-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function expectedArea(records: [number, number][]): Buffer {
  const area = Buffer.alloc(CB);
  records.forEach(([o, n], i) => writeRecord(area, i, o, n));
  return area;
}

async function commitAll(store: Awaited<ReturnType<typeof openStore>>, count: number, firstOld = 0): Promise<[number, number][]> {
  const made: [number, number][] = [];
  const commits: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const n = store.prepare();
    made.push([firstOld + i, n]);
    commits.push(store.commit(firstOld + i, n));
  }
  await Promise.all(commits);
  return made;
}

describe('persistent store with big chunks', () => {
  it('is a big chunk size', () => expect(CB).toBeGreaterThan(BIG_CHUNK_BYTES));

  it('writes the same header and area bytes as whole-chunk writes, and reloads them', async () => {
    const cow = new MemoryDevice(8 * CB);
    cow.bytes.fill(0xee, 512); // a used device (magic 0: no store yet): what nbdsnap does not write stays visible
    const store = await openStore('P', cow, { chunkSectors: CS });
    store.load(() => undefined);
    const made = await commitAll(store, 3);
    expect(cow.bytes.subarray(0, CB).equals(encodeHeader(CS, true))).toBe(true);
    expect(cow.bytes.subarray(CB, 2 * CB).equals(expectedArea(made))).toBe(true);
    await store.invalidate('test');
    expect(cow.bytes.subarray(0, CB).equals(encodeHeader(CS, false))).toBe(true);
  });

  it('scrubs garbage after the current area terminator at open, so new records are never followed by it', async () => {
    const cow = new MemoryDevice(8 * CB);
    const store = await openStore('P', cow, { chunkSectors: CS });
    store.load(() => undefined);
    const first = await commitAll(store, 2);
    await store.close();
    // Garbage after the terminator: right after it (same piece) and in a later 1 MiB piece.
    cow.bytes.fill(0x7f, CB + 3 * RECORD_BYTES, CB + 5 * RECORD_BYTES);
    cow.bytes.fill(0x7f, CB + CB / 2, CB + CB / 2 + 64);
    const again = await openStore('P', cow, { chunkSectors: CS });
    const loaded: [number, number][] = [];
    again.load((o, n) => loaded.push([o, n]));
    expect(loaded).toEqual(first);
    const more = await commitAll(again, 1, 100);
    expect(cow.bytes.subarray(CB, 2 * CB).equals(expectedArea([...first, ...more]))).toBe(true);
    await again.close();
  });

  it('zeroes the next area in pieces when one fills, and reloads every record', async () => {
    const epa = exceptionsPerArea(CS); // 131072 records: the COW is a sparse 256 GiB file
    const file = path.join(dir, 'full.cow');
    const cow = FileDevice.open(file, { createSize: (epa + 4) * CB });
    try {
      const store = await openStore('P', cow, { chunkSectors: CS });
      store.load(() => undefined);
      const made = await commitAll(store, epa + 1);
      await store.close();
      const next = Buffer.alloc(4096, 0xff);
      await cow.read(next, (epa + 2) * CB); // area 1's chunk, zeroed before area 0 was written full
      expect(next.subarray(0, 2 * RECORD_BYTES).equals(expectedArea([made[epa]]).subarray(0, 2 * RECORD_BYTES))).toBe(true);
      const again = await openStore('P', cow, { chunkSectors: CS });
      let count = 0;
      let last: [number, number] = [0, 0];
      again.load((o, n) => ((last = [o, n]), count++));
      expect(count).toBe(epa + 1);
      expect(last).toEqual(made[epa]);
      await again.close();
    } finally {
      await cow.close();
    }
  }, 120_000);
});
