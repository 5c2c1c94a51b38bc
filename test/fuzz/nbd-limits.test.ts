// The NBD server's limits (src/nbd/limits.ts) at their boundaries, each checked against the
// checklist in docs/nbd-protocol.md section 5 (ERR_TOO_BIG / ERR_INVALID / EINVAL / disconnect),
// with a bystander connection that must keep reading the right bytes throughout.
// Server-wide limits (connections, in-flight bytes across connections) are in nbd-limits-server.test.ts.
import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NbdEndpoint } from '../support/crash-endpoint.ts';
import { ExportModel } from '../support/fuzz-nbd-model.ts';
import { fuzzTempDir, startServeTarget } from '../support/fuzz-nbd-targets.ts';
import { rssMiB } from '../support/fuzz-proc.ts';
import { CLOCK_SLACK_MS, CMD, ERR, IHAVEOPT, OPT, REP, RawClient, goData, option, request, u32 } from '../support/nbd-test-client.ts';
import { makeRng } from '../support/prng.ts';
import type { ServeProcess } from '../support/serve-process.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const MAX_PAYLOAD = 32 * MiB;
const SIZE = 40 * MiB;
let dir: string;
let srv: ServeProcess;
let bystander: NbdEndpoint;
let model: ExportModel;
const rng = makeRng(7);
/** How long a connection the server must drop may take to close: a bound for a loaded machine. */
const CLOSE_MS = 15_000;

beforeAll(async () => {
  dir = fuzzTempDir('limits');
  let target;
  ({ srv, target } = await startServeTarget(dir, [], SIZE)); // the default 30 s handshake timeout (a short one has its own server)
  model = target.fuzzed.model;
  bystander = await NbdEndpoint.open(srv.socket, 'fuzz');
});
afterEach(async () => {
  expect(await model.verify(bystander, rng, 4)).toBeUndefined();
});
afterAll(async () => {
  bystander?.close();
  expect((await srv?.stop())?.code).toBe(0);
  fs.rmSync(dir, { recursive: true, force: true });
});

async function greeted(socket = srv.socket): Promise<RawClient> {
  const c = await RawClient.connect(socket);
  await c.greet();
  return c;
}

async function replyTypes(c: RawClient, frame: Buffer): Promise<number[]> {
  c.send(frame);
  return (await c.readOptionReplies()).map((r) => r.type);
}

