// Power-cut simulation (test/support/powercut-device.ts): the in-process targets on devices with
// a volatile write cache, the power cut at hundreds of random operations; after each cut every
// COW image must be a consistent store, and after reopening, every write acknowledged with FUA
// or followed by a completed FLUSH must be there, on the origin and on every P/PO snapshot, and
// every other sector must hold a value once written there. NBDSNAP_POWERCUTS / _SEED override.
import { describe, expect, it } from 'vitest';
import { runPowercuts } from '../support/crash-powercut-run.ts';

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
