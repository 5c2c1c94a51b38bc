import { describe, expect, it } from 'vitest';
import { BufferPool } from '../block/buffer-pool.ts';
import type { BlockDevice } from '../block/device.ts';
import { BlockError } from '../block/errors.ts';
import { MemoryDevice } from '../block/memory-device.ts';
import { COPY_PIECE_BYTES, COPY_PIECES_IN_FLIGHT, copyOriginRange, OriginCopy } from './origin-copy.ts';
import { SharedOriginRead } from './shared-origin-read.ts';

const MiB = 1024 * 1024;

function patterned(size: number): Buffer {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i += 512) data.writeUInt32LE(i / 512, i);
  return data;
}

/** An origin that counts reads, can fail chosen ones, and notes the most bytes the pool had leased. */
function origin(data: Buffer, pool: BufferPool, failRead?: (offset: number, nth: number) => boolean) {
  const mem = new MemoryDevice(data.length, { data });
  const stats = { reads: [] as number[], peakLeased: 0 };
  const dev: BlockDevice = Object.assign(Object.create(mem) as MemoryDevice, {
    async read(buf: Uint8Array, offset: number) {
      stats.reads.push(offset);
      stats.peakLeased = Math.max(stats.peakLeased, pool.leasedNow);
      await Promise.resolve();
      if (failRead?.(offset, stats.reads.length)) throw new BlockError('EIO', `read error at ${offset}`);
      await mem.read(buf, offset);
    },
  });
  return { dev, stats };
}

/** A destination collecting what it is given; `failAt` fails the write of that piece. */
function destination(length: number, failAt?: number) {
  const got = Buffer.alloc(length);
  const state = { writes: 0, inFlight: 0, maxInFlight: 0 };
  const write = async (data: Uint8Array, within: number): Promise<void> => {
    state.inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    await Promise.resolve();
    state.inFlight--;
    if (within === failAt) throw new BlockError('EIO', `write error at ${within}`);
    state.writes++;
    got.set(data, within);
  };
  return { got, state, write };
}

