// Auto-extend, as LVM's snapshot_autoextend_threshold/percent (which dmeventd applies by polling
// every few seconds): the COW of a store grows before it fills. Here it is checked at every
// allocation, the only moment usage changes, so no fill rate can outrun it: when an allocation
// would bring Data% (allocated/total, as lvs Snap%) to the threshold or above, the COW is first
// grown by `percent` of its size, as often as needed. Growing is a sparse ftruncate (no data is
// written), so it costs microseconds and runs inline. If the file system has no room for the
// data later, that chunk's write fails and the snapshot is invalidated, as the kernel does when
// its COW device fails; the origin is not affected.
import { SECTOR_BYTES } from '../common/sectors.ts';
import { errorText } from '../common/error-text.ts';
import type { Logger } from '../log.ts';
import { isMergeable, type MergeableStore, type MergeRun, type StoreState, type StoreUsage } from './exception-store.ts';
import type { ExceptionStore } from './exception-store.ts';

export interface AutoExtendPolicy {
  /** Data% at which the COW grows (1-100; 100 never grows, as in LVM). */
  threshold: number;
  /** Growth, in percent of the COW's current size. */
  percent: number;
}

/** Grows the COW to at least `size` bytes; returns its new size. */
export type GrowCow = (size: number) => number;

/** One growth at most per allocation may need several steps (a tiny COW, a big chunk): bounded. */
const MAX_STEPS = 64;

export class AutoExtendingStore implements MergeableStore {
  readonly policy: AutoExtendPolicy;
  private readonly inner: ExceptionStore;
  private readonly grow: GrowCow;
  private readonly log: Logger;
  private failed = false;
  /** How many times the COW was grown (shown by snapshot list --json). */
  extensions = 0;

  constructor(inner: ExceptionStore, policy: AutoExtendPolicy, grow: GrowCow, log: Logger) {
    this.inner = inner;
    this.policy = policy;
    this.grow = grow;
    this.log = log;
  }

  get kind() {
    return this.inner.kind;
  }
  get chunkSectors(): number {
    return this.inner.chunkSectors;
  }
  get chunkBytes(): number {
    return this.inner.chunkBytes;
  }
  get cow() {
    return this.inner.cow;
  }
  get state(): StoreState {
    return this.inner.state;
  }
  get recordCount(): number {
    return this.inner.recordCount;
  }

  carry(): { nextFreeSector: number; invalid: boolean } | undefined {
    return this.inner.carry?.();
  }

  load(add: (oldChunk: number, newChunk: number) => void): void {
    this.inner.load(add);
  }

  prepare(): number {
    if (this.policy.threshold < 100 && !this.failed && this.inner.state === 'valid') this.extendIfNeeded();
    return this.inner.prepare();
  }

  commit(oldChunk: number, newChunk: number): Promise<void> {
    return this.inner.commit(oldChunk, newChunk);
  }

  invalidate(reason: string): Promise<void> {
    return this.inner.invalidate(reason);
  }

  overflow(): void {
    this.inner.overflow();
  }

  resize(): number {
    return this.inner.resize();
  }

  usage(): StoreUsage {
    return this.inner.usage();
  }

  status(): string {
    return this.inner.status();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  prepareMerge(maxChunks?: number): Promise<MergeRun[]> {
    return this.mergeable().prepareMerge(maxChunks);
  }

  commitMerge(count: number): Promise<void> {
    return this.mergeable().commitMerge(count);
  }

  private mergeable(): MergeableStore {
    if (!isMergeable(this.inner)) throw new Error(`a ${this.inner.kind} store cannot merge`);
    return this.inner;
  }

  /** Whether allocating one more chunk (and, at worst, a metadata chunk) reaches the threshold. */
  private reachesThreshold(usage: StoreUsage): boolean {
    const after = usage.allocatedSectors + 2 * this.inner.chunkSectors;
    return after * 100 >= this.policy.threshold * usage.totalSectors;
  }

  private extendIfNeeded(): void {
    let usage = this.inner.usage();
    if (!this.reachesThreshold(usage)) return;
    const from = this.inner.cow.size;
    try {
      for (let step = 0; step < MAX_STEPS && this.reachesThreshold(usage); step++) {
        const size = this.inner.cow.size;
        const chunk = this.inner.chunkBytes;
        const wanted = Math.ceil((size + Math.max(SECTOR_BYTES, Math.ceil((size * this.policy.percent) / 100))) / chunk) * chunk;
        if (this.grow(wanted) <= size) throw new Error(`the COW did not grow past ${size} bytes`);
        usage = this.inner.usage();
      }
    } catch (err) {
      // Not retried at every allocation: the store fills and is handled as any full store.
      this.failed = true;
      this.log.error({ err, size: this.inner.cow.size }, `COW auto-extend failed: ${errorText(err)}`);
      return;
    }
    this.extensions++;
    const dataPercent = Math.round((usage.allocatedSectors / usage.totalSectors) * 10000) / 100;
    this.log.info({ from, to: this.inner.cow.size, dataPercent, policy: this.policy }, 'COW auto-extended');
  }
}
