// I/O faults injected below the targets (test/support/fault-device.ts), checked against the
// kernel's rules (dm-snapshot.md sections 2-3): a failed copy-out (COW data write or origin read)
// or metadata commit invalidates the snapshot, persisted as valid=0 when the header write works,
// and fails the whole commit batch; the origin write that caused it still completes; an origin
// device error reaches the writer; nothing hangs (every test has a 5 s bound).
import { describe, expect, it } from 'vitest';
import { decodeHeader } from '../../src/store/persistent/format.ts';
import { CHUNK, dataChunkWrite, errorOf, faultStack, fill, headerValid, headerWrite, metadataWrite, reopenState } from '../support/crash-fault-setup.ts';

const BOUND = 5_000;

describe('COW device faults', () => {
  it('a failed COW data write during copy-out invalidates the snapshot; the origin write completes', async () => {
    const { origin, originMem, snaps: [s] } = await faultStack();
    s.cow.fail({ op: 'write', errno: 'EIO', match: dataChunkWrite, times: 1 });
    await origin.write(fill(0x22), 3 * CHUNK);
    expect(originMem.bytes.subarray(3 * CHUNK, 4 * CHUNK).equals(fill(0x22))).toBe(true);
    expect(s.snap.status()).toBe('Invalid');
    expect(headerValid(s)).toBe(0);
    expect(await errorOf(s.snap.read(Buffer.alloc(512), 0))).toBe('EIO');
    expect(await reopenState(s)).toBe('invalid');
    await origin.write(fill(0x23), 5 * CHUNK); // later origin writes skip the invalid snapshot
    expect(s.cow.injected).toHaveLength(1);
  }, BOUND);

  it('a failed metadata commit fails the whole batch: every racing origin write completes, every racing snapshot write gets EIO', async () => {
    const { origin, originMem, snaps: [s] } = await faultStack();
    s.cow.fail({ op: 'write', errno: 'EIO', match: metadataWrite });
    const originWrites = [1, 2, 3, 4].map((c) => origin.write(fill(0x30 + c), c * CHUNK));
    const snapWrites = [10, 11].map((c) => errorOf(s.snap.write(fill(0x40, 512), c * CHUNK + 512)));
    await Promise.all(originWrites);
    expect(await Promise.all(snapWrites)).toEqual(['EIO', 'EIO']);
    for (const c of [1, 2, 3, 4]) expect(originMem.bytes[c * CHUNK]).toBe(0x30 + c);
    expect(s.snap.status()).toBe('Invalid');
    expect(headerValid(s)).toBe(0);
    expect(s.cowMem.bytes.subarray(CHUNK, 2 * CHUNK).equals(Buffer.alloc(CHUNK))).toBe(true); // no record reached area 0
    expect(await reopenState(s)).toBe('invalid');
  }, BOUND);

  it('a failed COW flush before the commit invalidates the snapshot the same way', async () => {
    const { origin, snaps: [s] } = await faultStack();
    s.cow.fail({ op: 'flush', errno: 'EIO' });
    await origin.write(fill(0x24), 0);
    expect(s.snap.status()).toBe('Invalid');
    expect(headerValid(s)).toBe(0);
  }, BOUND);

  it('when even the invalidation header cannot be written, the snapshot is invalid in memory only (as the kernel: it reloads valid but stale)', async () => {
    const { origin, snaps: [s] } = await faultStack();
    await origin.write(fill(0x25), 0); // one good exception first
    s.cow.fail({ op: 'write', errno: 'EIO' });
    await origin.write(fill(0x26), 2 * CHUNK);
    expect(s.snap.status()).toBe('Invalid');
    expect(s.cow.injected.map((f) => f.offset)).toContain(0); // the header write was tried
    expect(headerValid(s)).toBe(1);
    expect(await reopenState(s)).toBe('valid');
  }, BOUND);

  it('a failed write to an existing exception reaches the snapshot writer and does not invalidate (the kernel remaps it and returns the error)', async () => {
    const { snaps: [s] } = await faultStack();
    await s.snap.write(fill(0x27), 4 * CHUNK);
    s.cow.fail({ op: 'write', errno: 'EIO', times: 1 });
    expect(await errorOf(s.snap.write(fill(0x28, 512), 4 * CHUNK))).toBe('EIO');
    expect(s.snap.status()).not.toBe('Invalid');
    const back = Buffer.alloc(CHUNK);
    await s.snap.read(back, 4 * CHUNK);
    expect(back.equals(fill(0x27))).toBe(true);
  }, BOUND);

  it('a snapshot write over several new chunks whose COW data write fails: EIO, the snapshot invalid, nothing left pending', async () => {
    const { snaps: [s] } = await faultStack();
    await s.snap.write(fill(0x31, 512), 8 * CHUNK + 512); // chunk 8 has an exception already
    s.cow.fail({ op: 'write', errno: 'EIO', match: dataChunkWrite, times: 1 });
    // Chunks 4-7 are new and written whole (one COW run), 8 is mapped, 9 is new and partial.
    const big = errorOf(s.snap.write(Buffer.alloc(5 * CHUNK + 512, 0x32), 4 * CHUNK));
    const joined = errorOf(s.snap.write(fill(0x34, 512), 5 * CHUNK)); // waits for chunk 5's exception
    expect(await big).toBe('EIO');
    expect(await joined).toBe('EIO');
    expect(s.snap.status()).toBe('Invalid');
    expect(headerValid(s)).toBe(0);
    expect(await errorOf(s.snap.read(Buffer.alloc(512), 5 * CHUNK))).toBe('EIO');
    expect(await reopenState(s)).toBe('invalid');
    await s.snap.close(); // every exception of the failed write settled (close waits for them)
  }, BOUND);

  it('a snapshot write over several new chunks whose commit fails: EIO and no record of them on disk', async () => {
    const { snaps: [s] } = await faultStack();
    s.cow.fail({ op: 'write', errno: 'EIO', match: metadataWrite });
    expect(await errorOf(s.snap.write(Buffer.alloc(6 * CHUNK, 0x33), 2 * CHUNK))).toBe('EIO');
    expect(s.snap.status()).toBe('Invalid');
    expect(s.cowMem.bytes.subarray(CHUNK, 2 * CHUNK).equals(Buffer.alloc(CHUNK))).toBe(true); // no record reached area 0
    expect(await reopenState(s)).toBe('invalid');
    await s.snap.close();
  }, BOUND);

  it('ENOSPC from the COW device (a sparse COW on a full file system) invalidates like an I/O error', async () => {
    const { origin, snaps: [s] } = await faultStack();
    s.cow.fail({ op: 'write', errno: 'ENOSPC', match: dataChunkWrite });
    await origin.write(fill(0x29), 6 * CHUNK);
    expect(s.snap.status()).toBe('Invalid');
    expect(decodeHeader(s.cowMem.bytes).valid).toBe(0);
  }, BOUND);
});

