// The closest stand-in for the kernel client on machines without the nbd module: nbdfuse
// exposes the export as a file, a loop device turns it into a block device, and ext4 runs on
// it (mkfs, mount, write, umount, e2fsck -fn). Needs root, /dev/fuse and loop devices.
// Never calls a global `sync`: other mounts on a shared machine could make it hang.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeImage, makeTempDir, startServe, type ServeProcess } from '../support/serve-process.ts';

const exec = promisify(execFile);
const env = { ...process.env, PATH: `/usr/bin:/usr/sbin:/sbin:${process.env.PATH}` };
const sh = (cmd: string, args: string[]) => exec(cmd, args, { env, timeout: 60_000 });

const SIZE = 128 * 1024 * 1024;
let dir: string;
let srv: ServeProcess;
let fuse: ChildProcess | undefined;
let loop: string | undefined;
let mounted = false;
const fuseFile = (): string => `${dir}/fuse/disk`;

async function waitFor(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function quietly(what: () => Promise<unknown>): Promise<void> {
  try {
    await what();
  } catch {
    // cleanup is best effort: the step may never have happened
  }
}

beforeAll(async () => {
  dir = makeTempDir();
  srv = await startServe({ image: makeImage(dir, SIZE), socket: `${dir}/nbd.sock` });
  fs.mkdirSync(`${dir}/fuse`);
  fs.mkdirSync(`${dir}/mnt`);
  fuse = spawn('nbdfuse', [fuseFile(), srv.uri()], { env, stdio: 'ignore' });
  await waitFor(() => fs.existsSync(fuseFile()) && fs.statSync(fuseFile()).size === SIZE, 'the nbdfuse file');
});

afterAll(async () => {
  if (mounted) await quietly(() => sh('umount', [`${dir}/mnt`]).catch(() => sh('umount', ['-l', `${dir}/mnt`])));
  if (loop) await quietly(() => sh('losetup', ['-d', loop!]));
  if (fuse && fuse.exitCode === null) {
    const exited = new Promise((r) => fuse!.once('exit', r));
    fuse.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  }
  await quietly(() => sh('fusermount3', ['-u', `${dir}/fuse`]));
  expect((await srv?.stop())?.code).toBe(0);
  if (!mounted) fs.rmSync(dir, { recursive: true, force: true });
});

describe('nbdfuse + loop + ext4', () => {
  it('fallocate punch/zero reach TRIM/WRITE_ZEROES and read back as zeroes', async () => {
    const fd = fs.openSync(fuseFile(), 'r+');
    fs.writeSync(fd, Buffer.alloc(1 << 20, 0xaa), 0, 1 << 20, 0);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    await sh('fallocate', ['-z', '-o', '0', '-l', String(256 * 1024), fuseFile()]);
    const head = Buffer.alloc(512 * 1024);
    const rfd = fs.openSync(fuseFile(), 'r');
    fs.readSync(rfd, head, 0, head.length, 0);
    fs.closeSync(rfd);
    expect(head.subarray(0, 256 * 1024).equals(Buffer.alloc(256 * 1024))).toBe(true);
    expect(head.subarray(256 * 1024).equals(Buffer.alloc(256 * 1024, 0xaa))).toBe(true);
    await sh('fallocate', ['-p', '-o', String(256 * 1024), '-l', String(256 * 1024), fuseFile()]);
  });

  it('mkfs.ext4, mount, write, umount, e2fsck -fn is clean and the file survives a remount', async () => {
    loop = (await sh('losetup', ['-f', '--show', fuseFile()])).stdout.trim();
    expect(loop).toMatch(/^\/dev\/loop\d+$/);
    await sh('mkfs.ext4', ['-q', '-F', loop]);
    await sh('mount', [loop, `${dir}/mnt`]);
    mounted = true;
    const data = crypto.randomBytes(12 * 1024 * 1024);
    fs.writeFileSync(`${dir}/mnt/data.bin`, data);
    fs.mkdirSync(`${dir}/mnt/sub`);
    fs.writeFileSync(`${dir}/mnt/sub/hello.txt`, 'hello\n');
    await sh('umount', [`${dir}/mnt`]);
    mounted = false;
    const fsck = await sh('e2fsck', ['-fn', loop]);
    expect(fsck.stdout).toMatch(/clean|files/);
    await sh('mount', ['-o', 'ro', loop, `${dir}/mnt`]);
    mounted = true;
    expect(fs.readFileSync(`${dir}/mnt/data.bin`).equals(data)).toBe(true);
    expect(fs.readFileSync(`${dir}/mnt/sub/hello.txt`, 'utf8')).toBe('hello\n');
    await sh('umount', [`${dir}/mnt`]);
    mounted = false;
  });
});
