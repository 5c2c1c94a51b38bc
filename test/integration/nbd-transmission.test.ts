// Checklist items 16-32 (docs/nbd-protocol.md section 5) against a real `nbdsnap serve`, with
// hand-written request bytes. Items 33-34 (restart, SIGTERM) are in nbd-lifecycle.test.ts.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { untilIdle } from '../support/fuzz-proc.ts';
import { CMD, ERR, FLAG, RawClient, request } from '../support/nbd-test-client.ts';
import { makeImage, makeTempDir, startServe, type ServeProcess } from '../support/serve-process.ts';

const SIZE = 64 * 1024 * 1024;
const MiB = 1024 * 1024;
const pattern = (length: number, seed: number): Buffer => Buffer.from(Array.from({ length }, (_, i) => (i * 7 + seed) & 0xff));
const INITIAL = pattern(4 * MiB, 3);

let dir: string;
let image: string;
let rw: ServeProcess;
let ro: ServeProcess;

beforeAll(async () => {
  dir = makeTempDir();
  image = makeImage(dir, SIZE, 'disk.img', INITIAL);
  rw = await startServe({ image, socket: `${dir}/rw.sock` });
  // A copy of its own: one file is served by one nbdsnap process at a time (block/device-claim.ts).
  ro = await startServe({ image: makeImage(dir, SIZE, 'ro.img', INITIAL), socket: `${dir}/ro.sock`, readOnly: true });
});
afterAll(async () => {
  const exits = await Promise.all([rw?.stop(), ro?.stop()]);
  expect(exits.map((e) => e?.code)).toEqual([0, 0]);
  fs.rmSync(dir, { recursive: true, force: true });
});

async function errorOf(c: RawClient, req: Buffer): Promise<number> {
  c.send(req);
  return (await c.readSimpleReply()).error;
}

async function readSimple(c: RawClient, offset: number, length: number, cookie = 7): Promise<Buffer> {
  c.send(request(CMD.READ, { cookie, offset, length }));
  const r = await c.readSimpleReply();
  expect(r).toEqual({ error: 0, cookie: BigInt(cookie) });
  return c.read(length);
}

