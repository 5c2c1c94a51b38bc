// FileDevice, the backend of `nbdsnap serve`: positional I/O on both its synchronous (small)
// and threadpool (large) paths, range and permission errors, and block devices sized through
// sysfs (a loop device over a temp file).
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileDevice } from '../../src/block/file-device.ts';
import { makeImage, makeTempDir } from '../support/serve-process.ts';

const MiB = 1024 * 1024;
let dir: string;
let loop: string | undefined;

beforeAll(() => {
  dir = makeTempDir();
});
afterAll(() => {
  if (loop) execFileSync('losetup', ['-d', loop]);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('FileDevice', () => {
  it('writes and reads back small (synchronous) and large (threadpool) requests', async () => {
    const dev = FileDevice.open(makeImage(dir, 8 * MiB, 'rw.img'));
    expect(dev.size).toBe(8 * MiB);
    const small = crypto.randomBytes(4096);
    const large = crypto.randomBytes(3 * MiB);
    await Promise.all([dev.write(small, 5000), dev.write(large, 2 * MiB, { fua: true })]);
    const back = Buffer.alloc(3 * MiB);
    await dev.read(back, 2 * MiB);
    expect(back.equals(large)).toBe(true);
    const backSmall = Buffer.alloc(4096);
    await dev.read(backSmall, 5000);
    expect(backSmall.equals(small)).toBe(true);
    await dev.zero(4096, 5000);
    await dev.read(backSmall, 5000);
    expect(backSmall.equals(Buffer.alloc(4096))).toBe(true);
    await expect(dev.zero(4096, 0, { fast: true })).rejects.toMatchObject({ errno: 'ENOTSUP' });
    await expect(dev.write(small, 8 * MiB - 100)).rejects.toMatchObject({ errno: 'ENOSPC' });
    await expect(dev.read(Buffer.alloc(200), 8 * MiB - 100)).rejects.toMatchObject({ errno: 'EIO' });
    await dev.flush();
    await dev.close();
    const onDisk = fs.readFileSync(`${dir}/rw.img`);
    expect(onDisk.subarray(2 * MiB, 5 * MiB).equals(large)).toBe(true);
  });

  it('refuses writes when read-only', async () => {
    const dev = FileDevice.open(makeImage(dir, MiB, 'ro.img'), { readOnly: true });
    expect(dev.caps).toMatchObject({ flush: false, fua: false, trim: false, zero: false });
    await expect(dev.write(Buffer.alloc(512), 0)).rejects.toMatchObject({ errno: 'EPERM' });
    await expect(dev.trim(512, 0)).rejects.toMatchObject({ errno: 'EPERM' });
    await dev.close();
  });

  it('sizes a block device through sysfs', async () => {
    const backing = makeImage(dir, 3 * MiB, 'loop.img', Buffer.alloc(4096, 0x61));
    loop = execFileSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' }).trim();
    const dev = FileDevice.open(loop);
    expect(dev.isBlockDevice).toBe(true);
    expect(dev.size).toBe(3 * MiB);
    expect(dev.blockSize).toBe(512);
    const head = Buffer.alloc(4096);
    await dev.read(head, 0);
    expect(head.equals(Buffer.alloc(4096, 0x61))).toBe(true);
    await dev.close();
  });
});
