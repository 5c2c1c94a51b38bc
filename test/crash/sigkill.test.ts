// CI-sized SIGKILL campaign against the real daemon (test/support/crash-campaign.ts): ~10 kills
// at random moments under a multi-connection workload with snapshot creation racing it; after
// each restart every acknowledged write must be there (SIGKILL keeps the page cache), every
// snapshot must be its point in time plus its own writes, every COW file must be consistent,
// and the N snapshot must be reported failed. Some rounds merge a snapshot and kill the daemon
// during the merge (test/support/crash-campaign-merge.ts): after each restart the merge resumes
// and the origin shows the snapshot plus the acknowledged writes, and at its end the origin file
// holds exactly that. NBDSNAP_CRASH_KILLS / NBDSNAP_CRASH_SEED override.
import { describe, expect, it } from 'vitest';
import { runCampaign } from '../support/crash-campaign.ts';

const kills = Number(process.env.NBDSNAP_CRASH_KILLS ?? 10);
const seed = Number(process.env.NBDSNAP_CRASH_SEED ?? 7);

describe('SIGKILL campaign', () => {
  it(`survives ${kills} SIGKILLs of the daemon with nothing acknowledged lost (seed ${seed})`, async () => {
    const result = await runCampaign({ kills, seed });
    console.log(`sigkill campaign: ${JSON.stringify(result)}`);
    expect(result.failures).toEqual([]);
    expect(result.lostSectors).toBe(0);
    expect(result.kills).toBe(kills);
    expect(result.counts.writes).toBeGreaterThan(kills * 20);
    expect(result.nSnapshotsReportedFailed).toBeGreaterThan(0);
    expect(result.cowRecordsChecked).toBeGreaterThan(0);
    expect(result.merges).toBeGreaterThan(0);
    expect(result.mergeResumes).toBeGreaterThan(0); // killed while a merge ran, and resumed
  }, 180_000); // merge rounds add a clean restart and the end of each merge
});
