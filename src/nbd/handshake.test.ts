// The handshake fed at every split point must answer identically; plus the in-process server
// API that the daemon uses (connectionCount, disconnectExport, close).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../block/memory-device.ts';
import { silentLogger } from '../log.ts';
import { ByteQueue } from './byte-queue.ts';
import { staticExports } from './exports.ts';
import { negotiate, type Negotiated } from './handshake.ts';
import { resolveLimits } from './limits.ts';
import { NbdServer } from './server.ts';
import { CMD, OPT, RawClient, goData, metaData, option, request, u32 } from '../../test/support/nbd-test-client.ts';

/** Reads take 100 ms, so a request is surely in flight when the test acts. */
class SlowDevice extends MemoryDevice {
  override async read(buf: Uint8Array, offset: number): Promise<void> {
    await new Promise((r) => setTimeout(r, 100));
    return super.read(buf, offset);
  }
}
const device = new SlowDevice(1 << 20);
const exports = staticExports([{ name: 'disk', device, description: 'a test disk' }]);
const clientBytes = Buffer.concat([
  u32(3),
  option(OPT.STRUCTURED_REPLY),
  option(OPT.SET_META, metaData('disk', ['base:allocation'])),
  option(77, Buffer.from('junk')),
  option(OPT.INFO, goData('disk', [2, 3])),
  option(OPT.GO, goData('disk', [])),
]);

async function run(pieces: Buffer[]): Promise<{ out: Buffer; result: Negotiated | undefined }> {
  const queue = new ByteQueue();
  const sent: Buffer[] = [];
  const done = negotiate({ queue, send: (b) => sent.push(b), exports, limits: resolveLimits(), logger: silentLogger(), shuttingDown: () => false });
  for (const piece of pieces) {
    await Promise.resolve();
    queue.push(piece);
  }
  const result = await done;
  return { out: Buffer.concat(sent), result };
}

describe('negotiate', () => {
  it('gives the same answers and result at every split point', async () => {
    const whole = await run([clientBytes]);
    expect(whole.result).toMatchObject({ exportName: 'disk', size: 1 << 20, structured: true, metaContexts: [{ id: 1, name: 'base:allocation' }] });
    for (let cut = 0; cut <= clientBytes.length; cut++) {
      const split = await run([clientBytes.subarray(0, cut), clientBytes.subarray(cut)]);
      expect(split.out.equals(whole.out)).toBe(true);
      expect(split.result).toEqual(whole.result);
    }
  });
});

describe('NbdServer API', () => {
  it('counts transmission connections per export, disconnects an export, and closes', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nbdsrv-'));
    const socket = path.join(dir, 's.sock');
    const server = new NbdServer({ exports, logger: silentLogger() });
    await server.listenUnix(socket);
    expect(fs.statSync(socket).mode & 0o777).toBe(0o600);
    const a = await RawClient.open(socket, { name: 'disk' });
    const b = await RawClient.open(socket, { name: 'disk' });
    const negotiating = await RawClient.connect(socket);
    await negotiating.greet();
    expect(server.connectionCount('disk')).toBe(2);
    expect(server.connectionCount('')).toBe(0);
    a.send(request(CMD.READ, { cookie: 1, length: 4096 }));
    await new Promise((r) => setTimeout(r, 30));
    await server.disconnectExport('disk');
    expect((await a.readSimpleReply()).error).toBe(0);
    expect(await a.closedWithin()).toBe(true);
    expect(await b.closedWithin()).toBe(true);
    expect(server.connectionCount('disk')).toBe(0);
    await server.close();
    expect(fs.existsSync(socket)).toBe(false);
    expect(await negotiating.closedWithin()).toBe(true);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
