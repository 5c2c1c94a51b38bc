// Long-mode control-API fuzzer: `node scripts/fuzz-control.ts --cases 1000000 --seed 7 [--seconds N]`.
// A case is one connection carrying 1-8 fuzz lines (test/support/fuzz-control-gen.ts). Every
// reply is checked as it arrives; every 2000 cases the daemon must be alive, answer daemon.info
// and stay under 300 MiB RSS; at the end the catalog and the disk must match what was accepted.
// Exits 1 on the first problem, naming the seed.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { callDaemon } from '../src/control/client.ts';
import { diskProblems, ownFiles } from '../test/support/fuzz-control-checks.ts';
import { startControlFuzz } from '../test/support/fuzz-control-env.ts';
import { fuzzConnection, newTally } from '../test/support/fuzz-control-run.ts';
import { isAlive, rssMiB } from '../test/support/fuzz-proc.ts';
import { makeRng } from '../test/support/prng.ts';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '100000' },
    seed: { type: 'string', default: String(Date.now() % 1_000_000) },
    seconds: { type: 'string' },
  },
});
const cases = Number(values.cases);
const seed = Number(values.seed);
const deadline = values.seconds ? Date.now() + Number(values.seconds) * 1000 : Infinity;
const PARALLEL = 4;
const RSS_LIMIT_MIB = 300;

async function main(): Promise<number> {
  const setup = await startControlFuzz();
  const ownBefore = ownFiles(setup.env);
  const pid = setup.daemon.proc.pid!;
  const rng = makeRng(seed);
  const tally = newTally();
  let done = 0;
  try {
    while (done < cases && Date.now() < deadline) {
      await Promise.all(Array.from({ length: PARALLEL }, () => fuzzConnection(setup.daemon.control, setup.env, rng, tally)));
      done += PARALLEL;
      if (done % 2000 !== 0) continue;
      const rss = rssMiB(pid);
      if (!isAlive(pid)) throw new Error('the daemon died');
      await callDaemon(setup.daemon.control, { op: 'daemon.info' });
      if (rss > RSS_LIMIT_MIB) throw new Error(`daemon RSS ${rss.toFixed(0)} MiB > ${RSS_LIMIT_MIB} MiB`);
      if (done % 20_000 === 0) console.log(`fuzz-control: ${done} cases, ${tally.lines} lines, ${tally.ok} accepted, RSS ${rss.toFixed(0)} MiB`);
    }
    const problems = diskProblems(setup.env, tally, ['o', 's'], ownBefore);
    if (problems.length > 0) throw new Error(problems.join('\n'));
    console.log(`fuzz-control: ${done} cases (${tally.lines} lines; ${tally.ok} accepted; refused ${JSON.stringify(tally.refused)}), seed ${seed}, no failure`);
    return 0;
  } catch (err) {
    console.error(`FAILED after ${done} cases (seed ${seed}): ${(err as Error).message}`);
    return 1;
  } finally {
    await setup.daemon.stop();
    fs.rmSync(setup.env.dir, { recursive: true, force: true });
  }
}

process.exitCode = await main();
