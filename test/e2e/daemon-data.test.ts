// Data through the daemon's exports with real NBD clients (qemu-io, nbdcopy, nbdinfo): the
// snapshot shows the point in time, and after a SIGTERM or a SIGKILL and a restart every export
// is back with the same content.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { model, readExport, startDaemon, tempDir, writePattern, type DaemonHandle } from '../support/daemon-harness.ts';

const MiB = 1 << 20;
const SIZE = 8 * MiB;

let dir: string;
let d: DaemonHandle;
/** What each export must read back as. */
const expected: Record<string, Buffer> = {};

async function writeBoth(name: string, offset: number, length: number, byte: number, alsoIn: string[] = []) {
  await writePattern(d, name, offset, length, byte);
  for (const n of [name, ...alsoIn]) expected[n].fill(byte, offset, offset + length);
}

async function expectContents(names: string[]) {
  for (const name of names) {
    const got = await readExport(d, name);
    expect(got.length, name).toBe(SIZE);
    expect(got.equals(expected[name]), `content of ${name}`).toBe(true);
  }
}

beforeAll(async () => {
  dir = tempDir();
  fs.writeFileSync(path.join(dir, 'base.img'), model(SIZE, [[0, SIZE, 0x11]]));
  fs.writeFileSync(path.join(dir, 'po1.cow'), Buffer.alloc(2 * MiB));
  d = await startDaemon(dir, { args: ['--listen', '127.0.0.1:0'] });
});
afterAll(async () => {
  await d?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('data through the exports', () => {
  it('serves the point in time on each snapshot while the origin moves on', async () => {
    await d.ok('origin', 'add', 'base', path.join(dir, 'base.img'));
    expected.base = model(SIZE, [[0, SIZE, 0x11]]);
    await d.ok('snapshot', 'create', 'p1', '--origin', 'base', '--size', '4M');
    await d.ok('snapshot', 'create', 'po1', '--origin', 'base', '--cow', path.join(dir, 'po1.cow'), '--persistent', 'PO', '--chunk-size', '16');
    await d.ok('snapshot', 'create', 'n1', '--origin', 'base', '--size', '2M', '--persistent', 'N');
    for (const n of ['p1', 'po1', 'n1']) expected[n] = Buffer.from(expected.base);

    await writeBoth('base', 0, MiB, 0x22);
    await writeBoth('base', 3 * MiB + 4096, 8192, 0x23);
    await writeBoth('p1', 2 * MiB, 65536, 0x33);
    await writeBoth('po1', 5 * MiB + 512, 1024, 0x44);
    await d.ok('snapshot', 'create', 'p2', '--origin', 'base', '--size', '4M', '--chunk-size', '32');
    expected.p2 = Buffer.from(expected.base);
    await writeBoth('base', 6 * MiB, 4096, 0x55);
    await expectContents(['base', 'p1', 'po1', 'n1', 'p2']);

    const p1 = (await d.ok('snapshot', 'list', '--json')).find((s: { name: string }) => s.name === 'p1');
    expect(p1.allocatedSectors).toBeGreaterThan(p1.metadataSectors);
    expect(p1.dataPercent).toBeGreaterThan(0);
    expect(await d.ok('status', 'p1')).toMatch(new RegExp(`^p1: 0 16384 snapshot ${p1.allocatedSectors}/8192 ${p1.metadataSectors}\\n$`));
  });

  it('also serves over TCP on loopback when asked', async () => {
    const info = spawnSync('nbdinfo', ['--size', `nbd://127.0.0.1:${await tcpPort()}/p1`], { encoding: 'utf8' });
    expect(info.stdout.trim()).toBe(String(SIZE));
  });

  it('comes back with the same content after SIGTERM', async () => {
    expect(await d.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(fs.existsSync(d.control)).toBe(false);
    expect(fs.existsSync(d.nbdSocket)).toBe(false);
    d = await startDaemon(dir);
    await expectContents(['base', 'p1', 'po1', 'p2']);
    const n1 = (await d.ok('snapshot', 'list', '--json')).find((s: { name: string }) => s.name === 'n1');
    expect(n1).toMatchObject({ state: 'failed', error: expect.stringMatching(/transient \(N\) snapshot does not survive/) });
    expect(await d.ok('status', 'n1')).toBe('n1: 0 16384 snapshot Failed\n');
    expect((await readExport(d, 'n1').catch((err: Error) => err)) instanceof Error).toBe(true);
    await d.ok('snapshot', 'remove', 'n1');
  });

  it('comes back with the same content after SIGKILL', async () => {
    await writeBoth('base', 7 * MiB, 65536, 0x66);
    await writeBoth('p2', 0, 4096, 0x77);
    expect((await d.stop('SIGKILL')).signal).toBe('SIGKILL');
    expect(fs.existsSync(d.control)).toBe(true); // stale: the next start removes it
    d = await startDaemon(dir);
    await expectContents(['base', 'p1', 'po1', 'p2']);
    expect((await d.ok('snapshot', 'list', '--json')).map((s: { name: string; state: string }) => `${s.name}:${s.state}`)).toEqual(['p1:active', 'po1:active', 'p2:active']);
  });
});

async function tcpPort(): Promise<number> {
  const { callDaemon } = await import('../../src/control/client.ts');
  const info = await callDaemon(d.control, { op: 'daemon.info' });
  expect(info.tcp?.host).toBe('127.0.0.1');
  return info.tcp!.port;
}
