// Real consumers of qemu:dirty-bitmap:<snapshot>: nbdinfo --map (libnbd), qemu-img map with
// x-dirty-bitmap (qemu reads bit 0 as a hole, so dirty areas print "data": false), qemu-nbd -L
// (LIST with qemu's queries), python3-libnbd selecting several contexts at once, and a map bigger
// than one BLOCK_STATUS reply (the client asks again from where a reply stopped).
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_STATUS_EXTENTS } from '../../src/nbd/meta-contexts.ts';
import { bitmapWorld, type BitmapWorld } from '../support/dirty-bitmap-world.ts';

const KiB = 1024;
const SIZE = 1024 * KiB;
let w: BitmapWorld;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd} failed: ${stderr}`)) : resolve(stdout)));
  });
}

/** nbdinfo --map=CONTEXT --json: [offset, length, type] per extent. */
async function nbdinfoMap(context: string, exportName: string): Promise<[number, number, number][]> {
  const out = JSON.parse(await run('nbdinfo', [`--map=${context}`, '--json', w.uri(exportName)])) as { offset: number; length: number; type: number }[];
  return out.map((e) => [e.offset, e.length, e.type]);
}

beforeAll(async () => {
  w = await bitmapWorld(SIZE);
  await w.snapshot('s1', 128); // 64 KiB chunks
  await w.origin.target!.write(Buffer.alloc(10 * KiB, 1), 100 * KiB); // chunk 1
  await w.origin.target!.write(Buffer.alloc(KiB, 1), 900 * KiB); // chunk 14
  await w.snapshot('s2', 8); // 4 KiB chunks
  await w.origin.snapshots.get('s2')!.target!.write(Buffer.alloc(KiB, 2), 500 * KiB); // s2's own write, 4 KiB chunk 125
});
afterAll(async () => w?.close());

describe('dirty bitmaps with real NBD clients', () => {
  it('nbdinfo --map=qemu:dirty-bitmap:s1 shows the changed chunks on the origin, and with s2 own writes on s2', async () => {
    expect(await nbdinfoMap('qemu:dirty-bitmap:s1', 'o')).toEqual([
      [0, 64 * KiB, 0], [64 * KiB, 64 * KiB, 1], [128 * KiB, 768 * KiB, 0], [896 * KiB, 64 * KiB, 1], [960 * KiB, 64 * KiB, 0],
    ]);
    expect(await nbdinfoMap('qemu:dirty-bitmap:s1', 's2')).toEqual([
      [0, 64 * KiB, 0], [64 * KiB, 64 * KiB, 1], [128 * KiB, 372 * KiB, 0], [500 * KiB, 4 * KiB, 1], [504 * KiB, 392 * KiB, 0], [896 * KiB, 64 * KiB, 1], [960 * KiB, 64 * KiB, 0],
    ]);
    const listed = await run('nbdinfo', [w.uri('o')]);
    expect(listed).toMatch(/contexts:\s+base:allocation\s+qemu:dirty-bitmap:s1\s+qemu:dirty-bitmap:s2/);
  });

  it('qemu-img map with x-dirty-bitmap prints dirty areas as "data": false', async () => {
    const opts = `driver=nbd,server.type=unix,server.path=${w.socket},export=o,x-dirty-bitmap=qemu:dirty-bitmap:s1`;
    const map = JSON.parse(await run('qemu-img', ['map', '--output=json', '--image-opts', opts])) as { start: number; length: number; data: boolean; zero: boolean }[];
    expect(map.map((e) => [e.start, e.length, e.data])).toEqual([
      [0, 64 * KiB, true], [64 * KiB, 64 * KiB, false], [128 * KiB, 768 * KiB, true], [896 * KiB, 64 * KiB, false], [960 * KiB, 64 * KiB, true],
    ]);
    expect(map.every((e) => !e.zero)).toBe(true);
  });

  it('qemu-nbd -L lists each export with its contexts', async () => {
    const out = await run('qemu-nbd', ['-L', '-k', w.socket]);
    expect(out).toMatch(/export: 's1'[\s\S]*available meta contexts: 3\s+base:allocation\s+qemu:dirty-bitmap:s1\s+qemu:dirty-bitmap:s2/);
  });

  it('python3-libnbd selects both bitmaps and base:allocation and gets one extent list per context', async () => {
    const script = `
import json, sys, nbd
h = nbd.NBD()
for c in ["base:allocation", "qemu:dirty-bitmap:s1", "qemu:dirty-bitmap:s2"]:
    h.add_meta_context(c)
h.connect_uri(sys.argv[1])
seen = {}
def cb(context, offset, entries, err):
    seen[context] = [entries[i:i + 2] for i in range(0, len(entries), 2)]
    return 0
h.block_status(1024 * 1024, 0, cb)
print(json.dumps(seen))
`;
    const seen = JSON.parse(await run('/usr/bin/python3', ['-c', script, w.uri('o')])) as Record<string, [number, number][]>;
    expect(Object.keys(seen).sort()).toEqual(['base:allocation', 'qemu:dirty-bitmap:s1', 'qemu:dirty-bitmap:s2']);
    expect(seen['base:allocation']).toEqual([[SIZE, 0]]);
    expect(seen['qemu:dirty-bitmap:s1'][1]).toEqual([64 * KiB, 1]);
    expect(seen['qemu:dirty-bitmap:s2']).toEqual([[500 * KiB, 0], [4 * KiB, 1], [520 * KiB, 0]]); // s2's own write: the origin differs there
  });

  it('nbdinfo reads a map of more extents than one reply carries', async () => {
    const chunks = MAX_STATUS_EXTENTS + 8; // 512-byte chunks, every other one written: more runs than one reply holds
    const big = await bitmapWorld(chunks * 512, 'big');
    try {
      const snap = await big.snapshot('fine', 1);
      const writes: Promise<void>[] = [];
      for (let chunk = 0; chunk < chunks; chunk += 2) writes.push(snap.target!.write(Buffer.alloc(512, 7), chunk * 512));
      await Promise.all(writes);
      expect(snap.target!.changed.count).toBe(chunks / 2);
      const out = JSON.parse(await run('nbdinfo', ['--map=qemu:dirty-bitmap:fine', '--json', big.uri('big')])) as { offset: number; length: number; type: number }[];
      expect(out).toHaveLength(chunks);
      expect(out.every((e, i) => e.offset === i * 512 && e.length === 512 && e.type === (i % 2 === 0 ? 1 : 0))).toBe(true);
    } finally {
      await big.close();
    }
  });
});
