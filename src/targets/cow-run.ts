// Pieces of one request that land on consecutive COW bytes are written with one call: a 1 MiB
// write over 8-sector chunks becomes one COW write instead of 256, because chunks allocated one
// after the other are consecutive on the COW (apart from metadata chunks, which end a run).

/** Writes `data` at `cowOffset`; the caller may reuse `data` once it resolves. */
export type CowWrite = (data: Uint8Array, cowOffset: number) => Promise<void>;

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}

export class CowRun {
  private readonly buf: Uint8Array;
  private readonly write: CowWrite;
  private cowStart = -1;
  private cowEnd = -1;
  private bufStart = 0;
  private bufEnd = 0;
  private waiters: Waiter[] = [];

  /** `buf` is the request's data; pieces are given as ranges of it. */
  constructor(buf: Uint8Array, write: CowWrite) {
    this.buf = buf;
    this.write = write;
  }

  /**
   * Add buf[bufOffset, bufOffset+length) to be written at `cowOffset`. The promise settles with
   * the write that carries it, which starts at the next non-contiguous add() or at flush().
   */
  add(cowOffset: number, bufOffset: number, length: number): Promise<void> {
    if (this.cowStart >= 0 && (cowOffset !== this.cowEnd || bufOffset !== this.bufEnd)) this.flush();
    if (this.cowStart < 0) {
      this.cowStart = cowOffset;
      this.bufStart = bufOffset;
    }
    this.cowEnd = cowOffset + length;
    this.bufEnd = bufOffset + length;
    return new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Start the write of the run collected so far (if any). */
  flush(): void {
    if (this.cowStart < 0) return;
    const waiters = this.waiters;
    const written = this.write(this.buf.subarray(this.bufStart, this.bufEnd), this.cowStart);
    this.cowStart = -1;
    this.waiters = [];
    written.then(
      () => waiters.forEach((w) => w.resolve()),
      (err: unknown) => waiters.forEach((w) => w.reject(err)),
    );
  }
}
