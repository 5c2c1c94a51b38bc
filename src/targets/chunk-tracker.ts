// Snapshot reads that are served from the origin are tracked per chunk, so that completing an
// exception can wait until none of them is still reading the origin chunk that an origin write
// is about to overwrite (the kernel's track_chunk / __check_for_conflicting_io).

export class ChunkTracker {
  private readonly counts = new Map<number, number>();
  private readonly waiters = new Map<number, Array<() => void>>();

  add(chunk: number): void {
    this.counts.set(chunk, (this.counts.get(chunk) ?? 0) + 1);
  }

  remove(chunk: number): void {
    const n = (this.counts.get(chunk) ?? 0) - 1;
    if (n > 0) {
      this.counts.set(chunk, n);
      return;
    }
    this.counts.delete(chunk);
    const waiting = this.waiters.get(chunk);
    if (waiting) {
      this.waiters.delete(chunk);
      for (const wake of waiting) wake();
    }
  }

  /** Resolves when no tracked read of `chunk` is in flight (undefined: none now). */
  drained(chunk: number): Promise<void> | undefined {
    if (!this.counts.has(chunk)) return undefined;
    return new Promise<void>((resolve) => {
      const list = this.waiters.get(chunk);
      if (list) list.push(resolve);
      else this.waiters.set(chunk, [resolve]);
    });
  }
}
