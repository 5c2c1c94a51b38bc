// Benchmark: open a 10-million-exception persistent store and load it into an ExceptionTable.
// The store file (chunk size 8 sectors: ~38 GiB logical) is created sparse; only the header and
// the metadata areas are written, with the format module. Prints the timings and the table's
// bytes per exception, then deletes the file. The file was just written, so its metadata is in
// the page cache (a warm-cache number).
// usage: node scripts/bench-store.ts [EXCEPTIONS] [DIR]
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FileDevice } from '../src/block/file-device.ts';
import { ExceptionTable } from '../src/store/exception-table.ts';
import { openStore } from '../src/store/open-store.ts';
import { SECTOR_BYTES, areaLocation, encodeHeader, exceptionsPerArea, writeRecord } from '../src/store/persistent/format.ts';

const CHUNK_SECTORS = 8;
const CHUNK_BYTES = CHUNK_SECTORS * SECTOR_BYTES;
const EPA = exceptionsPerArea(CHUNK_SECTORS);
const MASK = 0xffffff;
const RUNS = 3;

/** A bijection on [0, 2^24): origin chunks in a scattered order, like random writes. */
function originChunk(k: number): number {
  let x = Math.imul(k, 0x2545f491) & MASK;
  x ^= x >>> 12;
  return Math.imul(x, 0x9e3779b1 | 1) & MASK;
}

function newChunkOf(k: number): number {
  return areaLocation(Math.floor(k / EPA), EPA) + 1 + (k % EPA);
}

function buildStore(file: string, count: number): number {
  const areas = Math.floor(count / EPA) + 1; // the last one holds the terminator
  const size = (areaLocation(areas - 1, EPA) + 1 + (count % EPA)) * CHUNK_BYTES;
  const fd = openSync(file, 'w');
  try {
    ftruncateSync(fd, size);
    writeSync(fd, encodeHeader(CHUNK_SECTORS, true), 0, CHUNK_BYTES, 0);
    const area = Buffer.alloc(CHUNK_BYTES);
    for (let a = 0; a < areas; a++) {
      area.fill(0);
      const first = a * EPA;
      for (let k = first; k < Math.min(count, first + EPA); k++) writeRecord(area, k - first, originChunk(k), newChunkOf(k));
      writeSync(fd, area, 0, CHUNK_BYTES, areaLocation(a, EPA) * CHUNK_BYTES);
    }
  } finally {
    closeSync(fd);
  }
  return size;
}

/**
 * One timed openStore + load; returns the total milliseconds. The recommended way fills a table
 * presized with recordCount through insertAll(); `plain` times insert() per exception into an
 * unsized table instead, for comparison.
 */
async function timedLoad(file: string, count: number, run: number, plain = false): Promise<number> {
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  const cow = FileDevice.open(file);
  const store = await openStore('P', cow, { chunkSectors: CHUNK_SECTORS });
  const opened = performance.now();
  const table = new ExceptionTable(plain ? 0 : store.recordCount);
  if (plain) store.load((oldChunk, newChunk) => table.insert(oldChunk, newChunk));
  else table.insertAll((add) => store.load(add));
  const loaded = performance.now();
  const used = process.cpuUsage(cpu);
  console.log(
    `${plain ? 'insert() one by one, unsized table' : `run ${run}`}: openStore (header + ${Math.ceil(count / EPA)} areas) ${(opened - t0).toFixed(0)} ms, ` +
      `load into ExceptionTable ${(loaded - opened).toFixed(0)} ms, total ${(loaded - t0).toFixed(0)} ms ` +
      `(process cpu ${((used.user + used.system) / 1000).toFixed(0)} ms)`,
  );
  for (const k of [0, 1, count >> 1, count - 1]) {
    if (table.lookup(originChunk(k)) !== newChunkOf(k)) throw new Error(`exception ${k} was not loaded correctly`);
  }
  if (table.size !== count) throw new Error(`loaded ${table.size} exceptions, expected ${count}`);
  if (run === RUNS) {
    const perException = (table.byteLength / table.size).toFixed(2);
    console.log(`table: ${table.size} exceptions, ${table.byteLength} bytes of typed arrays = ${perException} bytes/exception (target <= 24)`);
    console.log(`status: ${store.status()}; rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
  }
  await store.close();
  await cow.close();
  return loaded - t0;
}

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 10_000_000);
  const dir = mkdtempSync(path.join(process.argv[3] ?? os.tmpdir(), 'store-bench-'));
  const file = path.join(dir, 'cow.img');
  try {
    const t = performance.now();
    const size = buildStore(file, count);
    console.log(`built ${count} exceptions: ${(size / 2 ** 30).toFixed(1)} GiB sparse file in ${(performance.now() - t).toFixed(0)} ms`);
    const runs: number[] = [];
    for (let run = 1; run <= RUNS; run++) runs.push(await timedLoad(file, count, run));
    console.log(`openStore + load: best ${Math.min(...runs).toFixed(0)} ms of ${RUNS} runs (target < 2000)`);
    await timedLoad(file, count, 0, true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