describe('OriginCopy', () => {
  it('writes a piece for several destinations in the background but the last one, for one destination in the foreground', async () => {
    const pool = new BufferPool(0);
    const { dev } = origin(patterned(MiB), pool);
    const seen: (boolean | undefined)[][] = [[], [], []];
    const dest = (i: number) => async (_data: Uint8Array, _within: number, background?: boolean) => void seen[i].push(background);
    const copy = new OriginCopy(dev, pool, 0, 64 * 1024);
    await Promise.all([copy.join(dest(0)), copy.join(dest(1)), copy.join(dest(2))]);
    expect(seen).toEqual([[true], [true], [false]]);
    const alone: (boolean | undefined)[] = [];
    await copyOriginRange(dev, pool, 0, 64 * 1024, async (_d, _w, background) => void alone.push(background));
    expect(alone).toEqual([false]);
  });

  it('copies a chunk up to a piece with one read and one write per destination', async () => {
    const pool = new BufferPool(0);
    const data = patterned(2 * MiB);
    const { dev, stats } = origin(data, pool);
    const a = destination(64 * 1024);
    const b = destination(64 * 1024);
    const copy = new OriginCopy(dev, pool, MiB, 64 * 1024);
    await Promise.all([copy.join(a.write), copy.join(b.write)]);
    expect(stats.reads).toEqual([MiB]);
    expect(a.state.writes).toBe(1);
    expect(a.got.equals(data.subarray(MiB, MiB + 64 * 1024))).toBe(true);
    expect(b.got.equals(a.got)).toBe(true);
    expect(pool.leasedNow).toBe(0);
  });

  it('copies a big range piece by piece: each piece read once for every destination, a few pieces at a time', async () => {
    const pool = new BufferPool(0);
    const length = 10 * COPY_PIECE_BYTES + 4096;
    const data = patterned(length + MiB);
    const { dev, stats } = origin(data, pool);
    const a = destination(length);
    const b = destination(length);
    const copy = new OriginCopy(dev, pool, 4096, length);
    await Promise.all([copy.join(a.write), copy.join(b.write)]);
    expect(stats.reads.length).toBe(11);
    expect(new Set(stats.reads).size).toBe(11);
    expect(stats.peakLeased).toBeLessThanOrEqual(COPY_PIECES_IN_FLIGHT * COPY_PIECE_BYTES);
    expect(a.got.equals(data.subarray(4096, 4096 + length))).toBe(true);
    expect(b.got.equals(a.got)).toBe(true);
    expect(pool.leasedNow).toBe(0);
  });

  it('a failed read fails only the first destination; the piece is read again for the others', async () => {
    const pool = new BufferPool(0);
    const length = 3 * COPY_PIECE_BYTES;
    const data = patterned(length);
    const { dev, stats } = origin(data, pool, (offset, nth) => offset === COPY_PIECE_BYTES && nth <= 3);
    const first = destination(length);
    const second = destination(length);
    const copy = new OriginCopy(dev, pool, 0, length);
    const results = await Promise.allSettled([copy.join(first.write), copy.join(second.write)]);
    expect(results[0].status).toBe('rejected');
    expect(results[1].status).toBe('fulfilled');
    expect(second.got.equals(data)).toBe(true);
    expect(stats.reads.filter((o) => o === COPY_PIECE_BYTES).length).toBe(2);
    expect(pool.leasedNow).toBe(0);
  });

  it('a failed write fails only its destination, which settles once no piece is still being written', async () => {
    const pool = new BufferPool(0);
    const length = 8 * COPY_PIECE_BYTES;
    const data = patterned(length);
    const { dev } = origin(data, pool);
    const bad = destination(length, 2 * COPY_PIECE_BYTES);
    const good = destination(length);
    const copy = new OriginCopy(dev, pool, 0, length);
    const badDone = copy.join(bad.write).then(
      () => 'resolved',
      () => (bad.state.inFlight === 0 && good.state.inFlight === 0 ? 'rejected after the last piece' : 'rejected early'),
    );
    await Promise.all([copy.join(good.write), badDone]);
    expect(await badDone).toBe('rejected after the last piece');
    expect(bad.state.writes).toBeLessThan(8); // it got no more pieces than those already under way
    expect(good.got.equals(data)).toBe(true);
  });

  it('a destination whose write throws at once fails alone, and the copy still ends', async () => {
    const pool = new BufferPool(0);
    const data = patterned(2 * COPY_PIECE_BYTES);
    const { dev } = origin(data, pool);
    const good = destination(data.length);
    const copy = new OriginCopy(dev, pool, 0, data.length);
    const throwing = copy.join(() => {
      throw new BlockError('EIO', 'synchronous failure');
    });
    const fine = copy.join(good.write);
    await expect(throwing).rejects.toThrow(/synchronous failure/);
    await fine;
    expect(good.got.equals(data)).toBe(true);
    expect(pool.leasedNow).toBe(0);
  });

  it('many big copies at once under a small lease cap all finish, never over the cap (no deadlock)', async () => {
    const pool = new BufferPool(4 * MiB, { maxLeasedBytes: 3 * COPY_PIECE_BYTES });
    const length = 6 * COPY_PIECE_BYTES + 512;
    const data = patterned(length * 4);
    const { dev, stats } = origin(data, pool);
    const copies = Array.from({ length: 24 }, (_, i) => {
      const dest = destination(i % 3 === 0 ? 4096 : length);
      const start = (i % 4) * length;
      return { dest, start, done: copyOriginRange(dev, pool, start, dest.got.length, dest.write) };
    });
    await Promise.all(copies.map((c) => c.done));
    expect(stats.peakLeased).toBeLessThanOrEqual(3 * COPY_PIECE_BYTES);
    for (const c of copies) expect(c.dest.got.equals(data.subarray(c.start, c.start + c.dest.got.length))).toBe(true);
    expect(pool.leasedNow).toBe(0);
    expect(pool.leaseWaiters).toBe(0);
  });
});

describe('SharedOriginRead', () => {
  it('shares a copy between destinations that join before its first piece is written, not after', async () => {
    const pool = new BufferPool(0);
    const data = patterned(4 * MiB);
    const { dev, stats } = origin(data, pool);
    const shared = new SharedOriginRead(dev, pool);
    const a = destination(3 * MiB);
    const b = destination(3 * MiB);
    const c = destination(MiB);
    const together = [shared.copy(0, 3 * MiB, a.write), shared.copy(0, 3 * MiB, b.write), shared.copy(3 * MiB, MiB, c.write)];
    await Promise.all(together);
    expect(stats.reads.length).toBe(4);
    const late = destination(3 * MiB);
    await shared.copy(0, 3 * MiB, late.write);
    expect(stats.reads.length).toBe(7);
    for (const d of [a, b, late]) expect(d.got.equals(data.subarray(0, 3 * MiB))).toBe(true);
    expect(c.got.equals(data.subarray(3 * MiB))).toBe(true);
  });
});
