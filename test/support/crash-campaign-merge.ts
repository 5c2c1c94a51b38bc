// Merge rounds of the SIGKILL campaign (crash-campaign.ts; the plain rounds are in
// crash-campaign-cycle.ts). A round restarts the daemon (SIGTERM) with small merge batches
// (NBDSNAP_MERGE_BATCH_BYTES, so that a merge lasts seconds) and, sometimes, a merge fault point
// armed (the daemon SIGKILLs itself once the merge is marked in the catalog, after the Nth
// committed batch, once the merged snapshot is detached, or once its COW file is deleted). Under the workload, it quiesces the
// origin and a P/PO snapshot, reads the snapshot back (checked against the model), and from then
// on the model's origin is that image: `snapshot merge` makes the origin show it at once, and
// the workload goes on writing to the origin and the other snapshots during the merge (every
// read of the origin must show the snapshot's content plus the writes acknowledged since). Then,
// until the merge is over: SIGKILL (first when the merge reaches a random percentage, then at
// random moments), COW files checked offline (the merging one too), restart, the merge resumed
// ('merging') or done, every export read back against the model.
// Once it is done, the origin file itself holds exactly the model (snapshot at merge start +
// acknowledged writes), the merged snapshot's COW file is gone, and the other snapshots were
// checked against their own points in time all along. After MAX_KILLS kills the merge is left to
// finish under the workload.
import fs from 'node:fs/promises';
import path from 'node:path';
import { callDaemon } from '../../src/control/client.ts';
import { startDaemon } from './daemon-harness.ts';
import { NbdEndpoint } from './crash-endpoint.ts';
import { SECTOR } from './crash-pattern.ts';
import { checkCowImage } from './crash-cow-check.ts';
import { ORIGIN, sleep, type Campaign } from './crash-campaign.ts';

const MAX_KILLS = 3;
const READ_SECTORS = 256;

interface Merging {
  name: string;
  chunkSectors: number;
}

/** One merge round (the daemon is running, nothing connected). Does nothing without a P/PO snapshot. */
export async function mergeRound(c: Campaign): Promise<void> {
  const candidates = [...c.snaps].filter(([, s]) => s.kind !== 'N').map(([name]) => name);
  if (candidates.length === 0) return;
  const stopped = await c.d.stop('SIGTERM');
  if (stopped.code !== 0) c.result.failures.push(`daemon stopped with ${stopped.code ?? stopped.signal} on SIGTERM:\n${c.d.log().slice(-2000)}`);
  const fault = c.rng.pick(['', '', '', 'snapshot-merge:after-mark', `snapshot-merge:after-batch@${c.rng.int(1, 40)}`, 'snapshot-merge:after-detach', 'snapshot-merge:after-cow-delete']);
  await restart(c, fault, null);
  const name = await pickSnapshot(c, candidates);
  const merging: Merging = { name, chunkSectors: c.snaps.get(name)!.chunkSectors };
  let running: Promise<void> | null = (await load(c)).running;
  await sleep(c.rng.int(0, 300));
  await startMerge(c, merging);
  let done = false;
  for (let kills = 0; !done && kills < MAX_KILLS && c.result.kills < c.opts.kills && c.result.failures.length === 0; kills++) {
    running ??= (await load(c)).running;
    await killMoment(c, merging, kills === 0);
    await crash(c, running, merging);
    running = null;
    done = (await restart(c, '', merging)) === 'done';
    if (!done) c.result.mergeResumes++;
  }
  if (running) await endLoad(c, running); // the merge could not even start: a failure is recorded
  else if (!done && c.result.failures.length === 0) await finishUnderLoad(c, merging);
  if (c.result.failures.length === 0) await checkMerged(c, merging);
  // Nothing runs now: a new P/PO snapshot takes the merged one's place for the rounds to come.
  if (c.result.failures.length === 0 && !(await c.createSnapshot(c.rng.pick(['P', 'PO'] as const)))) c.result.failures.push('creating a snapshot after a merge failed');
}

/** One with at least 64 chunks allocated, at random (a merge of some length, to kill it in the middle), else the fullest. */
async function pickSnapshot(c: Campaign, candidates: string[]): Promise<string> {
  const listed = await callDaemon(c.d.control, { op: 'snapshot.list' });
  const chunks = (name: string) => {
    const info = listed.find((s) => s.name === name);
    return (info?.allocatedSectors ?? 0) / (info?.chunkSectors ?? 1);
  };
  const big = candidates.filter((name) => chunks(name) >= 64);
  return big.length > 0 ? c.rng.pick(big) : candidates.reduce((a, b) => (chunks(b) > chunks(a) ? b : a));
}

