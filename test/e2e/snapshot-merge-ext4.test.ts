// snapshot merge with a real filesystem: ext4 on the origin export (nbdfuse + loop), files written,
// a snapshot taken under fsfreeze (as lvcreate does), files changed, removed and added after it,
// then `nbdsnap snapshot merge` with the filesystem mounted read-write and a writer going on it.
//
// What is sound to assert. The kernel's snapshot-merge (and nbdsnap's) is a block-level promise:
// from the moment the merge starts the device reads as the snapshot, every write lands on top of
// it, there is no I/O error, and at the end the device is the snapshot's image plus the writes
// made during the merge. A filesystem is consistent on top of that only if what it writes during
// the merge was computed from what the device now shows:
// - Mounted (again) after the merge started, the filesystem reads the snapshot's image: that is
//   the kernel's own use, a merge LVM starts at the next activation (lvconvert --merge on an open
//   origin is delayed until then) and runs in the background while the filesystem is mounted and
//   used. There the whole promise holds at filesystem level: with a writer adding files and
//   in-place writes to a file the snapshot had during the merge, the filesystem fscks clean after
//   it, the snapshot's files are back exactly, that file is the snapshot's plus those writes, and
//   the writer's files are intact. The first test checks that, with the disk detached and
//   attached again around the start of the merge and before the checks (unmount alone could
//   leave older blocks in the loop file's page cache).
// - Left mounted across the start of the merge, the filesystem keeps its post-snapshot state in
//   memory (inodes, bitmaps, journal position) and writes it back over the rolled-back blocks: the
//   result is a mix no block device can make consistent, so neither a clean fsck nor the files are
//   promised (ext4 may even report corruption and go read-only: that is the filesystem, not the
//   device). The second test asserts only what the kernel guarantees there: no I/O error on the
//   device, the merge completes, the origin serves the merged bytes (the export reads exactly as
//   its file), and another snapshot keeps its point in time (it fscks clean and holds its files).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { callDaemon } from '../../src/control/client.ts';
import { mustRun, run } from '../support/exec.ts';
import { kernelProblems, markKernelLog, overwriteBlocks, sh, startWriter, trySh, until, type Writer } from '../support/ext4-merge.ts';
import { nbdUri, readExport, startDaemon, tempDir, type DaemonHandle } from '../support/daemon-harness.ts';
import { attachFuseDisk, type FuseDisk } from '../support/nbdfuse.ts';

const MiB = 1024 * 1024;
const IO_ERRORS = /I\/O error/;
const daemons: DaemonHandle[] = [];
const writers: Writer[] = [];
const disks: FuseDisk[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const writer of writers.splice(0)) await writer.stop(); // out of the mount first, or it stays busy
  for (const disk of disks.splice(0).reverse()) await disk.close();
  for (const d of daemons.splice(0)) await d.stop('SIGKILL');
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

interface World {
  d: DaemonHandle;
  dir: string;
  mnt: string;
  disk: FuseDisk;
  mark: string;
  /** Every loop device used, for the kernel log. */
  loops: string[];
  /** The database file as snapshot s1 has it. */
  db: Buffer;
  /** While this file exists a merge waits after each batch (NBDSNAP_MERGE_HOLD). */
  hold: string;
}

async function attach(w: Pick<World, 'd' | 'dir' | 'loops'>, name: string): Promise<FuseDisk> {
  const disk = await attachFuseDisk(nbdUri(w.d, name), w.dir);
  disks.push(disk);
  w.loops.push(disk.loop);
  return disk;
}

/** Under fsfreeze: the filesystem is clean on the device while the snapshot is taken. */
async function frozenSnapshot(w: World, name: string): Promise<void> {
  await mustRun('fsfreeze', ['-f', w.mnt]);
  try {
    await w.d.ok('snapshot', 'create', name, '--origin', 'base', '--size', '64M');
  } finally {
    await mustRun('fsfreeze', ['-u', w.mnt]);
  }
}

