// The SIGKILL campaign against the real daemon (spawned by daemon-harness): an origin file with
// P, PO and N snapshots, a random workload over several NBD connections per export, snapshot
// creation in the middle of the workload, SIGKILL after a random delay, raw consistency check of
// every COW file, restart, then every export read in full and compared with the CrashModel.
// Some rounds merge a snapshot into the origin and kill the daemon during the merge
// (crash-campaign-merge.ts).
// Shared by test/crash/sigkill.test.ts (CI size) and scripts/crash-campaign.ts (long mode).
import fs from 'node:fs/promises';
import path from 'node:path';
import { callDaemon } from '../../src/control/client.ts';
import type { SnapshotKind } from '../../src/control/api.ts';
import { startDaemon, tempDir, type DaemonHandle } from './daemon-harness.ts';
import { CrashModel } from './crash-model.ts';
import { NbdEndpoint, NbdReplyError, type Endpoint } from './crash-endpoint.ts';
import { SECTOR, taggedBuffer } from './crash-pattern.ts';
import { checkCowImage } from './crash-cow-check.ts';
import { Workload, type WorkloadCounts } from './crash-workload.ts';
import { makeRng, type Rng } from './prng.ts';
import { killCycle } from './crash-campaign-cycle.ts';
import { mergeRound } from './crash-campaign-merge.ts';

export interface CampaignOptions {
  kills: number;
  seed: number;
  originBytes?: number;
  workers?: number;
  /** Chance that a round is a merge round (crash-campaign-merge.ts) rather than a plain one (default 0.3). */
  mergeChance?: number;
  /** Progress lines (one per kill). */
  log?: (line: string) => void;
}

export interface CampaignResult {
  kills: number;
  failures: string[];
  /** Sectors that held neither their guaranteed value nor a later write (the honest "lost" count). */
  lostSectors: number;
  counts: WorkloadCounts;
  snapshotsCreated: number;
  createsInterrupted: number;
  cowRecordsChecked: number;
  nSnapshotsReportedFailed: number;
  /** Merges run to their end, the origin file then checked byte for byte. */
  merges: number;
  /** Kills in merge rounds once the merge was asked for (by SIGKILL or a merge fault point). */
  mergeKills: number;
  /** Restarts that found the merge still running and resumed it. */
  mergeResumes: number;
}

interface SnapInfo {
  kind: SnapshotKind;
  chunkSectors: number;
}

export const ORIGIN = 'origin';

export class Campaign {
  readonly opts: CampaignOptions;
  readonly result: CampaignResult;
  readonly rng: Rng;
  readonly model: CrashModel;
  readonly workload: Workload;
  readonly snaps = new Map<string, SnapInfo>();
  /** Snapshots asked for whose create has not been confirmed (the daemon may have died meanwhile). */
  readonly unconfirmed = new Set<string>();
  readonly dir = tempDir('crash-');
  readonly originBytes: number;
  d!: DaemonHandle;
  private counter = 0;

  constructor(opts: CampaignOptions) {
    this.opts = opts;
    this.rng = makeRng(opts.seed);
    this.originBytes = opts.originBytes ?? 2 << 20;
    this.model = new CrashModel(this.originBytes / SECTOR, true);
    this.workload = new Workload(this.model, this.rng);
    this.result = { kills: 0, failures: [], lostSectors: 0, counts: this.workload.counts, snapshotsCreated: 0, createsInterrupted: 0, cowRecordsChecked: 0, nSnapshotsReportedFailed: 0, merges: 0, mergeKills: 0, mergeResumes: 0 };
  }

  async setup(): Promise<void> {
    const file = path.join(this.dir, 'origin.img');
    await fs.writeFile(file, taggedBuffer(0, this.originBytes / SECTOR, 0));
    this.d = await startDaemon(this.dir);
    await callDaemon(this.d.control, { op: 'origin.add', name: ORIGIN, path: file });
    this.model.addDevice(ORIGIN);
    for (const kind of ['P', 'PO', 'N'] as const) await this.createSnapshot(kind);
  }

