// Kernel-written COW fixtures (test/data/fixtures, see its README) and the workload that made
// them (workload.py): the origin pattern, the bytes of every write, the origin afterwards.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';

export const FIXTURE_DIR = path.resolve(import.meta.dirname, '../data/fixtures');
export const SECTOR = 512;

export interface FixtureManifest {
  name: string;
  origin_sectors: number;
  cow_bytes: number;
  store: 'P' | 'PO' | 'N';
  chunk_sectors: number;
  writes: number;
  status_after: string;
  snapshot_sha256: string;
  origin_after_sha256: string;
}

export interface FixtureWrite {
  seq: number;
  target: 'origin' | 'snap';
  sector: number;
  sectors: number;
  fill: number;
}

export interface Fixture {
  manifest: FixtureManifest;
  /** The COW device as the kernel left it. */
  cow: Buffer;
  writes: FixtureWrite[];
}

export const PERSISTENT_FIXTURES = ['small-cs16', 'multiarea-cs8', 'overflow-cs8'] as const;

export function loadFixture(name: string): Fixture {
  const manifest = JSON.parse(readFileSync(path.join(FIXTURE_DIR, `${name}.json`), 'utf8')) as FixtureManifest;
  const cow = gunzipSync(readFileSync(path.join(FIXTURE_DIR, `${name}.cow.img.gz`)));
  const lines = readFileSync(path.join(FIXTURE_DIR, `${name}.writes.jsonl`), 'utf8').split('\n');
  const writes = lines.filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as FixtureWrite);
  return { manifest, cow, writes };
}

/** The origin before the workload: sector i = u32le(i) repeated 128 times. */
export function originPattern(sectors: number): Buffer {
  const buf = Buffer.alloc(sectors * SECTOR);
  for (let i = 0; i < sectors * (SECTOR / 4); i++) buf.writeUInt32LE(Math.floor(i / (SECTOR / 4)), i * 4);
  return buf;
}

/** The data of one write: the fill byte, each sector starting with 'W', u32le(seq), target letter, 2 zeroes. */
export function writeData(w: FixtureWrite): Buffer {
  const buf = Buffer.alloc(w.sectors * SECTOR, w.fill);
  for (let s = 0; s < w.sectors; s++) {
    const at = s * SECTOR;
    buf.write('W', at, 'latin1');
    buf.writeUInt32LE(w.seq, at + 1);
    buf.write(w.target[0], at + 5, 'latin1');
    buf.writeUInt16LE(0, at + 6);
  }
  return buf;
}

/** The origin after the workload: the pattern with every origin write applied in order. */
export function originAfter(f: Fixture): Buffer {
  const origin = originPattern(f.manifest.origin_sectors);
  for (const w of f.writes) if (w.target === 'origin') writeData(w).copy(origin, w.sector * SECTOR);
  return origin;
}

export function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** The snapshot device's content: each origin chunk from the COW if it has an exception, else from the origin. */
export function snapshotImage(origin: Buffer, cow: Buffer, chunkSectors: number, lookup: (chunk: number) => number): Buffer {
  const chunkBytes = chunkSectors * SECTOR;
  const image = Buffer.from(origin);
  for (let chunk = 0; chunk * chunkBytes < origin.length; chunk++) {
    const target = lookup(chunk);
    if (target >= 0) cow.copy(image, chunk * chunkBytes, target * chunkBytes, (target + 1) * chunkBytes);
  }
  return image;
}
