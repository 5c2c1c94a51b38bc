// Interoperability with the clients users run: libnbd tools (nbdinfo, nbdcopy, nbdsh), qemu
// (qemu-io, qemu-img) and fio's nbd engine, all against a real `nbdsnap serve`. A missing tool
// fails the test: npm test installs them (scripts/ensure-test-tools.sh).
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeImage, makeTempDir, startServe, type ServeProcess } from '../support/serve-process.ts';

const exec = promisify(execFile);
/** System tools first: nbdsh needs the Debian python3 with the nbd module. */
const env = { ...process.env, PATH: `/usr/bin:/usr/sbin:${process.env.PATH}`, LIBNBD_DEBUG: '0' };
const tool = (cmd: string, args: string[]) => exec(cmd, args, { env, maxBuffer: 64 * 1024 * 1024 });

const SIZE = 64 * 1024 * 1024;
const MiB = 1024 * 1024;
let dir: string;
let srv: ServeProcess;
let ro: ServeProcess;

beforeAll(async () => {
  dir = makeTempDir();
  const image = makeImage(dir, SIZE);
  srv = await startServe({ image, socket: `${dir}/rw.sock`, name: 'disk' });
  ro = await startServe({ image: makeImage(dir, SIZE, 'ro.img'), socket: `${dir}/ro.sock`, readOnly: true });
});
afterAll(async () => {
  const exits = await Promise.all([srv?.stop(), ro?.stop()]);
  expect(exits.map((e) => e?.code)).toEqual([0, 0]);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('libnbd tools', () => {
  it('nbdinfo --json reports newstyle-fixed, structured replies, base:allocation and every capability', async () => {
    const info = JSON.parse((await tool('nbdinfo', ['--json', srv.uri()])).stdout);
    expect(info.protocol).toBe('newstyle-fixed');
    expect(info.structured).toBe(true);
    const [exp] = info.exports;
    expect(exp['export-size']).toBe(SIZE);
    expect(exp.contexts).toEqual(['base:allocation']);
    for (const can of ['can_flush', 'can_fua', 'can_trim', 'can_zero', 'can_multi_conn', 'can_df', 'can_cache']) expect(exp[can]).toBe(true);
    expect(exp.is_read_only).toBe(false);
    const roInfo = JSON.parse((await tool('nbdinfo', ['--json', ro.uri()])).stdout).exports[0];
    expect(roInfo.is_read_only).toBe(true);
    expect(roInfo.can_fua).toBe(false);
  });

  it('nbdinfo --list shows both export names; --map shows the allocation map', async () => {
    const list = JSON.parse((await tool('nbdinfo', ['--list', '--json', srv.uri()])).stdout);
    expect(list.exports.map((e: { 'export-name': string }) => e['export-name']).sort()).toEqual(['', 'disk']);
    const map = (await tool('nbdinfo', ['--map', srv.uri('disk')])).stdout.trim().split(/\s+/);
    expect(map).toEqual(['0', String(SIZE), '0', 'data']);
    const totals = (await tool('nbdinfo', ['--map', '--totals', srv.uri()])).stdout;
    expect(totals).toMatch(/^\s*67108864\s+100\.0%\s+0\s+data/m);
  });

  it('nbdcopy round trip (multi-conn, flush, block status on the read side) is byte-identical', async () => {
    const src = `${dir}/src.bin`;
    fs.writeFileSync(src, crypto.randomBytes(8 * MiB));
    await tool('nbdcopy', ['--flush', src, srv.uri()]);
    await tool('nbdcopy', [srv.uri(), `${dir}/copy.out`]);
    await tool('cmp', ['-n', String(8 * MiB), src, `${dir}/copy.out`]);
    await expect(tool('cmp', ['-n', String(8 * MiB), `${dir}/copy.out`, `${dir}/ro.img`])).rejects.toThrow();
  });

  it('nbdsh with strict mode off: bad requests get the right errno, the connection survives', async () => {
    const script = [
      'import nbd',
      'h.set_strict_mode(0)',
      'def err(f):',
      '    try:',
      '        f()',
      '        return "ok"',
      '    except nbd.Error as e:',
      '        return e.errno',
      `print(err(lambda: h.pread(512, ${SIZE})))`,
      `print(err(lambda: h.pwrite(b"x" * 1024, ${SIZE - 512})))`,
      `print(err(lambda: h.trim(8192, ${SIZE - 4096})))`,
      'print(err(lambda: h.pread(0, 0)))',
      'print(err(lambda: h.pread(512, 0, nbd.CMD_FLAG_REQ_ONE)))',
      `print(err(lambda: h.zero(4096, ${SIZE})))`,
      'h.pwrite(b"hello", 100)',
      'print(bytes(h.pread(5, 100)))',
    ].join('\n');
    const { stdout } = await tool('nbdsh', ['-u', srv.uri(), '-c', script]);
    expect(stdout.trim().split('\n')).toEqual(['EINVAL', 'ENOSPC', 'EINVAL', 'EINVAL', 'EINVAL', 'ENOSPC', "b'hello'"]);
  });
});

describe('qemu tools', () => {
  it('qemu-io: write/read with patterns, write -z, discard, flush, aio', async () => {
    const { stdout } = await tool('qemu-io', [
      '-f', 'raw', srv.uri(),
      '-c', 'write -P 0xab 0 64k', '-c', 'write -z 1M 1M', '-c', 'write -P 0x11 3M 64k', '-c', 'discard 3M 64k',
      '-c', 'flush', '-c', 'read -P 0xab 0 64k', '-c', 'read -P 0 1M 1M',
      '-c', 'aio_write -P 0xcd 4M 64k', '-c', 'aio_write -P 0xce 5M 128k', '-c', 'aio_flush',
      '-c', 'read -P 0xcd 4M 64k', '-c', 'read -P 0xce 5M 128k', '-c', 'write -f -P 0x77 6M 4k', '-c', 'read -P 0x77 6M 4k',
    ]);
    expect(stdout).not.toMatch(/fail|error/i);
    expect(stdout.match(/^read \d+\/\d+ bytes/gm)).toHaveLength(5);
    await expect(tool('qemu-io', ['-f', 'raw', srv.uri(), '-c', 'read -P 0x99 0 4k'])).rejects.toMatchObject({
      code: 1,
      stdout: expect.stringMatching(/Pattern verification failed/),
    });
  });

  it('qemu-img convert, compare and map', async () => {
    const src = `${dir}/qsrc.bin`;
    fs.writeFileSync(src, Buffer.concat([crypto.randomBytes(4 * MiB), Buffer.alloc(4 * MiB)]));
    fs.truncateSync(src, SIZE);
    await tool('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, srv.uri()]);
    const { stdout } = await tool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, srv.uri()]);
    expect(stdout).toMatch(/Images are identical/);
    const map = JSON.parse((await tool('qemu-img', ['map', '--output=json', '-f', 'raw', srv.uri()])).stdout);
    expect(map.reduce((sum: number, e: { length: number }) => sum + e.length, 0)).toBe(SIZE);
    expect(map[0]).toMatchObject({ start: 0, data: true });
    fs.writeFileSync(`${dir}/qdiff.bin`, crypto.randomBytes(SIZE));
    await expect(tool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', `${dir}/qdiff.bin`, srv.uri()])).rejects.toMatchObject({ code: 1 });
  });
});

describe('fio nbd engine', () => {
  it('randwrite with crc32c verify, 4 jobs (4 connections) at QD32, plus randrw with fsync', async () => {
    const common = ['--ioengine=nbd', `--uri=${srv.uri('disk')}`, '--bs=4k', '--iodepth=32', '--size=8M', '--offset_increment=8M', '--numjobs=4', '--group_reporting', '--output-format=json'];
    const out = (await tool('fio', ['--name=verify', '--rw=randwrite', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', ...common])).stdout;
    const job = JSON.parse(out.slice(out.indexOf('{'))).jobs[0];
    expect(job.error).toBe(0);
    expect(job.write.io_bytes).toBe(32 * MiB);
    expect(job.read.io_bytes).toBe(32 * MiB);
    const rw = (await tool('fio', ['--name=rw', '--rw=randrw', '--fsync=16', ...common])).stdout;
    const rwJob = JSON.parse(rw.slice(rw.indexOf('{'))).jobs[0];
    expect(rwJob.error).toBe(0);
    expect(rwJob.sync.total_ios).toBeGreaterThan(0);
  });
});
