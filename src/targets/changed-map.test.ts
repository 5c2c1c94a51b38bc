// The changed-chunk map against a model (a Set of chunks): runs from any offset, with any cap,
// across page and word boundaries; the union of two maps; the merged extents of `snapshot diff`.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChangedMap, unionRuns, type ChangedRun } from './changed-map.ts';

/** The model's answer: one run per byte range of equal state, past `size` changed. */
function modelRuns(set: Set<number>, size: number, chunkBytes: number, offset: number, length: number): ChangedRun[] {
  const out: ChangedRun[] = [];
  for (let at = offset; at < offset + length;) {
    const chunk = Math.floor(at / chunkBytes);
    const stop = Math.min(offset + length, at < size ? Math.min(size, (chunk + 1) * chunkBytes) : offset + length);
    const changed = at >= size || set.has(chunk);
    const last = out[out.length - 1];
    if (last && last.changed === changed) last.length += stop - at;
    else out.push({ length: stop - at, changed });
    at = stop;
  }
  return out;
}

function covered(runs: readonly ChangedRun[]): number {
  return runs.reduce((sum, r) => sum + r.length, 0);
}

const CHUNK = 4096;

describe('ChangedMap', () => {
  it('answers runs like the model, from any offset and length, across words and pages', () => {
    const chunks = 3 * 32768 + 77; // four pages, the last partial
    const size = chunks * CHUNK - 1000; // a partial last chunk too
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.integer({ min: 0, max: chunks - 1 }), fc.integer({ min: 32700, max: 32840 })), { maxLength: 300 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: chunks - 1 }), fc.integer({ min: 1, max: 70000 })), { maxLength: 5 }),
        fc.integer({ min: 0, max: size + 5000 }),
        fc.integer({ min: 1, max: 40000 * CHUNK }),
        (marks, ranges, offset, length) => {
          const map = new ChangedMap(size, CHUNK);
          const set = new Set<number>();
          for (const c of marks) (map.mark(c), set.add(c));
          for (const [first, count] of ranges) {
            for (let c = first; c < Math.min(chunks, first + count); c++) (map.mark(c), set.add(c));
          }
          expect(map.count).toBe(set.size);
          expect(map.runs(offset, length)).toEqual(modelRuns(set, size, CHUNK, offset, length));
        },
      ),
      { numRuns: 100 },
    );
  });

  it('stops at maxRuns with a prefix of the full answer', () => {
    const map = new ChangedMap(1000 * CHUNK, CHUNK);
    for (let c = 0; c < 1000; c += 3) map.mark(c);
    const all = map.runs(10, 999 * CHUNK);
    const some = map.runs(10, 999 * CHUNK, 7);
    expect(some).toEqual(all.slice(0, 7));
    expect(covered(all)).toBe(999 * CHUNK);
  });

  it('lists changed extents merged, in batches that continue where the last one ended', () => {
    const size = 100 * CHUNK + 512;
    const map = new ChangedMap(size, CHUNK);
    for (const c of [0, 1, 2, 10, 50, 51, 100]) map.mark(c);
    const all = [
      { offset: 0, length: 3 * CHUNK },
      { offset: 10 * CHUNK, length: CHUNK },
      { offset: 50 * CHUNK, length: 2 * CHUNK },
      { offset: 100 * CHUNK, length: 512 }, // the partial last chunk ends at the snapshot's end
    ];
    expect(map.changedExtents()).toEqual(all);
    expect(map.changedExtents(0, 2)).toEqual(all.slice(0, 2));
    expect(map.changedExtents(11 * CHUNK, 5)).toEqual(all.slice(2));
    expect(map.changedExtents(CHUNK + 100)).toEqual([{ offset: CHUNK + 100, length: 2 * CHUNK - 100 }, ...all.slice(1)]);
    expect(new ChangedMap(size, CHUNK).changedExtents()).toEqual([]);
  });

  it('allocates pages only where chunks were marked', () => {
    const map = new ChangedMap(2 ** 40, 4096); // 1 TiB of 4 KiB chunks
    expect(map.byteLength).toBe(0);
    map.mark(5);
    map.mark(2 ** 28 - 1);
    expect(map.byteLength).toBe(2 * 4096);
    expect(map.runs(0, 2 ** 40)).toEqual([
      { length: 5 * 4096, changed: false },
      { length: 4096, changed: true },
      { length: 2 ** 40 - 7 * 4096, changed: false },
      { length: 4096, changed: true },
    ]);
  });
});

describe('unionRuns', () => {
  it('is changed where either is, as far as both reach', () => {
    const a = [{ length: 10, changed: false }, { length: 10, changed: true }, { length: 30, changed: false }];
    const b = [{ length: 5, changed: true }, { length: 20, changed: false }];
    expect(unionRuns(a, b)).toEqual([{ length: 5, changed: true }, { length: 5, changed: false }, { length: 10, changed: true }, { length: 5, changed: false }]);
  });

  it('matches the union of two maps of different chunk sizes', () => {
    const size = 64 * CHUNK;
    const small = new ChangedMap(size, CHUNK);
    const big = new ChangedMap(size, 8 * CHUNK);
    const set = new Set<number>();
    for (const c of [1, 2, 40]) (small.mark(c), set.add(c));
    for (const c of [3]) {
      big.mark(c);
      for (let i = 0; i < 8; i++) set.add(c * 8 + i);
    }
    expect(unionRuns(small.runs(100, size - 100), big.runs(100, size - 100))).toEqual(modelRuns(set, size, CHUNK, 100, size - 100));
  });
});
