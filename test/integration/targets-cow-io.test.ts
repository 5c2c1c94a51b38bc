// How many COW writes a snapshot write costs (issue 11): a partial first write into a chunk makes
// the new chunk in one write (origin data with the write laid over it), and pieces that land on
// consecutive COW chunks (new or existing) are written with one call. Contents are checked too.
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/block/memory-device.ts';
import { openStore } from '../../src/store/open-store.ts';
import { SnapshotOrigin } from '../../src/targets/snapshot-origin.ts';
import { recording, type Call } from '../support/recording-device.ts';

const KiB = 1024;

async function setup(chunkSectors: number, originBytes = 2048 * KiB) {
  const log: Call[] = [];
  const data = Buffer.alloc(originBytes);
  for (let i = 0; i < originBytes; i += 512) data.fill((i / 512) % 251, i, i + 512);
  const origin = new SnapshotOrigin(new MemoryDevice(originBytes, { data }));
  const cowMem = new MemoryDevice(originBytes * 2);
  const snap = await origin.createSnapshot(await openStore('P', recording('cow', cowMem, log), { chunkSectors }));
  log.length = 0;
  const chunkBytes = chunkSectors * 512;
  const isArea = (offset: number) => (offset / chunkBytes) % (chunkBytes / 16 + 1) === 1; // metadata area chunks (header is chunk 0)
  const dataWrites = () => log.filter((c) => c.op === 'write' && c.offset >= 2 * chunkBytes && !isArea(c.offset));
  return { snap, data, log, dataWrites, chunkBytes };
}

async function readAll(dev: { read(b: Uint8Array, o: number): Promise<void> }, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  await dev.read(buf, offset);
  return buf;
}

describe('snapshot COW writes', () => {
  it('a partial first write makes the chunk with one COW write: the origin data with the write laid over it', async () => {
    const { snap, data, dataWrites, chunkBytes } = await setup(128);
    await snap.write(Buffer.alloc(4 * KiB, 0xee), 5 * chunkBytes + 8 * KiB);
    const writes = dataWrites();
    expect(writes.map((c) => c.length)).toEqual([chunkBytes]);
    const expected = Buffer.from(data.subarray(5 * chunkBytes, 6 * chunkBytes));
    expected.fill(0xee, 8 * KiB, 12 * KiB);
    expect((await readAll(snap, 5 * chunkBytes, chunkBytes)).equals(expected)).toBe(true);
  });

  it('a 1 MiB write over 8-sector chunks is one COW data write, and so is its rewrite', async () => {
    const { snap, dataWrites } = await setup(8);
    const payload = Buffer.alloc(1024 * KiB);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
    await snap.write(payload, 256 * KiB);
    // 256 chunks, allocated in order: consecutive on the COW up to the metadata chunk after area 0's
    // 256 data chunks, so at most two runs.
    const first = dataWrites();
    expect(first.length).toBeLessThanOrEqual(2);
    expect(first.reduce((n, c) => n + c.length, 0)).toBe(payload.length);
    expect(snap.exceptionCount).toBe(256);
    expect((await readAll(snap, 256 * KiB, payload.length)).equals(payload)).toBe(true);
    const before = dataWrites().length;
    payload.fill(0x5a);
    await snap.write(payload, 256 * KiB);
    const rewrites = dataWrites().slice(before);
    expect(rewrites.length).toBeLessThanOrEqual(2);
    expect((await readAll(snap, 256 * KiB, payload.length)).equals(payload)).toBe(true);
  });

  it('a write mixing new and existing chunks keeps every byte where it belongs', async () => {
    const { snap, data, chunkBytes } = await setup(8);
    await snap.write(Buffer.alloc(chunkBytes, 1), 3 * chunkBytes); // chunk 3 exists from now on
    await snap.write(Buffer.alloc(6 * chunkBytes + 1024, 2), 1 * chunkBytes + 512); // chunks 1-7, partial at both ends
    const got = await readAll(snap, 0, 9 * chunkBytes);
    const expected = Buffer.from(data.subarray(0, 9 * chunkBytes));
    expected.fill(2, chunkBytes + 512, 7 * chunkBytes + 1536);
    expect(got.equals(expected)).toBe(true);
  });
});

describe('snapshot-origin writes with several snapshots', () => {
  it('read each origin chunk once for all snapshots of the same chunk size, and every snapshot keeps it', async () => {
    const log: Call[] = [];
    const originBytes = 512 * KiB;
    const data = Buffer.alloc(originBytes);
    for (let i = 0; i < originBytes; i++) data[i] = (i * 13) & 0xff;
    const origin = new SnapshotOrigin(recording('origin', new MemoryDevice(originBytes, { data: Buffer.from(data) }), log));
    const snaps = [];
    for (const cs of [128, 128, 128, 8]) snaps.push(await origin.createSnapshot(await openStore('P', new MemoryDevice(originBytes * 2), { chunkSectors: cs })));
    log.length = 0;
    await origin.write(Buffer.alloc(4 * KiB, 0xff), 70 * KiB); // chunk 1 of 64 KiB, chunks 17 and 18 of 4 KiB
    const reads = log.filter((c) => c.device === 'origin' && c.op === 'read').map((c) => [c.offset, c.length]);
    expect(reads.sort((a, b) => a[0]! - b[0]!)).toEqual([
      [64 * KiB, 64 * KiB],
      [68 * KiB, 4 * KiB],
      [72 * KiB, 4 * KiB],
    ]);
    for (const snap of snaps) expect((await readAll(snap, 0, 192 * KiB)).equals(data.subarray(0, 192 * KiB))).toBe(true);
  });
});

describe('a snapshot write that runs out of COW space part way', () => {
  for (const kind of ['P', 'N'] as const) {
    it(`${kind}: fails with EIO, every piece settles, the snapshot closes`, async () => {
      const chunkBytes = 4 * KiB;
      const origin = new SnapshotOrigin(new MemoryDevice(64 * chunkBytes));
      // Room for the header, area 0 and one data chunk (P), or one chunk (N).
      const cow = new MemoryDevice((kind === 'P' ? 3 : 1) * chunkBytes);
      const snap = await origin.createSnapshot(await openStore(kind, cow, { chunkSectors: 8 }));
      const unhandled: unknown[] = [];
      const onUnhandled = (reason: unknown) => unhandled.push(reason);
      process.on('unhandledRejection', onUnhandled);
      try {
        const err = await snap.write(Buffer.alloc(3 * chunkBytes, 7), 0).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect((err as { errno?: string })?.errno).toBe('EIO');
        await new Promise((resolve) => setImmediate(resolve));
        expect(unhandled).toEqual([]);
        await origin.removeSnapshot(snap); // closes: waits for every pending exception
      } finally {
        process.off('unhandledRejection', onUnhandled);
      }
    });
  }
});
