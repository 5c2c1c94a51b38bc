// Pieces of one request that land on consecutive COW bytes are written with one call: a 1 MiB
// write over 8-sector chunks becomes one COW write instead of 256, because chunks allocated one
// after the other are consecutive on the COW (apart from metadata chunks, which end a run).

/** Writes `data` at `cowOffset`; the caller may reuse `data` once it resolves. */
export type CowWrite = (data: Uint8Array, cowOffset: number) => Promise<void>;

export class CowRun {
  private readonly buf: Uint8Array;
  private readonly write: CowWrite;
  private cowStart = -1;
  private cowEnd = -1;
  private bufStart = 0;
  private bufEnd = 0;
  /** The one promise of the run being collected: every piece of it settles with the run's write. */
  private run: PromiseWithResolvers<void> | undefined;

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
    this.run ??= Promise.withResolvers<void>();
    return this.run.promise;
  }

  /** Start the write of the run collected so far (if any). */
  flush(): void {
    if (this.cowStart < 0) return;
    const run = this.run!;
    const written = this.write(this.buf.subarray(this.bufStart, this.bufEnd), this.cowStart);
    this.cowStart = -1;
    this.run = undefined;
    written.then(run.resolve, run.reject);
  }
}
