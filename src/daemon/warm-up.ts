// A live restart's successor opens every snapshot while all clients wait (the pause), and most
// of that is loading exceptions: reading metadata areas, scanning records, filling the exception
// table. A process that has just started runs that code unoptimised, 2-3x slower than V8's
// optimised code. So before the successor says it has loaded, it runs the same path (openStore,
// new Snapshot) a few times over a synthetic persistent store held in memory: the pause then runs
// optimised code. Nothing here touches a file.
import { NO_CAPS, type BlockDevice } from '../block/device.ts';
import { BlockError } from '../block/errors.ts';
import { SECTOR_BYTES } from '../common/sectors.ts';
import { openStore } from '../store/open-store.ts';
import { areaLocation, encodeHeader, exceptionsPerArea, writeRecord } from '../store/persistent/format.ts';
import { Snapshot } from '../targets/snapshot.ts';

const CHUNK_SECTORS = 8;
const CHUNK_BYTES = CHUNK_SECTORS * SECTOR_BYTES;
const EPA = exceptionsPerArea(CHUNK_SECTORS);
/** Origin chunks the synthetic snapshot covers (4 GiB of 4 KiB chunks). */
const ORIGIN_CHUNKS = 1 << 20;

/**
 * A read-only COW that holds `records` exceptions in the kernel's format without storing them:
 * the header at chunk 0, and each metadata area generated when it is read.
 */
class SyntheticCow implements BlockDevice {
  readonly blockSize = SECTOR_BYTES;
  readonly readOnly = true;
  readonly caps = NO_CAPS;
  readonly size: number;
  private readonly records: number;
  private readonly seed: number;

  constructor(records: number, seed: number) {
    this.records = records;
    this.seed = seed;
    this.size = (areaLocation(Math.floor(records / EPA), EPA) + 1 + EPA) * CHUNK_BYTES;
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    buf.fill(0);
    if (offset === 0) return void buf.set(encodeHeader(CHUNK_SECTORS, true).subarray(0, buf.length));
    const chunk = offset / CHUNK_BYTES;
    const area = Math.round((chunk - 1) / (EPA + 1));
    if (areaLocation(area, EPA) !== chunk || buf.length !== CHUNK_BYTES) return; // data chunks read as zeroes
    const first = area * EPA;
    for (let i = 0; i < EPA && first + i < this.records; i++) {
      const k = first + i;
      // Distinct origin chunks in a scattered order (an odd multiplier permutes 2^20 values).
      const oldChunk = (Math.imul(k + this.seed, 0x9e3779b1) >>> 0) & (ORIGIN_CHUNKS - 1);
      writeRecord(buf, i, oldChunk, areaLocation(area, EPA) + 1 + i);
    }
  }

  write(): Promise<void> {
    return Promise.reject(new BlockError('EPERM', 'synthetic COW is read-only'));
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  trim(): Promise<void> {
    return this.write();
  }

  zero(): Promise<void> {
    return this.write();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Load `rounds` synthetic stores of `records` exceptions each; returns the milliseconds spent. */
export async function warmUpSnapshotLoading(rounds = 4, records = 100_000): Promise<number> {
  const started = performance.now();
  for (let round = 0; round < rounds; round++) {
    const cow = new SyntheticCow(records, round * 7919);
    const store = await openStore('P', cow, { chunkSectors: CHUNK_SECTORS });
    const snapshot = new Snapshot(cow, store, ORIGIN_CHUNKS * CHUNK_BYTES);
    await snapshot.close({ flush: false });
  }
  return performance.now() - started;
}