/**
 * Wait for the moment to kill: the first time in a round, the merge reaching a random percentage
 * (so at least one kill per round lands in the middle of the merge), later a random delay. An
 * armed fault point may kill the daemon first.
 */
async function killMoment(c: Campaign, m: Merging, first: boolean): Promise<void> {
  if (!first) {
    await Promise.race([sleep(c.rng.int(50, 1500)), c.d.exited]);
    return;
  }
  const target = c.rng.int(1, 95);
  const deadline = Date.now() + 60_000;
  while (alive(c) && Date.now() < deadline) {
    const listed = await callDaemon(c.d.control, { op: 'snapshot.list' }).catch(() => null);
    const info = listed?.find((s) => s.name === m.name);
    if (!info || (info.merge?.percent ?? 0) >= target) return; // died, done, or far enough
    await Promise.race([sleep(20), c.d.exited]);
  }
}

/** Connect and start the workload (connected first: a stop() before run() would not stop it). */
async function load(c: Campaign): Promise<{ running: Promise<void> }> {
  await c.connectAll();
  return { running: c.workload.run(c.opts.workers ?? 6) };
}

/**
 * Quiesce the origin and the snapshot, read the snapshot: that is the origin from now on. Then
 * `snapshot merge` (--force: our own connections to it were just closed, the daemon may not have
 * seen it yet). A daemon killed by the after-mark fault resumes the merge at its restart.
 */
async function startMerge(c: Campaign, m: Merging): Promise<void> {
  await c.workload.quiesce(ORIGIN);
  await c.workload.quiesce(m.name);
  try {
    const image = await readAll(c, m.name);
    const bad = c.model.checkImage(m.name, image, Infinity);
    c.result.lostSectors += bad.length;
    c.result.failures.push(...bad.slice(0, 10));
    c.model.settle(ORIGIN, image);
    c.workload.disconnect(m.name);
    c.model.drop(m.name);
    c.snaps.delete(m.name);
    try {
      await callDaemon(c.d.control, { op: 'snapshot.merge', name: m.name, force: true });
    } catch (err) {
      await Promise.race([c.d.exited, sleep(5000)]);
      if (alive(c)) c.result.failures.push(`snapshot merge ${m.name} failed: ${(err as Error).message}`);
    }
  } finally {
    c.workload.resume(ORIGIN);
  }
}

function alive(c: Campaign): boolean {
  return c.d.proc.exitCode === null && c.d.proc.signalCode === null;
}

/** SIGKILL (unless a fault point killed it already), let the workload end, check the COW files offline. */
async function crash(c: Campaign, running: Promise<void>, m: Merging): Promise<void> {
  const selfKilled = !alive(c);
  c.workload.stop();
  c.d.proc.kill('SIGKILL');
  await c.d.exited;
  c.result.kills++;
  c.result.mergeKills++;
  await running;
  for (const name of c.model.names) c.workload.disconnect(name);
  // A daemon that killed itself dropped its connections before stop(): those failures are the
  // crash itself. An error reply (NBD error) or a wrong read is still a failure.
  const expected = (f: string) => selfKilled && f.startsWith('request failed before the crash') && !/NBD error/.test(f);
  c.result.failures.push(...c.workload.failures.splice(0).filter((f) => !expected(f)));
  await checkCows(c, m);
}

/** Every P/PO COW file, the merging one included while it exists, parses as a consistent store. */
async function checkCows(c: Campaign, m: Merging): Promise<void> {
  const cows = [...c.snaps].filter(([, s]) => s.kind !== 'N').map(([name, s]) => ({ name, chunkSectors: s.chunkSectors }));
  for (const { name, chunkSectors } of [...cows, m]) {
    let image: Buffer;
    try {
      image = await fs.readFile(path.join(c.d.dataDir, 'cow', `${name}.cow`));
    } catch {
      if (name !== m.name) c.result.failures.push(`${name}: COW file missing after a SIGKILL`);
      continue; // the merged snapshot's COW is deleted at the end of its merge
    }
    const check = checkCowImage(image, chunkSectors, Math.ceil(c.originBytes / (chunkSectors * SECTOR)));
    c.result.cowRecordsChecked += check.records;
    if (check.state !== 'valid') c.result.failures.push(`${name}: COW is ${check.state} after a SIGKILL`);
    for (const p of check.problems) c.result.failures.push(`${name} COW: ${p}`);
  }
}

