// nbdsnap-io-faults: I/O errors injected under the nbdsnap daemon with the guest kernel's
// dm-flakey (error_writes) and dm-error targets (registered in suite.ts).
//
// A. COW fault: a P snapshot whose COW is a dm device; the device starts failing writes; an
//    origin write to a new chunk must still succeed, the snapshot must go Invalid and read EIO,
//    the origin must hold old and new data. The COW device is healed and the daemon restarted:
//    docs/durability.md ("Where the kernel differs") says that when even the valid=0 header write
//    failed, the snapshot reloads as valid but stale.
// B. Origin fault: the origin is a dm device that starts failing writes: an origin write with FUA
//    gets an error at the NBD client, the daemon stays up, the snapshot keeps serving; with the
//    origin swapped to `error`, the snapshot still serves the chunks it holds in its COW.
import fs from 'node:fs';
import path from 'node:path';
import {
  DaemonUnavailable, NbdsnapDaemon, daemonUnavailableReason, dmCreate, dmRemove, loopAttach, loopDetach, run, zeroFile,
  type RunResult,
} from './guest.ts';
import { parseStatusLine, type TargetStatus } from './workload.ts';
import { readHeader } from './scenarios.ts';

const KiB = 1024;
const CHUNK = 4 * KiB; // --chunk-size 8

function log(msg: string): void {
  process.stdout.write(`  ${msg}\n`);
}

/** An image whose chunk i is filled with byte (i % 250) + 1. */
function patternFile(file: string, bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i * CHUNK < bytes; i++) b.fill((i % 250) + 1, i * CHUNK, Math.min(bytes, (i + 1) * CHUNK));
  fs.writeFileSync(file, b);
  return b;
}

const uri = (d: NbdsnapDaemon, name: string): string => `nbd+unix:///${name}?socket=${d.nbdSocket}`;

/** qemu-io on an export; never throws (the caller checks code and output). */
function qio(d: NbdsnapDaemon, name: string, cmd: string): RunResult & { out: string } {
  const r = run('qemu-io', ['-f', 'raw', '-c', cmd, uri(d, name)], { allowFail: true, timeoutMs: 60_000 });
  return { ...r, out: `${r.stdout}${r.stderr}`.trim().replace(/\s+/g, ' ') };
}

function qioOk(d: NbdsnapDaemon, name: string, cmd: string): void {
  const r = qio(d, name, cmd);
  if (r.code !== 0 || /error|fail/i.test(r.out)) throw new Error(`qemu-io ${name} '${cmd}': ${r.why}: ${r.out}`);
}

/** The whole export, read with qemu-img convert; 'EIO' when the read failed with an I/O error. */
function readExport(d: NbdsnapDaemon, name: string, dir: string): Buffer | string {
  const out = path.join(dir, `read-${name}.img`);
  fs.rmSync(out, { force: true });
  const r = run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri(d, name), out], { allowFail: true, timeoutMs: 60_000 });
  if (r.code !== 0) return /Input\/output error/.test(r.stderr) ? 'EIO' : `error: ${r.why}: ${r.stderr.trim()}`;
  return fs.readFileSync(out);
}

function status(d: NbdsnapDaemon, name: string): TargetStatus {
  return parseStatusLine(d.cli('status', name).trim().split('\n')[0]);
}

function swapTable(name: string, table: string): void {
  run('dmsetup', ['suspend', name]);
  run('dmsetup', ['load', name, '--table', table]);
  run('dmsetup', ['resume', name]);
}

/** Where two images first differ, or null. */
function firstDiff(got: Buffer | string, want: Buffer): string | null {
  if (typeof got === 'string') return got;
  if (got.length !== want.length) return `length ${got.length} != ${want.length}`;
  for (let i = 0; i < got.length; i++) if (got[i] !== want[i]) return `byte ${i}: ${got[i]} != ${want[i]}`;
  return null;
}

function check(problems: string[], what: string, got: Buffer | string, want: Buffer): void {
  const d = firstDiff(got, want);
  if (d) problems.push(`${what}: ${d}`);
}

