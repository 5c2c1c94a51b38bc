// Server-wide limits (issue 7: "limits on connections, in-flight bytes, option sizes"). These
// tests failed when first written (docs/security.md, "Found by the fuzzers") and now guard the
// fixes: LIST raises the option budget once, a connection cap, a server-wide in-flight budget.
// Each test has its own server, so the memory it drives up cannot spill into other tests.
import fs from 'node:fs';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/nbd/limits.ts';
import { NbdEndpoint } from '../support/crash-endpoint.ts';
import { fuzzTempDir, startServeTarget } from '../support/fuzz-nbd-targets.ts';
import { isAlive, openFds, rssMiB, untilIdle } from '../support/fuzz-proc.ts';
import { CMD, OPT, RawClient, option, request } from '../support/nbd-test-client.ts';
import { makeRng } from '../support/prng.ts';
import type { ServeProcess } from '../support/serve-process.ts';

const MiB = 1024 * 1024;
const RSS_LIMIT_MIB = 300;
const MAX_CONNECTIONS = DEFAULT_LIMITS.maxConnections;
let cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn();
  cleanup = [];
});

async function server(): Promise<{ srv: ServeProcess; check(): Promise<void> }> {
  const dir = fuzzTempDir('missing');
  const { srv, target } = await startServeTarget(dir, [], 64 * MiB);
  cleanup.push(async () => {
    await srv.stop('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const check = async (): Promise<void> => {
    expect(isAlive(srv.proc.pid!)).toBe(true);
    const fresh = await NbdEndpoint.open(srv.socket, 'fuzz');
    expect(await target.fuzzed.model.verify(fresh, makeRng(1), 3)).toBeUndefined();
    fresh.close();
  };
  return { srv, check };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('server-wide limits', () => {
  it('LIST raises the option cap only once: a LIST flood that never reads is cut off with RSS < 300 MiB', async () => {
    const { srv, check } = await server();
    const c = await RawClient.connect(srv.socket);
    await c.greet();
    c.socket.pause(); // never read the replies
    const lists = Buffer.concat(Array.from({ length: 5000 }, () => option(OPT.LIST)));
    let peak = 0;
    for (const started = Date.now(); Date.now() - started < 3000 && !c.socket.destroyed;) {
      if (!c.socket.write(lists)) await Promise.race([new Promise((r) => c.socket.once('drain', r)), sleep(200)]);
      peak = Math.max(peak, rssMiB(srv.proc.pid!));
    }
    const closedByServer = await c.closedWithin(15_000); // a bound for a loaded machine
    c.destroy();
    expect({ closedByServer, peakBelowLimit: peak < RSS_LIMIT_MIB }, `peak RSS ${peak.toFixed(0)} MiB`).toEqual({ closedByServer: true, peakBelowLimit: true });
    await check();
  });

  it(`connection cap: at most ${MAX_CONNECTIONS} simultaneous connections are kept open`, async () => {
    const { srv, check } = await server();
    const sockets: net.Socket[] = [];
    const handled: Promise<unknown>[] = []; // greeted (kept) or closed (over the cap) by the server
    cleanup.push(async () => sockets.forEach((s) => s.destroy()));
    for (let wave = 0; wave < (MAX_CONNECTIONS + 200) / 100; wave++) {
      // In waves, so the listen backlog (EAGAIN on a full Unix socket queue) is never the limit.
      const batch = Array.from({ length: 100 }, () => net.connect(srv.socket).on('error', () => {}));
      sockets.push(...batch);
      handled.push(...batch.map((s) => new Promise((r) => s.once('data', r).once('close', r))));
      await Promise.all(batch.map((s) => new Promise((r) => s.once('connect', r).once('close', r))));
    }
    await Promise.all(handled);
    const fds = openFds(srv.proc.pid!);
    for (const s of sockets) s.destroy();
    expect(fds, 'file descriptors held by the server').toBeLessThan(MAX_CONNECTIONS + 50);
    await untilIdle(srv.proc.pid!); // the server has closed its side of every connection
    await check();
  });

  it('server-wide in-flight budget: 4 clients that never read their READ replies keep RSS < 300 MiB', async () => {
    const { srv, check } = await server();
    const hogs: RawClient[] = [];
    for (let h = 0; h < 4; h++) {
      const hog = await RawClient.open(srv.socket, { name: 'fuzz' });
      hog.socket.pause();
      hog.send(Buffer.concat(Array.from({ length: 1000 }, (_, i) => request(CMD.READ, { cookie: i, offset: (i % 60) * MiB, length: MiB }))));
      hogs.push(hog);
    }
    cleanup.push(async () => hogs.forEach((h) => h.destroy()));
    const limit = (): void => expect(rssMiB(srv.proc.pid!), 'server RSS (MiB) with 4 non-reading clients').toBeLessThan(RSS_LIMIT_MIB);
    await untilIdle(srv.proc.pid!, limit); // until the server has taken all it will take
    const rss = rssMiB(srv.proc.pid!);
    for (const h of hogs) h.destroy();
    expect(rss, 'server RSS (MiB) with 4 non-reading clients').toBeLessThan(RSS_LIMIT_MIB);
    await check();
  });
});