/**
 * ext4 on the origin with 20 files and a 16 MiB database file, snapshot s1, then files added,
 * removed, changed and appended to, and every other 4 KiB block of the database overwritten in
 * place, and snapshot s2 of that. Manifests: at-s1.sha (the files but the database, which is kept
 * in memory), at-s2.sha. The overwrites leave s1 with some 2,000 exceptions that are not
 * consecutive: as many runs to merge (a merge batch holds a run whole, however long), so with
 * `mergeBatchBytes` 4096, one run per batch and three syncs each, the merge lasts seconds.
 */
async function setup(mergeBatchBytes: number): Promise<World> {
  const dir = tempDir('merge-ext4-');
  dirs.push(dir);
  const base = path.join(dir, 'base.img');
  fs.writeFileSync(base, '');
  fs.truncateSync(base, 64 * MiB);
  const hold = path.join(dir, 'merge-hold');
  const d = await startDaemon(dir, { env: { NBDSNAP_MERGE_BATCH_BYTES: String(mergeBatchBytes), NBDSNAP_MERGE_HOLD: hold } });
  daemons.push(d);
  await d.ok('origin', 'add', 'base', base);
  const partial = { d, dir, mnt: path.join(dir, 'mnt'), mark: markKernelLog(), loops: [] as string[], db: crypto.randomBytes(16 * MiB), hold };
  const disk = await attach(partial, 'base');
  const w: World = { ...partial, disk };
  await mustRun('mkfs.ext4', ['-q', '-F', disk.loop]);
  await disk.mount(w.mnt);
  fs.writeFileSync(path.join(w.mnt, 'db'), w.db); // this process serves no NBD: synchronous I/O is fine
  await sh(`cd ${w.mnt}; for i in $(seq 0 19); do head -c 150000 /dev/urandom > before-$i; done; sha256sum before-* > ${dir}/at-s1.sha; sync`);
  await frozenSnapshot(w, 's1');
  await sh(`cd ${w.mnt}; for i in $(seq 0 19); do head -c 100000 /dev/urandom > after-$i; done; rm before-3; echo changed > before-4; head -c 50000 /dev/urandom >> before-5`);
  overwriteBlocks(path.join(w.mnt, 'db'), Array.from({ length: 2048 }, (_, i) => 2 * i));
  await sh(`cd ${w.mnt}; sha256sum after-* before-* db > ${dir}/at-s2.sha; sync`);
  await frozenSnapshot(w, 's2');
  return w;
}

/** A writer in `written/` on the origin's filesystem, stopped after the test if it is still going. */
function writing(w: World): Writer {
  const writer = startWriter(path.join(w.mnt, 'written'), path.join(w.dir, 'stop-writer'));
  writers.push(writer);
  return writer;
}

/** s1 is still listed: its merge runs (asked of the daemon directly, the CLI takes a while to start). */
async function merging(d: DaemonHandle): Promise<boolean> {
  return (await callDaemon(d.control, { op: 'snapshot.list' })).some((s) => s.name === 's1');
}

/** s2 was not touched by the merge: its filesystem fscks clean and holds the files it had. */
async function checkS2(w: World): Promise<void> {
  const s2 = await attach(w, 's2');
  const fsck = await run('e2fsck', ['-fn', s2.loop]);
  expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
  const mnt = path.join(w.dir, 'mnt-s2');
  await s2.mount(mnt);
  await sh(`cd ${mnt} && sha256sum -c --quiet ${w.dir}/at-s2.sha`);
  await s2.umount();
}

