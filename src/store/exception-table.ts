// The in-memory map of completed exceptions, origin chunk -> COW chunk (the kernel's
// complete-exception hash). Open addressing with linear probing over ONE typed array of
// interleaved [key, value] slots, so a lookup costs one cache miss.
//
// Memory: while every chunk number is below 2^32 - 1 the slots are 32-bit (8 bytes a slot, kept
// in an Int32Array so V8 does pure int32 arithmetic); the table grows by doubling at 3/4 load, so
// it spends 10.7 to 21.3 bytes per exception (13.4 for 10M exceptions presized with `expected`).
// A chunk number >= 2^32 - 1 switches the table to f64 slots for good (16 bytes a slot, up to 43
// bytes per exception): only for huge devices.
//
// Inserting an existing key replaces its value (a later record for the same chunk wins).

/** Narrow empty key: -1 as int32 is 0xFFFFFFFF, a chunk number narrow slots cannot hold. */
const EMPTY = -1;
const NARROW_LIMIT = 0xffffffff;
const MIN_CAPACITY = 16;
const MAX_LOAD = 0.75;
const TWO_32 = 2 ** 32;
/** insertAll() batch: enough independent loads in flight to hide memory latency. */
const BATCH = 32;

function capacityFor(count: number): number {
  let capacity = MIN_CAPACITY;
  while (capacity * MAX_LOAD < count) capacity *= 2;
  return capacity;
}

export class ExceptionTable {
  /** [key, value] pairs: Int32Array holding u32 bit patterns, or Float64Array once wide. */
  private slots: Int32Array | Float64Array;
  private wide = false;
  private mask: number;
  private shift: number;
  private count = 0;
  /** Keeps insertAll's warming loads observable so they are not optimised away. */
  private sink = 0;
  private readonly homes = new Int32Array(BATCH);

  /** `expected`: the number of exceptions about to be inserted (e.g. the store's recordCount). */
  constructor(expected = 0) {
    const capacity = capacityFor(expected);
    this.slots = new Int32Array(capacity * 2).fill(EMPTY);
    this.mask = capacity - 1;
    this.shift = 32 - Math.log2(capacity);
  }

  /** Number of exceptions. */
  get size(): number {
    return this.count;
  }

  /** Bytes held by the table's typed arrays. */
  get byteLength(): number {
    return this.slots.byteLength;
  }

  /** Home slot: Fibonacci hashing of the key (a wide key folds its high word in first). */
  private home(key: number): number {
    const low = key < TWO_32 ? key | 0 : (key | 0) ^ Math.imul(Math.floor(key / TWO_32), 0x85ebca6b);
    return Math.imul(low, 0x9e3779b1) >>> this.shift;
  }

  /** Slot index holding `key`, or the empty slot where it would go. */
  private find(key: number): number {
    const mask = this.mask;
    let slot = this.home(key);
    if (!this.wide) {
      const slots = this.slots as Int32Array;
      const k = key | 0;
      for (let at = slots[slot * 2]; at !== EMPTY && at !== k; at = slots[slot * 2]) slot = (slot + 1) & mask;
      return slot;
    }
    const slots = this.slots;
    for (let at = slots[slot * 2]; at !== EMPTY && at !== key; at = slots[slot * 2]) slot = (slot + 1) & mask;
    return slot;
  }

  private value(slot: number): number {
    return this.wide ? this.slots[slot * 2 + 1] : this.slots[slot * 2 + 1] >>> 0;
  }

  /** The COW chunk for origin chunk `oldChunk`, or -1. */
  lookup(oldChunk: number): number {
    if (!this.wide && oldChunk >= NARROW_LIMIT) return -1;
    const slot = this.find(oldChunk);
    return this.slots[slot * 2] === EMPTY ? -1 : this.value(slot);
  }

  has(oldChunk: number): boolean {
    return this.lookup(oldChunk) !== -1;
  }

  /** Add or replace oldChunk -> newChunk (non-negative integers below 2^53). */
  insert(oldChunk: number, newChunk: number): void {
    if (!this.wide && (oldChunk >= NARROW_LIMIT || newChunk >= NARROW_LIMIT)) this.rebuild(this.mask + 1, true);
    let slot = this.find(oldChunk);
    if (this.slots[slot * 2] === EMPTY) {
      if (this.count >= (this.mask + 1) * MAX_LOAD) {
        this.rebuild((this.mask + 1) * 2, this.wide);
        slot = this.find(oldChunk);
      }
      this.count++;
      this.slots[slot * 2] = oldChunk;
    }
    this.slots[slot * 2 + 1] = newChunk;
  }

