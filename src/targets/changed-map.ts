// A snapshot's changed-chunk map: one bit per chunk of the snapshot, set when the chunk gets an
// exception and never cleared. A snapshot's exceptions are exactly the chunks that changed in the
// origin or in the snapshot since it was taken, so this is the snapshot's dirty bitmap
// (`qemu:dirty-bitmap:<snapshot>` over NBD, `nbdsnap snapshot diff`).
//
// Why a bitmap next to the ExceptionTable: the table is a hash keyed by chunk, so "which chunks of
// [offset, offset+length) changed" would cost one probe per chunk of the range (a 4 GiB
// BLOCK_STATUS window of 4 KiB chunks is a million probes). The bitmap answers it a word (32
// chunks) or a page (32768 chunks) at a time, and marking costs one division and one typed-array
// OR on the copy-on-write path.
//
// Memory: pages of 4 KiB (32768 chunks, 128 MiB of a 4 KiB-chunk snapshot) allocated on first
// mark, plus one slot per page: a snapshot that changed little costs a few pages, a 1 TiB snapshot
// of 4 KiB chunks that changed everywhere 32 MiB (its exception table then holds 2^28 entries of
// 10+ bytes each).
//
// When a bit is set: at allocation, while the exception is still pending (being copied). An
// origin write waits for its exceptions to complete before it touches the origin, and a snapshot
// write is visible only once its exception completes, so the bit is always set before the chunk
// can read differently anywhere; a pending chunk counts as changed, since it is about to be.

/** Chunks per page: 1024 words of 32 bits. */
const PAGE_CHUNKS = 32768;
const PAGE_WORDS = PAGE_CHUNKS / 32;

/** A run of the map in bytes; runs alternate between changed and unchanged. */
export interface ChangedRun {
  length: number;
  changed: boolean;
}

/** A changed region in bytes (merged runs). */
export interface ChangedExtent {
  offset: number;
  length: number;
}

export class ChangedMap {
  /** Bytes the map covers (the snapshot's length); past it everything counts as changed. */
  readonly size: number;
  readonly chunkBytes: number;
  private readonly pages: (Uint32Array | undefined)[];
  private marked = 0;

  constructor(size: number, chunkBytes: number) {
    this.size = size;
    this.chunkBytes = chunkBytes;
    this.pages = new Array<Uint32Array | undefined>(Math.ceil(Math.ceil(size / chunkBytes) / PAGE_CHUNKS)).fill(undefined);
  }

  /** Chunks marked changed. */
  get count(): number {
    return this.marked;
  }

  /** Bytes held by the allocated pages. */
  get byteLength(): number {
    return this.pages.reduce((sum, page) => sum + (page ? page.byteLength : 0), 0);
  }

  /** Mark `chunk` changed (idempotent). The copy-on-write hot path: keep it tiny. */
  mark(chunk: number): void {
    const pageIndex = Math.floor(chunk / PAGE_CHUNKS);
    const within = chunk - pageIndex * PAGE_CHUNKS;
    const page = this.pages[pageIndex] ?? (this.pages[pageIndex] = new Uint32Array(PAGE_WORDS));
    const bit = 1 << (within & 31);
    const word = page[within >>> 5];
    if ((word & bit) !== 0) return;
    page[within >>> 5] = word | bit;
    this.marked++;
  }

  has(chunk: number): boolean {
    const pageIndex = Math.floor(chunk / PAGE_CHUNKS);
    const page = this.pages[pageIndex];
    if (!page) return false;
    const within = chunk - pageIndex * PAGE_CHUNKS;
    return (page[within >>> 5] & (1 << (within & 31))) !== 0;
  }

  /** The first chunk in [from, end) whose bit is not `changed`, or `end`. */
  private nextDifferent(from: number, end: number, changed: boolean): number {
    const flip = changed ? -1 : 0; // XOR with the looked-for value leaves the differing bits set
    let chunk = from;
    while (chunk < end) {
      const pageIndex = Math.floor(chunk / PAGE_CHUNKS);
      const pageStart = pageIndex * PAGE_CHUNKS;
      const page = this.pages[pageIndex];
      if (!page) {
        if (changed) return chunk;
        chunk = pageStart + PAGE_CHUNKS;
        continue;
      }
      const within = chunk - pageStart;
      let w = within >>> 5;
      let diff = (page[w] ^ flip) & (-1 << (within & 31));
      while (diff === 0 && ++w < PAGE_WORDS) diff = page[w] ^ flip;
      if (diff !== 0) return Math.min(end, pageStart + w * 32 + (31 - Math.clz32(diff & -diff)));
      chunk = pageStart + PAGE_CHUNKS;
    }
    return end;
  }

  /**
   * The map from `offset` in runs, covering `length` bytes or less when `maxRuns` runs are reached
   * first (at least one run when length > 0). Runs are whole chunks except at the ends; bytes past
   * the map's size are changed (they were not part of the snapshot).
   */
  runs(offset: number, length: number, maxRuns = Infinity): ChangedRun[] {
    const out: ChangedRun[] = [];
    const end = offset + length;
    const inside = Math.min(end, this.size);
    const cb = this.chunkBytes;
    let at = offset;
    while (at < inside && out.length < maxRuns) {
      const chunk = Math.floor(at / cb);
      const changed = this.has(chunk);
      const next = this.nextDifferent(chunk + 1, Math.ceil(inside / cb), changed);
      const stop = Math.min(inside, next * cb);
      out.push({ length: stop - at, changed });
      at = stop;
    }
    if (at < end && at >= this.size) {
      const last = out[out.length - 1];
      if (last?.changed) last.length += end - at;
      else if (out.length < maxRuns) out.push({ length: end - at, changed: true });
    }
    return out;
  }

  /**
   * The changed regions from `offset` on, merged, in order: at most `maxExtents` (fewer once the
   * map's end is reached). Each one ends at an unchanged chunk or at the end, so a caller that
   * continues from the last one's end gets the rest.
   */
  changedExtents(offset = 0, maxExtents = Infinity): ChangedExtent[] {
    const out: ChangedExtent[] = [];
    const cb = this.chunkBytes;
    const chunks = Math.ceil(this.size / cb);
    for (let chunk = this.nextDifferent(Math.floor(offset / cb), chunks, false); chunk < chunks && out.length < maxExtents;) {
      const end = this.nextDifferent(chunk + 1, chunks, true);
      const start = Math.max(offset, chunk * cb);
      out.push({ offset: start, length: Math.min(this.size, end * cb) - start });
      chunk = this.nextDifferent(end, chunks, false);
    }
    return out;
  }
}

/** The union (changed in either) of two run lists from the same offset, as far as both reach. */
export function unionRuns(a: readonly ChangedRun[], b: readonly ChangedRun[]): ChangedRun[] {
  const out: ChangedRun[] = [];
  let i = 0;
  let j = 0;
  let usedA = 0;
  let usedB = 0;
  while (i < a.length && j < b.length) {
    const step = Math.min(a[i].length - usedA, b[j].length - usedB);
    const changed = a[i].changed || b[j].changed;
    const last = out[out.length - 1];
    if (last && last.changed === changed) last.length += step;
    else out.push({ length: step, changed });
    usedA += step;
    usedB += step;
    if (usedA === a[i].length) (i++, (usedA = 0));
    if (usedB === b[j].length) (j++, (usedB = 0));
  }
  return out;
}
