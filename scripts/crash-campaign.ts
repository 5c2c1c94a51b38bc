// Long mode of the crash tests (issue 7):
//   node scripts/crash-campaign.ts [--kills N] [--seed S] [--powercuts N]
// --kills N (default 100): the SIGKILL campaign against the real daemon (test/support/crash-campaign.ts).
// --powercuts N (default 0): that many simulated power cuts of the in-process targets
//   (test/support/crash-powercut-run.ts), in rounds of 100.
// Prints one line per kill and a JSON summary; exits 1 if anything was lost or inconsistent.
import { parseArgs } from 'node:util';
import { runCampaign } from '../test/support/crash-campaign.ts';
import { runPowercuts } from '../test/support/crash-powercut-run.ts';

const { values } = parseArgs({
  options: {
    kills: { type: 'string', default: '100' },
    seed: { type: 'string', default: String(Date.now() % 100000) },
    powercuts: { type: 'string', default: '0' },
  },
});
const seed = Number(values.seed);
const kills = Number(values.kills);
const powercuts = Number(values.powercuts);
let failed = false;

if (kills > 0) {
  const started = Date.now();
  const result = await runCampaign({ kills, seed, log: (line) => console.log(line) });
  console.log(JSON.stringify({ mode: 'sigkill', seed, seconds: Math.round((Date.now() - started) / 1000), ...result, failures: result.failures.slice(0, 20) }));
  failed ||= result.failures.length > 0 || result.lostSectors > 0;
}

for (let done = 0, round = 0; done < powercuts; round++) {
  const cuts = Math.min(100, powercuts - done);
  const result = await runPowercuts({ seed: seed * 1000 + round, cuts });
  console.log(JSON.stringify({ mode: 'powercut', seed: seed * 1000 + round, ...result, failures: result.failures.slice(0, 20) }));
  failed ||= result.failures.length > 0;
  done += cuts;
}

process.exitCode = failed ? 1 : 0;
