// A FIFO of received socket chunks. take(n) returns a subarray when the bytes lie in one chunk
// and copies once otherwise; nothing is concatenated per 'data' event. Synchronous take/skip
// serve the transmission parser; read(n) serves the sequential handshake.

export class ConnectionClosedError extends Error {
  constructor(message = 'connection closed') {
    super(message);
    this.name = 'ConnectionClosedError';
  }
}

export class ByteQueue {
  private chunks: Buffer[] = [];
  /** Read position inside chunks[0]. */
  private head = 0;
  private total = 0;
  private waiter: { need: number; resolve: () => void; reject: (err: Error) => void } | undefined;
  private endError: Error | undefined;

  /** Bytes available to take. */
  get length(): number {
    return this.total;
  }

  /** True once end() was called (no more bytes will arrive). */
  get ended(): boolean {
    return this.endError !== undefined;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0 || this.endError) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
    if (this.waiter && this.total >= this.waiter.need) {
      const { resolve } = this.waiter;
      this.waiter = undefined;
      resolve();
    }
  }

  /** No more data: pending and future read() calls reject with `err` once the bytes run out. */
  end(err: Error = new ConnectionClosedError()): void {
    this.endError ??= err;
    if (this.waiter) {
      const { reject } = this.waiter;
      this.waiter = undefined;
      reject(this.endError);
    }
  }

  /**
   * Remove and return exactly n bytes; the caller checks `length >= n` first. When the bytes
   * span chunks they are copied into `alloc(n)` (default Buffer.allocUnsafe).
   */
  take(n: number, alloc: (n: number) => Buffer = Buffer.allocUnsafe): Buffer {
    if (n > this.total) throw new RangeError(`take(${n}) with ${this.total} bytes queued`);
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    const out = alloc(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0];
      const count = Math.min(chunk.length - this.head, n - filled);
      chunk.copy(out, filled, this.head, this.head + count);
      filled += count;
      this.advance(count);
    }
    return out;
  }

  /** Move up to `max` queued bytes into target[at..]; returns how many were moved. */
  takeInto(target: Buffer, at: number, max: number): number {
    let moved = 0;
    while (moved < max && this.total > 0) {
      const chunk = this.chunks[0];
      const count = Math.min(chunk.length - this.head, max - moved);
      chunk.copy(target, at + moved, this.head, this.head + count);
      moved += count;
      this.advance(count);
    }
    return moved;
  }

  /** Discard up to n bytes; returns how many were discarded. */
  skip(n: number): number {
    let left = Math.min(n, this.total);
    const skipped = left;
    while (left > 0) {
      const count = Math.min(this.chunks[0].length - this.head, left);
      this.advance(count);
      left -= count;
    }
    return skipped;
  }

  /** Wait until n bytes are queued, then take them. Rejects if the queue ends first. */
  async read(n: number): Promise<Buffer> {
    if (this.total < n) {
      if (this.endError) throw this.endError;
      if (this.waiter) throw new Error('ByteQueue.read: concurrent readers');
      await new Promise<void>((resolve, reject) => {
        this.waiter = { need: n, resolve, reject };
      });
    }
    return this.take(n);
  }

  /** Wait for n bytes and discard them, without holding them all at once. */
  async drain(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      left -= this.skip(left);
      if (left > 0) await this.waitForAny();
    }
  }

  private async waitForAny(): Promise<void> {
    if (this.total > 0) return;
    if (this.endError) throw this.endError;
    await new Promise<void>((resolve, reject) => {
      this.waiter = { need: 1, resolve, reject };
    });
  }

  private advance(n: number): void {
    this.head += n;
    this.total -= n;
    if (this.head === this.chunks[0].length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}
