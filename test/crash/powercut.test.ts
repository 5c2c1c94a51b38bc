// Power-cut simulation (test/support/powercut-device.ts): the in-process targets on devices with
// a volatile write cache, the power cut at hundreds of random operations; after each cut every
// COW image must be a consistent store, and after reopening, every write acknowledged with FUA
// or followed by a completed FLUSH must be there, on the origin and on every P/PO snapshot, and
// every other sector must hold a value once written there. Merges run through the cuts too: the
// origin must show the snapshot (as at merge start) plus the guaranteed writes after every cut,
// and hold exactly that once the merge is done (test/support/crash-powercut-merge.ts).
// NBDSNAP_POWERCUTS / _SEED override.
import { describe, expect, it } from 'vitest';
import type { BlockDevice } from '../../src/block/device.ts';
import { MemoryDevice } from '../../src/block/memory-device.ts';
import { silentLogger } from '../../src/log.ts';
import { openStore } from '../../src/store/open-store.ts';
import { decodeHeader } from '../../src/store/persistent/format.ts';
import { SnapshotOrigin } from '../../src/targets/snapshot-origin.ts';
import { taggedBuffer } from '../support/crash-pattern.ts';
import { runPowercuts } from '../support/crash-powercut-run.ts';
import { FaultDevice } from '../support/fault-device.ts';
import { PowerRail, PowercutDevice } from '../support/powercut-device.ts';
import { makeRng } from '../support/prng.ts';

const cuts = Number(process.env.NBDSNAP_POWERCUTS ?? 100);
const seeds = process.env.NBDSNAP_POWERCUT_SEED ? [Number(process.env.NBDSNAP_POWERCUT_SEED)] : [11, 12, 13];

describe('power cut (volatile cache lost)', () => {
  it.each(seeds)(`survives ${cuts} power cuts, seed %i`, async (seed) => {
    const result = await runPowercuts({ seed, cuts });
    console.log(`powercut seed ${seed}: ${JSON.stringify(result)}`);
    expect(result.failures).toEqual([]);
    expect(result.lostSectors).toBe(0);
    expect(result.cuts).toBe(cuts);
    // The cuts really dropped something: writes were still unguaranteed when the power went.
    expect(result.uncertainSectors).toBeGreaterThan(cuts);
    expect(result.cowRecordsChecked).toBeGreaterThan(0);
    expect(result.merges).toBeGreaterThan(0);
    expect(result.cutsDuringMerge).toBeGreaterThan(0);
  }, 90_000);
});

describe('invalidation and power cuts', () => {
  it('valid=0 is written with FUA, so an invalidated snapshot stays invalid after a power cut (the kernel does not flush it)', async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rail = new PowerRail(makeRng(seed));
      const cowDev = new PowercutDevice(rail, Buffer.alloc(64 * 4096));
      const cow = new FaultDevice(cowDev).fail({ op: 'write', errno: 'EIO', match: (offset, _l, fua) => offset === 4096 && fua });
      const origin = new SnapshotOrigin(new MemoryDevice(32 * 4096));
      const snap = await origin.createSnapshot(await openStore('P', cow, { chunkSectors: 8 }));
      await origin.write(Buffer.alloc(4096, 7), 0);
      expect(snap.status()).toBe('Invalid');
      rail.cut();
      expect(decodeHeader(rail.imageOf(cowDev)).valid, `seed ${seed}`).toBe(0);
    }
  });
});

/** `dev` with `hook` called at the start of each flush. */
function onFlush(dev: BlockDevice, hook: () => void): BlockDevice {
  return { ...passthrough(dev), flush: () => (hook(), dev.flush()) };
}

/** `dev` with every write and flush a turn of the event loop later (so a commit takes longer than a plain write). */
function slow(dev: BlockDevice): BlockDevice {
  const later = () => new Promise((resolve) => setImmediate(resolve));
  return { ...passthrough(dev), write: async (b, o, w) => (await later(), dev.write(b, o, w)), flush: async () => (await later(), dev.flush()) };
}

function passthrough(dev: BlockDevice): BlockDevice {
  return {
    size: dev.size, blockSize: dev.blockSize, readOnly: dev.readOnly, caps: dev.caps,
    read: (b, o) => dev.read(b, o), write: (b, o, w) => dev.write(b, o, w), flush: () => dev.flush(),
    trim: (l, o, w) => dev.trim(l, o, w), zero: (l, o, z) => dev.zero(l, o, z), close: () => dev.close(),
  };
}

describe('merge and power cuts', () => {
  it('a write to a chunk whose merge is not committed yet is not acknowledged before it would survive a cut', async () => {
    // Origin chunks 2, 5 and 9 (4 KiB) changed since the snapshot; the merge takes chunk 9 first.
    // When it flushes the origin (copy done, records not cleared yet), a FUA write to chunk 9 is
    // issued, and the power goes the moment it is acknowledged. Reopened and merged again, the
    // origin must hold it: a write released before the records were durably cleared would go
    // to the origin and then be hidden, and merged over, by the records that survived. (The COW
    // is a turn of the event loop slower than the origin, so the commit does not win that race.)
    const rail = new PowerRail(makeRng(3));
    const originDev = new PowercutDevice(rail, taggedBuffer(0, 128, 0));
    const cowDev = new PowercutDevice(rail, Buffer.alloc(64 * 4096));
    let hook = (): void => undefined;
    const origin = new SnapshotOrigin(onFlush(originDev, () => hook()));
    const snap = await origin.createSnapshot(await openStore('P', slow(cowDev), { chunkSectors: 8 }));
    for (const [chunk, id] of [[2, 1], [5, 2], [9, 3]]) await origin.write(taggedBuffer(chunk * 8, 8, id), chunk * 4096, { fua: true });
    const expected = Buffer.alloc(128 * 512);
    await snap.read(expected, 0);
    const w = taggedBuffer(9 * 8, 8, 4);
    let written: Promise<void> | undefined;
    hook = () => {
      hook = () => undefined;
      written = origin.write(w, 9 * 4096, { fua: true }).then(() => rail.cut());
    };
    const merge = await origin.startMerge(snap, silentLogger(), { batchBytes: 4096 });
    await merge.finished;
    await written;
    expect(rail.isCut).toBe(true);
    const origin2 = new SnapshotOrigin(new PowercutDevice(rail, rail.imageOf(originDev)));
    const cow2 = new PowercutDevice(rail, rail.imageOf(cowDev));
    rail.powerOn();
    const resumed = await origin2.startMerge(await origin2.createSnapshot(await openStore('P', cow2, { chunkSectors: 8 })), silentLogger());
    await resumed.finished;
    const got = Buffer.alloc(128 * 512);
    await origin2.read(got, 0);
    w.copy(expected, 9 * 4096);
    expect(got.subarray(9 * 4096, 10 * 4096).equals(w), 'the acknowledged FUA write to chunk 9').toBe(true);
    expect(got.equals(expected)).toBe(true);
  });
});
