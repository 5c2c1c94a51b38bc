// BLOCK_STATUS on qemu:dirty-bitmap:<snapshot> against a model, while writes continue: origin
// writes and writes to two snapshots (different chunk sizes) run concurrently with BLOCK_STATUS
// requests over random windows on the origin's and a snapshot's exports. Each reply must mark every
// chunk a write acknowledged before the request touched, and nothing no write had started on before
// the reply. Once quiet, the map must be exact, and every chunk it reports clean must read the same
// on the export as on the bitmap's snapshot (the property an incremental backup relies on).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlockDevice } from '../../src/block/device.ts';
import { CMD, OPT, RawClient, metaData, option, request } from '../support/nbd-test-client.ts';
import { bitmapWorld, type BitmapWorld } from '../support/dirty-bitmap-world.ts';
import { makeRng, type Rng } from '../support/prng.ts';

const SECTOR = 512;
const SIZE = 8 * 1024 * 1024;
const SECTORS = SIZE / SECTOR;
const CHUNK = { s1: 4096, s2: 32768 } as const;
type Name = 'o' | 's1' | 's2';

let w: BitmapWorld;
let clock = 0;
/** Every write: which export, its byte range, when it started and when it was acknowledged. */
const writes: { target: Name; offset: number; length: number; started: number; acked: number }[] = [];
/** When each snapshot was taken (origin writes before it are in its image). */
const taken: Partial<Record<Name, number>> = {};

function device(name: Name): BlockDevice {
  return name === 'o' ? w.origin.target! : w.origin.snapshots.get(name)!.target!;
}

async function write(rng: Rng, target: Name): Promise<void> {
  const length = SECTOR * rng.int(1, 128);
  const offset = SECTOR * rng.int(0, (SIZE - length) / SECTOR);
  const entry = { target, offset, length, started: ++clock, acked: Infinity };
  writes.push(entry);
  await device(target).write(Buffer.alloc(length, rng.int(1, 255)), offset);
  entry.acked = ++clock;
}

/** Sectors the model says bitmap `bitmap` on export `exp` must show dirty, counting writes with `when(w) < time`. */
function modelDirty(bitmap: 's1' | 's2', exp: Name, time: number, when: (x: (typeof writes)[number]) => number): Uint8Array {
  const dirty = new Uint8Array(SECTORS);
  const mark = (chunkBytes: number, offset: number, length: number) => {
    const first = Math.floor(offset / chunkBytes) * chunkBytes;
    const end = Math.ceil((offset + length) / chunkBytes) * chunkBytes;
    dirty.fill(1, first / SECTOR, Math.min(SECTORS, end / SECTOR));
  };
  for (const x of writes) {
    if (when(x) >= time) continue;
    const originAfter = x.target === 'o' && x.started > taken[bitmap]!;
    if (originAfter || x.target === bitmap) mark(CHUNK[bitmap], x.offset, x.length);
    if (exp !== 'o' && exp !== bitmap && (x.target === exp || (x.target === 'o' && x.started > taken[exp]!))) mark(CHUNK[exp], x.offset, x.length);
  }
  return dirty;
}

/** A client on `exp` with the bitmaps selected; returns context id per bitmap. */
async function open(exp: Name, bitmaps: string[]): Promise<{ c: RawClient; ids: Map<number, string> }> {
  const c = await RawClient.connect(w.socket);
  await c.greet();
  c.send(option(OPT.STRUCTURED_REPLY));
  await c.readOptionReplies();
  c.send(option(OPT.SET_META, metaData(exp, bitmaps.map((b) => `qemu:dirty-bitmap:${b}`))));
  const ids = new Map<number, string>();
  for (const r of await c.readOptionReplies()) if (r.type === 4) ids.set(r.payload.readUInt32BE(0), r.payload.subarray(4).toString().split(':')[2]);
  await c.go(exp);
  return { c, ids };
}

/** One BLOCK_STATUS: per bitmap, the dirty sectors of the part of the window it covered. */
async function status(c: RawClient, ids: Map<number, string>, cookie: number, offset: number, length: number) {
  c.send(request(CMD.BLOCK_STATUS, { cookie, offset, length }));
  const out = new Map<string, { from: number; to: number; dirty: Uint8Array }>();
  for (;;) {
    const chunk = await c.readChunk();
    expect(chunk.type).toBe(5);
    const dirty = new Uint8Array(SECTORS);
    let at = offset;
    for (let i = 4; i < chunk.payload.length; i += 8) {
      const len = chunk.payload.readUInt32BE(i);
      expect(len % SECTOR === 0 && len > 0).toBe(true);
      if (chunk.payload.readUInt32BE(i + 4) & 1) dirty.fill(1, at / SECTOR, (at + len) / SECTOR);
      at += len;
    }
    expect(at).toBeLessThanOrEqual(offset + length);
    out.set(ids.get(chunk.payload.readUInt32BE(0))!, { from: offset / SECTOR, to: at / SECTOR, dirty });
    if (chunk.flags & 1) return out;
  }
}