describe('handshake limits', () => {
  it('option data: 64 KiB is read (ERR_UNSUP), 64 KiB + 1 gets ERR_TOO_BIG and the connection goes on', async () => {
    const c = await greeted();
    expect(await replyTypes(c, option(0x4242, Buffer.alloc(64 * KiB, 1)))).toEqual([REP.ERR_UNSUP]);
    expect(await replyTypes(c, option(0x4242, Buffer.alloc(64 * KiB + 1, 1)))).toEqual([REP.ERR_TOO_BIG]);
    expect(await replyTypes(c, option(OPT.GO, Buffer.concat([goData('fuzz'), Buffer.alloc(64 * KiB)])))).toEqual([REP.ERR_TOO_BIG]);
    expect((await c.go('fuzz')).size).toBe(SIZE);
    c.destroy();
  });

  it('option data above 1 MiB closes the connection without reading it; so does a 4097-byte EXPORT_NAME', async () => {
    const huge = await greeted();
    huge.send(Buffer.concat([IHAVEOPT, u32(0x4242), u32(MiB + 1)]));
    expect(await huge.closedWithin(CLOSE_MS)).toBe(true);
    const longName = await greeted();
    longName.send(option(OPT.EXPORT_NAME, Buffer.alloc(4097, 0x61)));
    expect(await longName.closedWithin(CLOSE_MS)).toBe(true);
    const c = await greeted();
    expect(await replyTypes(c, option(OPT.INFO, goData('a'.repeat(4097))))).toEqual([REP.ERR_INVALID]);
    c.destroy();
  });

  it('option count: 32 mixed options are answered, the 33rd closes the connection', async () => {
    const c = await greeted();
    const kinds = [option(OPT.STRUCTURED_REPLY), option(OPT.STARTTLS), option(OPT.INFO, goData('fuzz')), option(0x99)];
    for (let i = 0; i < 32; i++) expect((await replyTypes(c, kinds[i % kinds.length])).length).toBeGreaterThan(0);
    c.send(option(OPT.STRUCTURED_REPLY));
    expect(await c.closedWithin(CLOSE_MS)).toBe(true);
    expect(c.pending).toBe(0); // no reply to the 33rd
  });

  it('STARTTLS is answered with ERR_POLICY (TLS is not supported), every time, and the handshake goes on', async () => {
    const c = await greeted();
    expect(await replyTypes(c, option(OPT.STARTTLS))).toEqual([REP.ERR_POLICY]);
    expect(await replyTypes(c, option(OPT.STARTTLS))).toEqual([REP.ERR_POLICY]);
    expect((await c.go('fuzz')).size).toBe(SIZE);
    c.destroy();
  });

  it('handshake timeout (--handshake-timeout 1): silent and trickling clients are dropped, idle transmission is not', async () => {
    const own = fuzzTempDir('limits-timeout');
    const { srv: quick } = await startServeTarget(own, ['--handshake-timeout', '1'], SIZE);
    try {
      // idle first: the server's timers of one length fire in the order they were set, so once
      // the later silent and trickle are dropped, idle's handshake timer has fired too.
      const idle = await RawClient.open(quick.socket, { name: 'fuzz' });
      const started = performance.now();
      const silent = await RawClient.connect(quick.socket);
      const trickle = await greeted(quick.socket);
      const frame = option(OPT.INFO, goData('fuzz'));
      const timer = setInterval(() => trickle.send(frame.subarray(0, 1)), 100); // never completes an option
      try {
        expect(await silent.closedWithin(CLOSE_MS)).toBe(true);
        expect(await trickle.closedWithin(CLOSE_MS)).toBe(true);
      } finally {
        clearInterval(timer);
      }
      for (const c of [silent, trickle]) expect(c.closedAt! - started).toBeGreaterThanOrEqual(1000 - CLOCK_SLACK_MS);
      expect(trickle.closedAt! - started).toBeLessThan(CLOSE_MS); // trickled bytes do not restart the timeout
      idle.send(request(CMD.READ, { cookie: 5, length: 512 }));
      expect(await idle.readSimpleReply()).toEqual({ error: 0, cookie: 5n });
      idle.destroy();
    } finally {
      expect((await quick.stop()).code).toBe(0);
      fs.rmSync(own, { recursive: true, force: true });
    }
  });
});

describe('transmission limits', () => {
  // First in this group: the 32 MiB requests below leave up to 128 MiB in the server's buffer
  // pool (src/block/buffer-pool.ts), which would count against this bound.
  it('a client that sends 768 MiB of WRITEs and never reads a reply: RSS stays < 300 MiB', async () => {
    const c = await RawClient.open(srv.socket, { name: 'fuzz' });
    c.socket.pause();
    const scratch = SIZE / 2;
    const length = 4 * MiB;
    const payload = Buffer.alloc(length, 0x5a);
    model.markRequests(request(CMD.WRITE, { offset: scratch, length }));
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(srv.proc.pid!))), 25);
    try {
      for (let i = 0; i < 192; i++) {
        const more = c.socket.write(request(CMD.WRITE, { cookie: i, offset: scratch, length }));
        if (!c.socket.write(payload) || !more) await new Promise((r) => c.socket.once('drain', r));
      }
    } finally {
      clearInterval(sampler);
    }
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThan(300);
    c.destroy(); // the scratch range stays dirty: writes may still be landing
  });
  it('payload cap: 32 MiB READ/WRITE work; 32 MiB + 1 gets EINVAL, the WRITE payload is drained, no disconnect', async () => {
    const c = await RawClient.open(srv.socket, { name: 'fuzz' });
    c.send(request(CMD.READ, { cookie: 1, length: MAX_PAYLOAD + 1 }));
    expect(await c.readSimpleReply()).toEqual({ error: ERR.EINVAL, cookie: 1n });
    c.send(request(CMD.WRITE, { cookie: 2, offset: 0, length: MAX_PAYLOAD + 1 }), Buffer.alloc(MAX_PAYLOAD + 1, 0xee));
    expect(await c.readSimpleReply()).toEqual({ error: ERR.EINVAL, cookie: 2n });
    c.send(request(CMD.READ, { cookie: 3, length: MAX_PAYLOAD }));
    expect(await c.readSimpleReply()).toEqual({ error: 0, cookie: 3n });
    expect((await c.read(MAX_PAYLOAD)).length).toBe(MAX_PAYLOAD);
    c.destroy();
  });

});
