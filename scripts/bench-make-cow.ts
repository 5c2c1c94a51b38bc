// Writes a persistent COW store with N exceptions in the kernel's format, without their data (a
// sparse file: the data chunks read as zeros), for benchmarks that need a big exception table
// fast (scripts/bench-restart.sh). Exception i maps origin chunk (i * 7919) % ORIGIN_CHUNKS,
// distinct as long as ORIGIN_CHUNKS is not a multiple of 7919 and N <= ORIGIN_CHUNKS.
//   node scripts/bench-make-cow.ts OUT CHUNK_SECTORS EXCEPTIONS ORIGIN_CHUNKS
import fs from 'node:fs';
import { areaLocation, encodeHeader, exceptionsPerArea, writeRecord } from '../src/store/persistent/format.ts';

const [out, chunkArg, countArg, originArg] = process.argv.slice(2);
const chunkSectors = Number(chunkArg);
const count = Number(countArg);
const originChunks = Number(originArg);
if (!out || !(chunkSectors > 0) || !(count >= 0) || !(originChunks >= count) || originChunks % 7919 === 0) {
  console.error('usage: node scripts/bench-make-cow.ts OUT CHUNK_SECTORS EXCEPTIONS ORIGIN_CHUNKS (ORIGIN_CHUNKS >= EXCEPTIONS, not a multiple of 7919)');
  process.exit(2);
}
const chunkBytes = chunkSectors * 512;
const epa = exceptionsPerArea(chunkSectors);
const areas = Math.floor(count / epa) + 1; // the last one partial (or empty: the terminator)
const fd = fs.openSync(out, 'w');
// Room for every area and its data chunks, plus 256 MiB to spare (a benchmark writes to it).
fs.ftruncateSync(fd, (areaLocation(areas, epa) + epa) * chunkBytes + 256 * 1024 * 1024);
fs.writeSync(fd, encodeHeader(chunkSectors, true), 0, chunkBytes, 0);
for (let area = 0; area < areas; area++) {
  const buf = Buffer.alloc(chunkBytes);
  const first = area * epa;
  for (let j = 0; j < epa && first + j < count; j++) {
    const i = first + j;
    writeRecord(buf, j, (i * 7919) % originChunks, areaLocation(area, epa) + 1 + j);
  }
  fs.writeSync(fd, buf, 0, chunkBytes, areaLocation(area, epa) * chunkBytes);
}
fs.closeSync(fd);
