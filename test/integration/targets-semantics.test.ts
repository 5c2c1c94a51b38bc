// The kernel's dm-snapshot semantics, case by case (docs/dm-snapshot.md sections 2, 3 and 8).
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/block/memory-device.ts';
import { openStore } from '../../src/store/open-store.ts';
import type { StoreKind } from '../../src/store/exception-store.ts';
import { SnapshotOrigin } from '../../src/targets/snapshot-origin.ts';
import { gateCalls, quiescent, recording, type Call, type Hold } from '../support/recording-device.ts';

const KiB = 1024;

function filled(length: number, byte: number): Buffer {
  return Buffer.alloc(length, byte);
}

async function readAll(dev: { read(b: Uint8Array, o: number): Promise<void> }, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  await dev.read(buf, offset);
  return buf;
}

/** A COW device with room for `dataChunks` exceptions in a persistent store (header + area 0). */
function cowFor(dataChunks: number, chunkSectors: number): MemoryDevice {
  return new MemoryDevice((dataChunks + 2) * chunkSectors * 512);
}

async function setup(kind: StoreKind, chunkSectors: number, cowChunks = 64, originBytes = 256 * KiB) {
  const originMem = new MemoryDevice(originBytes, { data: Buffer.alloc(originBytes, 0x11) });
  const origin = new SnapshotOrigin(originMem);
  const cow = cowFor(cowChunks, chunkSectors);
  const snap = await origin.createSnapshot(await openStore(kind, cow, { chunkSectors }));
  return { originMem, origin, cow, snap };
}

describe('snapshot-origin writes', () => {
  it('preserve every chunk a multi-chunk write touches, in every snapshot with its own chunk size', async () => {
    const { origin, snap } = await setup('P', 8);
    const cow2 = cowFor(64, 1);
    const snap2 = await origin.createSnapshot(await openStore('N', cow2, { chunkSectors: 1 }));
    await origin.write(filled(20 * KiB, 0xaa), 3 * KiB); // crosses 3 chunks of 4 KiB, 40 of 512 B
    expect((await readAll(origin, 3 * KiB, 20 * KiB)).equals(filled(20 * KiB, 0xaa))).toBe(true);
    for (const s of [snap, snap2]) expect((await readAll(s, 0, 32 * KiB)).equals(filled(32 * KiB, 0x11))).toBe(true);
    expect(snap.exceptionCount).toBe(Math.ceil((23 * KiB) / (4 * KiB)));
    expect(snap2.exceptionCount).toBe(40);
    expect(snap.status()).toBe(`${(1 + 1 + 6) * 8}/${66 * 8} 16`);
  });

  it('reach the origin only after the exception is committed with FUA after the copied data', async () => {
    const log: Call[] = [];
    const originMem = new MemoryDevice(64 * KiB);
    const origin = new SnapshotOrigin(recording('origin', originMem, log));
    const cow = recording('cow', cowFor(16, 8), log);
    await origin.createSnapshot(await openStore('P', cow, { chunkSectors: 8 }));
    log.length = 0;
    await origin.write(filled(512, 1), 4 * KiB + 512);
    const i = (pred: (c: Call) => boolean) => log.findIndex(pred);
    const copyRead = i((c) => c.device === 'origin' && c.op === 'read' && c.offset === 4 * KiB);
    const dataWrite = i((c) => c.device === 'cow' && c.op === 'write' && c.offset === 2 * 4 * KiB);
    const flush = i((c) => c.device === 'cow' && c.op === 'flush');
    const meta = i((c) => c.device === 'cow' && c.op === 'write' && c.offset === 4 * KiB && c.fua);
    const originWrite = i((c) => c.device === 'origin' && c.op === 'write');
    expect([copyRead, dataWrite, flush, meta, originWrite].every((x) => x >= 0)).toBe(true);
    expect(copyRead < dataWrite && dataWrite < flush && flush < meta && meta < originWrite).toBe(true);
  });

  it('never fail when a snapshot fills up: P and PO snapshots become Invalid, with valid=0 on disk', async () => {
    for (const kind of ['P', 'PO'] as const) {
      const { origin, cow, snap } = await setup(kind, 8, 4);
      for (let c = 0; c < 6; c++) await origin.write(filled(4 * KiB, 0x20 + c), c * 4 * KiB);
      expect(snap.status()).toBe('Invalid');
      expect(cow.bytes.readUInt32LE(4)).toBe(0);
      await expect(snap.read(Buffer.alloc(512), 0)).rejects.toMatchObject({ errno: 'EIO' });
      await expect(snap.write(Buffer.alloc(512), 0)).rejects.toMatchObject({ errno: 'EIO' });
      expect((await readAll(origin, 5 * 4 * KiB, 4 * KiB)).equals(filled(4 * KiB, 0x25))).toBe(true);
    }
  });
});

