// The reference model for the snapshot targets: plain byte arrays. The origin is the sequence of
// origin writes; each snapshot is the origin at its creation plus its own writes.
import type { ExceptionStore } from '../../src/store/exception-store.ts';

export interface ModelSnapshot {
  name: string;
  image: Buffer;
}

export class SnapshotModel {
  readonly origin: Buffer;
  readonly snapshots = new Map<string, ModelSnapshot>();

  constructor(size: number) {
    this.origin = Buffer.alloc(size);
  }

  writeOrigin(data: Uint8Array, offset: number): void {
    this.origin.set(data, offset);
  }

  writeSnapshot(name: string, data: Uint8Array, offset: number): void {
    this.get(name).image.set(data, offset);
  }

  create(name: string): void {
    this.snapshots.set(name, { name, image: Buffer.from(this.origin) });
  }

  remove(name: string): void {
    this.snapshots.delete(name);
  }

  get(name: string): ModelSnapshot {
    const snap = this.snapshots.get(name);
    if (!snap) throw new Error(`model has no snapshot ${name}`);
    return snap;
  }
}

/** Data chunks a store has handed out, derived from its status numbers (holes included). */
export function allocatedDataChunks(store: ExceptionStore): number {
  const cs = store.chunkSectors;
  const allocated = store.usage().allocatedSectors / cs;
  if (store.kind === 'N') return allocated;
  const stride = cs * 32 + 1; // exceptions per area + the area chunk itself
  const metadataChunks = allocated >= 2 ? Math.floor((allocated - 2) / stride) + 1 : 0;
  return allocated - 1 - metadataChunks; // minus the header
}

/** Random bytes that also identify their step, so a misplaced write is easy to spot. */
export function pattern(length: number, tag: number, rand: () => number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let i = 0;
  for (; i + 4 <= length; i += 4) buf.writeUInt32LE(((tag << 20) ^ Math.floor(rand() * 0xfffff)) >>> 0, i);
  for (; i < length; i++) buf[i] = Math.floor(rand() * 256);
  return buf;
}
