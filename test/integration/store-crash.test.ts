// Store-level crash test: a child process commits exceptions to a file-backed persistent store
// and is SIGKILLed at random points; after each kill the store is reopened and every commit the
// child reported as resolved must be there, and no record may point past the store, at a
// metadata chunk, or at a chunk whose data was never written.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileDevice } from '../../src/block/file-device.ts';
import { ExceptionTable } from '../../src/store/exception-table.ts';
import { openStore } from '../../src/store/open-store.ts';
import { areaLocation, exceptionsPerArea } from '../../src/store/persistent/format.ts';
import { crashPattern } from '../support/store-crash-pattern.ts';

const CHILD = path.resolve(import.meta.dirname, '../support/store-crash-child.ts');
const CHUNK_SECTORS = 8;
const COW_BYTES = 64 << 20;
const ROUNDS = 8;

const dir = mkdtempSync(path.join(os.tmpdir(), 'store-crash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Run the child until it has been running `killAfterMs` past "ready" (or it finishes). Returns its reports. */
function runChild(cowPath: string, killAfterMs: number): Promise<{ reported: [number, number][]; killed: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, cowPath, String(CHUNK_SECTORS), '6'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (data: string) => {
      out += data;
      if (!timer && out.includes('ready\n')) timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL' && code !== 0) return reject(new Error(`crash child exited with ${code}`));
      const reported = out
        .split('\n')
        .filter((line) => /^\d+ \d+$/.test(line))
        .map((line) => line.split(' ').map(Number) as [number, number]);
      resolve({ reported, killed: signal === 'SIGKILL' });
    });
  });
}

async function checkStore(cowPath: string, reported: [number, number][]): Promise<number> {
  const cow = FileDevice.open(cowPath);
  try {
    const store = await openStore('P', cow, { chunkSectors: CHUNK_SECTORS });
    expect(store.state).toBe('valid');
    const table = new ExceptionTable(store.recordCount);
    const usedChunks = new Set<number>();
    const epa = exceptionsPerArea(CHUNK_SECTORS);
    const chunk = Buffer.alloc(store.chunkBytes);
    const records: [number, number][] = [];
    store.load((oldChunk, newChunk) => records.push([oldChunk, newChunk]));
    for (const [oldChunk, newChunk] of records) {
      expect(newChunk).toBeGreaterThanOrEqual(2);
      expect((newChunk + 1) * store.chunkBytes).toBeLessThanOrEqual(cow.size);
      expect(newChunk % (epa + 1)).not.toBe(areaLocation(0, epa));
      expect(usedChunks.has(newChunk)).toBe(false);
      usedChunks.add(newChunk);
      await cow.read(chunk, newChunk * store.chunkBytes);
      expect(chunk.equals(crashPattern(store.chunkBytes, oldChunk, newChunk))).toBe(true);
      table.insert(oldChunk, newChunk);
    }
    for (const [oldChunk, newChunk] of reported) expect(table.lookup(oldChunk)).toBe(newChunk);
    await store.close();
    return records.length;
  } finally {
    await cow.close();
  }
}

describe('persistent store crash safety', () => {
  it(`keeps every resolved commit across ${ROUNDS} SIGKILLs at random points`, async () => {
    const cowPath = path.join(dir, 'cow.img');
    await FileDevice.open(cowPath, { createSize: COW_BYTES }).close();
    const reported: [number, number][] = [];
    let kills = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const result = await runChild(cowPath, 20 + Math.floor(Math.random() * 280));
      reported.push(...result.reported);
      if (result.killed) kills++;
      const records = await checkStore(cowPath, reported);
      expect(records).toBeGreaterThanOrEqual(reported.length);
    }
    expect(kills).toBeGreaterThan(0);
    expect(reported.length).toBeGreaterThan(20);
  });
});
