// qemu:dirty-bitmap:<snapshot> contexts over the wire, with hand-written bytes: LIST (no query,
// namespace wildcards, exact names), SET of several contexts with distinct IDs, unknown names and
// exports, selection bound to its export, BLOCK_STATUS with one chunk per selected context, and
// the origin's export during a merge.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CMD, ERR, FLAG, OPT, REP, RawClient, metaData, option, request } from '../support/nbd-test-client.ts';
import { silentLogger } from '../../src/log.ts';
import { bitmapWorld, type BitmapWorld } from '../support/dirty-bitmap-world.ts';

const KiB = 1024;
const SIZE = 4 * 1024 * KiB;
let w: BitmapWorld;

beforeAll(async () => {
  w = await bitmapWorld(SIZE);
  await w.snapshot('s1', 8); // 4 KiB chunks
  await w.snapshot('s2', 32); // 16 KiB chunks
  await w.origin.target!.write(Buffer.alloc(8 * KiB, 1), 20 * KiB); // s1: chunks 5-6, s2: chunk 1
});
afterAll(async () => w?.close());

async function structured(socket = w.socket): Promise<RawClient> {
  const c = await RawClient.connect(socket);
  await c.greet();
  c.send(option(OPT.STRUCTURED_REPLY));
  await c.readOptionReplies();
  return c;
}

/** Send LIST or SET; the [id, name] of each META_CONTEXT reply, and the final reply type. */
async function meta(c: RawClient, opt: number, exportName: string, queries: string[]): Promise<{ contexts: [number, string][]; last: number }> {
  c.send(option(opt, metaData(exportName, queries)));
  const replies = await c.readOptionReplies();
  const contexts = replies.filter((r) => r.type === REP.META_CONTEXT).map((r): [number, string] => [r.payload.readUInt32BE(0), r.payload.subarray(4).toString()]);
  return { contexts, last: replies[replies.length - 1].type };
}

/** The chunks of one BLOCK_STATUS reply: context id -> [length, flags][], and the DONE flags in order. */
async function blockStatus(c: RawClient, cookie: number, offset: number, length: number, flags = 0) {
  c.send(request(CMD.BLOCK_STATUS, { cookie, offset, length, flags }));
  const byId = new Map<number, [number, number][]>();
  const done: boolean[] = [];
  for (;;) {
    const chunk = await c.readChunk();
    expect(chunk.cookie).toBe(BigInt(cookie));
    done.push((chunk.flags & 1) === 1);
    if (chunk.type !== 5) return { error: chunk.payload.readUInt32BE(0), byId, done };
    const id = chunk.payload.readUInt32BE(0);
    expect(byId.has(id)).toBe(false); // one chunk per context
    const extents: [number, number][] = [];
    for (let at = 4; at < chunk.payload.length; at += 8) extents.push([chunk.payload.readUInt32BE(at), chunk.payload.readUInt32BE(at + 4)]);
    byId.set(id, extents);
    if (chunk.flags & 1) return { error: 0, byId, done };
  }
}

const ALL = ['base:allocation', 'qemu:dirty-bitmap:s1', 'qemu:dirty-bitmap:s2'];

describe('LIST_META_CONTEXT', () => {
  it('lists every context with no queries, on the origin and on each snapshot, with ID 0', async () => {
    const c = await structured();
    for (const exportName of ['o', 's1', 's2']) {
      const { contexts, last } = await meta(c, OPT.LIST_META, exportName, []);
      expect(last).toBe(REP.ACK);
      expect(contexts).toEqual(ALL.map((name) => [0, name]));
    }
    c.destroy();
  });

  it.each([
    [['qemu:'], ALL.slice(1)],
    [['qemu:dirty-bitmap:'], ALL.slice(1)],
    [['base:'], ['base:allocation']],
    [['qemu:dirty-bitmap:s2'], ['qemu:dirty-bitmap:s2']],
    [['qemu:dirty-bitmap:nosuch', 'nosuch:thing', 'qemu:allocation-depth'], []],
  ])('answers the queries %j with %j', async (queries, expected) => {
    const c = await structured();
    const { contexts, last } = await meta(c, OPT.LIST_META, 'o', queries);
    expect(last).toBe(REP.ACK);
    expect(contexts.map(([, name]) => name)).toEqual(expected);
    c.destroy();
  });

  it('refuses an unknown export with ERR_UNKNOWN (LIST and SET)', async () => {
    const c = await structured();
    expect(await meta(c, OPT.LIST_META, 'nosuch', [])).toEqual({ contexts: [], last: REP.ERR_UNKNOWN });
    expect(await meta(c, OPT.SET_META, 'nosuch', ['qemu:dirty-bitmap:s1'])).toEqual({ contexts: [], last: REP.ERR_UNKNOWN });
    c.destroy();
  });
});

