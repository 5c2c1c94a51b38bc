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

export function newPendingException(oldChunk: number, newChunk: number): PendingException {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const done = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const settled = done.then(
    () => undefined,
    () => undefined,
  );
  // A rejection nobody waits for (no snapshot writer joined) is expected, not an unhandled error.
  done.catch(() => undefined);
  return { oldChunk, newChunk, done, settled, resolve, reject };
}
