// Prepared exceptions in allocation order, for the persistent store's ordered group commit (the
// kernel gets the same order from dm-snap.c re-ordering copy completions by sequence number).
// A commit for a chunk becomes writable only once every chunk allocated before it has been
// committed too; writable entries are taken from the head in allocation order.

export interface QueuedCommit {
  readonly newChunk: number;
  oldChunk: number;
  resolve(): void;
  reject(err: Error): void;
}

interface Entry extends QueuedCommit {
  committed: boolean;
}

function noop(): void {}

export class AllocationQueue {
  private entries: Entry[] = [];
  private head = 0;
  private byChunk = new Map<number, Entry>();

  /** Number of prepared chunks not yet taken for writing (committed or not). */
  get length(): number {
    return this.entries.length - this.head;
  }

  /** Record a freshly prepared chunk (allocation order is call order). */
  add(newChunk: number): void {
    const entry: Entry = { newChunk, oldChunk: -1, committed: false, resolve: noop, reject: noop };
    this.entries.push(entry);
    this.byChunk.set(newChunk, entry);
  }

  /** Mark a prepared chunk committed; the promise settles when its record is durable (or fails). */
  commit(newChunk: number, oldChunk: number): Promise<void> {
    const entry = this.byChunk.get(newChunk);
    if (!entry) return Promise.reject(new Error(`commit of chunk ${newChunk}, which was not prepared (or is already committed)`));
    this.byChunk.delete(newChunk);
    entry.oldChunk = oldChunk;
    entry.committed = true;
    return new Promise<void>((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
  }

  /** Whether the oldest prepared chunk has been committed (so there is something to write). */
  headReady(): boolean {
    return this.head < this.entries.length && this.entries[this.head].committed;
  }

  /** Take up to `max` committed entries from the head, stopping at the first uncommitted one. */
  takeReady(max: number): QueuedCommit[] {
    const taken: QueuedCommit[] = [];
    while (taken.length < max && this.headReady()) taken.push(this.entries[this.head++]);
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    return taken;
  }

  /** Drop every entry; the committed ones are rejected with `err`. */
  failAll(err: Error): void {
    for (let i = this.head; i < this.entries.length; i++) this.entries[i].reject(err);
    this.entries = [];
    this.head = 0;
    this.byChunk.clear();
  }
}
