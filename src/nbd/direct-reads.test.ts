// Direct reads on a real accepted socket: the bytes of a large "payload" must land in the buffer
// the sink offers (most of them without passing through the queue), the rest in slab slices, with
// nothing lost or reordered, and pause/resume and end-of-stream must work as with 'data' events.
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { enableDirectReads, readsDirect, type DirectReadSink } from './direct-reads.ts';

const HEADER = 16;
const PAYLOAD = 4 << 20;

let cleanup: (() => void)[] = [];
afterEach(() => {
  for (const fn of cleanup.splice(0)) fn();
});

/** A connected pair over a Unix socket: [client, accepted server-side socket]. */
async function connectedPair(): Promise<[net.Socket, net.Socket]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'direct-reads-'));
  const sock = path.join(dir, 's.sock');
  const server = net.createServer({ pauseOnConnect: true });
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect(sock);
  const serverSide = await accepted;
  cleanup.push(() => {
    client.destroy();
    serverSide.destroy();
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return [client, serverSide];
}

/** Parses "16-byte header, then PAYLOAD bytes", like RequestReader: a target once the header is in. */
class Parser implements DirectReadSink {
  readonly header = Buffer.alloc(HEADER);
  readonly payload = Buffer.alloc(PAYLOAD);
  headerFill = 0;
  payloadFill = 0;
  direct = 0;
  queued = 0;
  done: () => void = () => {};
  /** Called once, when the first payload bytes are in (inside the read callback, as the server pauses). */
  started: () => void = () => {};

  payloadTarget(): Uint8Array | undefined {
    return this.headerFill === HEADER && this.payloadFill < PAYLOAD ? this.payload.subarray(this.payloadFill) : undefined;
  }

  payloadReceived(n: number): void {
    this.direct += n;
    this.advance(n);
  }

  received(chunk: Buffer): void {
    this.queued += chunk.length;
    let at = 0;
    const h = Math.min(HEADER - this.headerFill, chunk.length);
    chunk.copy(this.header, this.headerFill, 0, h);
    this.headerFill += h;
    at += h;
    const p = Math.min(PAYLOAD - this.payloadFill, chunk.length - at);
    chunk.copy(this.payload, this.payloadFill, at, at + p);
    this.advance(p);
  }

  private advance(n: number): void {
    if (this.payloadFill === 0 && n > 0) this.started();
    this.payloadFill += n;
    if (this.payloadFill === PAYLOAD) this.done();
  }
}

describe('enableDirectReads', () => {
  it('switches an accepted socket on this Node (the server depends on it for large writes)', async () => {
    const [, serverSide] = await connectedPair();
    expect(readsDirect(serverSide)).toBe(false);
    expect(enableDirectReads(serverSide, new Parser())).toBe(true);
    expect(readsDirect(serverSide)).toBe(true);
  });

  it('reads a large payload into the offered buffer, the header into slab slices, and ends', async () => {
    const [client, serverSide] = await connectedPair();
    const parser = new Parser();
    const finished = new Promise<void>((resolve) => (parser.done = resolve));
    const ended = new Promise<void>((resolve) => serverSide.on('end', resolve));
    expect(enableDirectReads(serverSide, parser)).toBe(true);
    serverSide.resume();
    const header = Buffer.alloc(HEADER, 0xab);
    const payload = Buffer.from(Array.from({ length: PAYLOAD }, (_, i) => (i * 31 + (i >> 12)) & 0xff));
    client.write(header);
    client.end(payload);
    await finished;
    await ended;
    expect(parser.header.equals(header)).toBe(true);
    expect(parser.payload.equals(payload)).toBe(true);
    expect(parser.direct + parser.queued).toBe(HEADER + PAYLOAD);
    // The header may share its read with the payload's first bytes; everything after goes direct.
    expect(parser.direct).toBeGreaterThan(PAYLOAD / 2);
  });

  it('stops reading while paused and goes on after resume', async () => {
    const [client, serverSide] = await connectedPair();
    const parser = new Parser();
    const finished = new Promise<void>((resolve) => (parser.done = resolve));
    expect(enableDirectReads(serverSide, parser)).toBe(true);
    const handle = (serverSide as unknown as { _handle: { reading: boolean } })._handle;
    serverSide.resume();
    const payload = Buffer.alloc(PAYLOAD, 0x5a);
    const paused = new Promise<void>((resolve) => {
      parser.started = () => {
        serverSide.pause();
        resolve();
      };
    });
    client.write(Buffer.alloc(HEADER));
    client.write(payload);
    await paused;
    expect(serverSide.isPaused()).toBe(true);
    expect(handle.reading).toBe(false);
    const seen = parser.payloadFill;
    expect(seen).toBeLessThan(PAYLOAD); // the rest waits in the kernel and in the client
    // Nothing reaches the parser until resume, however many loop turns pass.
    for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve));
    expect(parser.payloadFill).toBe(seen);
    serverSide.resume();
    await finished;
    expect(parser.payload.equals(payload)).toBe(true);
  });
});
