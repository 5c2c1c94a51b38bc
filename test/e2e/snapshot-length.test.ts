// A snapshot keeps the length it was taken with: an origin grown offline is served with its
// snapshots unchanged (and writes past a snapshot's end cost it nothing), an origin shrunk below
// one of its snapshots is reported failed at start until it is grown back, and catalog rows from
// before lengths were recorded get one at the next start.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { mustRun } from '../support/exec.ts';
import { nbdUri, readExport, startDaemon, tempDir, writePattern, type DaemonHandle } from '../support/daemon-harness.ts';

const MiB = 1024 * 1024;
const daemons: DaemonHandle[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

async function daemonIn(dir: string): Promise<DaemonHandle> {
  const d = await startDaemon(dir);
  daemons.push(d);
  return d;
}

async function restart(d: DaemonHandle): Promise<DaemonHandle> {
  await d.stop();
  daemons.splice(daemons.indexOf(d), 1);
  return daemonIn(d.dir);
}

async function find(d: DaemonHandle, what: 'origin' | 'snapshot', name: string): Promise<any> {
  return (await d.ok(what, 'list', '--json')).find((x: any) => x.name === name);
}

/** An origin of random data with one snapshot of it, taken now. */
async function setup(size: number): Promise<{ d: DaemonHandle; base: string; before: Buffer }> {
  const dir = tempDir('length-e2e-');
  dirs.push(dir);
  const base = path.join(dir, 'base.img');
  const before = crypto.randomBytes(size);
  fs.writeFileSync(base, before);
  const d = await daemonIn(dir);
  await d.ok('origin', 'add', 'base', base);
  await d.ok('snapshot', 'create', 'snap', '--origin', 'base', '--size', '4M');
  return { d, base, before };
}

describe('a snapshot keeps its length', () => {
  it('when the origin grew offline: same length, same content, writes past its end cost it nothing', async () => {
    const { d, base, before } = await setup(8 * MiB);
    await writePattern(d, 'base', 0, 64 * 1024, 0x33); // something preserved before the growth
    await d.stop();
    daemons.splice(daemons.indexOf(d), 1);
    fs.appendFileSync(base, crypto.randomBytes(8 * MiB)); // grown while the daemon is stopped
    const grown = await daemonIn(d.dir);
    expect((await find(grown, 'origin', 'base')).sizeBytes).toBe(16 * MiB);
    const snap = await find(grown, 'snapshot', 'snap');
    expect(snap.state).toBe('active');
    expect(snap.sizeBytes).toBe(8 * MiB);
    expect((await grown.ok('status', 'snap', '--json'))[0].sectors).toBe((8 * MiB) / 512);
    expect((await mustRun('nbdinfo', ['--size', nbdUri(grown, 'snap')])).trim()).toBe(String(8 * MiB));
    const allocated = snap.allocatedSectors;
    await writePattern(grown, 'base', 12 * MiB, 2 * MiB, 0x44);
    expect((await find(grown, 'snapshot', 'snap')).allocatedSectors).toBe(allocated);
    expect((await readExport(grown, 'snap')).equals(before)).toBe(true);
  }, 120_000);

  it('when the origin shrank offline below it: the origin is failed at start until grown back', async () => {
    const { d, base, before } = await setup(8 * MiB);
    await writePattern(d, 'base', 6 * MiB, 64 * 1024, 0x55); // preserved in the COW
    await d.stop();
    daemons.splice(daemons.indexOf(d), 1);
    fs.truncateSync(base, 4 * MiB);
    const shrunk = await daemonIn(d.dir);
    const origin = await find(shrunk, 'origin', 'base');
    expect(origin.state).toBe('failed');
    expect(origin.error).toMatch(/shorter than its snapshot/);
    expect((await find(shrunk, 'snapshot', 'snap')).state).toBe('failed');
    const r = await shrunk.cli('status', '--json');
    expect(r.code).toBe(0);
    // Grown back (the user restores the data), everything is served again, the snapshot intact.
    const fd = fs.openSync(base, 'r+');
    fs.writeSync(fd, before, 4 * MiB, 4 * MiB, 4 * MiB);
    fs.closeSync(fd);
    const back = await restart(shrunk);
    expect((await find(back, 'origin', 'base')).state).toBe('active');
    expect((await find(back, 'snapshot', 'snap')).state).toBe('active');
    expect((await readExport(back, 'snap')).equals(before)).toBe(true);
  }, 120_000);

  it('a catalog row from before lengths were recorded gets the origin size at the next start', async () => {
    const { d } = await setup(8 * MiB);
    await d.stop();
    daemons.splice(daemons.indexOf(d), 1);
    const catalog = path.join(d.dataDir, 'catalog.db');
    const db = new BetterSqlite3(catalog);
    db.prepare('UPDATE snapshots SET size_bytes = NULL').run();
    db.close();
    const again = await daemonIn(d.dir);
    expect((await find(again, 'snapshot', 'snap')).sizeBytes).toBe(8 * MiB);
    await again.stop();
    daemons.splice(daemons.indexOf(again), 1);
    const check = new BetterSqlite3(catalog, { readonly: true });
    expect(check.prepare('SELECT size_bytes AS s FROM snapshots').get()).toEqual({ s: 8 * MiB });
    check.close();
  }, 120_000);
});
