// The NBD fuzz campaign: batches of hostile cases against one export of a running server, and
// after each batch the checks that matter: the process is alive, a bystander connection opened
// before the batch still answers correctly, a fresh connection negotiates and reads the expected
// bytes, other exports are untouched, and resident memory stays under a bound. Used by the
// vitest fuzz tests (a few thousand cases) and by scripts/fuzz-nbd.ts (millions).
import { NbdEndpoint } from './crash-endpoint.ts';
import { handshakeFrames, requestFrames } from './fuzz-nbd-frames.ts';
import { mutateBytes, mutateFrames, randomBytes } from './fuzz-mutate.ts';
import type { ExportModel } from './fuzz-nbd-model.ts';
import { planCase, runCases, type FuzzCase } from './fuzz-nbd-run.ts';
import { isAlive, rssMiB, untilIdle } from './fuzz-proc.ts';
import { OPT, goData, metaData, option, u32 } from './nbd-test-client.ts';
import { makeRng, type Rng } from './prng.ts';

export interface FuzzExport {
  name: string;
  model: ExportModel;
}

export interface FuzzTarget {
  socket: string;
  pid: number;
  /** The export the cases aim at. */
  fuzzed: FuzzExport;
  /** Exports that the cases must not change at all (an origin while its snapshot is fuzzed). */
  others: FuzzExport[];
}

export type CaseKind = 'handshake' | 'transmission' | 'random';

export interface CampaignOptions {
  seed: number;
  cases: number;
  batchSize: number;
  parallel: number;
  kinds: CaseKind[];
  /** Resident memory must stay below this after every batch. */
  rssLimitMiB: number;
  onBatch?: (report: BatchReport) => void;
}

export interface BatchReport {
  batch: number;
  casesRun: number;
  rssMiB: number;
  dirtyBytes: number;
}

/** A valid handshake straight into transmission (pipelined, replies drained by the runner). */
function handshakePrefix(rng: Rng, name: string): Buffer {
  const parts = [u32(rng.pick([1, 3]))];
  const structured = rng.chance(0.5);
  if (structured) parts.push(option(OPT.STRUCTURED_REPLY));
  if (structured && rng.chance(0.5)) parts.push(option(OPT.SET_META, metaData(name, ['base:allocation'])));
  parts.push(option(OPT.GO, goData(name, [3])));
  return Buffer.concat(parts);
}

function makeCase(rng: Rng, kind: CaseKind, target: FuzzTarget): FuzzCase {
  const { name, model } = target.fuzzed;
  if (kind === 'random') return planCase(rng, randomBytes(rng, rng.int(0, 2048)));
  if (kind === 'handshake') return planCase(rng, mutateFrames(rng, handshakeFrames(rng, name)));
  const space = { size: model.size, scratchStart: model.size - model.size / 4 };
  const frames = requestFrames(rng, space);
  const requests = rng.chance(0.6) ? mutateFrames(rng, frames) : mutateBytes(rng, Buffer.concat(frames.map((f) => f.bytes)));
  model.markRequests(requests);
  return planCase(rng, Buffer.concat([handshakePrefix(rng, name), requests]));
}

class CampaignFailure extends Error {}

async function check(target: FuzzTarget, bystander: NbdEndpoint, rng: Rng, where: string): Promise<void> {
  const fail = (what: string): never => {
    throw new CampaignFailure(`${where}: ${what}`);
  };
  if (!isAlive(target.pid)) fail('the server process died');
  const byWhom = await target.fuzzed.model.verify(bystander, rng, 3).catch((err: Error) => `error ${err.message}`);
  if (byWhom) fail(`the bystander connection: ${byWhom}`);
  const fresh = await NbdEndpoint.open(target.socket, target.fuzzed.name).catch((err: Error) => fail(`a fresh connection failed: ${err.message}`));
  try {
    const seen = await target.fuzzed.model.verify(fresh, rng, 6).catch((err: Error) => `error ${err.message}`);
    if (seen) fail(`a fresh connection to ${JSON.stringify(target.fuzzed.name)}: ${seen}`);
    for (const other of target.others) {
      const view = await NbdEndpoint.open(target.socket, other.name);
      const diff = await other.model.verify(view, rng, 6).catch((err: Error) => `error ${err.message}`);
      view.close();
      if (diff) fail(`export ${JSON.stringify(other.name)} changed: ${diff}`);
    }
    await target.fuzzed.model.repair(fresh);
  } finally {
    fresh.close();
  }
}

/** Run the campaign; throws on the first failed check with the seed and batch to replay. */
export async function runCampaign(target: FuzzTarget, opts: CampaignOptions): Promise<BatchReport[]> {
  const rng = makeRng(opts.seed);
  const reports: BatchReport[] = [];
  let run = 0;
  for (let batch = 1; run < opts.cases; batch++) {
    const where = `seed ${opts.seed} batch ${batch}`;
    const bystander = await NbdEndpoint.open(target.socket, target.fuzzed.name);
    target.fuzzed.model.beginBatch();
    const count = Math.min(opts.batchSize, opts.cases - run);
    const cases = Array.from({ length: count }, () => makeCase(rng, rng.pick(opts.kinds), target));
    const dirtyBytes = target.fuzzed.model.dirtyBytes;
    await runCases(target.socket, cases, rng, opts.parallel);
    run += count;
    await untilIdle(target.pid); // writes of closed connections have landed
    try {
      await check(target, bystander, rng, where);
    } finally {
      bystander.close();
    }
    const rss = rssMiB(target.pid);
    const report = { batch, casesRun: run, rssMiB: rss, dirtyBytes };
    reports.push(report);
    opts.onBatch?.(report);
    if (rss > opts.rssLimitMiB) throw new CampaignFailure(`${where}: server RSS ${rss.toFixed(0)} MiB > ${opts.rssLimitMiB} MiB`);
  }
  return reports;
}
