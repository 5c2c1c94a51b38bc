// Crash-test child: opens (or creates) a persistent store on a file and commits exceptions from
// several concurrent workers until the store is full or the parent kills it. Each worker writes
// the crash pattern into its chunk, commits, and only then reports "<old> <new>" on stdout
// (synchronously, so a reported line is one whose commit had resolved).
// usage: node store-crash-child.ts COW_FILE CHUNK_SECTORS WORKERS
import { writeSync } from 'node:fs';
import { FileDevice } from '../../src/block/file-device.ts';
import { isBlockError } from '../../src/block/errors.ts';
import { ExceptionTable } from '../../src/store/exception-table.ts';
import { openStore } from '../../src/store/open-store.ts';
import type { ExceptionStore } from '../../src/store/exception-store.ts';
import { crashPattern } from './store-crash-pattern.ts';

const [path, chunkArg, workerArg] = process.argv.slice(2);
const cow = FileDevice.open(path);
const store = await openStore('P', cow, { chunkSectors: Number(chunkArg) });
const table = new ExceptionTable(store.recordCount);
store.load((oldChunk, newChunk) => table.insert(oldChunk, newChunk));
let nextOld = 0;
table.forEach((oldChunk) => (nextOld = Math.max(nextOld, oldChunk + 1)));
writeSync(1, 'ready\n');

async function worker(s: ExceptionStore): Promise<void> {
  for (;;) {
    let newChunk: number;
    try {
      newChunk = s.prepare();
    } catch (err) {
      if (isBlockError(err) && err.errno === 'ENOSPC') return;
      throw err;
    }
    const oldChunk = nextOld++;
    await cow.write(crashPattern(s.chunkBytes, oldChunk, newChunk), newChunk * s.chunkBytes);
    await s.commit(oldChunk, newChunk);
    writeSync(1, `${oldChunk} ${newChunk}\n`);
  }
}

await Promise.all(Array.from({ length: Number(workerArg) }, () => worker(store)));
await store.close();
writeSync(1, 'full\n');