  /**
   * Insert everything `fill` passes to its `add` callback (e.g. `(add) => store.load(add)`): the
   * same as insert() for each, but faster on a large table: entries are staged in small batches
   * whose home slots are read together first, so their cache misses overlap.
   */
  insertAll(fill: (add: (oldChunk: number, newChunk: number) => void) => void): void {
    const keys = new Float64Array(BATCH);
    const values = new Float64Array(BATCH);
    let staged = 0;
    fill((oldChunk, newChunk) => {
      keys[staged] = oldChunk;
      values[staged] = newChunk;
      if (++staged === BATCH) {
        this.insertBatch(keys, values, staged);
        staged = 0;
      }
    });
    this.insertBatch(keys, values, staged);
  }

  private insertBatch(keys: Float64Array, values: Float64Array, length: number): void {
    const homes = this.homes;
    let touched = 0;
    let narrow = !this.wide && this.count + length <= (this.mask + 1) * MAX_LOAD;
    for (let i = 0; i < length; i++) {
      narrow &&= keys[i] < NARROW_LIMIT && values[i] < NARROW_LIMIT;
      homes[i] = this.home(keys[i]);
      touched ^= this.slots[homes[i] * 2]; // independent loads: their cache misses overlap
    }
    this.sink ^= touched;
    if (!narrow) {
      for (let i = 0; i < length; i++) this.insert(keys[i], values[i]);
      return;
    }
    const slots = this.slots as Int32Array;
    const mask = this.mask;
    for (let i = 0; i < length; i++) {
      const key = keys[i] | 0;
      let slot = homes[i];
      while (slots[slot * 2] !== EMPTY && slots[slot * 2] !== key) slot = (slot + 1) & mask;
      if (slots[slot * 2] === EMPTY) this.count++;
      slots[slot * 2] = key;
      slots[slot * 2 + 1] = values[i] | 0;
    }
  }

  /** Remove `oldChunk` (backward-shift deletion keeps probe chains intact). Returns whether it was present. */
  delete(oldChunk: number): boolean {
    if (!this.wide && oldChunk >= NARROW_LIMIT) return false;
    const slots = this.slots;
    let hole = this.find(oldChunk);
    if (slots[hole * 2] === EMPTY) return false;
    for (let next = (hole + 1) & this.mask; slots[next * 2] !== EMPTY; next = (next + 1) & this.mask) {
      const home = this.home(this.wide ? slots[next * 2] : slots[next * 2] >>> 0);
      // Move the entry back into the hole unless its home lies cyclically in (hole, next].
      if (((next - home) & this.mask) >= ((next - hole) & this.mask)) {
        slots[hole * 2] = slots[next * 2];
        slots[hole * 2 + 1] = slots[next * 2 + 1];
        hole = next;
      }
    }
    slots[hole * 2] = EMPTY;
    this.count--;
    return true;
  }

  /** Call `fn` for every exception, in no particular order. Do not modify the table meanwhile. */
  forEach(fn: (oldChunk: number, newChunk: number) => void): void {
    for (const [oldChunk, newChunk] of this.entries()) fn(oldChunk, newChunk);
  }

  *entries(): IterableIterator<[number, number]> {
    const slots = this.slots;
    const wide = this.wide;
    for (let i = 0; i < slots.length; i += 2) {
      if (slots[i] === EMPTY) continue;
      yield wide ? [slots[i], slots[i + 1]] : [slots[i] >>> 0, slots[i + 1] >>> 0];
    }
  }

  clear(): void {
    this.slots.fill(EMPTY);
    this.count = 0;
  }

  private rebuild(capacity: number, wide: boolean): void {
    const old = this.slots;
    const oldWide = this.wide;
    this.slots = wide ? new Float64Array(capacity * 2).fill(EMPTY) : new Int32Array(capacity * 2).fill(EMPTY);
    this.wide = wide;
    this.mask = capacity - 1;
    this.shift = 32 - Math.log2(capacity);
    for (let i = 0; i < old.length; i += 2) {
      if (old[i] === EMPTY) continue;
      const key = oldWide ? old[i] : old[i] >>> 0;
      const slot = this.find(key);
      this.slots[slot * 2] = key;
      this.slots[slot * 2 + 1] = oldWide ? old[i + 1] : old[i + 1] >>> 0;
    }
  }
}
