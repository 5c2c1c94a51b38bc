// Checklist items 1-15 (docs/nbd-protocol.md section 5) against a real `nbdsnap serve`,
// driven by hand-written handshake bytes.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLOCK_SLACK_MS, OPT, REP, RawClient, goData, metaData, option, u32 } from '../support/nbd-test-client.ts';
import { makeImage, makeTempDir, startServe, type ServeProcess } from '../support/serve-process.ts';

const SIZE = 16 * 1024 * 1024;
let dir: string;
let srv: ServeProcess;

beforeAll(async () => {
  dir = makeTempDir();
  srv = await startServe({ image: makeImage(dir, SIZE), name: 'foo' }); // the default 30 s handshake timeout
});
afterAll(async () => {
  const exit = await srv?.stop();
  expect(exit?.code).toBe(0);
  fs.rmSync(dir, { recursive: true, force: true });
});

async function greeted(flags = 3): Promise<RawClient> {
  const c = await RawClient.connect(srv.socket);
  await c.greet(flags);
  return c;
}

/** After a test that upsets one connection, a fresh one must still work. */
async function serverStillWorks(): Promise<void> {
  const c = await greeted();
  expect((await c.go('')).size).toBe(SIZE);
  c.destroy();
}

describe('NBD handshake checklist', () => {
  it('1: greeting is 18 bytes with flags 0x0003; unknown client flags close the connection', async () => {
    const c = await RawClient.connect(srv.socket);
    const greeting = await c.read(18);
    expect(greeting.toString('hex')).toBe(Buffer.from('NBDMAGICIHAVEOPT').toString('hex') + '0003');
    c.send(u32(0x7));
    expect(await c.closedWithin()).toBe(true);
    expect(c.pending).toBe(0);
    await serverStillWorks();
  });

  it('2: a bad option magic closes the connection', async () => {
    const c = await greeted();
    c.send(Buffer.from('IHAVEOPX'), u32(OPT.LIST), u32(0));
    expect(await c.closedWithin()).toBe(true);
    expect(c.pending).toBe(0);
  });

  it('3: an unknown option gets ERR_UNSUP, its data is drained, and GO still works', async () => {
    const c = await greeted();
    c.send(option(99, Buffer.alloc(300, 0x55)));
    const [r] = await c.readOptionReplies();
    expect(r).toMatchObject({ option: 99, type: REP.ERR_UNSUP });
    expect((await c.go('')).size).toBe(SIZE);
    c.destroy();
  });

  it('4: LIST, STARTTLS and STRUCTURED_REPLY with data get ERR_INVALID', async () => {
    const c = await greeted();
    for (const opt of [OPT.LIST, OPT.STARTTLS, OPT.STRUCTURED_REPLY]) {
      c.send(option(opt, Buffer.from([1, 2, 3])));
      const replies = await c.readOptionReplies();
      expect(replies.map((r) => [r.option, r.type])).toEqual([[opt, REP.ERR_INVALID]]);
    }
    expect((await c.go('')).size).toBe(SIZE);
    c.destroy();
  });

  it('5: malformed GO/INFO data gets ERR_INVALID and the connection stays usable', async () => {
    const c = await greeted();
    const bad = [
      Buffer.from([0, 0, 0]), // shorter than 6
      Buffer.concat([u32(10), Buffer.from('foo'), Buffer.from([0, 0])]), // name length overruns
      Buffer.concat([u32(3), Buffer.from('foo'), Buffer.from([0, 2, 0, 1])]), // 2 infos announced, 1 sent
      Buffer.concat([goData('foo', [1]), Buffer.from([9])]), // trailing garbage
    ];
    for (const data of bad) {
      for (const opt of [OPT.INFO, OPT.GO]) {
        c.send(option(opt, data));
        expect((await c.readOptionReplies()).map((r) => r.type)).toEqual([REP.ERR_INVALID]);
      }
    }
    expect((await c.go('foo')).size).toBe(SIZE);
    c.destroy();
  });

  it('6: GO/INFO for an unknown export get only ERR_UNKNOWN; EXPORT_NAME for one closes', async () => {
    const c = await greeted();
    for (const opt of [OPT.INFO, OPT.GO]) {
      c.send(option(opt, goData('nope', [1, 3])));
      expect((await c.readOptionReplies()).map((r) => r.type)).toEqual([REP.ERR_UNKNOWN]);
    }
    c.send(option(OPT.EXPORT_NAME, Buffer.from('nope')));
    expect(await c.closedWithin()).toBe(true);
    expect(c.pending).toBe(0);
  });

  it('7: INFO_EXPORT (12 bytes, HAS_FLAGS) precedes ACK; unknown infos ignored; NAME and BLOCK_SIZE answered', async () => {
    const c = await greeted();
    c.send(option(OPT.INFO, goData('foo', [0x7777, 1, 3])));
    const replies = await c.readOptionReplies();
    expect(replies.at(-1)!.type).toBe(REP.ACK);
    expect(replies.at(-1)!.payload.length).toBe(0);
    const infos = replies.slice(0, -1);
    expect(infos.every((r) => r.type === REP.INFO)).toBe(true);
    const exp = infos[0].payload;
    expect(exp.length).toBe(12);
    expect(exp.readUInt16BE(0)).toBe(0);
    expect(Number(exp.readBigUInt64BE(2))).toBe(SIZE);
    expect(exp.readUInt16BE(10) & 1).toBe(1);
    const byType = new Map(infos.map((r) => [r.payload.readUInt16BE(0), r.payload]));
    expect([...byType.keys()].sort()).toEqual([0, 1, 3]);
    expect(byType.get(1)!.subarray(2).toString()).toBe('foo');
    const bs = byType.get(3)!;
    expect([bs.readUInt32BE(2), bs.readUInt32BE(6), bs.readUInt32BE(10)]).toEqual([1, 4096, 32 * 1024 * 1024]);
    c.destroy();
  });

  it('8 + 9: INFO then an identical GO give identical size and flags; GO with 0 infos works', async () => {
    const c = await greeted();
    c.send(option(OPT.STRUCTURED_REPLY));
    await c.readOptionReplies();
    c.send(option(OPT.INFO, goData('')));
    const info = (await c.readOptionReplies())[0].payload;
    const go = await c.go('');
    expect(go.replies[0].payload.equals(info)).toBe(true);
    expect(go.replies.length).toBe(2);
    c.destroy();
  });

  it('10: the EXPORT_NAME reply is 10 bytes with NO_ZEROES and 134 without', async () => {
    for (const [flags, length] of [[3, 10], [1, 134]]) {
      const c = await greeted(flags);
      c.send(option(OPT.EXPORT_NAME, Buffer.from('foo')));
      const reply = await c.read(length);
      expect(Number(reply.readBigUInt64BE(0))).toBe(SIZE);
      expect(reply.readUInt16BE(8) & 1).toBe(1);
      expect(reply.subarray(10).equals(Buffer.alloc(length - 10))).toBe(true);
      expect(await c.readMarker(0x10n)).toEqual({ error: 0, cookie: 0x10n }); // nothing came between the reply and it
      expect(c.pending).toBe(0);
      c.destroy();
    }
  });

  it('11: SET_META_CONTEXT needs STRUCTURED_REPLY; unknown namespaces ignored; one query -> one context', async () => {
    const c = await greeted();
    c.send(option(OPT.SET_META, metaData('', ['base:allocation'])));
    expect((await c.readOptionReplies()).map((r) => r.type)).toEqual([REP.ERR_INVALID]);
    c.send(option(OPT.STRUCTURED_REPLY));
    await c.readOptionReplies();
    c.send(option(OPT.SET_META, metaData('', ['nosuch:thing', 'base:nothing'])));
    expect((await c.readOptionReplies()).map((r) => r.type)).toEqual([REP.ACK]);
    c.send(option(OPT.SET_META, metaData('', ['base:allocation'])));
    const replies = await c.readOptionReplies();
    expect(replies.map((r) => r.type)).toEqual([REP.META_CONTEXT, REP.ACK]);
    expect(replies[0].payload.readUInt32BE(0)).not.toBe(0);
    expect(replies[0].payload.subarray(4).toString()).toBe('base:allocation');
    c.destroy();
  });

  it('12: LIST_META_CONTEXT with 0 queries lists every context', async () => {
    const c = await greeted();
    c.send(option(OPT.STRUCTURED_REPLY));
    await c.readOptionReplies();
    for (const queries of [[], ['base:']]) {
      c.send(option(OPT.LIST_META, metaData('foo', queries)));
      const replies = await c.readOptionReplies();
      expect(replies.map((r) => r.type)).toEqual([REP.META_CONTEXT, REP.ACK]);
      expect(replies[0].payload.subarray(4).toString()).toBe('base:allocation');
    }
    c.destroy();
  });

  it('LIST: one SERVER reply per export, then ACK', async () => {
    const c = await greeted();
    c.send(option(OPT.LIST));
    const replies = await c.readOptionReplies();
    expect(replies.map((r) => r.type)).toEqual([REP.SERVER, REP.SERVER, REP.ACK]);
    const names = replies.slice(0, 2).map((r) => r.payload.subarray(4, 4 + r.payload.readUInt32BE(0)).toString());
    expect(names.sort()).toEqual(['', 'foo']);
    c.destroy();
  });

  it('13: ABORT gets ACK then close; a client that hangs up right after ABORT does no harm', async () => {
    const c = await greeted();
    c.send(option(OPT.ABORT));
    expect((await c.readOptionReplies()).map((r) => r.type)).toEqual([REP.ACK]);
    expect(await c.closedWithin()).toBe(true);
    const rude = await greeted();
    rude.send(option(OPT.ABORT));
    rude.destroy();
    await serverStillWorks();
  });

  it('14: STARTTLS without TLS gets ERR_POLICY', async () => {
    const c = await greeted();
    c.send(option(OPT.STARTTLS));
    expect((await c.readOptionReplies()).map((r) => r.type)).toEqual([REP.ERR_POLICY]);
    expect((await c.go('')).size).toBe(SIZE);
    c.destroy();
  });

  it('15a: oversized options: ERR_TOO_BIG (drained) above 64 KiB, disconnect when absurd, ERR_INVALID for long names', async () => {
    const c = await greeted();
    c.send(option(OPT.INFO, Buffer.alloc(70 * 1024)));
    expect((await c.readOptionReplies()).map((r) => r.type)).toEqual([REP.ERR_TOO_BIG]);
    c.send(option(OPT.INFO, goData('x'.repeat(5000))));
    expect((await c.readOptionReplies()).map((r) => r.type)).toEqual([REP.ERR_INVALID]);
    expect((await c.go('')).size).toBe(SIZE);
    c.destroy();
    const huge = await greeted();
    huge.send(Buffer.concat([Buffer.from('IHAVEOPT'), u32(OPT.INFO), u32(0xfffffff0)]));
    expect(await huge.closedWithin()).toBe(true);
  });

  it('15b: option-count cap and handshake timeout close the connection', async () => {
    const c = await greeted();
    let answered = 0;
    for (let i = 0; i < 40 && !(await c.closedWithin(1)); i++) {
      c.send(option(OPT.STRUCTURED_REPLY));
      try {
        await c.readOptionReplies();
        answered++;
      } catch {
        break;
      }
    }
    expect(answered).toBe(32);
    expect(await c.closedWithin()).toBe(true);
    // The timeout on a server of its own: 1 s there would not leave the other tests' handshakes
    // room on a loaded machine. Closed no earlier than 1 s, and well before the default 30 s.
    const quick = await startServe({ image: makeImage(dir, SIZE, 'quick.img'), socket: `${dir}/quick.sock`, extra: ['--handshake-timeout', '1'] });
    try {
      const start = performance.now();
      const idle = await RawClient.connect(quick.socket);
      await idle.greet();
      expect(await idle.closedWithin(15_000)).toBe(true);
      expect(idle.closedAt! - start).toBeGreaterThanOrEqual(1000 - CLOCK_SLACK_MS);
    } finally {
      expect((await quick.stop()).code).toBe(0);
    }
  });
});
