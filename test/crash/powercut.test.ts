// Power-cut simulation (test/support/powercut-device.ts): the in-process targets on devices with
// a volatile write cache, the power cut at hundreds of random operations; after each cut every
// COW image must be a consistent store, and after reopening, every write acknowledged with FUA
// or followed by a completed FLUSH must be there, on the origin and on every P/PO snapshot, and
// every other sector must hold a value once written there. NBDSNAP_POWERCUTS / _SEED override.
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/block/memory-device.ts';
import { openStore } from '../../src/store/open-store.ts';
import { decodeHeader } from '../../src/store/persistent/format.ts';
import { SnapshotOrigin } from '../../src/targets/snapshot-origin.ts';
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
  }, 60_000);
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
