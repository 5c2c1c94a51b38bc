// Memory stays bounded whatever the chunk size (issue 12, section 4): fio drives random 4 KiB
// origin writes at depth 64 through the daemon against snapshots with 8-sector, 1024-sector and
// the largest accepted chunks (2^21 sectors, 1 GiB: the origin is two of them), and the daemon's
// peak RSS from before the snapshots are created to the end of the load (VmHWM, reset through
// /proc/PID/clear_refs) must stay within the bound docs/memory.md derives: the RSS before, plus
// LOAD_BOUND_BYTES for everything the stores and the load may hold. No chunk-sized buffer counts:
// the stores write and read big chunks in pieces (store/persistent/big-chunks.ts).
// Without copy pieces and the lease cap, each of the two 1 GiB copy-outs took a whole-chunk buffer
// (2 GiB more). Then every snapshot must still equal the origin as it was (qemu-img compare
// against a copy taken before the writes) and be valid.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { MAX_CHUNK_SECTORS } from '../../src/common/chunk-sectors.ts';
import { nbdUri, startDaemon, tempDir, type DaemonHandle } from '../support/daemon-harness.ts';
import { mustRun, run } from '../support/exec.ts';

const MiB = 1 << 20;
const BIG_CHUNK = MAX_CHUNK_SECTORS * 512;
const ORIGIN_BYTES = 2 * BIG_CHUNK;
/** The writes: 8,192 random 4 KiB writes, 64 in flight. */
const IO_BYTES = 32 * MiB;
/**
 * What the load may add to the RSS, at most: the copy lease cap (64 MiB) + the idle copy buffers
 * the pool may keep in the two pooled size classes this load uses (512 KiB chunks and 1 MiB
 * pieces, at most 64 MiB each) + 64 MiB for the JS heap of the pending exceptions and garbage not
 * yet collected. Derivation in docs/memory.md.
 */
const LOAD_BOUND_BYTES = 256 * MiB;

const SNAPSHOTS = [
  // name, chunk sectors, COW size: header + metadata areas + every data chunk the load can touch
  { name: 's8', chunk: 8, cow: '64M' },
  { name: 's1024', chunk: 1024, cow: `${ORIGIN_BYTES / MiB + 2}M` },
  { name: 'sbig', chunk: MAX_CHUNK_SECTORS, cow: `${(ORIGIN_BYTES + 2 * BIG_CHUNK) / MiB}M` },
];

let dir: string;
let d: DaemonHandle;

/** Each 512-byte sector of the origin holds its own number and a varying tail: any misplaced copy shows. */
function writePatternedImage(file: string, size: number): void {
  const fd = fs.openSync(file, 'w');
  const block = Buffer.alloc(MiB);
  for (let i = 0; i < MiB; i++) block[i] = (i * 131 + 7) & 0xff;
  try {
    for (let at = 0; at < size; at += MiB) {
      for (let s = 0; s < MiB; s += 512) block.writeUInt32LE((at + s) / 512, s);
      fs.writeSync(fd, block, 0, MiB, at);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** VmRSS and VmHWM of a process, in bytes. */
function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)![1]) * 1024;
  return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
}

/** Reset a process's VmHWM to its current RSS (proc(5), clear_refs: "5"). */
function resetPeak(pid: number): void {
  fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

beforeAll(async () => {
  dir = tempDir('daemon-memory-');
  writePatternedImage(path.join(dir, 'base.img'), ORIGIN_BYTES);
  await mustRun('cp', [path.join(dir, 'base.img'), path.join(dir, 'before.img')]);
  d = await startDaemon(dir);
}, 120_000);

afterAll(async () => {
  await d?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('daemon memory under random origin writes', () => {
  it('stays within its bound with 8-sector, 1024-sector and 1 GiB chunks, and every snapshot keeps its point in time', async () => {
    await d.ok('origin', 'add', 'base', path.join(dir, 'base.img'));
    const pid = d.proc.pid!;
    // The peak that counts starts before the stores are created: creating, opening and committing
    // to a store with 1 GiB chunks takes no chunk-sized buffer either (store/persistent/big-chunks.ts).
    resetPeak(pid);
    const before = memoryOf(pid);
    expect(before.hwm).toBeLessThanOrEqual(before.rss + MiB);
    const bound = before.rss + LOAD_BOUND_BYTES;
    for (const s of SNAPSHOTS) await d.ok('snapshot', 'create', s.name, '--origin', 'base', '--size', s.cow, '--chunk-size', String(s.chunk));

    const fio = await run('fio', [
      '--name=memory', '--ioengine=nbd', `--uri=${nbdUri(d, 'base')}`, '--rw=randwrite', '--bs=4k', '--iodepth=64',
      `--size=${ORIGIN_BYTES}`, `--io_size=${IO_BYTES}`, '--randrepeat=0', '--output-format=json',
    ], { timeoutMs: 600_000 });
    expect(fio.code, fio.stderr).toBe(0);
    const job = JSON.parse(fio.stdout.slice(fio.stdout.indexOf('{'))).jobs[0];
    expect(job.error).toBe(0);
    expect(job.write.total_ios).toBe(IO_BYTES / 4096);

    const after = memoryOf(pid);
    const mib = (n: number) => `${(n / MiB).toFixed(0)} MiB`;
    console.log(`daemon RSS before the snapshots and the load ${mib(before.rss)}, peak since ${mib(after.hwm)} (+${mib(after.hwm - before.rss)}); bound ${mib(bound)} = before + load ${mib(LOAD_BOUND_BYTES)}`);
    expect(after.hwm, 'peak RSS during the load').toBeLessThanOrEqual(bound);

    const status: { name: string; status: string }[] = await d.ok('status', '--json');
    for (const s of SNAPSHOTS) {
      const line = status.find((x) => x.name === s.name);
      expect(JSON.stringify(line), s.name).not.toMatch(/Invalid|Overflow/);
    }
    const before_img = path.join(dir, 'before.img');
    for (const s of SNAPSHOTS) {
      const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', nbdUri(d, s.name), before_img], { timeoutMs: 600_000 });
      expect(cmp.code, `${s.name}: ${cmp.stdout}${cmp.stderr}`).toBe(0);
    }
    // The origin did move on (the writes reached it), so the comparisons above mean something.
    expect((await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', nbdUri(d, 'base'), before_img])).code).toBe(1);
  }, 900_000);
});
