// The in-memory map of completed exceptions, origin chunk -> COW chunk (the kernel's
// complete-exception hash). Open addressing with linear probing over ONE typed array of
// interleaved [key, value] slots, so a lookup costs one cache miss.
//
// Memory: while every chunk number is below 2^32 - 1 the slots are 32-bit (8 bytes a slot, kept
// in an Int32Array so V8 does pure int32 arithmetic); the table grows by doubling at 3/4 load, so
// it spends 10.7 to 21.3 bytes per exception (13.4 for 10M exceptions presized with `expected`),
// up to 32 while the old table drains after a doubling (as during any rehash).
// A chunk number >= 2^32 - 1 switches the table to f64 slots for good (16 bytes a slot, up to 43
// bytes per exception): only for huge devices.
//
// Inserting an existing key replaces its value (a later record for the same chunk wins).
//
// Growth is incremental, so a table of tens of millions never stalls the event loop: when an
// insert finds the table 3/4 full, a table of twice the size becomes current and the old one is
// kept as `draining`; every later insert moves the next MIGRATE_SLOTS old slots over, and lookups
// look in the current table, then in the draining one. (A rehash of 6M entries at once took
// about 0.5 s.) Operations that need one table (delete, iteration, the switch to wide slots)
// finish the migration first.

/** A key slot holds the chunk number + 1, so 0 means empty and a fresh typed array (zeroed by
 *  the allocator, its pages touched only as they fill) needs no initialising pass. */
const EMPTY = 0;
const NARROW_LIMIT = 0xffffffff;
const MIN_CAPACITY = 16;
const MAX_LOAD = 0.75;
const TWO_32 = 2 ** 32;
/** insertAll() batch: enough independent loads in flight to hide memory latency. */
const BATCH = 32;
/** Old slots moved per insert while draining: the old table (C slots, 3C/4 entries) is empty
 *  after C/MIGRATE_SLOTS inserts, long before the new one (2C slots) is 3/4 full again. */
