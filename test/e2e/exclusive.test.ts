// Two nbdsnap processes never serve the same data (issue 12, part 1): one daemon per data dir
// (refused with exit 5 and the holder's pid, nothing in the data dir changed, no lock left by a
// SIGKILLed holder); a file that one daemon or `nbdsnap serve` uses is refused by every other
// (origin add, snapshot create --cow, serve, and at startup) until it is closed; a mounted block
// device is refused (O_EXCL), and one nbdsnap serves cannot be mounted.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, startDaemon, tempDir, type CliResult, type DaemonHandle } from '../support/daemon-harness.ts';
import { mustRun, run } from '../support/exec.ts';
import { startServe } from '../support/serve-process.ts';
import { waitFor } from '../support/wait-for.ts';

const MiB = 1 << 20;
const BUSY = 5;
const IN_USE_FILE = /file is in use by another nbdsnap process/;
const IN_USE_DEVICE = /device is in use \(mounted or held by another program/;

const canUseLoop = process.getuid?.() === 0 && fs.existsSync('/dev/loop-control') &&
  ['losetup', 'mkfs.ext4', 'mount'].every((tool) => spawnSync('which', [tool]).status === 0);

const dirs: string[] = [];
const daemons: DaemonHandle[] = [];
const loops: string[] = [];
const mounts: string[] = [];

afterAll(async () => {
  for (const mnt of mounts) await run('umount', [mnt]);
  for (const d of daemons) await d.stop();
  for (const loop of loops) await run('losetup', ['-d', loop]);
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

function newDir(prefix: string): string {
  const dir = tempDir(prefix);
  dirs.push(dir);
  return dir;
}

async function daemon(dir: string): Promise<DaemonHandle> {
  const d = await startDaemon(dir);
  daemons.push(d);
  return d;
}

function image(dir: string, name: string, size = 8 * MiB): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, Buffer.alloc(0));
  fs.truncateSync(file, size);
  return file;
}

/** A refused command: one line on stderr, no stack trace. */
function expectRefusal(r: CliResult, code: number, message: RegExp): void {
  expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code, stderr: expect.stringMatching(message) });
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

async function expectCliRefusal(d: DaemonHandle, args: string[], message: RegExp): Promise<void> {
  expectRefusal(await d.cli(...args), BUSY, message);
}

/**
 * Run a long-running command (daemon, serve) that must refuse to start: its exit, or a failure
 * as soon as `socket` (the NBD socket it would serve on) appears.
 */
async function runRefused(args: string[], socket: string): Promise<CliResult> {
  const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b) => (stdout += b));
  child.stderr.on('data', (b) => (stderr += b));
  let code: number | null | undefined;
  child.on('close', (c) => (code = c));
  await waitFor(() => code !== undefined || fs.existsSync(socket), `nbdsnap ${args[0]} to exit`);
  if (code === undefined) {
    child.kill('SIGKILL');
    throw new Error(`nbdsnap ${args.join(' ')} started serving on ${socket} instead of refusing:\n${stderr}`);
  }
  return { code, stdout, stderr };
}

/** Every entry under `dir` with what a change to it would alter. */
function listing(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).concat('.').sort().map((name) => {
    const st = fs.lstatSync(path.join(dir, name));
    return `${name} ino=${st.ino} size=${st.size} mtime=${st.mtimeMs} ctime=${st.ctimeMs}`;
  });
}

describe('one daemon per data dir', () => {
  it('refuses a second daemon on the same data dir and changes nothing; a SIGKILLed holder leaves no lock', async () => {
    const dir = newDir('exclusive-datadir-');
    const first = await daemon(dir);
    await first.ok('origin', 'add', 'o', image(dir, 'o.img'));
    await first.ok('snapshot', 'create', 's', '--origin', 'o', '--size', '1M');
    const before = listing(first.dataDir);

    const socket = path.join(dir, 'second.sock');
    const control = path.join(dir, 'second.ctl');
    const r = await runRefused(['daemon', '--data-dir', first.dataDir, '--socket', socket, '--control', control], socket);
    expectRefusal(r, BUSY, /in use/);
    expect(r.stderr.trim()).toBe(`nbdsnap: the data dir ${first.dataDir} is in use by another nbdsnap daemon (pid ${first.proc.pid}); stop it first or use another --data-dir`);
    expect(listing(first.dataDir)).toEqual(before);
    expect(fs.existsSync(control)).toBe(false);
    expect(await first.ok('snapshot', 'list', '--json')).toMatchObject([{ name: 's', state: 'active' }]);

    first.proc.kill('SIGKILL');
    await first.exited;
    const next = await daemon(dir); // the kernel dropped the dead holder's lock
    expect(await next.ok('snapshot', 'list', '--json')).toMatchObject([{ name: 's', state: 'active' }]);
    await next.stop();
  });
});

