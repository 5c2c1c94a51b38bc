// I/O faults seen by real NBD clients: the targets over FaultDevices and file-backed COWs, served
// in-process by NbdServer, driven by qemu-io (which prints the NBD error) and by the pipelined
// test client (which shows the errno on the wire). Every client run has a time bound, so a hang
// fails the test instead of stalling it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileDevice } from '../../src/block/file-device.ts';
import { NbdServer } from '../../src/nbd/server.ts';
import { staticExports } from '../../src/nbd/exports.ts';
import { openStore } from '../../src/store/open-store.ts';
import type { StoreKind } from '../../src/store/exception-store.ts';
import { SnapshotOrigin } from '../../src/targets/snapshot-origin.ts';
import type { Snapshot } from '../../src/targets/snapshot.ts';
import type { BlockDevice } from '../../src/block/device.ts';
import { run } from '../support/exec.ts';
import { NbdEndpoint, NbdReplyError } from '../support/crash-endpoint.ts';
import { CHUNK, CHUNK_SECTORS, dataChunkWrite, faultStack, metadataWrite } from '../support/crash-fault-setup.ts';
import { ERR } from '../support/nbd-test-client.ts';

const BOUND = 20_000;
let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

async function serve(devices: Record<string, BlockDevice>): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crash-faults-'));
  const sock = path.join(dir, 'nbd.sock');
  const server = new NbdServer({ exports: staticExports(Object.entries(devices).map(([name, device]) => ({ name, device }))) });
  await server.listenUnix(sock);
  cleanup = async () => {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return sock;
}

async function qemuIo(sock: string, name: string, ...cmds: string[]): Promise<string> {
  const r = await run('qemu-io', ['-f', 'raw', `nbd+unix:///${name}?socket=${sock}`, ...cmds.flatMap((c) => ['-c', c])], { timeoutMs: 10_000 });
  return r.stdout + r.stderr;
}

async function wireErrno(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 0;
  } catch (err) {
    if (err instanceof NbdReplyError) return err.errno;
    throw err;
  }
}

describe('I/O errors reach NBD clients', () => {
  it('origin device EIO and ENOSPC on write, EIO on flush: qemu-io reports them, the wire carries the errno', async () => {
    const { origin, originFault } = await faultStack(['P']);
    const sock = await serve({ origin });
    originFault.fail({ op: 'write', errno: 'EIO', times: 1 });
    expect(await qemuIo(sock, 'origin', 'write -P 0x22 0 4k')).toMatch(/write failed: Input\/output error/);
    originFault.fail({ op: 'write', errno: 'ENOSPC', times: 1 });
    expect(await qemuIo(sock, 'origin', 'write -P 0x22 0 4k')).toMatch(/write failed: No space left on device/);
    // qemu-io prints nothing for a failed flush; it exits non-zero (exec.ts then reports "Command failed").
    originFault.fail({ op: 'flush', errno: 'EIO', times: 1 });
    expect(await qemuIo(sock, 'origin', 'flush')).toMatch(/Command failed/);
    const ep = await NbdEndpoint.open(sock, 'origin');
    originFault.fail({ op: 'write', errno: 'ENOSPC', times: 1 }).fail({ op: 'read', errno: 'EIO', times: 1 });
    originFault.fail({ op: 'flush', errno: 'EIO', times: 1 });
    expect(await wireErrno(ep.write(Buffer.alloc(4096, 1), 0, true))).toBe(ERR.ENOSPC);
    expect(await wireErrno(ep.read(0, 8))).toBe(ERR.EIO);
    expect(await wireErrno(ep.flush())).toBe(ERR.EIO);
    expect(await wireErrno(ep.write(Buffer.alloc(4096, 2), 0, true))).toBe(0); // the connection is still good
    ep.close();
  }, BOUND);

  it('a COW metadata failure: the origin write succeeds for the client, the snapshot then answers EIO to everything', async () => {
    const { origin, snaps: [s] } = await faultStack(['P']);
    const sock = await serve({ origin, snap: s.snap });
    s.cow.fail({ op: 'write', errno: 'EIO', match: metadataWrite });
    expect(await qemuIo(sock, 'origin', `write -P 0x33 ${CHUNK} 4k`)).toMatch(/wrote 4096\/4096 bytes/);
    expect(await qemuIo(sock, 'origin', `read -P 0x33 ${CHUNK} 4k`)).toMatch(/read 4096\/4096 bytes/);
    expect(await qemuIo(sock, 'snap', 'read 0 4k')).toMatch(/read failed: Input\/output error/);
    expect(await qemuIo(sock, 'snap', 'write -P 0x44 0 4k')).toMatch(/write failed: Input\/output error/);
    const ep = await NbdEndpoint.open(sock, 'snap');
    expect(await wireErrno(ep.flush())).toBe(ERR.EIO);
    ep.close();
  }, BOUND);

  it('a copy-out failure while a snapshot client waits on the same chunk: its write gets EIO, the origin client succeeds', async () => {
    const { origin, snaps: [s] } = await faultStack(['P']);
    const sock = await serve({ origin, snap: s.snap });
    s.cow.fail({ op: 'write', errno: 'EIO', match: dataChunkWrite });
    const [o, sn] = await Promise.all([NbdEndpoint.open(sock, 'origin'), NbdEndpoint.open(sock, 'snap')]);
    const results = await Promise.all([wireErrno(o.write(Buffer.alloc(CHUNK, 5), 9 * CHUNK / 512, false)), wireErrno(sn.write(Buffer.alloc(512, 6), 9 * CHUNK / 512 + 1, false))]);
    expect(results).toEqual([0, ERR.EIO]);
    o.close();
    sn.close();
  }, BOUND);
});

