// Helpers for the persistent-store unit tests: small stores with cs = 1 sector (32 exceptions
// per area, stride 33; area N at chunk 1 + 33N) on a StoreTestDevice.
import { openStore } from '../../src/store/open-store.ts';
import type { ExceptionStore, StoreKind } from '../../src/store/exception-store.ts';
import { areaLocation, exceptionsPerArea, scanArea } from '../../src/store/persistent/format.ts';
import { StoreTestDevice } from './store-test-device.ts';

export const CS = 1;
export const CHUNK = 512;

/** A new store of `chunks` chunks; the device's call log starts empty. */
export async function fresh(chunks: number, kind: StoreKind = 'P', cs = CS) {
  const dev = new StoreTestDevice(chunks * cs * 512);
  const store = await openStore(kind, dev, { chunkSectors: cs });
  dev.calls.length = 0;
  return { dev, store };
}

export function loadAll(store: ExceptionStore): [number, number][] {
  const out: [number, number][] = [];
  store.load((o, n) => out.push([o, n]));
  return out;
}

/** Prepare and commit `count` exceptions one at a time (old chunks firstOld, firstOld+1...). */
export async function commitMany(store: ExceptionStore, count: number, firstOld = 100): Promise<number[]> {
  const chunks: number[] = [];
  for (let i = 0; i < count; i++) {
    const n = store.prepare();
    await store.commit(firstOld + i, n);
    chunks.push(n);
  }
  return chunks;
}

/** The records of the area in chunk `areaChunk`, as on disk. */
export function recordsOf(dev: StoreTestDevice, areaChunk: number, cs = CS): [number, number][] {
  const out: [number, number][] = [];
  scanArea(dev.bytes.subarray(areaChunk * cs * 512, (areaChunk + 1) * cs * 512), (o, n) => out.push([o, n]));
  return out;
}

/**
 * Checks the kernel's durability order on `dev` as the store works, against the image a power
 * cut would leave (dev.durable): when an area chunk is written, the data of every chunk it names
 * is durable, if the area is full its zeroed successor is durable, and if the write is plain
 * (durable only at a later flush) it changes a single logical block; when a commit made with
 * commitWithData resolves, its record is durable. Breaches are collected in `problems`.
 */
export class DurabilityWatch {
  readonly problems: string[] = [];
  /** Area writes seen, and how many of them had FUA. */
  areaWrites = 0;
  fuaAreaWrites = 0;
  private readonly dev: StoreTestDevice;
  private readonly chunkBytes: number;
  private readonly epa: number;

  constructor(dev: StoreTestDevice, cs = CS) {
    this.dev = dev;
    this.chunkBytes = cs * 512;
    this.epa = exceptionsPerArea(cs);
    dev.onWrite = (data, offset, fua) => this.checkWrite(data, offset, fua);
  }

  private chunk(image: Buffer, n: number): Buffer {
    return image.subarray(n * this.chunkBytes, (n + 1) * this.chunkBytes);
  }

  private checkWrite(data: Uint8Array, offset: number, fua: boolean): void {
    const at = offset / this.chunkBytes;
    if (offset % this.chunkBytes !== 0 || data.length !== this.chunkBytes || at % (this.epa + 1) !== 1) return; // not an area chunk
    const length = scanArea(data, (oldChunk, newChunk) => {
      if (!this.chunk(this.dev.durable, newChunk).equals(this.chunk(this.dev.bytes, newChunk))) {
        this.problems.push(`area chunk ${at} written naming chunk ${newChunk} (origin ${oldChunk}) before that chunk's data is durable`);
      }
    });
    if (length === 0) return; // the zeroing of an area
    this.areaWrites++;
    if (fua) this.fuaAreaWrites++;
    else this.checkUntearable(data, at);
    if (length === this.epa && !this.chunk(this.dev.durable, at + this.epa + 1).every((b) => b === 0)) {
      this.problems.push(`full area chunk ${at} written before the zeroed next area (chunk ${at + this.epa + 1}) is durable`);
    }
  }

  /** A plain area write may stay pending until the next flush: it must change one logical block only, so a torn write leaves old or new records, never records after a terminator. */
  private checkUntearable(data: Uint8Array, at: number): void {
    const durable = this.chunk(this.dev.durable, at);
    const changed = new Set<number>();
    for (let i = 0; i < data.length; i++) if (data[i] !== durable[i]) changed.add(Math.floor(i / this.dev.blockSize));
    if (changed.size > 1) this.problems.push(`plain write of area chunk ${at} changes ${changed.size} blocks: a power cut could tear it`);
  }

  /** Whether the record (oldChunk, newChunk) is in the durable image of its area. */
  isDurable(oldChunk: number, newChunk: number): boolean {
    const area = Math.floor((newChunk - 1) / (this.epa + 1));
    let found = false;
    scanArea(this.chunk(this.dev.durable, areaLocation(area, this.epa)), (o, n) => (found ||= o === oldChunk && n === newChunk));
    return found;
  }

  /** Prepare, write the chunk's data (a pattern from oldChunk), commit; on resolution, check the record is durable. */
  async commitWithData(store: ExceptionStore, oldChunk: number): Promise<number> {
    return (await this.commitAllWithData(store, [oldChunk]))[0];
  }

  /** commitWithData for several exceptions whose commits arrive together, once all their data is written. */
  async commitAllWithData(store: ExceptionStore, oldChunks: number[]): Promise<number[]> {
    const chunks = oldChunks.map(() => store.prepare());
    await Promise.all(chunks.map((n, i) => this.dev.write(Buffer.alloc(this.chunkBytes, (oldChunks[i] % 255) + 1), n * this.chunkBytes)));
    const commits = chunks.map(async (n, i) => {
      await store.commit(oldChunks[i], n);
      if (!this.isDurable(oldChunks[i], n)) this.problems.push(`commit of chunk ${n} (origin ${oldChunks[i]}) resolved before its record was durable`);
    });
    await Promise.all(commits);
    return chunks;
  }
}
