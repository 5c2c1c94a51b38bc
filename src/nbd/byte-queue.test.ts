import { describe, expect, it } from 'vitest';
import { ByteQueue, ConnectionClosedError } from './byte-queue.ts';

const bytes = Buffer.from(Array.from({ length: 40 }, (_, i) => i));

/** Every way of cutting `bytes` into two or three pieces. */
function* splits(): Generator<Buffer[]> {
  for (let a = 0; a <= bytes.length; a++) {
    for (let b = a; b <= bytes.length; b++) yield [bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)];
  }
}

describe('ByteQueue', () => {
  it('take(n) returns the same bytes however the input was split', () => {
    for (const parts of splits()) {
      const q = new ByteQueue();
      for (const p of parts) q.push(p);
      expect(q.length).toBe(40);
      expect([...q.take(7), ...q.take(0), ...q.take(20), ...q.take(13)]).toEqual([...bytes]);
      expect(q.length).toBe(0);
    }
  });

  it('take returns a view (no copy) when the bytes lie in one chunk', () => {
    const q = new ByteQueue();
    const chunk = Buffer.from('abcdef');
    q.push(chunk);
    const view = q.take(3);
    chunk[0] = 0x41;
    expect(view.toString()).toBe('Abc');
  });

  it('skip discards across chunks and reports how much it skipped', () => {
    for (const parts of splits()) {
      const q = new ByteQueue();
      for (const p of parts) q.push(p);
      expect(q.skip(11)).toBe(11);
      expect(q.take(2)).toEqual(bytes.subarray(11, 13));
      expect(q.skip(100)).toBe(27);
      expect(q.length).toBe(0);
    }
  });

  it('take more than queued throws', () => {
    const q = new ByteQueue();
    q.push(Buffer.from([1, 2]));
    expect(() => q.take(3)).toThrow(RangeError);
  });

  it('read(n) waits for enough bytes; end() rejects a pending read', async () => {
    const q = new ByteQueue();
    const pending = q.read(5);
    q.push(Buffer.from([1, 2]));
    q.push(Buffer.from([3, 4, 5, 6]));
    expect([...(await pending)]).toEqual([1, 2, 3, 4, 5]);
    const starved = q.read(4);
    q.end();
    await expect(starved).rejects.toBeInstanceOf(ConnectionClosedError);
    expect([...(await q.read(1))]).toEqual([6]);
    await expect(q.read(1)).rejects.toBeInstanceOf(ConnectionClosedError);
  });

  it('drain(n) consumes bytes as they arrive', async () => {
    const q = new ByteQueue();
    const drained = q.drain(10);
    for (let i = 0; i < 12; i++) q.push(Buffer.from([i]));
    await drained;
    expect([...q.take(2)]).toEqual([10, 11]);
  });
});
