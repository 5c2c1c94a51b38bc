// Reuses large I/O buffers (NBD READ replies and WRITE payloads, chunk copies). A fresh
// multi-megabyte buffer costs page faults on first touch and an munmap when collected; at 1 MiB
// requests that was a third of the NBD server's CPU time. Buffers are handed back only when
// nothing can still use them (the socket flushed the reply, or the device's write resolved);
// anything else is left to the GC. Whoever owns a pool passes it to its users: there is no
// process-wide instance.
//
// Leases: work that nothing else bounds (copy-outs to snapshot COW stores, which origin writes
// start for every chunk x snapshot at once) takes its buffers with lease() instead of acquire().
// The bytes leased at once are capped (maxLeasedBytes); past the cap, lease() waits, first come
// first served, until endLease() gives bytes back. A lease holder must never wait for anything
// that needs a lease (it only does device I/O and ends the lease), so the waiters always move.
// This is the memory side of the kernel's kcopyd page pool and of dm-snap's COW throttle.

/** Requests smaller than this use Buffer.allocUnsafe (Node's own slab for tiny sizes). */
const MIN_POOLED = 64 * 1024;
/** Pooled sizes are rounded up to a multiple of this. */
const GRANULE = 64 * 1024;

/**
 * Default cap on leased bytes: 64 copy pieces of 1 MiB (targets/origin-copy.ts), or 16,384
 * copies of 4 KiB chunks. It bounds the copy-out memory of every snapshot of every origin that
 * shares the pool (in the daemon: all of them); docs/memory.md derives the daemon's RSS bound.
 */
export const DEFAULT_MAX_LEASED_BYTES = 64 * 1024 * 1024;

export interface BufferPoolOptions {
  /** Cap on the bytes leased at once (lease()); default DEFAULT_MAX_LEASED_BYTES. */
  maxLeasedBytes?: number;
}

interface LeaseWaiter {
  length: number;
  grant(buf: Buffer): void;
}

/** The memory a buffer of `length` really takes: the pooled size, or the length itself. */
function footprint(length: number): number {
  return length < MIN_POOLED ? length : Math.ceil(length / GRANULE) * GRANULE;
}

export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private readonly issued = new WeakSet<ArrayBuffer>();
  private freeBytes = 0;
  private readonly maxFreeBytes: number;
  private readonly maxLeasedBytes: number;
  private leasedBytes = 0;
  private readonly leased = new WeakSet<Buffer>();
  /** FIFO of lease() calls waiting for room; `waitHead` is the index of the first one. */
  private waiters: LeaseWaiter[] = [];
  private waitHead = 0;

  /** Keep at most maxFreeBytes of idle buffers. */
  constructor(maxFreeBytes: number, opts: BufferPoolOptions = {}) {
    this.maxFreeBytes = maxFreeBytes;
    this.maxLeasedBytes = opts.maxLeasedBytes ?? DEFAULT_MAX_LEASED_BYTES;
  }

  /** A buffer of exactly `length` bytes, contents undefined. */
  acquire(length: number): Buffer {
    if (length < MIN_POOLED) return Buffer.allocUnsafe(length);
    const size = Math.ceil(length / GRANULE) * GRANULE;
    const reused = this.free.get(size)?.pop();
    if (reused) {
      this.freeBytes -= size;
      return Buffer.from(reused, 0, length);
    }
    const fresh = new ArrayBuffer(size);
    this.issued.add(fresh);
    return Buffer.from(fresh, 0, length);
  }

  /** Give back a buffer from acquire() that nothing references any more; others are ignored. */
  release(buf: Buffer): void {
    const backing = buf.buffer;
    if (!(backing instanceof ArrayBuffer) || !this.issued.has(backing)) return;
    let list = this.free.get(backing.byteLength);
    if (!list) this.free.set(backing.byteLength, (list = []));
    if (list.includes(backing)) throw new Error('BufferPool: buffer released twice');
    if (this.freeBytes + backing.byteLength > this.maxFreeBytes) return;
    list.push(backing);
    this.freeBytes += backing.byteLength;
  }

  /**
   * A leased buffer of `length` bytes at once, or undefined when it would pass the lease cap or
   * earlier lease() calls are still waiting (they go first). End it with endLease().
   */
  tryLease(length: number): Buffer | undefined {
    if (this.waitHead < this.waiters.length || !this.fits(length)) return undefined;
    return this.grant(length);
  }

  /** A leased buffer of `length` bytes, once there is room, after every earlier waiter. */
  lease(length: number): Promise<Buffer> {
    const now = this.tryLease(length);
    if (now) return Promise.resolve(now);
    return new Promise<Buffer>((grant) => this.waiters.push({ length, grant }));
  }

  /** End a lease from tryLease()/lease(): its bytes count again, the buffer goes back to the pool. */
  endLease(buf: Buffer): void {
    if (!this.leased.delete(buf)) throw new Error('BufferPool: not a leased buffer, or its lease ended already');
    this.leasedBytes -= footprint(buf.length);
    this.release(buf);
    while (this.waitHead < this.waiters.length && this.fits(this.waiters[this.waitHead].length)) {
      const next = this.waiters[this.waitHead++];
      next.grant(this.grant(next.length));
    }
    if (this.waitHead === 0) return;
    if (this.waitHead === this.waiters.length) {
      this.waiters = [];
      this.waitHead = 0;
    } else if (this.waitHead > 1024 && this.waitHead * 2 > this.waiters.length) {
      this.waiters = this.waiters.slice(this.waitHead);
      this.waitHead = 0;
    }
  }

  /** Idle bytes held (for tests). */
  get idleBytes(): number {
    return this.freeBytes;
  }

  /** Bytes leased now (for tests). */
  get leasedNow(): number {
    return this.leasedBytes;
  }

  /** lease() calls waiting for room (for tests). */
  get leaseWaiters(): number {
    return this.waiters.length - this.waitHead;
  }

  /** Room for a lease of `length`; one larger than the whole cap is let through alone. */
  private fits(length: number): boolean {
    return this.leasedBytes === 0 || this.leasedBytes + footprint(length) <= this.maxLeasedBytes;
  }

  private grant(length: number): Buffer {
    const buf = this.acquire(length);
    this.leasedBytes += footprint(length);
    this.leased.add(buf);
    return buf;
  }
}
