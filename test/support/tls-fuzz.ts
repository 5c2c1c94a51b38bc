// Fuzz cases for a server that requires TLS, where a plaintext attacker sits before STARTTLS:
//   plain    mutated option streams and random bytes, all before TLS (the ERR_TLS_REQD gate);
//   inject   a STARTTLS followed, in the same stream, by whatever an injector would add: options,
//            random bytes, or a fake TLS record (the discard-then-upgrade path and OpenSSL's parser);
//   tls      a real TLS session (STARTTLS, handshake) carrying mutated options or GO plus mutated
//            requests (the handshake and transmission over the TLS socket).
// After each batch the checks mirror fuzz-nbd-campaign.ts, with the fresh connection over TLS.
import type tls from 'node:tls';
import { mutateBytes, mutateFrames, randomBytes } from './fuzz-mutate.ts';
import type { ExportModel } from './fuzz-nbd-model.ts';
import { handshakeFrames, requestFrames } from './fuzz-nbd-frames.ts';
import { planCase, runCase, type FuzzCase } from './fuzz-nbd-run.ts';
import { isAlive, rssMiB, untilIdle } from './fuzz-proc.ts';
import { OPT, RawClient, goData, option, u16, u32 } from './nbd-test-client.ts';
import type { Rng } from './prng.ts';
import { TlsEndpoint, startTls } from './tls-client.ts';

export type TlsCaseKind = 'plain' | 'inject' | 'tls';

export interface TlsFuzzTarget {
  socket: string;
  pid: number;
  name: string;
  model: ExportModel;
  tlsOptions: tls.ConnectionOptions;
}

type Case = { kind: 'plain' | 'inject'; plan: FuzzCase } | { kind: 'tls'; bytes: Buffer; lingerMs: number };

/** What an injector appends after STARTTLS. */
function injected(rng: Rng, name: string): Buffer {
  switch (rng.int(0, 2)) {
    case 0: return mutateFrames(rng, handshakeFrames(rng, name).slice(1));
    case 1: return randomBytes(rng, rng.int(1, 600));
    default: {
      const body = randomBytes(rng, rng.int(0, 400));
      return Buffer.concat([Buffer.from([0x16, 0x03, rng.int(0, 4)]), u16(rng.chance(0.8) ? body.length : rng.int(0, 0xffff)), body]);
    }
  }
}

function makeCase(rng: Rng, kind: TlsCaseKind, t: TlsFuzzTarget): Case {
  if (kind === 'plain') {
    const bytes = rng.chance(0.8) ? mutateFrames(rng, handshakeFrames(rng, t.name)) : randomBytes(rng, rng.int(0, 2048));
    return { kind, plan: planCase(rng, bytes) };
  }
  if (kind === 'inject') {
    const before = handshakeFrames(rng, t.name).slice(1, rng.int(1, 3)).map((f) => f.bytes);
    return { kind, plan: planCase(rng, Buffer.concat([u32(rng.pick([1, 3])), ...before, option(OPT.STARTTLS), injected(rng, t.name)])) };
  }
  if (rng.chance(0.4)) return { kind, bytes: mutateFrames(rng, handshakeFrames(rng, t.name).slice(1)), lingerMs: rng.int(0, 30) };
  const space = { size: t.model.size, scratchStart: t.model.size - t.model.size / 4 };
  const requests = mutateBytes(rng, Buffer.concat(requestFrames(rng, space).map((f) => f.bytes)));
  t.model.markRequests(requests);
  return { kind, bytes: Buffer.concat([option(OPT.GO, goData(t.name)), requests]), lingerMs: rng.int(0, 30) };
}

/** STARTTLS, the TLS handshake, then `bytes` over TLS; never rejects (the server may hang up on us). */
async function runOverTls(t: TlsFuzzTarget, c: Extract<Case, { kind: 'tls' }>): Promise<void> {
  let secure: RawClient | undefined;
  try {
    const plain = await RawClient.connect(t.socket);
    await plain.greet();
    secure = await startTls(plain, t.tlsOptions);
    secure.send(c.bytes);
    await Promise.race([secure.closed, new Promise((r) => setTimeout(r, c.lingerMs))]);
  } catch {
    // A refused or dropped connection is a legitimate answer to a hostile stream.
  } finally {
    secure?.destroy();
  }
}

async function runAll(t: TlsFuzzTarget, cases: Case[], rng: Rng, parallel: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < cases.length) {
      const c = cases[next++];
      await (c.kind === 'tls' ? runOverTls(t, c) : runCase(t.socket, c.plan, rng));
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

/** After a batch: alive, a fresh TLS connection reads what it must (then repairs), memory bounded. */
async function check(t: TlsFuzzTarget, rng: Rng, rssLimitMiB: number, where: string): Promise<number> {
  if (!isAlive(t.pid)) throw new Error(`${where}: the server process died`);
  const fresh = await TlsEndpoint.open(t.socket, t.name, t.tlsOptions).catch((err: Error) => {
    throw new Error(`${where}: a fresh TLS connection failed: ${err.message}`);
  });
  try {
    const seen = await t.model.verify(fresh, rng, 6);
    if (seen) throw new Error(`${where}: ${seen}`);
    await t.model.repair(fresh);
  } finally {
    fresh.close();
  }
  const rss = rssMiB(t.pid);
  if (rss > rssLimitMiB) throw new Error(`${where}: server RSS ${rss.toFixed(0)} MiB > ${rssLimitMiB} MiB`);
  return rss;
}

export interface TlsCampaignOptions {
  cases: number;
  batchSize: number;
  parallel: number;
  kinds: TlsCaseKind[];
  rssLimitMiB: number;
}

/** Run the batches; resolves with the RSS after each; throws at the first failed check. */
export async function runTlsCampaign(t: TlsFuzzTarget, rng: Rng, opts: TlsCampaignOptions): Promise<number[]> {
  const rss: number[] = [];
  for (let done = 0, batch = 1; done < opts.cases; batch++) {
    const count = Math.min(opts.batchSize, opts.cases - done);
    t.model.beginBatch();
    const cases = Array.from({ length: count }, () => makeCase(rng, rng.pick(opts.kinds), t));
    await runAll(t, cases, rng, opts.parallel);
    done += count;
    await untilIdle(t.pid);
    rss.push(await check(t, rng, opts.rssLimitMiB, `batch ${batch}`));
  }
  return rss;
}
