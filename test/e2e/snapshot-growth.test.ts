// A COW that grows while in use: grown underneath by the user (seen at once, even when the old
// size ended exactly at the next metadata area), grown by auto-extend under a steady origin write
// load (fio), grown by `snapshot resize`, and a file system that runs out of room (the snapshot is
// invalidated, the origin keeps working). Real clients: fio, qemu-io, nbdcopy.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { mustRun, run } from '../support/exec.ts';
import { nbdUri, readExport, startDaemon, tempDir, writePattern, type DaemonHandle } from '../support/daemon-harness.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

const daemons: DaemonHandle[] = [];
const mounts: string[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop();
  for (const m of mounts.splice(0)) await run('umount', [m]);
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

async function daemonIn(dir: string, args: string[] = []): Promise<DaemonHandle> {
  const d = await startDaemon(dir, { args });
  daemons.push(d);
  return d;
}

function fresh(): string {
  const dir = tempDir('growth-e2e-');
  dirs.push(dir);
  return dir;
}

/** A file of `size` bytes of random data (so a wrong chunk can never look right). */
function randomFile(file: string, size: number): Buffer {
  const data = crypto.randomBytes(size);
  fs.writeFileSync(file, data);
  return data;
}

function sparseFile(file: string, size: number): void {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, size);
}

async function snapshotInfo(d: DaemonHandle, name: string): Promise<any> {
  const list = await d.ok('snapshot', 'list', '--json');
  return list.find((s: any) => s.name === name);
}

async function statusInfo(d: DaemonHandle, name: string): Promise<string> {
  const lines = await d.ok('status', name, '--json');
  return lines[0].info;
}

/** fio random 4k writes over the first `span` bytes of an export, `io` bytes in all, verified. */
async function fioWrite(d: DaemonHandle, name: string, span: number, io: number): Promise<void> {
  await mustRun('fio', [
    '--name=load', '--ioengine=nbd', `--uri=${nbdUri(d, name)}`, '--rw=randwrite', '--bs=4k', '--iodepth=16',
    `--size=${span}`, `--io_size=${io}`, '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0',
  ], { timeoutMs: 240_000 });
}

