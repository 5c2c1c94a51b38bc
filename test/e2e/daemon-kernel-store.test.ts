// A COW store written by the kernel's dm-snapshot (test/data/fixtures), passed with --cow, is
// served as it is: its exceptions are loaded, the header's chunk size wins over --chunk-size, and
// status, table and the snapshot's content (sha256) are the kernel's.
import { describe, it, expect, afterAll } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { ROOT, readExport, startDaemon, tempDir } from '../support/daemon-harness.ts';

const FIXTURES = path.join(ROOT, 'test/data/fixtures');
const dir = tempDir('daemon-kernel-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Fixture {
  name: string;
  origin_sectors: number;
  chunk_sectors: number;
  status_after: string;
  snapshot_sha256: string;
  origin_after_sha256: string;
}

/** The origin after the workload: the sector pattern with the fixture's origin writes replayed. */
function originAfter(f: Fixture): Buffer {
  const img = Buffer.alloc(f.origin_sectors * 512);
  for (let i = 0; i < f.origin_sectors; i++) for (let j = 0; j < 128; j++) img.writeUInt32LE(i, i * 512 + j * 4);
  const writes = fs.readFileSync(path.join(FIXTURES, `${f.name}.writes.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  for (const w of writes.filter((w) => w.target === 'origin')) {
    for (let s = 0; s < w.sectors; s++) {
      const at = (w.sector + s) * 512;
      img.fill(w.fill, at, at + 512);
      img.write('W', at, 'latin1');
      img.writeUInt32LE(w.seq, at + 1);
      img.write('o\0\0', at + 5, 'latin1');
    }
  }
  return img;
}

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

describe('kernel-written COW stores', () => {
  it.each(['small-cs16', 'multiarea-cs8'])('serves %s with the kernel\'s status and content', async (name) => {
    const f: Fixture = JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}.json`), 'utf8'));
    const origin = path.join(dir, `${name}.origin.img`);
    const cow = path.join(dir, `${name}.cow.img`);
    fs.writeFileSync(origin, originAfter(f));
    fs.writeFileSync(cow, zlib.gunzipSync(fs.readFileSync(path.join(FIXTURES, `${name}.cow.img.gz`))));
    expect(sha256(fs.readFileSync(origin))).toBe(f.origin_after_sha256);

    fs.mkdirSync(path.join(dir, name));
    const d = await startDaemon(path.join(dir, name));
    try {
      await d.ok('origin', 'add', 'o', origin);
      // --chunk-size 32 is legal but the header's value wins, as in the kernel.
      const s = await d.ok('snapshot', 'create', 'k', '--origin', 'o', '--cow', cow, '--chunk-size', '32', '--json');
      expect(s).toMatchObject({ kind: 'P', chunkSectors: f.chunk_sectors, cowCreated: false });
      expect((await d.ok('status', 'k', '--json'))[0].info).toBe(f.status_after);
      expect(await d.ok('table', 'k')).toBe(`k: 0 ${f.origin_sectors} snapshot o ${cow} P ${f.chunk_sectors}\n`);
      expect(sha256(await readExport(d, 'k'))).toBe(f.snapshot_sha256);
      await d.ok('snapshot', 'remove', 'k');
      expect(fs.existsSync(cow)).toBe(true);
    } finally {
      await d.stop();
    }
  });
});