const MIGRATE_SLOTS = 64;

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
  /** Entries in the current table. */
  private count = 0;
  /** Entries of the draining table not moved yet and not replaced by a newer insert. */
  private drainingLeft = 0;
  /** The previous, half-size table while its entries move over (see the top of the file). */
  private draining: { slots: Int32Array | Float64Array; wide: boolean; mask: number; shift: number; next: number } | null = null;
  /** Keeps insertAll's warming loads observable so they are not optimised away. */
  private sink = 0;
  private readonly homes = new Int32Array(BATCH);

  /** `expected`: the number of exceptions about to be inserted (e.g. the store's recordCount). */
  constructor(expected = 0) {
    const capacity = capacityFor(expected);
    this.slots = new Int32Array(capacity * 2);
    this.mask = capacity - 1;
    this.shift = 32 - Math.log2(capacity);
  }

  /** Number of exceptions. */
  get size(): number {
    return this.count + this.drainingLeft;
  }

  /** Bytes held by the table's typed arrays. */
  get byteLength(): number {
    return this.slots.byteLength + (this.draining?.slots.byteLength ?? 0);
  }

  /** Home slot: Fibonacci hashing of the key (a wide key folds its high word in first). */
  private home(key: number, shift = this.shift): number {
    const low = key < TWO_32 ? key | 0 : (key | 0) ^ Math.imul(Math.floor(key / TWO_32), 0x85ebca6b);
    return Math.imul(low, 0x9e3779b1) >>> shift;
  }

  /** Slot index holding `key`, or the empty slot where it would go. */
  private find(key: number): number {
    const mask = this.mask;
    let slot = this.home(key);
    if (!this.wide) {
      const slots = this.slots as Int32Array;
      const k = (key + 1) | 0;
      for (let at = slots[slot * 2]; at !== EMPTY && at !== k; at = slots[slot * 2]) slot = (slot + 1) & mask;
      return slot;
    }
    const slots = this.slots;
    for (let at = slots[slot * 2]; at !== EMPTY && at !== key + 1; at = slots[slot * 2]) slot = (slot + 1) & mask;
    return slot;
  }

  private value(slot: number): number {
    return this.wide ? this.slots[slot * 2 + 1] : this.slots[slot * 2 + 1] >>> 0;
  }

  /** The COW chunk for origin chunk `oldChunk`, or -1. */
  lookup(oldChunk: number): number {
    if (!this.wide && oldChunk >= NARROW_LIMIT) return -1;
    const slot = this.find(oldChunk);
    if (this.slots[slot * 2] !== EMPTY) return this.value(slot);
    return this.draining ? this.lookupDraining(oldChunk) : -1;
  }

  private lookupDraining(key: number): number {
    const d = this.draining!;
    if (!d.wide && key >= NARROW_LIMIT) return -1;
    let slot = this.home(key, d.shift);
    const k = d.wide ? key + 1 : (key + 1) | 0;
    for (let at = d.slots[slot * 2]; at !== EMPTY; at = d.slots[slot * 2]) {
      if (at === k) return d.wide ? d.slots[slot * 2 + 1] : d.slots[slot * 2 + 1] >>> 0;
      slot = (slot + 1) & d.mask;
    }
    return -1;
  }

  /** Move the next `slots` slots of the draining table into the current one. */
  private migrate(slots: number): void {
    const d = this.draining!;
    const end = Math.min(d.slots.length / 2, d.next + slots);
    for (let i = d.next; i < end; i++) {
      const at = d.slots[i * 2];
      if (at === EMPTY) continue;
      const key = (d.wide ? at : at >>> 0) - 1;
      const slot = this.find(key);
      if (this.slots[slot * 2] !== EMPTY) continue; // inserted since (counted then): the newer value wins
      this.slots[slot * 2] = key + 1;
      this.slots[slot * 2 + 1] = d.wide ? d.slots[i * 2 + 1] : d.slots[i * 2 + 1] >>> 0;
      this.count++;
      this.drainingLeft--;
    }
    d.next = end;
    if (end * 2 >= d.slots.length) this.draining = null;
  }

  /** Finish moving the draining table over (for operations that need a single table). */
  private settle(): void {
    if (this.draining) this.migrate(Infinity);
  }

  has(oldChunk: number): boolean {
    return this.lookup(oldChunk) !== -1;
  }

  /** Add or replace oldChunk -> newChunk (non-negative integers below 2^53). */
  insert(oldChunk: number, newChunk: number): void {
    if (!this.wide && (oldChunk >= NARROW_LIMIT || newChunk >= NARROW_LIMIT)) {
      this.settle();
      this.rebuild(this.mask + 1, true);
    }
    if (this.draining) this.migrate(MIGRATE_SLOTS);
    let slot = this.find(oldChunk);
    if (this.slots[slot * 2] === EMPTY) {
      if (this.count >= (this.mask + 1) * MAX_LOAD) {
        this.grow();
        slot = this.find(oldChunk);
      }
      this.count++;
      this.slots[slot * 2] = oldChunk + 1;
      // A key still waiting in the draining table is replaced by this one; migrate() skips it.
      if (this.draining && this.lookupDraining(oldChunk) !== -1) this.drainingLeft--;
    }
    this.slots[slot * 2 + 1] = newChunk;
  }

  /** Start an incremental doubling: the current table becomes the draining one. */
  private grow(): void {
    this.settle(); // normally long done (see MIGRATE_SLOTS)
    this.draining = { slots: this.slots, wide: this.wide, mask: this.mask, shift: this.shift, next: 0 };
    const capacity = (this.mask + 1) * 2;
    this.slots = this.wide ? new Float64Array(capacity * 2) : new Int32Array(capacity * 2);
    this.mask = capacity - 1;
    this.shift = 32 - Math.log2(capacity);
    this.drainingLeft = this.count;
    this.count = 0;
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
    this.settle(); // bulk loading: the batch path below works on one table
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
      const key = (keys[i] + 1) | 0;
      let slot = homes[i];
      while (slots[slot * 2] !== EMPTY && slots[slot * 2] !== key) slot = (slot + 1) & mask;
      if (slots[slot * 2] === EMPTY) this.count++;
      slots[slot * 2] = key;
      slots[slot * 2 + 1] = values[i] | 0;
    }
  }

  /** Remove `oldChunk` (backward-shift deletion keeps probe chains intact). Returns whether it was present. */
  delete(oldChunk: number): boolean {
    this.settle();
    if (!this.wide && oldChunk >= NARROW_LIMIT) return false;
    const slots = this.slots;
    let hole = this.find(oldChunk);
    if (slots[hole * 2] === EMPTY) return false;
    for (let next = (hole + 1) & this.mask; slots[next * 2] !== EMPTY; next = (next + 1) & this.mask) {
      const home = this.home((this.wide ? slots[next * 2] : slots[next * 2] >>> 0) - 1);
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
    this.settle();
    const slots = this.slots;
    const wide = this.wide;
    for (let i = 0; i < slots.length; i += 2) {
      if (slots[i] === EMPTY) continue;
      yield wide ? [slots[i] - 1, slots[i + 1]] : [(slots[i] >>> 0) - 1, slots[i + 1] >>> 0];
    }
  }

  clear(): void {
    this.slots.fill(EMPTY);
    this.count = 0;
    this.draining = null;
    this.drainingLeft = 0;
  }

  private rebuild(capacity: number, wide: boolean): void {
    const old = this.slots;
    const oldWide = this.wide;
    this.slots = wide ? new Float64Array(capacity * 2) : new Int32Array(capacity * 2);
    this.wide = wide;
    this.mask = capacity - 1;
    this.shift = 32 - Math.log2(capacity);
    for (let i = 0; i < old.length; i += 2) {
      if (old[i] === EMPTY) continue;
      const key = (oldWide ? old[i] : old[i] >>> 0) - 1;
      const slot = this.find(key);
      this.slots[slot * 2] = key + 1;
      this.slots[slot * 2 + 1] = oldWide ? old[i + 1] : old[i + 1] >>> 0;
    }
  }
}
