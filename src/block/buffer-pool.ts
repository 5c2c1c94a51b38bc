// Reuses large I/O buffers (NBD READ replies and WRITE payloads, chunk copies). A fresh
// multi-megabyte buffer costs page faults on first touch and an munmap when collected; at 1 MiB
// requests that was a third of the NBD server's CPU time. Buffers are handed back only when
// nothing can still use them (the socket flushed the reply, or the device's write resolved);
// anything else is left to the GC. Whoever owns a pool passes it to its users: there is no
// process-wide instance.

/** Requests smaller than this use Buffer.allocUnsafe (Node's own slab for tiny sizes). */
const MIN_POOLED = 64 * 1024;
/** Pooled sizes are rounded up to a multiple of this. */
const GRANULE = 64 * 1024;

export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private readonly issued = new WeakSet<ArrayBuffer>();
  private freeBytes = 0;
  private readonly maxFreeBytes: number;

  /** Keep at most maxFreeBytes of idle buffers. */
  constructor(maxFreeBytes: number) {
    this.maxFreeBytes = maxFreeBytes;
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

  /** Idle bytes held (for tests). */
  get idleBytes(): number {
    return this.freeBytes;
  }
}