describe('snapshot writes', () => {
  it('keep the rest of a partially written chunk and skip the copy for a whole chunk', async () => {
    const log: Call[] = [];
    const originMem = new MemoryDevice(64 * KiB, { data: Buffer.alloc(64 * KiB, 0x11) });
    const origin = new SnapshotOrigin(recording('origin', originMem, log));
    const snap = await origin.createSnapshot(await openStore('P', cowFor(16, 8), { chunkSectors: 8 }));
    log.length = 0;
    await snap.write(filled(4 * KiB, 0x77), 8 * KiB); // whole chunk 2
    expect(log.filter((c) => c.device === 'origin' && c.op === 'read')).toHaveLength(0);
    await snap.write(filled(100, 0x66), 12 * KiB + 50); // part of chunk 3
    const got = await readAll(snap, 8 * KiB, 8 * KiB);
    const want = Buffer.concat([filled(4 * KiB, 0x77), filled(50, 0x11), filled(100, 0x66), filled(4 * KiB - 150, 0x11)]);
    expect(got.equals(want)).toBe(true);
    expect((await readAll(origin, 8 * KiB, 8 * KiB)).equals(filled(8 * KiB, 0x11))).toBe(true);
  });

  it('P: a full store invalidates the snapshot; PO: Overflow, reads work, every write fails', async () => {
    const p = await setup('P', 8, 2);
    await p.snap.write(filled(8 * KiB, 1), 0);
    await expect(p.snap.write(filled(512, 2), 16 * KiB)).rejects.toMatchObject({ errno: 'EIO' });
    expect(p.snap.status()).toBe('Invalid');

    const po = await setup('PO', 8, 2);
    await po.snap.write(filled(8 * KiB, 1), 0);
    await expect(po.snap.write(filled(512, 2), 16 * KiB)).rejects.toMatchObject({ errno: 'EIO' });
    expect(po.snap.status()).toBe('Overflow');
    expect(po.cow.bytes.readUInt32LE(4)).toBe(1); // not persisted
    expect((await readAll(po.snap, 0, 8 * KiB)).equals(filled(8 * KiB, 1))).toBe(true);
    await expect(po.snap.write(filled(512, 3), 0)).rejects.toMatchObject({ errno: 'EIO' }); // even an existing exception
    await po.origin.write(filled(4 * KiB, 9), 32 * KiB); // the origin still works; now origin-caused exhaustion
    expect(po.snap.status()).toBe('Invalid');
  });
});

describe('invalidation before the origin moves on', () => {
  it('an origin write that finds the store full reaches the origin only after valid=0 is written', async () => {
    const log: Call[] = [];
    let holding: Hold | undefined;
    const origin = new SnapshotOrigin(recording('origin', new MemoryDevice(64 * KiB, { data: Buffer.alloc(64 * KiB, 0x11) }), log));
    const cowMem = cowFor(1, 8); // header, area 0 and a single data chunk
    const snap = await origin.createSnapshot(await openStore('P', recording('cow', cowMem, log, () => holding), { chunkSectors: 8 }));
    await origin.write(filled(4 * KiB, 0x20), 0);
    const header = gateCalls((c) => c.device === 'cow' && c.op === 'write' && c.offset === 0);
    holding = header.hold;
    const write = origin.write(filled(4 * KiB, 0x21), 4 * KiB);
    await Promise.race([header.parked, write]); // valid=0 is on its way and not yet acknowledged
    await quiescent(); // all that does not wait for the header has run
    expect(log.some((c) => c.device === 'origin' && c.op === 'write' && c.offset === 4 * KiB)).toBe(false);
    header.release();
    await write;
    expect(snap.status()).toBe('Invalid');
    expect(cowMem.bytes.readUInt32LE(4)).toBe(0);
    expect((await readAll(origin, 4 * KiB, 4 * KiB)).equals(filled(4 * KiB, 0x21))).toBe(true);
  });
});

