// Live-restart handover of the NBD server: connections paused by one NbdServer (pauseForHandover)
// are adopted by a second one in a child process over the same image file, as a successor daemon
// does. Every request is answered exactly once, by one of the two, with the right data; a WRITE
// whose payload is arriving when the pause starts is read whole first; pipelined requests not
// parsed yet are answered by the successor; a failed handover resumes on the old server.
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileDevice } from '../../src/block/file-device.ts';
import { staticExports } from '../../src/nbd/exports.ts';
import { NbdServer } from '../../src/nbd/server.ts';
import { CMD, RawClient, request } from '../support/nbd-test-client.ts';

const SIZE = 4 * 1024 * 1024;
const dirs: string[] = [];
const servers: NbdServer[] = [];
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  for (const s of servers.splice(0)) await s.close(true);
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

interface Setup {
  device: FileDevice;
  old: NbdServer;
  socket: string;
  image: string;
}

async function setup(): Promise<Setup> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nbd-handover-'));
  dirs.push(dir);
  const image = path.join(dir, 'disk.img');
  fs.writeFileSync(image, Buffer.alloc(SIZE));
  const device = FileDevice.open(image);
  const old = new NbdServer({ exports: staticExports([{ name: 'disk', device }]) });
  servers.push(old);
  const socket = path.join(dir, 'nbd.sock');
  await old.listenUnix(socket);
  return { device, old, socket, image };
}

/** The stand-in successor (test/support/handover-child.ts), once it has loaded. */
async function successor(image: string): Promise<{ adopt(h: Awaited<ReturnType<NbdServer['pauseForHandover']>>): Promise<void> }> {
  const child = fork(path.resolve(import.meta.dirname, '../support/handover-child.ts'), [image], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(child);
  const next = () => new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`handover child exited (${code})`)));
  });
  await next();
  return {
    async adopt(h) {
      for (const c of h.connections) {
        const acked = next();
        child.send({ type: 'connection', state: c.state, rest: c.rest.toString('base64') }, c.handle as never, { keepOpen: true });
        await acked;
      }
    },
  };
}

/** Hand every connection of `s.old` to a successor process. */
async function handOver(s: Setup): Promise<number> {
  const next = await successor(s.image);
  const h = await s.old.pauseForHandover(1000);
  await s.device.close(); // as the daemon closes its stores
  await next.adopt(h);
  return h.connections.length;
}

const fill = (n: number, byte: number): Buffer => Buffer.alloc(n, byte);

/** White box: the request reader of the server's only connection. */
function readerOf(server: NbdServer): { partial: boolean } | undefined {
  const conns = (server as unknown as { connections: Set<{ session?: { reader: { partial: boolean } } }> }).connections;
  return [...conns][0]?.session?.reader;
}

async function until(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('NBD connection handover', () => {
  it('answers pipelined requests exactly once across the handover, none lost', async () => {
    const s = await setup();
    const c = await RawClient.open(s.socket, { name: 'disk' });
    // 64 writes in flight and queued, then the handover, then 64 more.
    for (let i = 0; i < 64; i++) c.send(request(CMD.WRITE, { cookie: i, offset: i * 4096, length: 4096, payload: fill(4096, i + 1) }));
    expect(await handOver(s)).toBe(1);
    for (let i = 64; i < 128; i++) c.send(request(CMD.WRITE, { cookie: i, offset: i * 4096, length: 4096, payload: fill(4096, i + 1) }));
    const seen = new Set<bigint>();
    for (let i = 0; i < 128; i++) {
      const r = await c.readSimpleReply();
      expect(r.error).toBe(0);
      expect(seen.has(r.cookie)).toBe(false);
      seen.add(r.cookie);
    }
    expect(seen.size).toBe(128);
    c.send(request(CMD.READ, { cookie: 999, offset: 0, length: 128 * 4096 }));
    expect((await c.readSimpleReply()).error).toBe(0);
    const data = await c.read(128 * 4096);
    for (let i = 0; i < 128; i++) expect(data.subarray(i * 4096, (i + 1) * 4096).equals(fill(4096, i + 1))).toBe(true);
    expect(fs.readFileSync(s.image).subarray(127 * 4096, 128 * 4096).equals(fill(4096, 128))).toBe(true);
  });

  it('pauses only at a request boundary: a WRITE with its payload arriving is read whole, what follows is handed over', async () => {
    const s = await setup();
    const c = await RawClient.open(s.socket, { name: 'disk' });
    const next = await successor(s.image);
    const payload = fill(1024 * 1024, 0x5a);
    const write = request(CMD.WRITE, { cookie: 1, offset: 0, length: payload.length, payload });
    const flush = request(CMD.FLUSH, { cookie: 2 });
    c.send(write.subarray(0, 28 + 1000)); // the header and the start of the payload
    await until(() => readerOf(s.old)?.partial === true); // the server has the header
    const paused = s.old.pauseForHandover(1000);
    c.send(Buffer.concat([write.subarray(28 + 1000), flush]));
    const h = await paused;
    expect(h.connections).toHaveLength(1);
    // The old server read the WRITE whole and answered it; the FLUSH, read with the payload's
    // last bytes (or still in the kernel's buffer), is the successor's.
    expect(await c.readSimpleReply()).toEqual({ error: 0, cookie: 1n });
    const rest = h.connections[0].rest;
    expect(rest.length === 0 || rest.equals(flush)).toBe(true);
    await s.device.close();
    await next.adopt(h);
    expect(await c.readSimpleReply()).toEqual({ error: 0, cookie: 2n });
    c.send(request(CMD.READ, { cookie: 3, offset: payload.length - 8, length: 8 }));
    expect(await c.readSimpleReply()).toEqual({ error: 0, cookie: 3n });
    expect((await c.read(8)).equals(fill(8, 0x5a))).toBe(true);
  });

  it('resumes on the old server when the handover is abandoned, with the unparsed bytes put back', async () => {
    const { old, socket } = await setup();
    const c = await RawClient.open(socket, { name: 'disk' });
    const h = await old.pauseForHandover(1000);
    expect(h.connections).toHaveLength(1);
    c.send(request(CMD.WRITE, { cookie: 5, offset: 8192, length: 4096, payload: fill(4096, 7) }));
    const late = await RawClient.connect(socket); // accepted while held: not read until resumed
    old.resumeAfterHandover(h.fresh);
    expect(await c.readSimpleReply()).toEqual({ error: 0, cookie: 5n });
    c.send(request(CMD.READ, { cookie: 6, offset: 8192, length: 4096 }));
    expect(await c.readSimpleReply()).toEqual({ error: 0, cookie: 6n });
    expect((await c.read(4096)).equals(fill(4096, 7))).toBe(true);
    expect((await late.greet()).length).toBeGreaterThan(0);
  });

  it('keeps the negotiated state: structured replies go on after the handover', async () => {
    const s = await setup();
    const c = await RawClient.open(s.socket, { name: 'disk', structured: true });
    expect(await handOver(s)).toBe(1);
    c.send(request(CMD.READ, { cookie: 3, offset: 0, length: 512 }));
    const chunk = await c.readChunk();
    expect(chunk.cookie).toBe(3n);
    expect(chunk.type).not.toBe(0); // a structured chunk, not a simple reply
  });
});
