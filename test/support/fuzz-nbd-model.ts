// What a fuzzed export must still contain. Every sector starts tagged with write id 0
// (crash-pattern.ts); a fuzz case may change only the ranges its own request stream names in
// write-type commands, which this model finds by framing the bytes the way the protocol does
// (28-byte headers, a WRITE followed by its payload, a bad magic or DISC ends the stream).
// Those ranges are "dirty" until repaired; everywhere else must read back exactly. A client that
// hangs up does not cancel its requests, so a write can land after its connection is gone:
// repair() only rewrites ranges dirtied before the current batch (a batch of quarantine).
import { SECTOR, readTag, taggedBuffer } from './crash-pattern.ts';
import type { Endpoint } from './crash-endpoint.ts';
import type { Rng } from './prng.ts';

const REQUEST_MAGIC = 0x25609513;
const HEADER = 28;
const WRITE = 1;
const DISC = 2;
const WRITE_TYPES = new Set([WRITE, 4 /* TRIM */, 6 /* WRITE_ZEROES */]);

export class ExportModel {
  readonly size: number;
  /** Sector-aligned [start, end) byte ranges that a fuzz case may have changed, by batch. */
  private dirty: { start: number; end: number; batch: number }[] = [];
  private batch = 0;

  constructor(size: number) {
    this.size = size;
  }

  /** Start a new batch: ranges dirtied from now on wait one more batch before repair. */
  beginBatch(): void {
    this.batch++;
  }

  /** Mark every range a write-type request in `stream` (transmission bytes only) could touch. */
  markRequests(stream: Buffer): void {
    for (let at = 0; at + HEADER <= stream.length;) {
      if (stream.readUInt32BE(at) !== REQUEST_MAGIC) return;
      const type = stream.readUInt16BE(at + 6);
      const offset = stream.readBigUInt64BE(at + 16);
      const length = stream.readUInt32BE(at + 24);
      if (type === DISC) return;
      if (WRITE_TYPES.has(type)) this.markRange(offset, length);
      at += HEADER + (type === WRITE ? length : 0);
    }
  }

  private markRange(offset: bigint, length: number): void {
    if (offset >= BigInt(this.size)) return;
    const start = Math.floor(Number(offset) / SECTOR) * SECTOR;
    const end = Math.min(this.size, Math.ceil((Number(offset) + length) / SECTOR) * SECTOR);
    if (end > start) this.dirty.push({ start, end, batch: this.batch });
  }

  get dirtyBytes(): number {
    return merge(this.dirty.map((d) => [d.start, d.end])).reduce((sum, [s, e]) => sum + e - s, 0);
  }

  /** A clean sector-aligned range of up to maxSectors sectors, or undefined if none was found. */
  cleanRange(rng: Rng, maxSectors: number): { sector: number; count: number } | undefined {
    for (let attempt = 0; attempt < 50; attempt++) {
      const count = rng.int(1, maxSectors);
      const sector = rng.int(0, this.size / SECTOR - count);
      const [s, e] = [sector * SECTOR, (sector + count) * SECTOR];
      if (!this.dirty.some((d) => d.start < e && s < d.end)) return { sector, count };
    }
    return undefined;
  }

  /** Read `tries` clean ranges through `endpoint`; returns a description of the first mismatch. */
  async verify(endpoint: Endpoint, rng: Rng, tries: number): Promise<string | undefined> {
    for (let i = 0; i < tries; i++) {
      const range = this.cleanRange(rng, 128);
      if (!range) continue;
      const data = await endpoint.read(range.sector, range.count);
      for (let s = 0; s < range.count; s++) {
        if (readTag(data, s, range.sector) !== 0) return `sector ${range.sector + s} does not hold its original tag`;
      }
    }
    return undefined;
  }

  /** Write the original tags back over the ranges dirtied before this batch, flush, forget them. */
  async repair(endpoint: Endpoint): Promise<void> {
    const settled = this.dirty.filter((d) => d.batch < this.batch);
    for (const [start, end] of merge(settled.map((d) => [d.start, d.end]))) {
      for (let at = start; at < end; at += 1024 * 1024) {
        const length = Math.min(1024 * 1024, end - at);
        await endpoint.write(taggedBuffer(at / SECTOR, length / SECTOR, 0), at / SECTOR, false);
      }
    }
    await endpoint.flush();
    this.dirty = this.dirty.filter((d) => d.batch === this.batch);
  }
}

function merge(ranges: [number, number][]): [number, number][] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [s, e] of sorted) {
    const last = out[out.length - 1];
    if (last && s <= last[1]) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out;
}

/** The initial content of a fuzzed export: every sector tagged with write id 0. */
export function initialImage(size: number): Buffer {
  return taggedBuffer(0, size / SECTOR, 0);
}
