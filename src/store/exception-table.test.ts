import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ExceptionTable } from './exception-table.ts';

describe('ExceptionTable', () => {
  it('maps, replaces, deletes and iterates', () => {
    const t = new ExceptionTable();
    expect(t.lookup(5)).toBe(-1);
    t.insert(0, 2);
    t.insert(5, 3);
    t.insert(5, 4);
    expect([t.size, t.lookup(0), t.lookup(5), t.has(6)]).toEqual([2, 2, 4, false]);
    expect([...t.entries()].sort((a, b) => a[0] - b[0])).toEqual([[0, 2], [5, 4]]);
    const seen: number[] = [];
    t.forEach((o) => seen.push(o));
    expect(seen.sort()).toEqual([0, 5]);
    expect(t.delete(0)).toBe(true);
    expect(t.delete(0)).toBe(false);
    expect([t.size, t.lookup(0), t.lookup(5)]).toEqual([1, -1, 4]);
    t.clear();
    expect([t.size, t.lookup(5)]).toEqual([0, -1]);
  });

  it('behaves like a Map under random inserts and deletes (including 64-bit chunk numbers)', () => {
    const key = fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
    const op = fc.tuple(fc.boolean(), key, fc.integer({ min: 0, max: 2 ** 40 }));
    fc.assert(
      fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
        const t = new ExceptionTable();
        const m = new Map<number, number>();
        for (const [isInsert, k, v] of ops) {
          if (isInsert) {
            t.insert(k, v);
            m.set(k, v);
          } else {
            expect(t.delete(k)).toBe(m.delete(k));
          }
        }
        expect(t.size).toBe(m.size);
        for (const [k, v] of m) expect(t.lookup(k)).toBe(v);
        expect(new Map(t.entries())).toEqual(m);
      }),
    );
  });

  it('insertAll() gives the same table as insert() one by one, growing and widening as needed', () => {
    const pairs: [number, number][] = [];
    for (let i = 0; i < 20_000; i++) pairs.push([(Math.imul(i, 0x9e3779b1) >>> 0) % 50_000, i + 2]);
    pairs.push([2 ** 45, 7], [3, 2 ** 40]);
    for (const expected of [0, pairs.length]) {
      const one = new ExceptionTable(expected);
      for (const [o, n] of pairs) one.insert(o, n);
      const all = new ExceptionTable(expected);
      all.insertAll((add) => pairs.forEach(([o, n]) => add(o, n)));
      expect(all.size).toBe(one.size);
      expect(new Map(all.entries())).toEqual(new Map(one.entries()));
    }
  });

  it('keeps chains intact when deleting from dense clusters', () => {
    const t = new ExceptionTable();
    for (let i = 0; i < 5000; i++) t.insert(i * 16, i);
    for (let i = 0; i < 5000; i += 2) t.delete(i * 16);
    for (let i = 0; i < 5000; i++) expect(t.lookup(i * 16)).toBe(i % 2 ? i : -1);
  });

  it('spends at most 24 bytes per exception at every size once grown (u32 slots), 32 while the old table drains', () => {
    const t = new ExceptionTable();
    let worst = 0;
    let peak = 0;
    let bytes = t.byteLength;
    for (let i = 0; i < 300_000; i++) {
      t.insert(i * 7, i + 2);
      if (t.size >= 1024) peak = Math.max(peak, t.byteLength / t.size);
      if (t.byteLength < bytes) worst = Math.max(worst, t.byteLength / t.size); // the old table just released: emptiest
      bytes = t.byteLength;
    }
    expect(worst).toBeGreaterThan(20);
    expect(worst).toBeLessThanOrEqual(24);
    expect(peak).toBeLessThanOrEqual(32); // old + new table, as during a synchronous rehash
    const sized = new ExceptionTable(1_000_000);
    expect(sized.byteLength / 1_000_000).toBeLessThanOrEqual(24);
  });

  it('grows incrementally: the old table drains over later inserts, and every key stays visible meanwhile', () => {
    const t = new ExceptionTable();
    const n = 200_000;
    let drainingSeen = 0;
    for (let i = 0; i < n; i++) {
      t.insert(i * 3, i);
      // Old and new tables coexist (3 * 2^k slot bytes) for a while after each doubling; a
      // one-shot rehash would only ever show one power-of-two table.
      const bytes = t.byteLength;
      if ((bytes & (bytes - 1)) !== 0) drainingSeen++;
      // while a growth drains, old and new entries are both found, and a re-insert wins over the old value
      if (i % 997 === 0) {
        expect(t.lookup((i >> 1) * 3)).toBe(i >> 1);
        t.insert(0, 1000 + i);
        expect(t.lookup(0)).toBe(1000 + i);
      }
    }
    expect(drainingSeen).toBeGreaterThan(1000);
    expect(t.size).toBe(n);
    expect(t.lookup((n - 1) * 3)).toBe(n - 1);
    expect(t.lookup(1)).toBe(-1);
    expect(new Map(t.entries()).size).toBe(n);
    expect(t.delete(3)).toBe(true);
    expect(t.size).toBe(n - 1);
  });
});