describe('SET_META_CONTEXT and BLOCK_STATUS', () => {
  it('selects several contexts with distinct nonzero IDs and answers one chunk per context, DONE on the last', async () => {
    const c = await structured();
    const { contexts } = await meta(c, OPT.SET_META, 'o', ['qemu:dirty-bitmap:s2', 'base:allocation', 'qemu:dirty-bitmap:s1', 'qemu:dirty-bitmap:s1', 'qemu:', 'nosuch:x']);
    expect(contexts.map(([, n]) => n)).toEqual(['qemu:dirty-bitmap:s2', 'base:allocation', 'qemu:dirty-bitmap:s1']);
    const ids = contexts.map(([id]) => id);
    expect(new Set(ids).size).toBe(3);
    expect(ids.every((id) => id > 0)).toBe(true);
    await c.go('o');
    const r = await blockStatus(c, 7, 0, 64 * KiB);
    expect(r.error).toBe(0);
    expect(r.done).toEqual([false, false, true]);
    const [s2, base, s1] = ids.map((id) => r.byId.get(id));
    expect(base).toEqual([[64 * KiB, 0]]);
    expect(s1).toEqual([[20 * KiB, 0], [8 * KiB, 1], [36 * KiB, 0]]);
    expect(s2).toEqual([[16 * KiB, 0], [16 * KiB, 1], [32 * KiB, 0]]);
    const one = await blockStatus(c, 8, 4 * KiB, 60 * KiB, FLAG.REQ_ONE);
    expect(ids.map((id) => one.byId.get(id))).toEqual([[[12 * KiB, 0]], [[60 * KiB, 0]], [[16 * KiB, 0]]]);
    c.destroy();
  });

  it('selects nothing for wildcards and unknown names; the selection counts only for its own export', async () => {
    const c = await structured();
    expect((await meta(c, OPT.SET_META, 'o', ['qemu:', 'qemu:dirty-bitmap:', 'qemu:dirty-bitmap:nosuch'])).contexts).toEqual([]);
    expect((await meta(c, OPT.SET_META, 's1', ['qemu:dirty-bitmap:s2'])).contexts).toHaveLength(1);
    await c.go('o'); // SET named s1: nothing is selected for o
    const r = await blockStatus(c, 9, 0, 4096);
    expect(r.error).toBe(ERR.EINVAL);
    c.destroy();
  });

  it("on a snapshot's export, another snapshot's bitmap includes that snapshot's own writes", async () => {
    const c = await structured();
    const { contexts } = await meta(c, OPT.SET_META, 's2', ['qemu:dirty-bitmap:s1', 'qemu:dirty-bitmap:s2']);
    await c.go('s2');
    await w.origin.snapshots.get('s2')!.target!.write(Buffer.alloc(512, 2), 100 * KiB); // s2 chunk 6
    const r = await blockStatus(c, 10, 0, 128 * KiB);
    // s1 (20-28 KiB) united with s2's own chunks (16-32 KiB from the origin write, 96-112 KiB written to s2)
    const union = [[16 * KiB, 0], [16 * KiB, 1], [64 * KiB, 0], [16 * KiB, 1], [16 * KiB, 0]];
    expect(r.byId.get(contexts[0][0])).toEqual(union);
    expect(r.byId.get(contexts[1][0])).toEqual(union);
    c.destroy();
  });

  it('fails BLOCK_STATUS with EIO once a selected bitmap is gone, and stops offering it', async () => {
    const s3 = await w.snapshot('s3', 8);
    const c = await structured();
    await meta(c, OPT.SET_META, 'o', ['base:allocation', 'qemu:dirty-bitmap:s3']);
    await c.go('o');
    expect((await blockStatus(c, 11, 0, 4096)).error).toBe(0);
    await s3.target!.invalidate('test');
    expect((await blockStatus(c, 12, 0, 4096)).error).toBe(ERR.EIO);
    const other = await structured();
    expect((await meta(other, OPT.LIST_META, 'o', ['qemu:'])).contexts.map(([, n]) => n)).toEqual(ALL.slice(1));
    await w.remove('s3');
    expect((await blockStatus(c, 13, 0, 4096)).error).toBe(ERR.EIO);
    c.destroy();
    other.destroy();
  });
});

describe('while a snapshot merges into the origin', () => {
  it("the origin's export offers no bitmaps (it shows the merging snapshot), the snapshots' exports keep theirs", async () => {
    const m = await bitmapWorld(SIZE, 'm');
    try {
      const target = m.origin.target!;
      await target.write(Buffer.alloc(SIZE, 1), 0);
      const s1 = await m.snapshot('s1', 8);
      await target.write(Buffer.alloc(64 * KiB, 2), 0); // s1 keeps 1s there
      await m.snapshot('s2', 8);
      const sel = await structured(m.socket);
      await meta(sel, OPT.SET_META, 'm', ['qemu:dirty-bitmap:s2']);
      await sel.go('m');
      expect((await blockStatus(sel, 1, 0, 128 * KiB)).error).toBe(0);
      await m.exports.startMerge(m.origin, s1, silentLogger());
      // The origin now reads s1's 1s at 0-64 KiB, where s2 (taken after the 2s) is clean: no bitmap may claim otherwise.
      expect((await blockStatus(sel, 2, 0, 128 * KiB)).error).toBe(ERR.EIO);
      const c = await structured(m.socket);
      expect((await meta(c, OPT.LIST_META, 'm', ['qemu:'])).contexts).toEqual([]);
      expect((await meta(c, OPT.LIST_META, 's2', ['qemu:'])).contexts.map(([, n]) => n)).toEqual(['qemu:dirty-bitmap:s2']);
      await m.exports.detachSnapshot(m.origin, s1); // the merge ends (stopped or done): plain origin I/O again
      expect((await meta(c, OPT.LIST_META, 'm', ['qemu:'])).contexts.map(([, n]) => n)).toEqual(['qemu:dirty-bitmap:s2']);
      c.destroy();
      sel.destroy();
    } finally {
      await m.close();
    }
  });
});
