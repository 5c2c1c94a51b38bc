// Chunks bigger than a copy piece (issue 12, section 4): the origin chunk is copied to every
// snapshot piece by piece, through the pool's capped leases, with the same results as a whole-
// chunk copy. In memory: the leased bytes are sampled at every origin read, and the content of
// every snapshot is checked against the origin as it was.
import { describe, expect, it } from 'vitest';
import { BufferPool } from '../../src/block/buffer-pool.ts';
import type { BlockDevice } from '../../src/block/device.ts';
import { MemoryDevice } from '../../src/block/memory-device.ts';
import { openStore } from '../../src/store/open-store.ts';
import { COPY_PIECE_BYTES } from '../../src/targets/origin-copy.ts';
import { SnapshotOrigin } from '../../src/targets/snapshot-origin.ts';
import type { Snapshot } from '../../src/targets/snapshot.ts';
import { makeRng } from '../support/prng.ts';
import { recording, type Call } from '../support/recording-device.ts';

const MiB = 1024 * 1024;
const BIG_SECTORS = 16384; // 8 MiB chunks: 8 pieces each

function patterned(size: number): Buffer {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i += 512) data.writeUInt32LE(i / 512 + 1, i);
  return data;
}

/** The origin, recording its reads and the most bytes the pool had leased at any read. */
function sampledOrigin(data: Buffer, pool: BufferPool) {
  const log: Call[] = [];
  const stats = { peakLeased: 0 };
  const dev = recording('origin', new MemoryDevice(data.length, { data: Buffer.from(data) }), log, () => () => {
    stats.peakLeased = Math.max(stats.peakLeased, pool.leasedNow);
    return undefined;
  });
  return { dev, log, stats };
}

async function snapshotOf(origin: SnapshotOrigin, chunkSectors: number, dataChunks: number, log?: Call[]): Promise<Snapshot> {
  const chunkBytes = chunkSectors * 512;
  const areas = Math.ceil(dataChunks / (chunkBytes / 16)) + 1;
  let cow: BlockDevice = new MemoryDevice((1 + areas + dataChunks) * chunkBytes);
  if (log) cow = recording(`cow${chunkSectors}`, cow, log);
  return origin.createSnapshot(await openStore('P', cow, { chunkSectors }));
}

async function readAll(dev: BlockDevice): Promise<Buffer> {
  const buf = Buffer.alloc(dev.size);
  await dev.read(buf, 0);
  return buf;
}

describe('chunks bigger than a copy piece', () => {
  it('random origin writes at depth 64 preserve every snapshot, with leases under the cap and one read per piece', async () => {
    const size = 4 * BIG_SECTORS * 512;
    const data = patterned(size);
    const cap = 3 * COPY_PIECE_BYTES;
    const pool = new BufferPool(8 * MiB, { maxLeasedBytes: cap });
    const { dev, log, stats } = sampledOrigin(data, pool);
    const origin = new SnapshotOrigin(dev, { bufferPool: pool });
    const snaps = [
      await snapshotOf(origin, 8, size / 4096),
      await snapshotOf(origin, 1024, size / (512 * 1024)),
      await snapshotOf(origin, BIG_SECTORS, 4),
      await snapshotOf(origin, BIG_SECTORS, 4),
    ];
    log.length = 0;
    const rng = makeRng(12);
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 64; i++) writes.push(origin.write(Buffer.alloc(4096, 0xee), rng.int(0, size / 4096 - 1) * 4096));
    await Promise.all(writes);
    for (const snap of snaps) expect((await readAll(snap)).equals(data)).toBe(true);
    expect(stats.peakLeased).toBeLessThanOrEqual(cap);
    expect(pool.leasedNow).toBe(0);
    // The two 8 MiB-chunk snapshots share their piece reads: every piece of a big chunk is read once.
    const pieceReads = log.filter((c) => c.op === 'read' && c.length === COPY_PIECE_BYTES).map((c) => c.offset);
    expect(new Set(pieceReads).size).toBe(pieceReads.length);
    for (const snap of snaps) await origin.removeSnapshot(snap);
  });

  it('a snapshot write into a new big chunk writes its own bytes from the request and copies only the rest', async () => {
    const size = 2 * BIG_SECTORS * 512;
    const data = patterned(size);
    const pool = new BufferPool(8 * MiB, { maxLeasedBytes: 2 * COPY_PIECE_BYTES });
    const { dev, stats } = sampledOrigin(data, pool);
    const origin = new SnapshotOrigin(dev, { bufferPool: pool });
    const cowLog: Call[] = [];
    const snap = await snapshotOf(origin, BIG_SECTORS, 2, cowLog);
    const chunkBytes = BIG_SECTORS * 512;
    const at = chunkBytes + 3 * COPY_PIECE_BYTES + 1536; // inside the second chunk, across a piece boundary
    const payload = Buffer.alloc(COPY_PIECE_BYTES + 4096, 0x42);
    cowLog.length = 0;
    await snap.write(payload, at);
    const expected = Buffer.from(data);
    payload.copy(expected, at);
    expect((await readAll(snap)).equals(expected)).toBe(true);
    expect((await readAll(origin)).equals(data)).toBe(true);
    // The new chunk is COW chunk 2 (after the header and the first metadata area).
    const dataWrites = cowLog.filter((c) => c.op === 'write' && c.offset >= 2 * chunkBytes);
    expect(dataWrites.some((c) => c.length === payload.length && c.offset === 2 * chunkBytes + (at - chunkBytes))).toBe(true);
    expect(dataWrites.every((c) => c.length <= payload.length)).toBe(true);
    expect(dataWrites.reduce((n, c) => n + c.length, 0)).toBe(chunkBytes);
    expect(stats.peakLeased).toBeLessThanOrEqual(2 * COPY_PIECE_BYTES);
    await origin.removeSnapshot(snap);
  });

  it('origin and snapshot writes racing on big and small chunks under a one-piece cap all finish, in the kernel semantics', async () => {
    const size = 2 * BIG_SECTORS * 512;
    const data = patterned(size);
    const pool = new BufferPool(0, { maxLeasedBytes: COPY_PIECE_BYTES });
    const { dev, stats } = sampledOrigin(data, pool);
    const origin = new SnapshotOrigin(dev, { bufferPool: pool });
    const big = await snapshotOf(origin, BIG_SECTORS, 2);
    const mid = await snapshotOf(origin, 2048, size / MiB);
    const small = await snapshotOf(origin, 8, size / 4096);
    const rng = makeRng(99);
    const ops: Promise<void>[] = [];
    const snapWrites: [Snapshot, number, number][] = [];
    for (let i = 0; i < 48; i++) {
      const offset = rng.int(0, size / 4096 - 1) * 4096;
      if (i % 3 === 0) {
        const snap = [big, mid, small][i % 2 === 0 ? 0 : 2];
        snapWrites.push([snap, offset, 0x10 + i]);
        ops.push(snap.write(Buffer.alloc(4096, 0x10 + i), offset));
      } else {
        ops.push(origin.write(Buffer.alloc(8192, 0xe0), Math.min(offset, size - 8192)));
      }
    }
    await Promise.all(ops);
    expect(stats.peakLeased).toBeLessThanOrEqual(COPY_PIECE_BYTES);
    for (const snap of [big, mid, small]) {
      const expected = Buffer.from(data);
      for (const [s, offset, byte] of snapWrites) if (s === snap) expected.fill(byte, offset, offset + 4096);
      expect((await readAll(snap)).equals(expected)).toBe(true);
      await origin.removeSnapshot(snap);
    }
  });
});
