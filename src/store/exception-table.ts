// The in-memory map of completed exceptions, origin chunk -> COW chunk (the kernel's
// complete-exception hash). Open addressing with linear probing over ONE typed array of
// interleaved [key, value] slots, so a lookup costs one cache miss.
//
// Memory: while every chunk number is below 2^32 - 1 the slots are u32 (8 bytes a slot); the
// table grows by doubling at 3/4 load, so it spends 10.7 to 21.3 bytes per exception (13.4 for
// 10M exceptions presized with `expected`). A chunk number >= 2^32 - 1 switches the table to f64
// slots for good (16 bytes a slot, up to 43 bytes per exception): only for huge devices.
//
// Inserting an existing key replaces its value (a later record for the same chunk wins).

const NARROW_EMPTY = 0xffffffff;
const WIDE_EMPTY = -1;
const MIN_CAPACITY = 16;
const MAX_LOAD = 0.75;
const TWO_32 = 2 ** 32;

function capacityFor(count: number): number {
  let capacity = MIN_CAPACITY;
  while (capacity * MAX_LOAD < count) capacity *= 2;
  return capacity;
}

export class ExceptionTable {
  private slots: Uint32Array | Float64Array;
  private empty: number;
  private mask: number;
  private shift: number;
  private count = 0;

  /** `expected`: the number of exceptions about to be inserted (e.g. the store's recordCount). */
  constructor(expected = 0) {
    const capacity = capacityFor(expected);
    this.slots = new Uint32Array(capacity * 2).fill(NARROW_EMPTY);
    this.empty = NARROW_EMPTY;
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

  private get wide(): boolean {
    return this.empty === WIDE_EMPTY;
  }

  private home(key: number): number {
    // Fibonacci hashing; a wide key folds its high word in first.
    const mixed = key < TWO_32 ? key : (key >>> 0) ^ Math.imul(Math.floor(key / TWO_32), 0x85ebca6b);
    return (Math.imul(mixed, 0x9e3779b1) >>> this.shift) & this.mask;
  }

  /** Slot index holding `key`, or the empty slot where it would go. */
  private find(key: number): number {
    const slots = this.slots;
    let slot = this.home(key);
    while (slots[slot * 2] !== this.empty && slots[slot * 2] !== key) slot = (slot + 1) & this.mask;
    return slot;
  }

  /** The COW chunk for origin chunk `oldChunk`, or -1. */
  lookup(oldChunk: number): number {
    const slot = this.find(oldChunk);
    return this.slots[slot * 2] === this.empty ? -1 : this.slots[slot * 2 + 1];
  }

  has(oldChunk: number): boolean {
    return this.lookup(oldChunk) !== -1;
  }

  /** Add or replace oldChunk -> newChunk (non-negative integers below 2^53). */
  insert(oldChunk: number, newChunk: number): void {
    if (!this.wide && (oldChunk >= NARROW_EMPTY || newChunk >= NARROW_EMPTY)) this.rebuild(this.mask + 1, true);
    let slot = this.find(oldChunk);
    if (this.slots[slot * 2] === this.empty) {
      if ((this.count + 1) > (this.mask + 1) * MAX_LOAD) {
        this.rebuild((this.mask + 1) * 2, this.wide);
        slot = this.find(oldChunk);
      }
      this.count++;
      this.slots[slot * 2] = oldChunk;
    }
    this.slots[slot * 2 + 1] = newChunk;
  }

  /** Remove `oldChunk` (backward-shift deletion keeps probe chains intact). Returns whether it was present. */
  delete(oldChunk: number): boolean {
    const slots = this.slots;
    let hole = this.find(oldChunk);
    if (slots[hole * 2] === this.empty) return false;
    let next = (hole + 1) & this.mask;
    while (slots[next * 2] !== this.empty) {
      const home = this.home(slots[next * 2]);
      // Move the entry back into the hole unless its home lies cyclically in (hole, next].
      if (((next - home) & this.mask) >= ((next - hole) & this.mask)) {
        slots[hole * 2] = slots[next * 2];
        slots[hole * 2 + 1] = slots[next * 2 + 1];
        hole = next;
      }
      next = (next + 1) & this.mask;
    }
    slots[hole * 2] = this.empty;
    this.count--;
    return true;
  }

  /** Call `fn` for every exception, in no particular order. Do not modify the table meanwhile. */
  forEach(fn: (oldChunk: number, newChunk: number) => void): void {
    const slots = this.slots;
    for (let i = 0; i < slots.length; i += 2) if (slots[i] !== this.empty) fn(slots[i], slots[i + 1]);
  }

  *entries(): IterableIterator<[number, number]> {
    const slots = this.slots;
    for (let i = 0; i < slots.length; i += 2) if (slots[i] !== this.empty) yield [slots[i], slots[i + 1]];
  }

  clear(): void {
    this.slots.fill(this.empty);
    this.count = 0;
  }

  private rebuild(capacity: number, wide: boolean): void {
    const old = this.slots;
    const oldEmpty = this.empty;
    this.slots = wide ? new Float64Array(capacity * 2).fill(WIDE_EMPTY) : new Uint32Array(capacity * 2).fill(NARROW_EMPTY);
    this.empty = wide ? WIDE_EMPTY : NARROW_EMPTY;
    this.mask = capacity - 1;
    this.shift = 32 - Math.log2(capacity);
    for (let i = 0; i < old.length; i += 2) {
      if (old[i] === oldEmpty) continue;
      const slot = this.find(old[i]);
      this.slots[slot * 2] = old[i];
      this.slots[slot * 2 + 1] = old[i + 1];
    }
  }
}
