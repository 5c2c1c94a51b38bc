// NBD_OPT_STARTTLS on the wire (hand-written option bytes, node:tls for the TLS layer) against an
// in-process NbdServer: --tls require refuses everything but STARTTLS and ABORT and leaks no
// export, plaintext sent after STARTTLS is never parsed (CVE-2021-3716), state negotiated before
// TLS does not survive it, and --tls on serves plaintext and TLS clients alike.
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/block/memory-device.ts';
import { staticExports } from '../../src/nbd/exports.ts';
import { NbdServer } from '../../src/nbd/server.ts';
import { loadTls } from '../../src/nbd/tls-credentials.ts';
import { parseTlsSettings } from '../../src/nbd/tls-settings.ts';
import { CMD, OPT, REP, RawClient, goData, metaData, option, request } from '../support/nbd-test-client.ts';
import { makeTempDir } from '../support/serve-process.ts';
import { makeTlsFixtures, type TlsFixtures } from '../support/tls-certs.ts';
import { REP_ERR_TLS_REQD, openTls, startTls, trusting } from '../support/tls-client.ts';

const SIZE = 4 * 1024 * 1024;
const NAME = 'secret-export';
const DF = 1 << 7;
let dir: string;
let certs: TlsFixtures;
const data = Buffer.alloc(SIZE);
for (let i = 0; i < SIZE; i += 4) data.writeUInt32BE(i, i);

interface Served {
  server: NbdServer;
  socket: string;
  logs: string[];
}
const served: Served[] = [];

async function serve(mode: 'on' | 'require', handshakeTimeoutMs = 30_000): Promise<Served> {
  const logs: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(line) });
  const config = loadTls(parseTlsSettings({ tls: mode, tlsCert: certs.server.cert, tlsKey: certs.server.key }))!;
  const exports = staticExports([{ name: NAME, description: 'do not tell', device: new MemoryDevice(SIZE, { data: Buffer.from(data) }) }]);
  const server = new NbdServer({ exports, logger, tls: config, limits: { handshakeTimeoutMs } });
  const socket = path.join(dir, `${mode}-${served.length}.sock`);
  await server.listenUnix(socket);
  const s = { server, socket, logs };
  served.push(s);
  return s;
}

const logged = (s: Served, text: string): string[] => s.logs.filter((l) => l.includes(text));

async function greeted(s: Served): Promise<RawClient> {
  const c = await RawClient.connect(s.socket);
  await c.greet();
  return c;
}

async function readsBack(c: RawClient, offset: number, length: number): Promise<void> {
  c.send(request(CMD.READ, { cookie: 7n, offset, length }));
  expect(await c.readSimpleReply()).toEqual({ error: 0, cookie: 7n });
  expect(Buffer.from(await c.read(length)).equals(data.subarray(offset, offset + length))).toBe(true);
}

let req: Served;
let on: Served;

