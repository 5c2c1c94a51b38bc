// The incremental-backup recipe of docs/incremental-backup.md, end to end with real clients: the
// real daemon and CLI, scripts/incremental-backup.sh (nbdcopy for the full copy, python3-libnbd
// for the changed extents, qemu-img compare for the check), origin writes with qemu-io running
// all the while, both sources of the changed chunks (the NBD meta context and `snapshot diff
// --json`), and a daemon restart between two backups (the map comes back from the COW).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { run } from '../support/exec.ts';
import { BIN, ROOT, readExport, startDaemon, tempDir, writePattern, type DaemonHandle } from '../support/daemon-harness.ts';

const MiB = 1024 * 1024;
const SIZE = 32 * MiB;
const SCRIPT = path.join(ROOT, 'scripts/incremental-backup.sh');

/** This test's dir and daemon (replaced on restart): stopped and removed after each test. */
let current: { dir: string; d?: DaemonHandle } | undefined;
afterEach(async () => {
  await current?.d?.stop();
  if (current) fs.rmSync(current.dir, { recursive: true, force: true });
  current = undefined;
});

/** A daemon with an origin `base` of random data (so a chunk copied from the wrong place never looks right). */
async function setup(): Promise<{ d: DaemonHandle; backup: string }> {
  current = { dir: tempDir('incremental-backup-') };
  fs.writeFileSync(path.join(current.dir, 'base.img'), crypto.randomBytes(SIZE));
  const d = (current.d = await startDaemon(current.dir));
  await d.ok('origin', 'add', 'base', path.join(current.dir, 'base.img'));
  return { d, backup: path.join(current.dir, 'backup.img') };
}

/** Stop the daemon and start a new one on the same data dir. */
async function restart(): Promise<DaemonHandle> {
  await current!.d!.stop();
  current!.d = await startDaemon(current!.dir);
  return current!.d;
}

async function backup(d: DaemonHandle, args: string[], changes = 'bitmap'): Promise<string> {
  const env = { ...process.env, NBDSNAP: BIN, NBDSNAP_CONTROL: d.control, NBD_SOCKET: d.nbdSocket, COW_SIZE: '16M', CHANGES: changes };
  const r = await run(SCRIPT, args, { env });
  if (r.code !== 0) throw new Error(`incremental-backup.sh ${args.join(' ')} failed (${r.code}):\n${r.stderr}\n${d.log().slice(-3000)}`);
  return r.stderr;
}

/** Write random 4 KiB-aligned patterns to the origin until stop() (writes that continue during a backup). */
function keepWriting(d: DaemonHandle, seed: number): { stop(): Promise<number> } {
  let running = true;
  let count = 0;
  const loop = (async () => {
    for (let i = seed; running; i++) {
      const offset = ((i * 7919) % (SIZE / 65536)) * 65536 + (i % 5) * 4096;
      await writePattern(d, 'base', offset, 4096 * (1 + (i % 3)), 1 + (i % 250));
      count++;
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return count;
    },
  };
}

async function snapshots(d: DaemonHandle): Promise<string[]> {
  return (await d.ok('snapshot', 'list', '--json')).map((s: { name: string }) => s.name);
}

describe('incremental backup recipe', () => {
  it('full, then incrementals from the meta context and from snapshot diff, while the origin keeps changing', async () => {
    const { d, backup: file } = await setup();
    await backup(d, ['full', 'base', 'b1', file]);
    expect(fs.readFileSync(file).equals(await readExport(d, 'b1'))).toBe(true);

    for (const [prev, snap, changes, seed] of [['b1', 'b2', 'bitmap', 1], ['b2', 'b3', 'diff', 500]] as const) {
      for (let i = 0; i < 20; i++) await writePattern(d, 'base', (seed + i * 37) * 65536 % SIZE, 8192, 0x40 + i); // changes since prev
      const writer = keepWriting(d, seed);
      const log = await backup(d, ['incr', 'base', prev, snap, file], changes);
      const during = await writer.stop();
      expect(during).toBeGreaterThan(0);
      expect(log).toMatch(new RegExp(`now holds snapshot ${snap} \\(verified\\); ${prev} removed`));
      expect(await snapshots(d)).toEqual([snap]);
      // Independently of the script's own check: the backup is the snapshot, byte for byte.
      expect(fs.readFileSync(file).equals(await readExport(d, snap))).toBe(true);
      // Only the changed chunks were copied: far less than the whole export.
      const copied = Number(/copied (\d+) changed bytes/.exec(log)![1]);
      expect(copied).toBeGreaterThan(0);
      expect(copied).toBeLessThan(SIZE / 4);
    }
  });

  it('keeps working across a daemon restart: the changed-chunk map comes back from the COW', async () => {
    const { d, backup: file } = await setup();
    await backup(d, ['full', 'base', 'b1', file]);
    for (let i = 0; i < 10; i++) await writePattern(d, 'base', i * 3 * MiB + 512, 1024, 0x70 + i);
    const before = await d.ok('snapshot', 'diff', 'b1', '--json');
    expect(before.extents).toEqual(Array.from({ length: 10 }, (_, i) => ({ offset: i * 3 * MiB, length: 4096 })));
    const again = await restart();
    expect(await again.ok('snapshot', 'diff', 'b1', '--json')).toEqual(before);
    await backup(again, ['incr', 'base', 'b1', 'b2', file], 'diff');
    expect(fs.readFileSync(file).equals(await readExport(again, 'b2'))).toBe(true);
  });
});
