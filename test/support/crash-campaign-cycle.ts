// One cycle of the SIGKILL campaign (see crash-campaign.ts): load, kill, check the COW files
// offline, restart, reconcile the snapshot list, read every export back against the model.
import fs from 'node:fs/promises';
import path from 'node:path';
import { callDaemon } from '../../src/control/client.ts';
import { startDaemon } from './daemon-harness.ts';
import { NbdEndpoint } from './crash-endpoint.ts';
import { SECTOR } from './crash-pattern.ts';
import { checkCowImage } from './crash-cow-check.ts';
import { ORIGIN, sleep, type Campaign } from './crash-campaign.ts';

const READ_SECTORS = 256;

export async function killCycle(c: Campaign): Promise<void> {
  await c.connectAll();
  const killAfterMs = c.rng.int(50, 1500);
  const running = c.workload.run(c.opts.workers ?? 6);
  const creating = c.rng.chance(0.4) ? c.createDuringLoad(c.rng.int(0, killAfterMs / 2)) : Promise.resolve();
  await sleep(killAfterMs);
  c.workload.stop();
  c.d.proc.kill('SIGKILL');
  await c.d.exited;
  c.result.kills++;
  await running;
  await creating;
  for (const name of c.model.names) c.workload.disconnect(name);
  c.result.failures.push(...c.workload.failures.splice(0));
  await checkCows(c);
  c.d = await startDaemon(c.dir);
  await reconcile(c);
  await verifyExports(c);
  await maintain(c);
}

/** Every P/PO COW file parses as a consistent store (read offline, the daemon is dead). */
async function checkCows(c: Campaign): Promise<void> {
  for (const [name, info] of c.snaps) {
    if (info.kind === 'N') continue;
    let image: Buffer;
    try {
      image = await fs.readFile(path.join(c.d.dataDir, 'cow', `${name}.cow`));
    } catch {
      continue; // killed before the COW file was made: the restart rolls the create back
    }
    const check = checkCowImage(image, info.chunkSectors, Math.ceil(c.originBytes / (info.chunkSectors * SECTOR)));
    c.result.cowRecordsChecked += check.records;
    if (check.state === 'invalid') c.result.failures.push(`${name}: COW header says invalid after a SIGKILL`);
    for (const p of check.problems) c.result.failures.push(`${name} COW: ${p}`);
  }
}

/** After the restart: P/PO snapshots active, N reported failed (then removed), interrupted creates either fully there or gone. */
async function reconcile(c: Campaign): Promise<void> {
  const listed = await callDaemon(c.d.control, { op: 'snapshot.list' });
  const known = new Set(c.model.names);
  for (const name of c.model.names.filter((n) => n !== ORIGIN)) {
    const info = listed.find((s) => s.name === name);
    if (!info) {
      if (c.unconfirmed.has(name)) c.result.createsInterrupted++;
      else c.result.failures.push(`snapshot ${name} disappeared after the restart`);
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
  for (const s of listed) if (!known.has(s.name)) c.result.failures.push(`unexpected snapshot ${s.name} after the restart`);
  c.unconfirmed.clear(); // a create the daemon finished before it died is a created snapshot
}

function forget(c: Campaign, name: string): void {
  c.model.drop(name);
  c.snaps.delete(name);
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

/** Keep 2-4 snapshots: replace the N snapshot a restart dropped, retire the oldest when too many. */
async function maintain(c: Campaign): Promise<void> {
  const snaps = [...c.snaps.keys()];
  if (snaps.length > 4) {
    await callDaemon(c.d.control, { op: 'snapshot.remove', name: snaps[0], force: true });
    forget(c, snaps[0]);
  }
  if (![...c.snaps.values()].some((s) => s.kind === 'N') && c.rng.chance(0.7)) {
    if (!(await c.createSnapshot('N'))) c.result.failures.push('creating an N snapshot between kills failed');
  }
}