describe('origin device faults', () => {
  it('a failed origin read during copy-out invalidates that snapshot only; the origin write goes on', async () => {
    const { origin, originFault, originMem, snaps: [a, b] } = await faultStack(['P', 'PO']);
    // The first snapshot's copy of chunk 7 fails; the second one's succeeds.
    originFault.fail({ op: 'read', errno: 'EIO', match: (offset) => offset === 7 * CHUNK, times: 1 });
    await origin.write(fill(0x31), 7 * CHUNK);
    expect(originMem.bytes[7 * CHUNK]).toBe(0x31);
    expect([a.snap.status(), b.snap.status()].filter((x) => x === 'Invalid')).toHaveLength(1);
    const survivor = a.snap.status() === 'Invalid' ? b : a;
    const back = Buffer.alloc(CHUNK);
    await survivor.snap.read(back, 7 * CHUNK);
    expect(back.equals(fill(0x11))).toBe(true);
  }, BOUND);

  it('a failed origin write reaches the writer; the chunk was preserved first, so the snapshot stays valid and intact', async () => {
    const { origin, originFault, originMem, snaps: [s] } = await faultStack();
    originFault.fail({ op: 'write', errno: 'EIO', times: 1 });
    expect(await errorOf(origin.write(fill(0x32), 8 * CHUNK))).toBe('EIO');
    expect(originMem.bytes[8 * CHUNK]).toBe(0x11);
    expect(s.snap.status()).not.toBe('Invalid');
    await origin.write(fill(0x33), 8 * CHUNK); // a retry works and the snapshot still has the original
    const back = Buffer.alloc(CHUNK);
    await s.snap.read(back, 8 * CHUNK);
    expect(back.equals(fill(0x11))).toBe(true);
  }, BOUND);

  it('ENOSPC and flush errors on the origin reach the caller with their errno', async () => {
    const { origin, originFault } = await faultStack([]);
    originFault.fail({ op: 'write', errno: 'ENOSPC', times: 1 }).fail({ op: 'flush', errno: 'EIO', times: 1 });
    expect(await errorOf(origin.write(fill(0x34), 0))).toBe('ENOSPC');
    expect(await errorOf(origin.flush())).toBe('EIO');
    await origin.write(fill(0x35), 0);
    await origin.flush();
  }, BOUND);
});
