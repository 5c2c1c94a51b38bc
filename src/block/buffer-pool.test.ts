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