async function fileStack(dir: string, kind: StoreKind, dataChunks: number): Promise<{ origin: SnapshotOrigin; snap: Snapshot }> {
  fs.writeFileSync(path.join(dir, 'origin.img'), Buffer.alloc(64 * CHUNK, 0x11));
  const origin = new SnapshotOrigin(FileDevice.open(path.join(dir, 'origin.img')));
  // Header + area 0 + `dataChunks` data chunks: a FileDevice never grows past its size.
  const cow = FileDevice.open(path.join(dir, `${kind}.cow`), { createSize: (2 + dataChunks) * CHUNK });
  const snap = await origin.createSnapshot(await openStore(kind, cow, { chunkSectors: CHUNK_SECTORS }));
  return { origin, snap };
}

describe('a file-backed COW that cannot grow', () => {
  it('P: origin writes past its room invalidate the snapshot, never fail the origin client', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crash-enospc-'));
    const { origin, snap } = await fileStack(dir, 'P', 3);
    const sock = await serve({ origin, snap });
    for (let c = 0; c < 5; c++) expect(await qemuIo(sock, 'origin', `write -P ${0x20 + c} ${c * CHUNK} 4k`)).toMatch(/wrote 4096\/4096/);
    expect(snap.status()).toBe('Invalid');
    expect(await qemuIo(sock, 'snap', 'read 0 4k')).toMatch(/read failed: Input\/output error/);
    expect(await qemuIo(sock, 'origin', `read -P 0x24 ${4 * CHUNK} 4k`)).toMatch(/read 4096\/4096/);
    await closeStack(origin, snap, dir);
  }, BOUND);

  it('PO: snapshot writes past its room fail with EIO (Overflow), reads still work; an origin write then invalidates it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crash-enospc-'));
    const { origin, snap } = await fileStack(dir, 'PO', 3);
    const sock = await serve({ origin, snap });
    for (let c = 0; c < 3; c++) expect(await qemuIo(sock, 'snap', `write -P ${0x30 + c} ${c * CHUNK} 4k`)).toMatch(/wrote 4096\/4096/);
    expect(await qemuIo(sock, 'snap', `write -P 0x40 ${3 * CHUNK} 4k`)).toMatch(/write failed: Input\/output error/);
    expect(snap.status()).toBe('Overflow');
    expect(await qemuIo(sock, 'snap', `write -P 0x41 0 512`)).toMatch(/write failed: Input\/output error/); // even to an existing exception
    expect(await qemuIo(sock, 'snap', `read -P 0x31 ${CHUNK} 4k`)).toMatch(/read 4096\/4096/);
    expect(await qemuIo(sock, 'origin', `write -P 0x50 ${10 * CHUNK} 4k`)).toMatch(/wrote 4096\/4096/);
    expect(snap.status()).toBe('Invalid');
    await closeStack(origin, snap, dir);
  }, BOUND);
});

async function closeStack(origin: SnapshotOrigin, snap: Snapshot, dir: string): Promise<void> {
  await cleanup?.();
  cleanup = undefined;
  await origin.removeSnapshot(snap);
  await origin.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