  /** Create a snapshot through the CLI; the origin must be quiescent. Returns false if the daemon died meanwhile. */
  async createSnapshot(kind: SnapshotKind): Promise<boolean> {
    const name = `${kind.toLowerCase()}${this.counter++}`;
    const chunkSectors = this.rng.pick([8, 16, 32]);
    this.model.addSnapshot(name, ORIGIN); // the point in time: nothing is writing to the origin now
    this.snaps.set(name, { kind, chunkSectors });
    this.unconfirmed.add(name);
    const cowSize = `${Math.ceil((this.originBytes * 1.1) / 1024) + 64}K`;
    const r = await this.d.cli('snapshot', 'create', name, '--origin', ORIGIN, '--size', cowSize, '--persistent', kind, '--chunk-size', String(chunkSectors));
    if (r.code !== 0) {
      if (!this.workload.stopped) this.result.failures.push(`snapshot create ${name} failed: ${r.stderr}`);
      return false;
    }
    this.unconfirmed.delete(name);
    this.result.snapshotsCreated++;
    return true;
  }

  async connectAll(): Promise<void> {
    for (const name of this.model.names) {
      const connections = name === ORIGIN ? 3 : 1;
      for (let i = 0; i < connections; i++) this.workload.connect(name, untilExit(this.d, await NbdEndpoint.open(this.d.nbdSocket, name)));
    }
  }

  /** Snapshot creation racing with the workload: origin writes drained first, the rest goes on. */
  async createDuringLoad(delayMs: number): Promise<void> {
    await sleep(delayMs);
    await this.workload.quiesce(ORIGIN);
    try {
      const before = new Set(this.model.names);
      if (await this.createSnapshot(this.rng.pick(['P', 'PO'] as const))) {
        const name = this.model.names.find((n) => !before.has(n))!;
        this.workload.connect(name, await NbdEndpoint.open(this.d.nbdSocket, name));
      }
    } catch {
      // The daemon was killed while the new export was being opened: the restart sorts it out.
    } finally {
      this.workload.resume(ORIGIN);
    }
  }
}

/**
 * `ep`, except that a request failing for want of a connection (not an NBD error reply) settles
 * only once the daemon has exited (2 s at most) and after a turn of the event loop: a daemon that
 * kills itself (a fault point) must not leave the workers spinning on failures that settle at
 * once, starving the timers and the exit event that end the workload.
 */
function untilExit(d: DaemonHandle, ep: Endpoint): Endpoint {
  const settle = async <T>(request: Promise<T>): Promise<T> => {
    try {
      return await request;
    } catch (err) {
      if (!(err instanceof NbdReplyError)) {
        await Promise.race([d.exited, sleep(2000)]);
        await new Promise((resolve) => setImmediate(resolve));
      }
      throw err;
    }
  };
  return {
    read: (sector, count) => settle(ep.read(sector, count)),
    write: (data, sector, fua) => settle(ep.write(data, sector, fua)),
    flush: () => settle(ep.flush()),
    close: () => ep.close(),
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Run the campaign: setup, then `kills` cycles of load, SIGKILL, check, restart, verify. */
export async function runCampaign(opts: CampaignOptions): Promise<CampaignResult> {
  const c = new Campaign(opts);
  try {
    await c.setup();
    while (c.result.kills < opts.kills && c.result.failures.length === 0) {
      // A merge round at random, and at the latest halfway through if none has finished yet.
      const late = c.result.merges === 0 && c.result.kills >= opts.kills / 2;
      const merging = (c.rng.chance(opts.mergeChance ?? 0.3) || late) && [...c.snaps.values()].some((s) => s.kind !== 'N');
      await (merging ? mergeRound(c) : killCycle(c));
      opts.log?.(`${merging ? 'merge round' : 'kill'} ${c.result.kills}: snapshots ${c.model.names.filter((n) => n !== ORIGIN).join(' ')}; ${JSON.stringify(c.result.counts)}`);
    }
    await c.d.stop();
  } catch (err) {
    // A step that throws (an export that cannot even be opened) ends the campaign as a failure,
    // after what was recorded before it, which usually says why.
    c.result.failures.push(`campaign stopped: ${(err as Error).stack ?? String(err)}`);
    if (c.d) c.result.failures.push(`daemon log (end):\n${c.d.log().slice(-4000)}`);
  } finally {
    if (c.d && c.d.proc.exitCode === null && c.d.proc.signalCode === null) c.d.proc.kill('SIGKILL');
    if (c.result.failures.length === 0) await fs.rm(c.dir, { recursive: true, force: true });
    else opts.log?.(`kept ${c.dir} for inspection`);
  }
  return c.result;
}
