// Hostile input, NBD side (issue 7): mutated handshakes, random bytes and mutated transmission
// frames against the real `nbdsnap serve` and the real daemon (origin + snapshot), a bounded
// number of cases; scripts/fuzz-nbd.ts runs the same campaign for millions. After every batch the
// campaign checks the process, a bystander connection, a fresh connection's data, the other
// export and RSS (see test/support/fuzz-nbd-campaign.ts).
import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { runCampaign, type BatchReport, type CampaignOptions } from '../support/fuzz-nbd-campaign.ts';
import { fuzzTempDir, startDaemonTargets, startServeTarget } from '../support/fuzz-nbd-targets.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 20240607);
const RSS_LIMIT_MIB = 300;
/**
 * Memory after the last batch may exceed the highest reading of the batches before it by at most
 * this. Growth from the first batch is expected (the buffer pool fills up to its 128 MiB budget
 * and V8 reserves heap), so the comparison is with the earlier peak, not the first reading; the
 * absolute bound (RSS_LIMIT_MIB, checked after every batch) caps the rest.
 */
const RSS_GROWTH_MIB = 64;
const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

function options(seed: number, cases: number, kinds: CampaignOptions['kinds']): CampaignOptions {
  return { seed, cases, batchSize: 400, parallel: 12, kinds, rssLimitMiB: RSS_LIMIT_MIB };
}

function expectBoundedGrowth(reports: BatchReport[]): void {
  const earlierPeak = Math.max(...reports.slice(0, -1).map((r) => r.rssMiB));
  const last = reports[reports.length - 1].rssMiB;
  expect(last - earlierPeak, `RSS went from a peak of ${earlierPeak.toFixed(0)} to ${last.toFixed(0)} MiB`).toBeLessThan(RSS_GROWTH_MIB);
  expect(Math.max(...reports.map((r) => r.rssMiB))).toBeLessThan(RSS_LIMIT_MIB);
}

describe('NBD fuzz (CI size)', () => {
  it('nbdsnap serve survives 2400 mutated handshakes, random byte streams and mutated requests', async () => {
    const dir = fuzzTempDir('nbd');
    dirs.push(dir);
    const { srv, target } = await startServeTarget(dir);
    try {
      const reports = await runCampaign(target, options(SEED, 2400, ['handshake', 'transmission', 'transmission', 'random']));
      expect(reports.at(-1)!.casesRun).toBe(2400);
      expectBoundedGrowth(reports);
    } finally {
      expect((await srv.stop()).code).toBe(0);
    }
  });

  it('the daemon survives 1200 cases on a snapshot (origin unchanged) and 1200 on its origin (snapshot unchanged)', async () => {
    const dir = fuzzTempDir('nbd');
    dirs.push(dir);
    const t = await startDaemonTargets(dir);
    try {
      const onSnapshot = await runCampaign(t.snapshot, options(SEED + 1, 1200, ['handshake', 'transmission', 'transmission']));
      const onOrigin = await runCampaign(t.origin, options(SEED + 2, 1200, ['transmission']));
      expect(onSnapshot.at(-1)!.casesRun + onOrigin.at(-1)!.casesRun).toBe(2400);
      expectBoundedGrowth([...onSnapshot, ...onOrigin]);
      expect(JSON.parse((await t.daemon.cli('snapshot', 'list', '--json')).stdout)[0].state).toBe('active');
    } finally {
      expect((await t.daemon.stop()).code).toBe(0);
    }
  });
});