describe('files used by another nbdsnap process', () => {
  let dirA: string;
  let dirB: string;
  let a: DaemonHandle;
  let b: DaemonHandle;
  let originImg: string;
  let extCow: string;
  let otherImg: string;

  beforeAll(async () => {
    dirA = newDir('exclusive-a-');
    dirB = newDir('exclusive-b-');
    [a, b] = await Promise.all([daemon(dirA), daemon(dirB)]);
    originImg = image(dirA, 'origin.img');
    extCow = image(dirA, 'ext.cow', 2 * MiB);
    otherImg = image(dirB, 'other.img');
    await a.ok('origin', 'add', 'o', originImg);
    await a.ok('snapshot', 'create', 's1', '--origin', 'o', '--size', '1M');
    await a.ok('snapshot', 'create', 's2', '--origin', 'o', '--cow', extCow);
    await b.ok('origin', 'add', 'p', otherImg);
  });

  it('refuses the origin and the COWs of another daemon until they are closed', async () => {
    await expectCliRefusal(b, ['origin', 'add', 'x', originImg], IN_USE_FILE);
    await expectCliRefusal(b, ['snapshot', 'create', 't', '--origin', 'p', '--cow', extCow], IN_USE_FILE);
    await expectCliRefusal(b, ['snapshot', 'create', 't', '--origin', 'p', '--cow', path.join(a.dataDir, 'cow', 's1.cow')], IN_USE_FILE);
    expect((await b.ok('origin', 'list', '--json')).map((o: { name: string }) => o.name)).toEqual(['p']);
    expect(await b.ok('snapshot', 'list', '--json')).toEqual([]);

    await a.ok('snapshot', 'remove', 's2'); // closes the external COW (and keeps the file)
    await b.ok('snapshot', 'create', 't', '--origin', 'p', '--cow', extCow);
    expect(await b.ok('snapshot', 'list', '--json')).toMatchObject([{ name: 't', state: 'active' }]);
  });

  it('at startup, reports an origin another daemon holds as failed', async () => {
    await b.stop();
    await a.ok('origin', 'add', 'q', otherImg); // free while b is down: now a holds it
    b = await daemon(dirB);
    expect(await b.ok('origin', 'list', '--json')).toMatchObject([{ name: 'p', state: 'failed', error: expect.stringMatching(IN_USE_FILE) }]);
    expect(await b.ok('snapshot', 'list', '--json')).toMatchObject([{ name: 't', state: 'failed' }]);
    await a.ok('origin', 'remove', 'q');
  });

  it('refuses `nbdsnap serve` of a file a daemon uses, and a daemon refuses a file `nbdsnap serve` uses', async () => {
    for (const extra of [[], ['--read-only']]) {
      const socket = path.join(dirA, `serve${extra.length}.sock`);
      expectRefusal(await runRefused(['serve', originImg, '--socket', socket, ...extra], socket), BUSY, /^nbdsnap: cannot open .*origin\.img: file is in use by another nbdsnap process/);
    }
    const served = image(dirA, 'served.img');
    const server = await startServe({ image: served, socket: path.join(dirA, 'served.sock') });
    await expectCliRefusal(a, ['origin', 'add', 'f', served], IN_USE_FILE);
    await server.stop();
    await a.ok('origin', 'add', 'f', served); // released when serve exited
    await a.ok('origin', 'remove', 'f');
  });
});

describe('block devices', () => {
  it.skipIf(!canUseLoop)('refuses a mounted device, accepts it unmounted, and then keeps it from being mounted', async () => {
    const dir = newDir('exclusive-loop-');
    const [a, b] = await Promise.all([daemon(path.join(dir, 'a')), daemon(path.join(dir, 'b'))]);
    const loop = (await mustRun('losetup', ['-f', '--show', image(dir, 'disk.img', 16 * MiB)])).trim();
    loops.push(loop);
    await mustRun('mkfs.ext4', ['-q', '-F', loop]);
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    await mustRun('mount', [loop, mnt]);
    mounts.push(mnt);

    await expectCliRefusal(a, ['origin', 'add', 'l', loop], IN_USE_DEVICE);
    await mustRun('umount', [mnt]);
    mounts.pop();
    await a.ok('origin', 'add', 'l', loop);

    await expectCliRefusal(b, ['origin', 'add', 'l', loop], IN_USE_DEVICE);
    const mount = await run('mount', [loop, mnt]);
    if (mount.code === 0) mounts.push(mnt);
    expect(mount.code, 'mount of a device nbdsnap serves').not.toBe(0);
    await a.ok('origin', 'remove', 'l');
  });
});
