// The power-cut simulation loop (see powercut-device.ts and crash-powercut-world.ts): run the
// workload on the in-process targets, cut the power at a random operation, check every COW
// image offline, restart every device from what survived, reopen the stores, and compare every
// device with the model. Some loads merge a snapshot into the origin, and the merge goes on
// through the following cuts until it is done (crash-powercut-merge.ts). Used by
// test/crash/powercut.test.ts and scripts/crash-campaign.ts.
import { checkCowImage } from './crash-cow-check.ts';
import { SECTOR } from './crash-pattern.ts';
import { PowercutMerge, type MergeCounts } from './crash-powercut-merge.ts';
import { ORIGIN, PowercutWorld } from './crash-powercut-world.ts';

export interface PowercutOptions {
  seed: number;
  cuts: number;
  originBytes?: number;
}

export interface PowercutResult extends MergeCounts {
  cuts: number;
  failures: string[];
  /** Sectors that held neither their guaranteed value nor a later write. */
  lostSectors: number;
  /** Sectors whose newest write was not yet guaranteed at a cut (what the cut could drop). */
  uncertainSectors: number;
  writes: number;
  fuaWrites: number;
  flushes: number;
  createsDuringLoad: number;
  cowRecordsChecked: number;
  blankCows: number;
}

function ticks(n: number): Promise<void> {
  let p = Promise.resolve();
  for (let i = 0; i < n; i++) p = p.then(() => new Promise<void>((resolve) => setImmediate(resolve)));
  return p;
}

/** Snapshot creation racing with the workload (origin writes drained first). */
async function createDuringLoad(w: PowercutWorld, r: PowercutResult): Promise<void> {
  await ticks(w.rng.int(0, 20));
  if (w.rail.isCut) return;
  await w.workload.quiesce(ORIGIN);
  try {
    if (!w.rail.isCut) await w.createSnapshot(w.rng.pick(['P', 'PO', 'N'] as const));
    r.createsDuringLoad++;
  } finally {
    w.workload.resume(ORIGIN);
  }
}

/** A merge starting under the workload (a load that starts one creates no snapshot). */
async function mergeDuringLoad(w: PowercutWorld, pm: PowercutMerge): Promise<void> {
  await ticks(w.rng.int(0, 20));
  await pm.startDuringLoad();
}

async function loadUntilCut(w: PowercutWorld, r: PowercutResult, pm: PowercutMerge): Promise<void> {
  const cut = w.rail.armAfter(w.rng.int(1, 300), () => w.workload.stop(true));
  const running = w.workload.run(4);
  const roll = w.rng.next();
  const side = pm.active ? Promise.resolve() : roll < 0.3 ? createDuringLoad(w, r) : roll < 0.45 ? mergeDuringLoad(w, pm) : Promise.resolve();
  await cut;
  for (const name of w.model.names) r.uncertainSectors += w.model.uncertainSectors(name);
  await running;
  await side;
  r.failures.push(...w.workload.failures.splice(0));
  const c = w.workload.counts;
  r.writes += c.writes;
  r.fuaWrites += c.fuaWrites;
  r.flushes += c.flushes;
}

function checkCows(w: PowercutWorld, r: PowercutResult): void {
  for (const slot of w.snaps.values()) {
    if (slot.kind === 'N' || !slot.confirmed) continue;
    const check = checkCowImage(w.rail.imageOf(slot.dev), slot.chunkSectors, Math.ceil(w.originBytes / (slot.chunkSectors * SECTOR)));
    r.cowRecordsChecked += check.records;
    if (check.state === 'blank') r.blankCows++;
    if (check.state === 'invalid') r.failures.push(`${slot.name}: COW invalidated by a power cut`);
    for (const p of check.problems) r.failures.push(`${slot.name} (${slot.kind} cs=${slot.chunkSectors}) COW: ${p}`);
  }
}

/** Reopened after the cut: every device holds, per sector, its guaranteed value or a later write. */
async function verify(w: PowercutWorld, r: PowercutResult): Promise<void> {
  const image = Buffer.alloc(w.originBytes);
  await w.origin.read(image, 0);
  const devices: [string, Buffer][] = [[ORIGIN, Buffer.from(image)]];
  for (const slot of w.snaps.values()) {
    if (slot.snap!.store.state !== 'valid') r.failures.push(`${slot.name}: ${slot.snap!.status()} after a power cut`);
    await slot.snap!.read(image, 0);
    devices.push([slot.name, Buffer.from(image)]);
  }
  for (const [name, data] of devices) {
    const bad = w.model.checkImage(name, data, Infinity);
    r.lostSectors += bad.length;
    r.failures.push(...bad.slice(0, 10));
    w.model.settle(name, data);
  }
}

/** Between cuts: keep 2 to 4 snapshots, with an N one most of the time (none is created during a merge). */
async function maintain(w: PowercutWorld, pm: PowercutMerge): Promise<void> {
  const slots = [...w.snaps.values()];
  if (slots.length > 4) {
    await w.origin.removeSnapshot(slots[0].snap!);
    w.forget(slots[0]);
  }
  if (pm.active) return;
  if (w.snaps.size < 2) await w.createSnapshot(w.rng.pick(['P', 'PO'] as const));
  if (!slots.some((s) => s.kind === 'N') && w.rng.chance(0.5)) await w.createSnapshot('N');
}

export async function runPowercuts(opts: PowercutOptions): Promise<PowercutResult> {
  const r: PowercutResult = { cuts: 0, failures: [], lostSectors: 0, uncertainSectors: 0, writes: 0, fuaWrites: 0, flushes: 0, createsDuringLoad: 0, cowRecordsChecked: 0, blankCows: 0, mergesStarted: 0, merges: 0, cutsDuringMerge: 0, tornMergeCommits: 0 };
  const w = new PowercutWorld(opts.seed, opts.originBytes ?? 128 * 1024);
  const pm = new PowercutMerge(w, r, r.failures);
  await w.build();
  for (const kind of ['P', 'PO', 'N'] as const) await w.createSnapshot(kind);
  while (r.cuts < opts.cuts && r.failures.length === 0) {
    await loadUntilCut(w, r, pm);
    r.cuts++;
    checkCows(w, r);
    await pm.cut();
    w.restartDevices();
    await w.build();
    await pm.resume();
    await verify(w, r);
    await pm.finishIfDone();
    await maintain(w, pm);
  }
  if (r.failures.length === 0) await pm.drain();
  return r;
}