/** Check replies against the model while `busy` is true; returns how many replies were checked. */
async function prober(exp: Name, bitmaps: ('s1' | 's2')[], rng: Rng, busy: () => boolean): Promise<number> {
  const { c, ids } = await open(exp, bitmaps);
  let checked = 0;
  for (let cookie = 1; busy(); cookie++) {
    const offset = SECTOR * rng.int(0, SECTORS - 1);
    const length = Math.min(SIZE - offset, SECTOR * rng.int(1, SECTORS));
    const sent = ++clock;
    const reply = await status(c, ids, cookie, offset, length);
    const received = ++clock;
    for (const bitmap of bitmaps) {
      const { from, to, dirty } = reply.get(bitmap)!;
      const must = modelDirty(bitmap, exp, sent, (x) => x.acked);
      const may = modelDirty(bitmap, exp, received, (x) => x.started);
      for (let s = from; s < to; s++) {
        if (must[s] && !dirty[s]) throw new Error(`${bitmap} on ${exp}: sector ${s} was written and acknowledged before the request, reported clean`);
        if (dirty[s] && !may[s]) throw new Error(`${bitmap} on ${exp}: sector ${s} reported dirty with no write started on it`);
      }
    }
    checked++;
  }
  c.destroy();
  return checked;
}

beforeAll(async () => {
  w = await bitmapWorld(SIZE);
});
afterAll(async () => w?.close());

describe('qemu:dirty-bitmap extents under concurrent writes', () => {
  it('never misses an acknowledged write, never invents one, and is exact once quiet', async () => {
    const rng = makeRng(0xd1b7);
    await w.origin.target!.write(Buffer.alloc(SIZE, 0x11), 0); // before any snapshot: in every image
    await w.snapshot('s1', CHUNK.s1 / SECTOR);
    taken.s1 = ++clock;
    for (let i = 0; i < 40; i++) await write(rng, rng.chance(0.7) ? 'o' : 's1');
    await w.snapshot('s2', CHUNK.s2 / SECTOR);
    taken.s2 = ++clock;
    let running = true;
    // Settled at once, so a prober that fails early is reported below, not as an unhandled rejection.
    const probes = [prober('o', ['s1', 's2'], makeRng(1), () => running), prober('s2', ['s1', 's2'], makeRng(2), () => running)]
      .map((p) => p.then((n) => ({ n, err: undefined }), (err: unknown) => ({ n: 0, err })));
    const workers = Array.from({ length: 12 }, async (_, k) => {
      const wr = makeRng(100 + k);
      for (let i = 0; i < 40; i++) await write(wr, wr.pick<Name>(['o', 'o', 'o', 's1', 's2']));
    });
    await Promise.all(workers);
    running = false;
    const results = await Promise.all(probes);
    for (const r of results) if (r.err) throw r.err;
    expect(results.every((r) => r.n >= 5)).toBe(true);

    // Quiet: exact, and clean means equal content.
    for (const [exp, bitmap] of [['o', 's1'], ['o', 's2'], ['s2', 's1'], ['s1', 's2'], ['s1', 's1']] as const) {
      const { c, ids } = await open(exp, [bitmap]);
      const reply = (await status(c, ids, 99, 0, SIZE)).get(bitmap)!;
      c.destroy();
      expect(reply.to).toBe(SECTORS);
      expect(Buffer.from(reply.dirty).equals(Buffer.from(modelDirty(bitmap, exp, Infinity, (x) => x.acked)))).toBe(true);
      if (exp === bitmap) continue; // S on its own export: where S differs from the origin, nothing to compare
      const [a, b] = [Buffer.alloc(SIZE), Buffer.alloc(SIZE)];
      await device(exp).read(a, 0);
      await device(bitmap).read(b, 0);
      for (let s = 0; s < SECTORS; s++) {
        if (!reply.dirty[s] && !a.subarray(s * SECTOR, (s + 1) * SECTOR).equals(b.subarray(s * SECTOR, (s + 1) * SECTOR))) {
          throw new Error(`${bitmap} on ${exp}: sector ${s} reported clean but differs`);
        }
      }
    }
  });
});
