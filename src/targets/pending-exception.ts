// An exception being made: a COW chunk has been allocated for an origin chunk and its data is
// being filled (copied from the origin, or written whole by a snapshot write), then committed.
// Everything that needs the chunk preserved joins the one pending exception for it.

export interface PendingException {
  readonly oldChunk: number;
  readonly newChunk: number;
  /** Resolves once committed and readers have drained; rejects (EIO) if the snapshot failed. */
  readonly done: Promise<void>;
  /** Resolves when `done` settles either way (origin writes never fail because of a snapshot). */
  readonly settled: Promise<void>;
  resolve(): void;
  reject(err: Error): void;
}

/**
 * The promises are made only when something asks for them: most exceptions (a large write over
 * small chunks makes hundreds per request) are never joined, and three promises each were a large
 * part of that path's CPU and GC time.
 */
class Pending implements PendingException {
  readonly oldChunk: number;
  readonly newChunk: number;
  private outcome: 'pending' | 'resolved' | 'rejected' = 'pending';
  private error: Error | undefined;
  private promise: Promise<void> | undefined;
  private settle: PromiseWithResolvers<void> | undefined;
  private settledPromise: Promise<void> | undefined;

  constructor(oldChunk: number, newChunk: number) {
    this.oldChunk = oldChunk;
    this.newChunk = newChunk;
  }

  get done(): Promise<void> {
    if (this.promise) return this.promise;
    if (this.outcome === 'resolved') this.promise = Promise.resolve();
    else if (this.outcome === 'rejected') this.promise = Promise.reject(this.error);
    else {
      this.settle = Promise.withResolvers<void>();
      this.promise = this.settle.promise;
    }
    // A rejection nobody waits for (no snapshot writer joined) is expected, not an unhandled error.
    this.promise.catch(() => undefined);
    return this.promise;
  }

  get settled(): Promise<void> {
    this.settledPromise ??= this.done.then(
      () => undefined,
      () => undefined,
    );
    return this.settledPromise;
  }

  resolve(): void {
    if (this.outcome !== 'pending') return;
    this.outcome = 'resolved';
    this.settle?.resolve();
  }

  reject(err: Error): void {
    if (this.outcome !== 'pending') return;
    this.outcome = 'rejected';
    this.error = err;
    this.settle?.reject(err);
  }
}

export function newPendingException(oldChunk: number, newChunk: number): PendingException {
  return new Pending(oldChunk, newChunk);
}