describe('a COW grown while in use', () => {
  it('is used at once, also when its old size ended exactly at the next metadata area (256 MiB, 8-sector chunks)', async () => {
    const dir = fresh();
    const d = await daemonIn(dir);
    sparseFile(path.join(dir, 'base.img'), 512 * MiB);
    await d.ok('origin', 'add', 'base', path.join(dir, 'base.img'));
    await d.ok('snapshot', 'create', 'snap', '--origin', 'base', '--size', '256M');
    const cow = path.join(d.dataDir, 'cow', 'snap.cow');
    // 256 MiB = 65536 chunks: header, 255 areas of 256 exceptions, 65280 data chunks. Area 255
    // would start at chunk 65536, the first chunk past the old end.
    const dataChunks = 65536 - 1 - 255;
    await writePattern(d, 'snap', 0, (dataChunks - 1) * 4 * KiB, 0x5a);
    expect(await statusInfo(d, 'snap')).toBe(`${(65536 - 1) * 8}/${65536 * 8} ${(254 + 2) * 8}`);
    fs.truncateSync(cow, 512 * MiB); // the user grows the file; the daemon is not told
    // One chunk: it fits the old size, fills area 254, and so zeroes area 255, past the old end.
    await writePattern(d, 'snap', (dataChunks - 1) * 4 * KiB, 4 * KiB, 0x6b);
    await writePattern(d, 'snap', dataChunks * 4 * KiB, 12 * KiB, 0x6b);
    const info = await snapshotInfo(d, 'snap');
    expect(info.state).toBe('active');
    expect(info.cowSizeBytes).toBe(512 * MiB);
    expect(info.totalSectors).toBe(1048576);
    const status = await statusInfo(d, 'snap');
    expect(status).toBe(`${info.allocatedSectors}/${info.totalSectors} ${info.metadataSectors}`);
    expect(info.dataPercent).toBeCloseTo((info.allocatedSectors / info.totalSectors) * 100, 2);
    const r = await mustRun('qemu-io', ['-f', 'raw', '-c', `read -P 0x6b ${(dataChunks - 1) * 4 * KiB} ${16 * KiB}`, '-c', `read -P 0x5a 0 ${4 * KiB}`, nbdUri(d, 'snap')]);
    expect(r).not.toMatch(/Pattern verification failed|error/i);
  }, 120_000);

  it('grows by itself under a steady origin write load and keeps the point in time', async () => {
    const dir = fresh();
    const d = await daemonIn(dir);
    const base = path.join(dir, 'base.img');
    const before = randomFile(base, 64 * MiB);
    await d.ok('origin', 'add', 'base', base);
    await d.ok('snapshot', 'create', 'grow', '--origin', 'base', '--size', '2M', '--autoextend-threshold', '70', '--autoextend-percent', '20');
    await d.ok('snapshot', 'create', 'fixed', '--origin', 'base', '--size', '2M');
    await fioWrite(d, 'base', 48 * MiB, 24 * MiB);
    const grown = await snapshotInfo(d, 'grow');
    expect(grown.state).toBe('active');
    expect(grown.autoextend).toMatchObject({ threshold: 70, percent: 20 });
    expect(grown.autoextend.extensions).toBeGreaterThan(0);
    expect(grown.cowSizeBytes).toBeGreaterThan(10 * MiB);
    expect(grown.dataPercent).toBeLessThan(100);
    expect(fs.statSync(path.join(d.dataDir, 'cow', 'grow.cow')).size).toBe(grown.cowSizeBytes);
    expect(d.log()).toMatch(/COW auto-extended/);
    expect((await readExport(d, 'grow')).equals(before)).toBe(true);
    // Without auto-extend the same load fills the 2 MiB COW: invalidated, as the kernel does.
    expect((await snapshotInfo(d, 'fixed')).state).toBe('invalid');
    // The daemon-wide default applies to a snapshot that sets nothing; a restart keeps the policy.
    await d.stop();
    daemons.splice(daemons.indexOf(d), 1);
    const again = await daemonIn(dir, ['--autoextend-threshold', '80']);
    expect((await snapshotInfo(again, 'grow')).autoextend).toMatchObject({ threshold: 70, percent: 20 });
    await again.ok('snapshot', 'create', 'dflt', '--origin', 'base', '--size', '1M');
    expect((await snapshotInfo(again, 'dflt')).autoextend).toMatchObject({ threshold: 80, percent: 20 });
  }, 300_000);

  it('is invalidated when the file system itself is full, and the origin keeps working', async () => {
    const dir = fresh();
    const dataDir = path.join(dir, 'data');
    fs.mkdirSync(dataDir);
    await mustRun('mount', ['-t', 'tmpfs', '-o', 'size=6m,mode=0700', 'tmpfs', dataDir]);
    mounts.push(dataDir);
    const d = await daemonIn(dir);
    const base = path.join(dir, 'base.img');
    randomFile(base, 32 * MiB);
    await d.ok('origin', 'add', 'base', base);
    await d.ok('snapshot', 'create', 'snap', '--origin', 'base', '--size', '1M', '--autoextend-threshold', '50', '--autoextend-percent', '100');
    await fioWrite(d, 'base', 32 * MiB, 32 * MiB); // the origin's writes all succeed and verify
    const info = await snapshotInfo(d, 'snap');
    expect(info.state).toBe('invalid');
    expect(await statusInfo(d, 'snap')).toBe('Invalid');
    expect(d.log()).toMatch(/ENOSPC|no space/i);
    const r = await run('qemu-io', ['-f', 'raw', '-c', 'read 0 4096', nbdUri(d, 'snap')]);
    expect(r.stdout + r.stderr).toMatch(/error|Input\/output/i);
  }, 300_000);
});

describe('snapshot resize', () => {
  it('grows the COW to a size or by an amount, never shrinks, and refuses bad requests with exit codes', async () => {
    const dir = fresh();
    const d = await daemonIn(dir);
    const base = path.join(dir, 'base.img');
    sparseFile(base, 16 * MiB);
    await d.ok('origin', 'add', 'base', base);
    await d.ok('snapshot', 'create', 'snap', '--origin', 'base', '--size', '1M');
    expect((await d.ok('snapshot', 'resize', 'snap', '--size', '3M', '--json')).cowSizeBytes).toBe(3 * MiB);
    expect((await d.ok('snapshot', 'resize', 'snap', '--size', '+1M', '--json')).cowSizeBytes).toBe(4 * MiB);
    expect(fs.statSync(path.join(d.dataDir, 'cow', 'snap.cow')).size).toBe(4 * MiB);
    // The room is used: 3 MiB of snapshot writes would not have fitted in the first 1 MiB.
    await writePattern(d, 'snap', 0, 3 * MiB, 0x11);
    expect((await snapshotInfo(d, 'snap')).state).toBe('active');
    const shrink = await d.cli('snapshot', 'resize', 'snap', '--size', '1M');
    expect(shrink.code).toBe(7);
    expect(shrink.stderr).toMatch(/cannot shrink/);
    expect((await d.cli('snapshot', 'resize', 'nosuch', '--size', '+1M')).code).toBe(3);
    expect((await d.cli('snapshot', 'resize', 'snap', '--size', 'lots')).code).toBe(7);
    expect((await d.cli('snapshot', 'resize', 'snap')).code).toBe(2);
    const ext = path.join(dir, 'ext.cow');
    sparseFile(ext, MiB);
    const refused = await d.cli('snapshot', 'create', 'ext', '--origin', 'base', '--cow', ext, '--autoextend-threshold', '70');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/only a COW file nbdsnap creates/);
    const bad = await d.cli('snapshot', 'create', 'bad', '--origin', 'base', '--size', '1M', '--autoextend-threshold', '101');
    expect(bad.code).toBe(7);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  }, 120_000);
});