describe('NBD transmission checklist', () => {
  it('16: a request with a bad magic closes the connection', async () => {
    const c = await RawClient.open(rw.socket);
    c.send(request(CMD.READ, { magic: 0x25609514, length: 512 }));
    expect(await c.closedWithin()).toBe(true);
    expect(c.pending).toBe(0);
  });

  it('17: an unknown command gets EINVAL and the next READ works', async () => {
    const c = await RawClient.open(rw.socket);
    expect(await errorOf(c, request(42, { length: 512 }))).toBe(ERR.EINVAL);
    expect((await readSimple(c, 0, 512)).equals(INITIAL.subarray(0, 512))).toBe(true);
    c.destroy();
  });

  it('18: bad flags get EINVAL (unknown bit, NO_HOLE on WRITE with payload consumed, DF unnegotiated, REQ_ONE on READ, FUA unadvertised)', async () => {
    const c = await RawClient.open(rw.socket);
    expect(await errorOf(c, request(CMD.READ, { flags: 0x8000, length: 512 }))).toBe(ERR.EINVAL);
    expect(await errorOf(c, request(CMD.WRITE, { flags: FLAG.NO_HOLE, offset: 8 * MiB, payload: Buffer.alloc(4096, 9) }))).toBe(ERR.EINVAL);
    expect(await errorOf(c, request(CMD.READ, { flags: FLAG.DF, length: 512 }))).toBe(ERR.EINVAL);
    expect(await errorOf(c, request(CMD.READ, { flags: FLAG.REQ_ONE, length: 512 }))).toBe(ERR.EINVAL);
    expect((await readSimple(c, 8 * MiB, 4096)).equals(Buffer.alloc(4096))).toBe(true);
    const r = await RawClient.open(ro.socket);
    expect(r.flags & (1 << 3)).toBe(0); // SEND_FUA not advertised on a read-only export
    expect(await errorOf(r, request(CMD.READ, { flags: FLAG.FUA, length: 512 }))).toBe(ERR.EINVAL);
    c.destroy();
    r.destroy();
  });

  it('19: out-of-range requests: READ/TRIM EINVAL, WRITE/WRITE_ZEROES ENOSPC with the payload consumed', async () => {
    const c = await RawClient.open(rw.socket);
    expect(await errorOf(c, request(CMD.READ, { offset: SIZE, length: 512 }))).toBe(ERR.EINVAL);
    expect(await errorOf(c, request(CMD.READ, { offset: SIZE - 512, length: 1024 }))).toBe(ERR.EINVAL);
    expect(await errorOf(c, request(CMD.READ, { offset: 2n ** 64n - 512n, length: 1024 }))).toBe(ERR.EINVAL);
    expect(await errorOf(c, request(CMD.WRITE, { offset: SIZE - 512, payload: Buffer.alloc(1024, 1) }))).toBe(ERR.ENOSPC);
    expect(await errorOf(c, request(CMD.WRITE, { offset: 2n ** 64n - 512n, payload: Buffer.alloc(1024, 1) }))).toBe(ERR.ENOSPC);
    expect(await errorOf(c, request(CMD.WRITE_ZEROES, { offset: SIZE, length: 4096 }))).toBe(ERR.ENOSPC);
    expect(await errorOf(c, request(CMD.TRIM, { offset: SIZE - 4096, length: 8192 }))).toBe(ERR.EINVAL);
    expect((await readSimple(c, 0, 512)).equals(INITIAL.subarray(0, 512))).toBe(true);
    c.destroy();
  });

  it('20: READ of 0xFFFFFFFF is EINVAL without disconnect; an oversized WRITE is drained and refused', async () => {
    const c = await RawClient.open(rw.socket);
    expect(await errorOf(c, request(CMD.READ, { length: 0xffffffff }))).toBe(ERR.EINVAL);
    expect(await errorOf(c, request(CMD.WRITE, { offset: 0, payload: Buffer.alloc(32 * MiB + 512, 0xee) }))).toBe(ERR.EINVAL);
    expect((await readSimple(c, 0, 512)).equals(INITIAL.subarray(0, 512))).toBe(true);
    c.destroy();
  });

  it('21: read-only export: READ_ONLY flag; WRITE (payload consumed), TRIM, WRITE_ZEROES get EPERM', async () => {
    const c = await RawClient.open(ro.socket);
    expect(c.flags & 0b10).toBe(0b10);
    expect(await errorOf(c, request(CMD.WRITE, { offset: 0, payload: Buffer.alloc(4096, 1) }))).toBe(ERR.EPERM);
    expect(await errorOf(c, request(CMD.TRIM, { offset: 0, length: 4096 }))).toBe(ERR.EPERM);
    expect(await errorOf(c, request(CMD.WRITE_ZEROES, { offset: 0, length: 4096 }))).toBe(ERR.EPERM);
    expect((await readSimple(c, 0, 4096)).equals(INITIAL.subarray(0, 4096))).toBe(true);
    c.destroy();
  });

  it('22: FLUSH with offset or length is EINVAL; unadvertised commands are EINVAL', async () => {
    const c = await RawClient.open(rw.socket);
    expect(await errorOf(c, request(CMD.FLUSH, { offset: 512 }))).toBe(ERR.EINVAL);
    expect(await errorOf(c, request(CMD.FLUSH, { length: 512 }))).toBe(ERR.EINVAL);
    expect(await errorOf(c, request(CMD.FLUSH))).toBe(0);
    const r = await RawClient.open(ro.socket);
    expect(r.flags & (1 << 2)).toBe(0);
    expect(await errorOf(r, request(CMD.FLUSH))).toBe(ERR.EINVAL);
    expect(await errorOf(c, request(CMD.WRITE_ZEROES, { flags: FLAG.FAST_ZERO | FLAG.NO_HOLE, offset: 0, length: 4096 }))).toBe(ERR.ENOTSUP);
    c.destroy();
    r.destroy();
  });

  it('23: BLOCK_STATUS needs a context; with one: one chunk, nonzero lengths, REQ_ONE respected', async () => {
    const plain = await RawClient.open(rw.socket);
    expect(await errorOf(plain, request(CMD.BLOCK_STATUS, { length: 4096 }))).toBe(ERR.EINVAL);
    const c = await RawClient.open(rw.socket, { meta: true });
    c.send(request(CMD.BLOCK_STATUS, { cookie: 5, offset: 4096, length: 1 * MiB }));
    const chunk = await c.readChunk();
    expect(chunk).toMatchObject({ flags: 1, type: 5, cookie: 5n });
    expect(chunk.payload.readUInt32BE(0)).toBe(1);
    const extents = [];
    for (let at = 4; at < chunk.payload.length; at += 8) extents.push(chunk.payload.readUInt32BE(at));
    expect(extents.length).toBeGreaterThan(0);
    expect(extents.every((l) => l > 0)).toBe(true);
    c.send(request(CMD.BLOCK_STATUS, { cookie: 6, flags: FLAG.REQ_ONE, offset: 0, length: 8192 }));
    const one = await c.readChunk();
    expect(one.payload.length).toBe(12);
    expect(one.payload.readUInt32BE(4)).toBeLessThanOrEqual(8192);
    plain.destroy();
    c.destroy();
  });

  it('24: structured READ is one OFFSET_DATA chunk with DONE; errors are ERROR chunks', async () => {
    const c = await RawClient.open(rw.socket, { structured: true });
    expect(c.flags & (1 << 7)).not.toBe(0); // SEND_DF with structured replies
    c.send(request(CMD.READ, { cookie: 11, flags: FLAG.DF, offset: 1000, length: 5000 }));
    const data = await c.readChunk();
    expect(data).toMatchObject({ flags: 1, type: 1, cookie: 11n });
    expect(Number(data.payload.readBigUInt64BE(0))).toBe(1000);
    expect(data.payload.subarray(8).equals(INITIAL.subarray(1000, 6000))).toBe(true);
    c.send(request(CMD.READ, { cookie: 12, offset: SIZE, length: 512 }));
    const err = await c.readChunk();
    expect(err).toMatchObject({ flags: 1, type: 0x8001, cookie: 12n });
    expect(err.payload.readUInt32BE(0)).toBe(ERR.EINVAL);
    expect(err.payload.length).toBe(6 + err.payload.readUInt16BE(4));
    c.destroy();
  });

  it('25: zero-length READ, WRITE and TRIM are answered without a disconnect', async () => {
    const c = await RawClient.open(rw.socket);
    for (const type of [CMD.READ, CMD.WRITE, CMD.TRIM]) {
      expect(await errorOf(c, request(type, { offset: 0, length: 0 }))).toBe(ERR.EINVAL);
    }
    expect((await readSimple(c, 0, 16)).equals(INITIAL.subarray(0, 16))).toBe(true);
    c.destroy();
  });

  it('26 + 27: 100 pipelined mixed requests each get exactly one reply with the byte-exact cookie', async () => {
    const c = await RawClient.open(rw.socket);
    const cookies = Array.from({ length: 100 }, (_, i) => (BigInt(i + 1) << 40n) | 0xfedcba98n | (i % 2 === 0 ? 1n << 63n : 0n));
    const base = 16 * MiB;
    const expected = new Map<bigint, { length: number; data?: Buffer }>();
    const frames = cookies.map((cookie, i) => {
      if (i % 3 === 1) {
        const payload = pattern(4096 * (1 + (i % 5)), i);
        expected.set(cookie, { length: 0 });
        return request(CMD.WRITE, { cookie, offset: base + i * 64 * 1024, payload });
      }
      const length = 512 * (1 + (i % 7)) * 16;
      expected.set(cookie, { length, data: INITIAL.subarray(i * 1000, i * 1000 + length) });
      return request(CMD.READ, { cookie, offset: i * 1000, length });
    });
    c.send(Buffer.concat(frames));
    const seen = new Set<bigint>();
    for (let i = 0; i < cookies.length; i++) {
      const r = await c.readSimpleReply();
      expect(r.error).toBe(0);
      expect(seen.has(r.cookie)).toBe(false);
      seen.add(r.cookie);
      const want = expected.get(r.cookie)!;
      expect(want).toBeDefined();
      if (want.length) expect((await c.read(want.length)).equals(want.data!)).toBe(true);
    }
    await untilIdle(rw.proc.pid!); // whatever else the server would send is sent, and here
    expect(c.pending).toBe(0);
    c.destroy();
  });

  it('28: FLUSH and FUA across connections (shared backend, CAN_MULTI_CONN)', async () => {
    const a = await RawClient.open(rw.socket);
    const b = await RawClient.open(rw.socket);
    expect(a.flags & (1 << 8)).not.toBe(0);
    const data = pattern(8192, 77);
    expect(await errorOf(a, request(CMD.WRITE, { offset: 20 * MiB, payload: data }))).toBe(0);
    expect(await errorOf(b, request(CMD.FLUSH))).toBe(0);
    expect((await readSimple(b, 20 * MiB, 8192)).equals(data)).toBe(true);
    const fuaData = pattern(4096, 78);
    expect(await errorOf(b, request(CMD.WRITE, { flags: FLAG.FUA, offset: 21 * MiB, payload: fuaData }))).toBe(0);
    const fd = fs.openSync(image, 'r');
    const onDisk = Buffer.alloc(4096);
    fs.readSync(fd, onDisk, 0, 4096, 21 * MiB);
    fs.closeSync(fd);
    expect(onDisk.equals(fuaData)).toBe(true);
    expect((await readSimple(a, 21 * MiB, 4096)).equals(fuaData)).toBe(true);
    a.destroy();
    b.destroy();
  });

  it('29: DISC with requests in flight: all answered, DISC not, data present after reconnect', async () => {
    const c = await RawClient.open(rw.socket);
    const writes = Array.from({ length: 20 }, (_, i) => request(CMD.WRITE, { cookie: i + 1, offset: 24 * MiB + i * 65536, payload: pattern(65536, i) }));
    c.send(Buffer.concat([...writes, request(CMD.DISC, { cookie: 999 })]));
    const cookies = [];
    for (let i = 0; i < 20; i++) {
      const r = await c.readSimpleReply();
      expect(r.error).toBe(0);
      cookies.push(Number(r.cookie));
    }
    expect(cookies.sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(await c.closedWithin()).toBe(true);
    expect(c.pending).toBe(0);
    const d = await RawClient.open(rw.socket);
    for (let i = 0; i < 20; i += 7) expect((await readSimple(d, 24 * MiB + i * 65536, 65536)).equals(pattern(65536, i))).toBe(true);
    d.destroy();
  });

  it('30: EOF in the middle of a WRITE payload, a header, or with reads in flight: the server stays up', async () => {
    const other = await RawClient.open(rw.socket);
    const c = await RawClient.open(rw.socket);
    c.send(request(CMD.WRITE, { offset: 0, length: 65536 }), Buffer.alloc(1000, 0x42));
    c.end();
    await c.closed;
    const gone = await RawClient.open(rw.socket); // hangs up with 50 reads in flight
    gone.send(Buffer.concat(Array.from({ length: 50 }, (_, i) => request(CMD.READ, { cookie: i, offset: i * MiB, length: MiB }))));
    gone.destroy();
    const half = await RawClient.open(rw.socket); // hangs up in the middle of a request header
    half.send(request(CMD.READ, { length: 512 }).subarray(0, 13));
    half.destroy();
    expect((await readSimple(other, 0, 4096)).equals(INITIAL.subarray(0, 4096))).toBe(true);
    const fresh = await RawClient.open(rw.socket);
    expect((await readSimple(fresh, 0, 512)).equals(INITIAL.subarray(0, 512))).toBe(true);
    other.destroy();
    fresh.destroy();
  });

  it('31: a client that never reads: the server stops reading, memory stays bounded, others keep working', async () => {
    const rssKiB = (): number => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${rw.proc.pid}/status`, 'utf8'))![1]);
    const hog = await RawClient.open(rw.socket);
    hog.socket.pause(); // never read a reply
    const frames = Array.from({ length: 100_000 }, (_, i) => request(CMD.READ, { cookie: i, offset: (i % 60) * MiB, length: MiB }));
    hog.send(Buffer.concat(frames)); // 100 GiB of reads asked for, 2.8 MB of requests
    const bounded = (): void => {
      expect(hog.socket.writableLength).toBeGreaterThan(0); // the server stopped taking requests
      expect(rssKiB()).toBeLessThan(600 * 1024);
    };
    await untilIdle(rw.proc.pid!, bounded); // until the server has taken every request it will take
    bounded();
    const other = await RawClient.open(rw.socket);
    expect((await readSimple(other, 0, 4096)).equals(INITIAL.subarray(0, 4096))).toBe(true);
    hog.destroy();
    other.destroy();
  });

  it('32: kernel-style client: simple replies only, 32 MiB WRITE and READ', async () => {
    const c = await RawClient.open(rw.socket);
    const big = pattern(32 * MiB, 5);
    expect(await errorOf(c, request(CMD.WRITE, { cookie: 0x100000001n, offset: 32 * MiB, payload: big }))).toBe(0);
    expect((await readSimple(c, 32 * MiB, 32 * MiB)).equals(big)).toBe(true);
    expect(await errorOf(c, request(CMD.TRIM, { offset: 32 * MiB, length: 0xfffffe00 }))).toBe(ERR.EINVAL);
    expect(await errorOf(c, request(CMD.TRIM, { offset: 32 * MiB, length: 4096 }))).toBe(0);
    c.destroy();
  });
});
