import { describe, expect, it } from 'vitest';
import { BufferPool } from './buffer-pool.ts';

describe('BufferPool', () => {
  it('hands small requests to allocUnsafe and never pools them', () => {
    const pool = new BufferPool(1 << 30);
    const small = pool.acquire(100);
    expect(small.length).toBe(100);
    pool.release(small);
    expect(pool.idleBytes).toBe(0);
  });

  it('reuses a released buffer of the same size class', () => {
    const pool = new BufferPool(1 << 30);
    const a = pool.acquire(1024 * 1024 + 28);
    expect(a.length).toBe(1024 * 1024 + 28);
    pool.release(a);
    expect(pool.idleBytes).toBe(1024 * 1024 + 64 * 1024);
    const b = pool.acquire(1024 * 1024 + 16);
    expect(b.buffer).toBe(a.buffer);
    expect(pool.idleBytes).toBe(0);
  });

  it('ignores foreign buffers, refuses double release, and caps idle memory', () => {
    const pool = new BufferPool(200 * 1024);
    pool.release(Buffer.alloc(128 * 1024));
    expect(pool.idleBytes).toBe(0);
    const a = pool.acquire(128 * 1024);
    const b = pool.acquire(128 * 1024);
    pool.release(a);
    expect(() => pool.release(a)).toThrow(/twice/);
    pool.release(b); // over the cap: dropped
    expect(pool.idleBytes).toBe(128 * 1024);
  });
});

describe('BufferPool leases (the copy-out limit)', () => {
  const MiB = 1024 * 1024;

  it('grants leases at once while they fit, then queues them in order and grants each as room comes back', async () => {
    const pool = new BufferPool(1 << 30, { maxLeasedBytes: 3 * MiB });
    const a = pool.tryLease(MiB)!;
    const b = pool.tryLease(MiB)!;
    const c = pool.tryLease(MiB)!;
    expect(pool.leasedNow).toBe(3 * MiB);
    expect(pool.tryLease(4096)).toBeUndefined(); // no room, even for a small one
    const granted: string[] = [];
    const d = pool.lease(2 * MiB).then((buf) => (granted.push('d'), buf));
    const e = pool.lease(4096).then((buf) => (granted.push('e'), buf));
    expect(pool.leaseWaiters).toBe(2);
    // Room for e but not for d: e still waits behind d (first come, first served), and so does
    // a tryLease that would fit.
    pool.endLease(a);
    expect(pool.tryLease(4096)).toBeUndefined();
    await Promise.resolve();
    expect(granted).toEqual([]);
    pool.endLease(b);
    const dBuf = await d;
    expect(dBuf.length).toBe(2 * MiB);
    expect(pool.leasedNow).toBe(3 * MiB);
    await Promise.resolve();
    expect(granted).toEqual(['d']); // e no longer fits beside c and d
    pool.endLease(c);
    const eBuf = await e;
    expect(granted).toEqual(['d', 'e']);
    expect(eBuf.length).toBe(4096);
    expect(pool.leasedNow).toBe(2 * MiB + 4096);
    for (const buf of [dBuf, eBuf]) pool.endLease(buf);
    expect(pool.leasedNow).toBe(0);
    expect(pool.leaseWaiters).toBe(0);
  });

  it('counts what a buffer really takes, and reuses leased buffers through the pool', () => {
    const pool = new BufferPool(1 << 30, { maxLeasedBytes: MiB });
    const big = pool.tryLease(100 * 1024)!; // pooled: rounded up to the 64 KiB granule
    expect(pool.leasedNow).toBe(128 * 1024);
    const small = pool.tryLease(4096)!;
    expect(pool.leasedNow).toBe(128 * 1024 + 4096);
    pool.endLease(big);
    pool.endLease(small);
    expect(pool.idleBytes).toBe(128 * 1024);
    const again = pool.tryLease(100 * 1024)!;
    expect(again.buffer).toBe(big.buffer);
    pool.endLease(again);
  });

  it('lets a lease larger than the whole cap through alone, never beside others', async () => {
    const pool = new BufferPool(0, { maxLeasedBytes: MiB });
    const huge = pool.tryLease(4 * MiB)!;
    expect(huge.length).toBe(4 * MiB);
    expect(pool.tryLease(4096)).toBeUndefined();
    const small = pool.lease(4096);
    pool.endLease(huge);
    pool.endLease(await small);
    const first = pool.tryLease(4096)!;
    expect(pool.tryLease(4 * MiB)).toBeUndefined();
    pool.endLease(first);
  });

  it('refuses to end a lease twice or one it never granted', () => {
    const pool = new BufferPool(1 << 30);
    const buf = pool.tryLease(MiB)!;
    pool.endLease(buf);
    expect(() => pool.endLease(buf)).toThrow(/not a leased buffer/);
    expect(() => pool.endLease(pool.acquire(MiB))).toThrow(/not a leased buffer/);
    expect(pool.leasedNow).toBe(0);
  });

  it('never holds more than the cap while many holders come and go, and every waiter is served', async () => {
    const pool = new BufferPool(8 * MiB, { maxLeasedBytes: 2 * MiB });
    let peak = 0;
    const sizes = Array.from({ length: 200 }, (_, i) => [4096, 64 * 1024, 512 * 1024, MiB][i % 4]);
    await Promise.all(
      sizes.map(async (size, i) => {
        const buf = pool.tryLease(size) ?? (await pool.lease(size));
        peak = Math.max(peak, pool.leasedNow);
        for (let t = 0; t < i % 3; t++) await Promise.resolve(); // holders end in another order than they began
        pool.endLease(buf);
      }),
    );
    expect(peak).toBeLessThanOrEqual(2 * MiB);
    expect(pool.leasedNow).toBe(0);
    expect(pool.leaseWaiters).toBe(0);
  });
});