describe('snapshot merge with ext4 on the origin', () => {
  it('rolls the filesystem back: mounted and written during the merge, fsck clean after, the snapshot files back exactly', async () => {
    const w = await setup(4096);
    // Stop writes as the kernel's use requires: unmounted and detached, nothing post-snapshot stays cached.
    await w.disk.close();
    fs.writeFileSync(w.hold, ''); // the merge stops after its first batch until the writers have written
    expect((await w.d.ok('snapshot', 'merge', 's1', '--json')).state).toBe('merging');
    expect((await callDaemon(w.d.control, { op: 'status', name: 'base' }))[0].target).toBe('snapshot-merge');
    const disk = await attach(w, 'base');
    await disk.mount(w.mnt);
    const writer = writing(w);
    // In place, in the database's first blocks: the merge takes them last (it goes from the newest
    // exception back), so these writes reach chunks it has not merged yet.
    const db = Buffer.from(w.db);
    overwriteBlocks(path.join(w.mnt, 'db'), Array.from({ length: 64 }, (_, i) => 2 * i), db);
    await until('the writer to write a file', () => writer.files() > 0);
    const progress = (await callDaemon(w.d.control, { op: 'snapshot.list' })).find((s) => s.name === 's1')?.merge;
    expect(progress, 'the merge still runs once the writers have written').toBeDefined();
    expect(progress!.percent).toBeLessThan(100);
    // While the merge runs: the snapshot's files and nothing else.
    await sh(`cd ${w.mnt} && sha256sum -c --quiet ${w.dir}/at-s1.sha && ! ls after-* 2>/dev/null`);
    fs.rmSync(w.hold); // the rest of the merge runs under the writer
    await until('the merge to finish', async () => !(await merging(w.d)));
    console.log(`writer: first file at ${progress!.percent}% of the merge, ${writer.files()} files by its end`);
    const stopped = await writer.stop();
    expect(stopped.code, stopped.output).toBe(0);
    await sh(`cd ${w.mnt}/written && sha256sum f* > ${w.dir}/written.sha`);
    // Checked on a fresh disk: the loop file's page cache would show the writes it saw, not the device.
    await disk.close();
    const fresh = await attach(w, 'base');
    const fsck = await run('e2fsck', ['-fn', fresh.loop]);
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
    await fresh.mount(w.mnt);
    const names = (await sh(`ls ${w.mnt}`)).split('\n').filter(Boolean).sort();
    expect(names).toEqual([...Array.from({ length: 20 }, (_, i) => `before-${i}`), 'db', 'lost+found', 'written'].sort());
    await sh(`cd ${w.mnt} && sha256sum -c --quiet ${w.dir}/at-s1.sha && cd written && sha256sum -c --quiet ${w.dir}/written.sha`);
    expect(fs.readFileSync(path.join(w.mnt, 'db')).equals(db), 'the database: as at the snapshot, plus the writes made during the merge').toBe(true);
    await fresh.umount();
    await checkS2(w);
    expect(fs.existsSync(path.join(w.d.dataDir, 'cow', 's1.cow'))).toBe(false);
    expect(await kernelProblems(w.mark, w.loops, /I\/O error|EXT4-fs error/)).toEqual([]);
  }, 240_000);

  it('under a filesystem left mounted across its start, with a writer: no I/O error, the merge completes, other snapshots intact', async () => {
    const w = await setup(16384);
    const writer = writing(w);
    await until('the writer to write a file', () => writer.files() > 0);
    expect((await w.d.ok('snapshot', 'merge', 's1', '--json')).state).toBe('merging');
    const during = writer.files();
    await until('the merge to finish', async () => !(await merging(w.d)));
    // The writer's fate is the filesystem's business (see above); the device's is not.
    const stopped = await writer.stop();
    console.log(`writer: ${during} files before the merge, exit ${stopped.code} ${stopped.output.slice(0, 200)}`);
    await trySh(`umount ${w.mnt}`);
    const fsck = await run('e2fsck', ['-fn', w.disk.loop]);
    console.log(`e2fsck of the origin (not asserted): exit ${fsck.code}`);
    expect(await kernelProblems(w.mark, w.loops, IO_ERRORS)).toEqual([]);
    expect((await w.d.ok('status', 'base', '--json'))[0].target).toBe('snapshot-origin');
    expect((await readExport(w.d, 'base')).equals(fs.readFileSync(path.join(w.dir, 'base.img')))).toBe(true);
    await checkS2(w);
  }, 240_000);
});
