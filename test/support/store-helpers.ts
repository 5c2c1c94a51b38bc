// Helpers for the persistent-store unit tests: small stores with cs = 1 sector (32 exceptions
// per area, stride 33; area N at chunk 1 + 33N) on a StoreTestDevice.
import { openStore } from '../../src/store/open-store.ts';
import type { ExceptionStore, StoreKind } from '../../src/store/exception-store.ts';
import { scanArea } from '../../src/store/persistent/format.ts';
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
