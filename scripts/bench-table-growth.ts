// Benchmark: the longest time one insert into an ExceptionTable takes while the table grows from
// empty to tens of millions of exceptions (issue 11: a request must never wait more than 50 ms for
// the table to grow; a synchronous rehash of 6M entries took about 0.5 s). Inserts scattered keys,
// as random first writes do, and prints the slowest inserts with the table size at that moment.
// usage: node scripts/bench-table-growth.ts [EXCEPTIONS]   (default 30,000,000; needs ~1 GiB)
import { performance } from 'node:perf_hooks';
import { ExceptionTable } from '../src/store/exception-table.ts';

const count = Number(process.argv[2] ?? 30_000_000);
const table = new ExceptionTable();
const slow: { ms: number; size: number }[] = [];
let worst = 0;
const start = performance.now();
for (let i = 0; i < count; i++) {
  const key = Math.imul(i, 0x2545f491) >>> 0; // a bijection on u32: scattered, no repeats
  const t0 = performance.now();
  table.insert(key, i + 2);
  const ms = performance.now() - t0;
  if (ms > 5) slow.push({ ms, size: table.size });
  worst = Math.max(worst, ms);
}
const total = performance.now() - start;
console.log(`${count} inserts in ${(total / 1000).toFixed(1)} s (${((total * 1000) / count).toFixed(2)} us each), ${(table.byteLength / table.size).toFixed(1)} bytes per exception`);
console.log(`slowest insert: ${worst.toFixed(1)} ms (bound: 50 ms)`);
for (const s of slow.sort((a, b) => b.ms - a.ms).slice(0, 8)) console.log(`  ${s.ms.toFixed(1)} ms at ${s.size} exceptions`);
process.exitCode = worst <= 50 ? 0 : 1;