beforeAll(async () => {
  dir = makeTempDir();
  certs = makeTlsFixtures(path.join(dir, 'certs'));
  req = await serve('require');
  on = await serve('on');
});
afterAll(async () => {
  await Promise.all(served.map((s) => s.server.close()));
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('--tls require', () => {
  it('refuses every option but STARTTLS with ERR_TLS_REQD, names no export, then serves over TLS', async () => {
    const c = await greeted(req);
    const attempts = [
      option(OPT.LIST), option(OPT.INFO, goData(NAME, [1, 2, 3])), option(OPT.INFO, goData('nope')), option(OPT.GO, goData(NAME)),
      option(OPT.STRUCTURED_REPLY), option(OPT.LIST_META, metaData(NAME, [])), option(OPT.SET_META, metaData(NAME, ['base:allocation'])),
      option(0x99, Buffer.alloc(100, 1)), option(0x77, Buffer.alloc(70 * 1024, 2)),
    ];
    for (const bytes of attempts) {
      c.send(bytes);
      const replies = await c.readOptionReplies();
      expect(replies.map((r) => r.type)).toEqual([REP_ERR_TLS_REQD]);
      expect(replies[0].payload.toString()).not.toMatch(/secret|do not tell/);
    }
    expect(logged(req, 'plaintext client refused: TLS is required')).toHaveLength(1);
    const secure = await startTls(c, trusting(certs.ca));
    expect((await secure.go(NAME)).size).toBe(SIZE);
    await readsBack(secure, 4096, 1024 * 1024);
    secure.destroy();
  });

  it('closes at a plaintext EXPORT_NAME (it has no error reply) and acknowledges ABORT', async () => {
    const c = await greeted(req);
    c.send(option(OPT.EXPORT_NAME, Buffer.from(NAME)));
    expect(await c.closedWithin()).toBe(true);
    expect(c.pending).toBe(0);
    expect(logged(req, 'plaintext EXPORT_NAME refused: TLS is required').length).toBeGreaterThan(0);
    const a = await greeted(req);
    a.send(option(OPT.ABORT));
    expect((await a.readOptionReplies()).map((r) => r.type)).toEqual([REP.ACK]);
    expect(await a.closedWithin()).toBe(true);
  });

  it('STARTTLS with data gets ERR_INVALID; a second STARTTLS over TLS gets ERR_INVALID and negotiation goes on', async () => {
    const c = await greeted(req);
    c.send(option(OPT.STARTTLS, Buffer.from('x')));
    expect((await c.readOptionReplies()).map((r) => r.type)).toEqual([REP.ERR_INVALID]);
    const secure = await startTls(c, trusting(certs.ca));
    secure.send(option(OPT.STARTTLS));
    expect((await secure.readOptionReplies()).map((r) => r.type)).toEqual([REP.ERR_INVALID]);
    secure.send(option(OPT.LIST));
    expect((await secure.readOptionReplies()).map((r) => r.type)).toEqual([REP.SERVER, REP.ACK]);
    expect((await secure.go(NAME)).size).toBe(SIZE);
    secure.destroy();
  });

  it('discards plaintext pipelined after STARTTLS: it is never parsed, before or after TLS (CVE-2021-3716)', async () => {
    const c = await greeted(req);
    // One write: STARTTLS, then an injected GO and junk that must not be taken as sent over TLS.
    const injected = Buffer.concat([option(OPT.GO, goData(NAME)), Buffer.from('junk after the option')]);
    c.send(Buffer.concat([option(OPT.STARTTLS), injected]));
    const [ack] = await c.readOptionReplies();
    expect(ack).toMatchObject({ option: OPT.STARTTLS, type: REP.ACK });
    const secure = tls.connect({ ...trusting(certs.ca), socket: c.socket });
    await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    const s = RawClient.over(secure);
    s.send(option(OPT.LIST));
    const replies = await s.readOptionReplies();
    expect(replies.map((r) => [r.option, r.type])).toEqual([[OPT.LIST, REP.SERVER], [OPT.LIST, REP.ACK]]);
    expect(logged(req, `"bytes":${injected.length}`).join()).toMatch(/discarded plaintext the client sent after STARTTLS/);
    s.destroy();
  });

  it('plaintext injected after the ACK goes to the TLS engine and fails the handshake, not to the NBD parser', async () => {
    const c = await greeted(req);
    c.send(option(OPT.STARTTLS));
    expect((await c.readOptionReplies()).map((r) => r.type)).toEqual([REP.ACK]);
    c.send(option(OPT.GO, goData(NAME)));
    expect(await c.closedWithin()).toBe(true);
    expect(logged(req, 'TLS handshake failed').length).toBeGreaterThan(0);
    const again = await openTls(req.socket, NAME, trusting(certs.ca));
    expect(again.size).toBe(SIZE);
    again.destroy();
  });

  it('a client that half-closes during the TLS handshake is dropped at once, not at the timeout', async () => {
    const c = await greeted(req);
    c.send(option(OPT.STARTTLS));
    expect((await c.readOptionReplies()).map((r) => r.type)).toEqual([REP.ACK]);
    c.end();
    expect(await c.closedWithin(2000)).toBe(true);
  });

  it('over TLS, a client that half-closes after a request still gets its reply', async () => {
    const c = await openTls(req.socket, NAME, trusting(certs.ca));
    c.send(request(CMD.READ, { cookie: 9n, offset: 8192, length: 65536 }));
    c.end();
    expect(await c.readSimpleReply()).toEqual({ error: 0, cookie: 9n });
    expect(Buffer.from(await c.read(65536)).equals(data.subarray(8192, 8192 + 65536))).toBe(true);
    expect(await c.closedWithin(2000)).toBe(true);
  });

  it('a client that never starts TLS after the ACK is dropped at the handshake timeout', async () => {
    const quick = await serve('require', 300);
    const c = await greeted(quick);
    c.send(option(OPT.STARTTLS));
    expect((await c.readOptionReplies()).map((r) => r.type)).toEqual([REP.ACK]);
    expect(await c.closedWithin(3000)).toBe(true);
    expect(logged(quick, 'handshake timed out')).toHaveLength(1);
  });
});

describe('--tls on', () => {
  it('serves a plaintext client as before', async () => {
    const c = await RawClient.open(on.socket, { name: NAME });
    expect(c.size).toBe(SIZE);
    await readsBack(c, 0, 64 * 1024);
    c.destroy();
  });

  it('forgets STRUCTURED_REPLY and SET_META_CONTEXT negotiated before STARTTLS', async () => {
    const c = await greeted(on);
    c.send(option(OPT.STRUCTURED_REPLY));
    expect((await c.readOptionReplies()).map((r) => r.type)).toEqual([REP.ACK]);
    c.send(option(OPT.SET_META, metaData(NAME, ['base:allocation'])));
    expect((await c.readOptionReplies()).map((r) => r.type)).toEqual([REP.META_CONTEXT, REP.ACK]);
    const secure = await startTls(c, trusting(certs.ca));
    secure.send(option(OPT.SET_META, metaData(NAME, ['base:allocation'])));
    expect((await secure.readOptionReplies()).map((r) => r.type)).toEqual([REP.ERR_INVALID]); // structured replies are gone
    const { flags } = await secure.go(NAME);
    expect(flags & DF).toBe(0); // DF is advertised only with structured replies
    await readsBack(secure, SIZE - 8192, 8192); // a simple reply: structured replies are off
    secure.destroy();
  });

  it('logs the TLS parameters of each upgraded connection', () => {
    const established = logged(on, 'TLS established').map((l) => JSON.parse(l) as { protocol: string; cipher: string });
    expect(established.length).toBeGreaterThan(0);
    expect(established[0].protocol).toBe('TLSv1.3');
  });
});