describe('races on one chunk', () => {
  it('an origin write waits for a snapshot read that is reading the origin chunk', async () => {
    const log: Call[] = [];
    let holding: Hold | undefined;
    const originMem = new MemoryDevice(64 * KiB, { data: Buffer.alloc(64 * KiB, 0x11) });
    const origin = new SnapshotOrigin(recording('origin', originMem, log, () => holding));
    const snap = await origin.createSnapshot(await openStore('N', new MemoryDevice(64 * KiB), { chunkSectors: 8 }));
    const snapRead = gateCalls((c) => c.op === 'read' && c.length === 512); // park the snapshot read only
    holding = snapRead.hold;
    const read = readAll(snap, 4 * KiB, 512);
    await snapRead.parked; // the read is reading the origin chunk
    const write = origin.write(filled(4 * KiB, 0x99), 4 * KiB);
    await quiescent(); // all that does not wait for the read has run
    expect(snap.exceptionCount).toBe(1); // the chunk is copied and committed: only the read holds the write back
    expect(log.some((c) => c.device === 'origin' && c.op === 'write')).toBe(false);
    snapRead.release();
    expect((await read).equals(filled(512, 0x11))).toBe(true);
    await write;
    expect((await readAll(origin, 4 * KiB, 512)).equals(filled(512, 0x99))).toBe(true);
    expect((await readAll(snap, 4 * KiB, 512)).equals(filled(512, 0x11))).toBe(true);
  });

  it('racing first writes from the origin and the snapshot share one COW chunk', async () => {
    const { origin, snap } = await setup('P', 8);
    await Promise.all([
      origin.write(filled(512, 0xa1), 4 * KiB),
      snap.write(filled(512, 0xb2), 4 * KiB + 1024),
      origin.write(filled(512, 0xa3), 4 * KiB + 2048),
      snap.write(filled(512, 0xb4), 4 * KiB + 3072),
    ]);
    expect(snap.exceptionCount).toBe(1);
    expect(snap.status()).toBe(`${3 * 8}/${66 * 8} 16`);
    const want = filled(4 * KiB, 0x11);
    want.fill(0xb2, 1024, 1536);
    want.fill(0xb4, 3072, 3584);
    expect((await readAll(snap, 4 * KiB, 4 * KiB)).equals(want)).toBe(true);
  });
});

describe('snapshot lifecycle', () => {
  it('removing one snapshot leaves the origin and the other snapshot working', async () => {
    const { origin, snap } = await setup('P', 8);
    const other = await origin.createSnapshot(await openStore('P', cowFor(64, 16), { chunkSectors: 16 }));
    await origin.write(filled(4 * KiB, 0x42), 0);
    await origin.removeSnapshot(snap);
    await origin.write(filled(4 * KiB, 0x43), 16 * KiB);
    expect((await readAll(other, 0, 32 * KiB)).equals(filled(32 * KiB, 0x11))).toBe(true);
    await expect(snap.read(Buffer.alloc(512), 0)).rejects.toMatchObject({ errno: 'EIO' });
  });

  it('rejects discard and fast zero on both targets; write-zeroes copies first', async () => {
    const { origin, snap } = await setup('P', 8);
    await expect(origin.trim(4096, 0)).rejects.toMatchObject({ errno: 'ENOTSUP' });
    await expect(snap.trim(4096, 0)).rejects.toMatchObject({ errno: 'ENOTSUP' });
    await expect(origin.zero(4096, 0, { fast: true })).rejects.toMatchObject({ errno: 'ENOTSUP' });
    await origin.zero(4096, 0);
    expect((await readAll(origin, 0, 4096)).equals(Buffer.alloc(4096))).toBe(true);
    expect((await readAll(snap, 0, 4096)).equals(filled(4096, 0x11))).toBe(true);
  });
});

describe('a COW grown while in use', () => {
  it('is used without a reload: allocation and status see the new size, nothing is invalidated', async () => {
    const { FileDevice } = await import('../../src/block/file-device.ts');
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'targets-grow-'));
    try {
      const originMem = new MemoryDevice(256 * KiB, { data: Buffer.alloc(256 * KiB, 0x11) });
      const origin = new SnapshotOrigin(originMem);
      const file = path.join(dir, 'grow.cow');
      const cow = FileDevice.open(file, { createSize: 4 * 4 * KiB }); // header, area, 2 data chunks
      const snap = await origin.createSnapshot(await openStore('P', cow, { chunkSectors: 8 }));
      for (let c = 0; c < 2; c++) await origin.write(filled(4 * KiB, 0x30 + c), c * 4 * KiB);
      expect(snap.status()).toBe(`${4 * 8}/${4 * 8} 16`);
      fs.truncateSync(file, 16 * 4 * KiB); // the COW grows underneath: the next allocation sees it
      for (let c = 2; c < 6; c++) await origin.write(filled(4 * KiB, 0x30 + c), c * 4 * KiB);
      expect(snap.status()).toBe(`${8 * 8}/${16 * 8} 16`);
      fs.truncateSync(file, 20 * 4 * KiB); // and status shows the new total without an allocation
      expect(snap.status()).toBe(`${8 * 8}/${20 * 8} 16`);
      expect((await readAll(snap, 0, 32 * KiB)).equals(filled(32 * KiB, 0x11))).toBe(true);
      await origin.removeSnapshot(snap);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