/**
 * Start the daemon (with `fault` armed), reconcile the snapshot list and read every export back
 * against the model. Returns where the merge `m` stands ('none' without one).
 */
async function restart(c: Campaign, fault: string, m: Merging | null): Promise<'merging' | 'done' | 'none'> {
  const batch = c.rng.pick([8192, 16384, 32768]);
  c.d = await startDaemon(c.dir, { env: { NBDSNAP_MERGE_BATCH_BYTES: String(batch), NBDSNAP_FAULT: fault } });
  const listed = await callDaemon(c.d.control, { op: 'snapshot.list' });
  const known = new Set(c.model.names);
  for (const name of c.model.names.filter((n) => n !== ORIGIN)) {
    const info = listed.find((s) => s.name === name);
    if (!info) {
      c.result.failures.push(`snapshot ${name} disappeared after the restart`);
      forget(c, name);
    } else if (c.snaps.get(name)!.kind === 'N') {
      if (info.state !== 'failed') c.result.failures.push(`N snapshot ${name} is ${info.state} after a restart, expected failed`);
      else c.result.nSnapshotsReportedFailed++;
      await callDaemon(c.d.control, { op: 'snapshot.remove', name, force: true });
      forget(c, name);
    } else if (info.state !== 'active') {
      c.result.failures.push(`snapshot ${name} is ${info.state} after the restart: ${info.error}`);
    }
  }
  const merge = m ? listed.find((s) => s.name === m.name) : undefined;
  if (merge && merge.state !== 'merging') c.result.failures.push(`merging snapshot ${m!.name} is ${merge.state} after the restart: ${merge.error}`);
  for (const s of listed) if (!known.has(s.name) && s.name !== m?.name) c.result.failures.push(`unexpected snapshot ${s.name} after the restart`);
  await verifyExports(c);
  return !m ? 'none' : merge ? 'merging' : 'done';
}

function forget(c: Campaign, name: string): void {
  c.model.drop(name);
  c.snaps.delete(name);
}

/** Let the merge finish while the workload runs, then stop the workload and read everything back. */
async function finishUnderLoad(c: Campaign, m: Merging): Promise<void> {
  const { running } = await load(c);
  const deadline = Date.now() + 120_000;
  while ((await callDaemon(c.d.control, { op: 'snapshot.list' })).some((s) => s.name === m.name)) {
    if (Date.now() > deadline) {
      c.result.failures.push(`merge of ${m.name} not done after 120 s`);
      break;
    }
    await sleep(100);
  }
  await endLoad(c, running);
  await verifyExports(c);
}

/** Stop the workload (no crash: every request completes) and disconnect it. */
async function endLoad(c: Campaign, running: Promise<void>): Promise<void> {
  c.workload.stop();
  await running;
  for (const name of c.model.names) c.workload.disconnect(name);
  c.result.failures.push(...c.workload.failures.splice(0));
}

/** The merge is over: the origin file holds exactly the model, the merged COW file is gone. */
async function checkMerged(c: Campaign, m: Merging): Promise<void> {
  const file = await fs.readFile(path.join(c.dir, 'origin.img'));
  const bad = c.model.checkImage(ORIGIN, file, Infinity); // settled: one value per sector
  c.result.lostSectors += bad.length;
  c.result.failures.push(...bad.slice(0, 10).map((b) => `origin file after the merge of ${m.name}: ${b}`));
  const cowLeft = await fs.access(path.join(c.d.dataDir, 'cow', `${m.name}.cow`)).then(() => true, () => false);
  if (cowLeft) c.result.failures.push(`${m.name}.cow still there after its merge`);
  c.result.merges++;
}

async function readAll(c: Campaign, name: string): Promise<Buffer> {
  const ep = await NbdEndpoint.open(c.d.nbdSocket, name);
  try {
    const parts: Promise<Buffer>[] = [];
    for (let s = 0; s < c.model.sectors; s += READ_SECTORS) parts.push(ep.read(s, Math.min(READ_SECTORS, c.model.sectors - s)));
    return Buffer.concat(await Promise.all(parts));
  } finally {
    ep.close();
  }
}

/** Every export, read in full, holds for each sector its guaranteed value or a later write. */
async function verifyExports(c: Campaign): Promise<void> {
  for (const name of c.model.names) {
    const image = await readAll(c, name);
    const bad = c.model.checkImage(name, image, Infinity);
    c.result.lostSectors += bad.length;
    c.result.failures.push(...bad.slice(0, 10));
    c.model.settle(name, image);
  }
}
