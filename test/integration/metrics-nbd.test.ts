// The NBD server's metrics hooks (nbd/session.ts RequestStats, NbdObserver) with the counters of
// metrics/request-stats.ts, against an in-process server driven by hand-written request bytes:
// what each command counts, what a refused request counts, and each limit's hit.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/block/memory-device.ts';
import type { NbdLimits } from '../../src/nbd/limits.ts';
import { staticExports } from '../../src/nbd/exports.ts';
import { NbdServer } from '../../src/nbd/server.ts';
import { NbdStats } from '../../src/metrics/request-stats.ts';
import { CMD, ERR, RawClient, request } from '../support/nbd-test-client.ts';
import { waitFor } from '../support/wait-for.ts';

const MiB = 1024 * 1024;
let cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn();
  cleanup = [];
});

/** A memory device whose writes wait until release() (requests stay in flight). */
class HeldDevice extends MemoryDevice {
  private held = Promise.withResolvers<void>();
  override async write(buf: Uint8Array, offset: number): Promise<void> {
    await this.held.promise;
    return super.write(buf, offset);
  }
  release(): void {
    this.held.resolve();
  }
}

async function serve(device: MemoryDevice, limits: Partial<NbdLimits> = {}): Promise<{ socket: string; stats: NbdStats }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'metrics-nbd-'));
  const stats = new NbdStats();
  const server = new NbdServer({ exports: staticExports([{ name: 'disk', device }]), limits, observer: stats });
  const socket = path.join(dir, 'nbd.sock');
  await server.listenUnix(socket);
  cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }), () => server.close());
  return { socket, stats };
}

async function reply(c: RawClient, req: Buffer): Promise<number> {
  c.send(req);
  return (await c.readSimpleReply()).error;
}

describe('metrics: NBD request counters', () => {
  it('counts requests, bytes, errors and latency by command, and connections, per export', async () => {
    const { socket, stats } = await serve(new MemoryDevice(4 * MiB));
    const c = await RawClient.open(socket, { name: 'disk' });
    expect(await reply(c, request(CMD.WRITE, { offset: 4096, payload: Buffer.alloc(12288, 7) }))).toBe(0);
    expect(await reply(c, request(CMD.READ, { offset: 0, length: 8192 }))).toBe(0);
    await c.read(8192);
    expect(await reply(c, request(CMD.FLUSH))).toBe(0);
    expect(await reply(c, request(CMD.READ, { offset: 4 * MiB, length: 512 }))).toBe(ERR.EINVAL); // past the end: refused
    expect(await reply(c, request(42))).toBe(ERR.EINVAL); // unknown command
    const s = stats.forExport('disk');
    expect({ connections: s.connections, read: s.requests[CMD.READ], write: s.requests[CMD.WRITE], flush: s.requests[CMD.FLUSH] })
      .toEqual({ connections: 1, read: 2, write: 1, flush: 1 });
    expect({ readBytes: s.bytes[CMD.READ], writeBytes: s.bytes[CMD.WRITE], readErrors: s.errors[CMD.READ], writeErrors: s.errors[CMD.WRITE] })
      .toEqual({ readBytes: 8192, writeBytes: 12288, readErrors: 1, writeErrors: 0 });
    // Refused requests never ran: counted, but no latency observed.
    expect(s.latency[CMD.READ].count).toBe(1);
    expect(s.latency[CMD.WRITE].count).toBe(1);
    expect(s.latency[CMD.READ].sumMs).toBeGreaterThan(0);
    expect(s.requests[s.requests.length - 1]).toBe(1); // the unknown command, as 'other'
    c.destroy();
  });
});

describe('metrics: NBD limits hit', () => {
  it('connections: refused at accept beyond maxConnections', async () => {
    const { socket, stats } = await serve(new MemoryDevice(MiB), { maxConnections: 1 });
    const first = await RawClient.open(socket, { name: 'disk' });
    const second = await RawClient.connect(socket);
    expect(await second.closedWithin()).toBe(true);
    expect(stats.limitHits.connections).toBe(1);
    first.destroy();
  });

  it('handshake_timeout: a client that never negotiates', async () => {
    const { socket, stats } = await serve(new MemoryDevice(MiB), { handshakeTimeoutMs: 100 });
    const c = await RawClient.connect(socket);
    expect(await c.closedWithin()).toBe(true);
    expect(stats.limitHits.handshake_timeout).toBe(1);
  });

  it('inflight_requests: a connection pauses reading while maxInflightRequests are in flight', async () => {
    const device = new HeldDevice(MiB);
    const { socket, stats } = await serve(device, { maxInflightRequests: 2 });
    const c = await RawClient.open(socket, { name: 'disk' });
    c.send(...[1, 2, 3, 4].map((cookie) => request(CMD.WRITE, { cookie, offset: cookie * 4096, payload: Buffer.alloc(4096, cookie) })));
    await waitFor(() => stats.limitHits.inflight_requests > 0, 'the in-flight request limit to be hit');
    device.release();
    for (let i = 0; i < 4; i++) expect((await c.readSimpleReply()).error).toBe(0);
    expect(stats.forExport('disk').requests[CMD.WRITE]).toBe(4);
    expect(stats.limitHits.inflight_bytes + stats.limitHits.server_inflight_bytes + stats.limitHits.connections).toBe(0);
    c.destroy();
  });

  it('inflight_bytes: a connection pauses reading while maxInflightBytes are in flight', async () => {
    const device = new HeldDevice(MiB);
    const { socket, stats } = await serve(device, { maxInflightBytes: 64 * 1024 });
    const c = await RawClient.open(socket, { name: 'disk' });
    c.send(...[0, 1, 2].map((i) => request(CMD.WRITE, { cookie: i, offset: i * 65536, payload: Buffer.alloc(65536, i) })));
    await waitFor(() => stats.limitHits.inflight_bytes > 0, 'the in-flight bytes limit to be hit');
    device.release();
    for (let i = 0; i < 3; i++) expect((await c.readSimpleReply()).error).toBe(0);
    c.destroy();
  });

  it('server_inflight_bytes: a connection holding bytes pauses while the server-wide budget is used up', async () => {
    const device = new HeldDevice(MiB);
    const { socket, stats } = await serve(device, { maxServerInflightBytes: 64 * 1024 });
    const c = await RawClient.open(socket, { name: 'disk' });
    c.send(...[0, 1].map((i) => request(CMD.WRITE, { cookie: i, offset: i * 65536, payload: Buffer.alloc(65536, i) })));
    await waitFor(() => stats.limitHits.server_inflight_bytes > 0, 'the server-wide in-flight limit to be hit');
    device.release();
    for (let i = 0; i < 2; i++) expect((await c.readSimpleReply()).error).toBe(0);
    c.destroy();
  });

  it('send_buffer: a client that does not read its replies stops the reading of its requests', async () => {
    const { socket, stats } = await serve(new MemoryDevice(8 * MiB), { maxInflightBytes: MiB });
    const c = await RawClient.open(socket, { name: 'disk' });
    c.socket.pause();
    // One at a time, so that no other limit pauses the connection first.
    for (let i = 0; i < 16 && stats.limitHits.send_buffer === 0; i++) {
      c.send(request(CMD.READ, { cookie: i, offset: i * 512 * 1024, length: 512 * 1024 }));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await waitFor(() => stats.limitHits.send_buffer > 0, 'the send-buffer limit to be hit');
    c.destroy();
  });
});