function fail(problems: string[]): void {
  if (problems.length > 0) throw new Error(problems.join('; '));
}

export async function nbdsnapIoFaults(_ctx: unknown, dir: string): Promise<void> {
  const reason = daemonUnavailableReason();
  if (reason) throw new DaemonUnavailable(reason);
  const problems: string[] = [];
  const daemonDir = path.join(dir, 'daemon');
  const loops: string[] = [];
  let daemon = await new NbdsnapDaemon(daemonDir).start();
  try {
    // ---- A. COW device fault -------------------------------------------------------------
    const originBytes = 1024 * KiB;
    const originFile = path.join(dir, 'origin.img');
    const expected = patternFile(originFile, originBytes);
    const pit = Buffer.from(expected); // the snapshot's point in time
    const cowFile = zeroFile(path.join(dir, 'cow.img'), 256 * KiB);
    const cowLoop = loopAttach(cowFile);
    loops.push(cowLoop);
    const cowSectors = (256 * KiB) / 512;
    const cowDev = dmCreate('fio-cow', `0 ${cowSectors} linear ${cowLoop} 0`);
    daemon.cli('origin', 'add', 'o', originFile);
    daemon.cli('snapshot', 'create', 's', '--origin', 'o', '--cow', cowDev, '--persistent', 'P', '--chunk-size', '8');
    qioOk(daemon, 'o', 'write -P 0xa1 0 8k');
    expected.fill(0xa1, 0, 8 * KiB);
    let st = status(daemon, 's');
    if (st.state !== 'active' || st.allocated === undefined || st.allocated === 0) problems.push(`before the fault: status ${JSON.stringify(st)}`);
    check(problems, 'before the fault: snapshot', readExport(daemon, 's', dir), pit);
    check(problems, 'before the fault: origin', readExport(daemon, 'o', dir), expected);
    fail(problems);
    log(`origin write to chunks 0-1 preserved in the snapshot (status ${st.info}); COW ${cowDev} -> flakey error_writes`);

    swapTable('fio-cow', `0 ${cowSectors} flakey ${cowLoop} 0 0 1 1 error_writes`);
    const w = qio(daemon, 'o', 'write -P 0xa2 64k 4k');
    if (w.code !== 0 || /error|fail/i.test(w.out)) problems.push(`origin write with the COW failing: ${w.why}: ${w.out}`);
    expected.fill(0xa2, 64 * KiB, 68 * KiB);
    st = status(daemon, 's');
    if (st.state !== 'Invalid') problems.push(`after the COW fault: status ${st.info}, want Invalid`);
    const snapRead = readExport(daemon, 's', dir);
    if (snapRead !== 'EIO') problems.push(`after the COW fault: snapshot read gave ${typeof snapRead === 'string' ? snapRead : 'data'}, want EIO`);
    const r1 = qio(daemon, 's', 'read 0 4k');
    if (!/Input\/output error/.test(r1.out)) problems.push(`after the COW fault: qemu-io read of the snapshot: ${r1.out}`);
    check(problems, 'after the COW fault: origin', readExport(daemon, 'o', dir), expected);
    fail(problems);
    log(`COW failing writes: origin write ok, snapshot Invalid, snapshot reads EIO, origin holds old and new data`);

    swapTable('fio-cow', `0 ${cowSectors} linear ${cowLoop} 0`);
    await daemon.stop();
    daemon = await new NbdsnapDaemon(daemonDir).start();
    st = status(daemon, 's');
    const onDisk = readHeader(cowFile);
    log(`COW healed, daemon restarted: status ${st.info}; on-disk header valid=${onDisk.valid}`);
    // docs/durability.md: "If even the header write fails (a dead COW device), the snapshot is
    // invalid in memory only and reloads as valid but stale after a restart".
    if (onDisk.magic !== 'SnAp' || onDisk.valid !== 1) problems.push(`COW header on disk ${JSON.stringify(onDisk)}, want SnAp valid=1 (its valid=0 write failed)`);
    if (st.state !== 'active') problems.push(`after the restart: status ${st.info}, want active (valid but stale, docs/durability.md)`);
    else {
      // Stale: the chunks preserved before the fault read their point in time, the chunk the
      // faulted write went to reads today's origin.
      const stale = Buffer.from(pit);
      stale.fill(0xa2, 64 * KiB, 68 * KiB);
      check(problems, 'after the restart: snapshot (valid but stale)', readExport(daemon, 's', dir), stale);
    }
    check(problems, 'after the restart: origin', readExport(daemon, 'o', dir), expected);
    fail(problems);

    // ---- B. origin device fault ----------------------------------------------------------
    const o2Bytes = 256 * KiB;
    const o2File = path.join(dir, 'origin2.img');
    const o2 = patternFile(o2File, o2Bytes);
    const o2pit = Buffer.from(o2);
    const o2Loop = loopAttach(o2File);
    loops.push(o2Loop);
    const o2Sectors = o2Bytes / 512;
    const o2Dev = dmCreate('fio-origin', `0 ${o2Sectors} linear ${o2Loop} 0`);
    daemon.cli('origin', 'add', 'o2', o2Dev);
    daemon.cli('snapshot', 'create', 's2', '--origin', 'o2', '--cow', zeroFile(path.join(dir, 'cow2.img'), 256 * KiB),
      '--persistent', 'P', '--chunk-size', '8');
    qioOk(daemon, 'o2', 'write -f -P 0xb1 0 4k');
    o2.fill(0xb1, 0, 4 * KiB);
    swapTable('fio-origin', `0 ${o2Sectors} flakey ${o2Loop} 0 0 1 1 error_writes`);
    const w2 = qio(daemon, 'o2', 'write -f -P 0xb2 20k 4k');
    if (!/Input\/output error/.test(w2.out)) problems.push(`FUA origin write with the origin failing writes: ${w2.why}: ${w2.out}, want Input/output error`);
    if (!daemon.running) problems.push(`daemon ${daemon.logTail()} after the origin write error`);
    st = status(daemon, 's2');
    if (st.state !== 'active') problems.push(`after the origin write error: status of s2 ${st.info}, want active`);
    // The chunk was preserved in the snapshot before the origin write was tried.
    check(problems, 'after the origin write error: snapshot', readExport(daemon, 's2', dir), o2pit);
    fail(problems);
    log(`origin failing writes: FUA write -> "${w2.out.slice(0, 60)}", daemon up, s2 ${st.info} reads its point in time`);

    swapTable('fio-origin', `0 ${o2Sectors} error`);
    run('blockdev', ['--flushbufs', o2Dev], { allowFail: true });
    const r2 = qio(daemon, 's2', 'read -P 0x02 4k 4k'); // chunk 1: not in the COW, read from the origin
    const inCow = qio(daemon, 's2', 'read -P 0x01 0 4k'); // chunk 0: preserved in the COW (pattern byte 1)
    if (inCow.code !== 0 || /error|fail/i.test(inCow.out)) problems.push(`origin on dm-error: snapshot read of a chunk in the COW: ${inCow.out}`);
    const w3 = qio(daemon, 'o2', 'write -f -P 0xb3 8k 4k');
    if (!/Input\/output error/.test(w3.out)) problems.push(`origin on dm-error: FUA origin write gave ${w3.out}, want Input/output error`);
    if (!daemon.running) problems.push(`daemon ${daemon.logTail()} after the origin errors`);
    st = status(daemon, 's2');
    log(`origin on dm-error: s2 chunk 0 (in the COW) reads ok; chunk 1 (on the origin): "${r2.out.slice(0, 60)}"; origin FUA write: "${w3.out.slice(0, 60)}"; s2 now ${st.info}`);
    fail(problems);
  } finally {
    await daemon.stop().catch(() => undefined);
    for (const name of ['fio-origin', 'fio-cow']) {
      try {
        dmRemove(name);
      } catch { /* left for resetDevices */ }
    }
    for (const l of loops) loopDetach(l);
  }
}
