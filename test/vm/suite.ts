// The in-guest test suite (run by scripts/vm-test.sh through scripts/vm/run.sh; refuses to run
// anywhere else, because it creates and removes loop, dm and nbd devices).
//
//   node test/vm/suite.ts [--list] [NAME_SUBSTRING...]
//
// Prints "PASS name", "FAIL name: why" or "SKIP name: why" per test and a closing
// "N passed, N failed, N skipped"; exits 1 when any test failed.
//
// Tests marked daemon need a working `bin/nbdsnap daemon` (the CLI contract of issue 6). Until
// it exists they FAIL with "nbdsnap daemon not available"; NBDSNAP_VM_ONLY_KERNEL=1 skips them.
// NBDSNAP_VM_SEED changes the seed of the random workloads (default 6).
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import {
  DaemonUnavailable, NbdsnapDaemon, daemonUnavailableReason, freeNbd, freshDir, nbdAttach, nbdDetach,
  nbdSectors, projectRoot, resetDevices, run, stopAllDaemons, waitFor, zeroFile, log, fail, requireDaemon } from './guest.ts';
import {
  KernelBackend, NbdsnapBackend, blankFiles, diffRecords, differentialLayout, expectedSha, firstDifference,
  readBack, readHeader, runWorkloadHalf, type Backend, type Files, type HalfResult, type Layout,
} from './scenarios.ts';
import { ImageModel, ORIGIN, patternImage, sha256Of } from './workload.ts';
import { nbdsnapIoFaults } from './faults.ts';
import { nbdsnapTls } from './tls.ts';
import { nbdsnapLiveRestart } from './restart.ts';
import { nbdsnapCrashAttach } from './crash-attach.ts';
import { kernelMerge, nbdsnapMergeDifferential, nbdsnapMergeFromKernel, nbdsnapMergeToKernel, type MergeContext } from './merge.ts';

const seed = Number(process.env.NBDSNAP_VM_SEED ?? 6);
const workRoot = process.env.NBDSNAP_VM_WORK ?? '/tmp/nbdsnap-vm';
const fixturesDir = process.env.NBDSNAP_FIXTURES ?? path.resolve(projectRoot, 'test/data/fixtures');

class Skip extends Error {}

/** Results shared between tests (the nbdsnap halves compare against the kernel halves). */
interface Context extends MergeContext {
  kernelDiff?: HalfResult;
  nbdsnapDiff?: HalfResult;
  kernelOverflow?: HalfResult;
  /** Runs the named test first unless it already ran; throws unless it passed. */
  prerequisite(name: string): Promise<void>;
}

interface TestCase {
  name: string;
  daemon: boolean;
  run(ctx: Context, dir: string): Promise<void>;
}

const sha = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

// ---- kernel-only tests -----------------------------------------------------------------------------

/** nbdkit memory export -> /dev/nbdX (1 and 2 connections) -> ext4 round trip. */
async function nbdSmoke(_ctx: Context, dir: string): Promise<void> {
  for (const connections of [1, 2]) {
    const sock = path.join(dir, `nbdkit-${connections}.sock`);
    const nbdkitLog = fs.openSync(path.join(dir, `nbdkit-${connections}.log`), 'w');
    const nbdkit = spawn('nbdkit', ['-f', '-U', sock, 'memory', '64M'], { stdio: ['ignore', nbdkitLog, nbdkitLog] });
    fs.closeSync(nbdkitLog);
    let exited = false;
    nbdkit.on('exit', () => (exited = true));
    const dev = freeNbd();
    const mnt = freshDir(path.join(dir, `mnt-${connections}`));
    try {
      await waitFor('nbdkit socket', () => fs.existsSync(sock), 60_000);
      await nbdAttach(sock, dev, { connections });
      const sectors = nbdSectors(dev);
      if (sectors !== 131072) throw new Error(`${dev} has ${sectors} sectors, want 131072`);
      run('mkfs.ext4', ['-q', '-F', dev]);
      run('mount', [dev, mnt]);
      const files: Record<string, string> = {};
      for (let i = 0; i < 4; i++) {
        const data = Buffer.alloc(256 << 10, `file ${i} over ${connections} connection(s)\n`);
        fs.writeFileSync(path.join(mnt, `f${i}`), data);
        files[`f${i}`] = sha(data);
      }
      run('sync', []);
      run('umount', [mnt]);
      run('e2fsck', ['-fn', dev]);
      run('mount', ['-o', 'ro', dev, mnt]);
      for (const [f, want] of Object.entries(files)) {
        if (sha(fs.readFileSync(path.join(mnt, f))) !== want) throw new Error(`${f} read back differently`);
      }
      run('umount', [mnt]);
      await nbdDetach(dev);
      log(`-C ${connections}: ${dev} ${sectors} sectors, mkfs/mount/write/sync/umount/e2fsck/detach ok`);
    } finally {
      run('umount', [mnt], { allowFail: true });
      await nbdDetach(dev).catch(() => undefined);
      if (!exited) nbdkit.kill('SIGTERM');
      await waitFor('nbdkit to exit', () => exited, 30_000).catch(() => nbdkit.kill('SIGKILL'));
    }
  }
}

interface FixtureMeta {
  name: string;
  origin_sectors: number;
  cow_bytes: number;
  store: 'P' | 'N';
  chunk_sectors: number;
  seed: number;
  writes: number;
  status_after: string;
  snapshot_sha256: string;
  origin_after_sha256: string;
}

function fixtureLayout(meta: FixtureMeta): Layout {
  return {
    origin: 'forigin',
    sectors: meta.origin_sectors,
    snapshots: [{ name: 'snap', store: meta.store, chunk: meta.chunk_sectors, cowBytes: meta.cow_bytes }],
  };
}

/** Replays a shared/fixtures workload on `backend` and checks it against the recorded results. */
async function replayFixture(backend: () => Backend, dir: string, fixtures: string[]): Promise<void> {
  if (!fs.existsSync(path.join(fixturesDir, 'README.md'))) throw new Skip(`no fixtures in ${fixturesDir} (set NBDSNAP_FIXTURES)`);
  for (const name of fixtures) {
    const meta = JSON.parse(fs.readFileSync(path.join(fixturesDir, `${name}.json`), 'utf8')) as FixtureMeta;
    const listed = fs.readFileSync(path.join(fixturesDir, `${name}.writes.jsonl`), 'utf8').trim().split('\n').length;
    const overflow = meta.status_after === 'Invalid';
    // The fixture run stopped at the write that failed: replay the listed writes and that one.
    const writes = overflow ? listed + 1 : meta.writes;
    const layout = fixtureLayout(meta);
    const half = await runWorkloadHalf(backend(), layout, path.join(dir, name), { seed: meta.seed, writes });
    const problems: string[] = [];
    if (half.status.snap !== meta.status_after) problems.push(`${name}: status ${half.status.snap} != fixture ${meta.status_after}`);
    if (half.deviceSha[ORIGIN] !== meta.origin_after_sha256) problems.push(`${name}: origin sha256 differs from the fixture`);
    if (overflow) {
      if (half.deviceSha.snap !== 'EIO') problems.push(`${name}: invalid snapshot read gave ${half.deviceSha.snap}, want EIO`);
      const failed = half.ops.filter((o) => o.error);
      if (failed.length !== 1 || failed[0].seq !== listed) problems.push(`${name}: failed writes ${JSON.stringify(failed.map((o) => [o.seq, o.error]))}, want only seq ${listed}`);
    } else if (half.deviceSha.snap !== meta.snapshot_sha256) {
      problems.push(`${name}: snapshot sha256 differs from the fixture`);
    }
    if (meta.store === 'P') {
      const want = sha(gunzipSync(fs.readFileSync(path.join(fixturesDir, `${name}.cow.img.gz`))));
      if (half.fileSha.snap !== want) problems.push(`${name}: COW file differs from the fixture's`);
    }
    fail(problems);
    log(`${name}: ${writes} writes, status ${half.status.snap}, origin/snapshot/COW match the fixture`);
    fs.rmSync(path.join(dir, name), { recursive: true, force: true });
  }
}

/** Checks one half of the differential against the in-memory model and the on-disk headers. */
function checkHalf(half: HalfResult): string[] {
  const problems = diffRecords('device', half.deviceSha, expectedSha(half.layout, half.ops), ['device', 'model']);
  const failed = half.ops.filter((o) => o.error);
  if (failed.length) problems.push(`${failed.length} writes failed, first ${JSON.stringify(failed[0])}`);
  for (const s of half.layout.snapshots) {
    if (!/^\d+\/\d+ \d+$/.test(half.status[s.name] ?? '')) problems.push(`status of ${s.name}: ${half.status[s.name]}`);
    if (s.store === 'N') continue;
    const h = readHeader(half.files.cows[s.name]);
    if (h.magic !== 'SnAp' || h.valid !== 1 || h.version !== 1 || h.chunk !== s.chunk) problems.push(`header of ${s.name}: ${JSON.stringify(h)}`);
  }
  return problems;
}

const differentialWrites = 300;

async function kernelDifferential(ctx: Context, dir: string): Promise<void> {
  const half = await runWorkloadHalf(new KernelBackend('kd'), differentialLayout(), dir, { seed, writes: differentialWrites });
  fail(checkHalf(half));
  ctx.kernelDiff = half;
  log(`seed ${seed}, ${differentialWrites} writes; status ${JSON.stringify(half.status)}`);
}

/** Small COW (30 data chunks), origin-only writes: the snapshot must go Invalid, the origin stay right. */
function overflowLayout(): Layout {
  return { origin: 'oorigin', sectors: 16384, snapshots: [{ name: 'op8', store: 'P', chunk: 8, cowBytes: 32 * 4096 }] };
}

async function overflowScenario(backend: () => Backend, dir: string): Promise<HalfResult> {
  const layout = overflowLayout();
  const half = await runWorkloadHalf(backend(), layout, dir, { seed, writes: 60, originShare: 1 });
  const problems: string[] = [];
  if (half.status.op8 !== 'Invalid') problems.push(`status ${half.status.op8}, want Invalid`);
  if (half.deviceSha.op8 !== 'EIO') problems.push(`reading the invalid snapshot gave ${half.deviceSha.op8}, want EIO`);
  const failed = half.ops.filter((o) => o.error);
  if (failed.length) problems.push(`origin writes failed: ${JSON.stringify(failed.slice(0, 3))}`);
  const want = expectedSha(layout, half.ops)[ORIGIN];
  if (half.deviceSha[ORIGIN] !== want) problems.push('origin device differs from the model');
  if (half.fileSha[ORIGIN] !== want) problems.push('origin file differs from the model after teardown');
  const h = readHeader(half.files.cows.op8);
  if (h.magic !== 'SnAp' || h.valid !== 0 || h.version !== 1 || h.chunk !== 8) problems.push(`header ${JSON.stringify(h)}, want SnAp valid=0 version=1 chunk=8`);
  fail(problems);
  // Still Invalid after reactivation, and the origin still reads right.
  const again = await readBack(backend(), layout, half.files);
  if (again.status.op8 !== 'Invalid') problems.push(`after reactivation: status ${again.status.op8}, want Invalid`);
  if (again.deviceSha[ORIGIN] !== want) problems.push('after reactivation: origin differs');
  fail(problems);
  log(`status Invalid, header valid=0, origin intact, still Invalid after reactivation`);
  return half;
}

// ---- nbdsnap tests (plug-in points; need the daemon) ----------------------------------------------

/** ext4 on an nbdsnap origin over /dev/nbdX (2 connections), snapshots taken while mounted. */
async function nbdsnapFilesystem(_ctx: Context, dir: string): Promise<void> {
  requireDaemon();
  const daemon = await new NbdsnapDaemon(path.join(dir, 'daemon')).start();
  const mnt = (n: string): string => freshDir(path.join(dir, 'mnt', n));
  const devs: string[] = [];
  const attach = async (name: string, connections = 1): Promise<string> => {
    const dev = freeNbd(devs);
    daemon.cli('attach', name, dev, ...(connections > 1 ? ['--connections', String(connections)] : []));
    await waitFor(`${dev} to connect`, () => nbdSectors(dev) > 0, 30_000);
    devs.push(dev);
    return dev;
  };
  const mo = mnt('origin');
  const write = (root: string, file: string, text: string): void => fs.writeFileSync(path.join(root, file), Buffer.alloc(192 << 10, text));
  const expect = (root: string, file: string, text: string | null, problems: string[]): void => {
    const p = path.join(root, file);
    if (text === null) {
      if (fs.existsSync(p)) problems.push(`${p} exists, should not`);
    } else if (!fs.existsSync(p) || !fs.readFileSync(p).equals(Buffer.alloc(192 << 10, text))) {
      problems.push(`${p} does not hold "${text}"`);
    }
  };
  const snapshotWhileMounted = (args: string[]): void => {
    run('fsfreeze', ['-f', mo]);
    try {
      daemon.cli('snapshot', 'create', ...args);
    } finally {
      run('fsfreeze', ['-u', mo]);
    }
  };
  try {
    const originFile = zeroFile(path.join(dir, 'fs-origin.img'), 64 << 20);
    daemon.cli('origin', 'add', 'fso', originFile);
    const dev0 = await attach('fso', 2);
    run('mkfs.ext4', ['-q', '-F', dev0]);
    run('mount', [dev0, mo]);
    write(mo, 'a', 'phase 1 a');
    write(mo, 'b', 'phase 1 b');
    run('sync', []);
    snapshotWhileMounted(['fss1', '--origin', 'fso', '--cow', zeroFile(path.join(dir, 'fss1.cow'), 16 << 20), '--persistent', 'P', '--chunk-size', '8']);
    write(mo, 'a', 'phase 2 a');
    write(mo, 'c', 'phase 2 c');
    run('sync', []);
    snapshotWhileMounted(['fss2', '--origin', 'fso', '--size', '16M', '--persistent', 'N', '--chunk-size', '16']);
    fs.rmSync(path.join(mo, 'b'));
    write(mo, 'd', 'phase 3 d');
    run('sync', []);
    log('ext4 written in 3 phases, snapshots fss1 (P 8) and fss2 (N 16) taken while mounted and frozen');
    const dev1 = await attach('fss1');
    const dev2 = await attach('fss2');
    run('e2fsck', ['-fn', dev1]);
    run('e2fsck', ['-fn', dev2]);
    const problems: string[] = [];
    const m1 = mnt('s1');
    run('mount', [dev1, m1]);
    expect(m1, 'a', 'phase 1 a', problems);
    expect(m1, 'b', 'phase 1 b', problems);
    expect(m1, 'c', null, problems);
    write(m1, 'only-in-s1', 'snapshot write');
    run('umount', [m1]);
    const m2 = mnt('s2');
    run('mount', [dev2, m2]);
    expect(m2, 'a', 'phase 2 a', problems);
    expect(m2, 'b', 'phase 1 b', problems);
    expect(m2, 'c', 'phase 2 c', problems);
    expect(m2, 'd', null, problems);
    run('umount', [m2]);
    expect(mo, 'a', 'phase 2 a', problems);
    expect(mo, 'b', null, problems);
    expect(mo, 'd', 'phase 3 d', problems);
    expect(mo, 'only-in-s1', null, problems);
    run('umount', [mo]);
    for (const d of devs) run('e2fsck', ['-fn', d]);
    run('mount', ['-o', 'ro', dev1, m1]);
    expect(m1, 'only-in-s1', 'snapshot write', problems);
    run('umount', [m1]);
    fail(problems);
    for (const d of devs.splice(0).reverse()) run(path.join(projectRoot, 'bin/nbdsnap'), ['detach', d]);
    log('origin (2 connections) + P and N snapshots taken while mounted: point-in-time contents, e2fsck clean, detached');
  } finally {
    run('fsfreeze', ['-u', mo], { allowFail: true });
    for (const d of devs) await nbdDetach(d).catch(() => undefined);
    await daemon.stop();
  }
}

async function nbdsnapDifferential(ctx: Context, dir: string): Promise<void> {
  requireDaemon();
  await ctx.prerequisite('kernel-differential');
  const k = ctx.kernelDiff!;
  const half = await runWorkloadHalf(new NbdsnapBackend(dir), k.layout, dir, { seed, writes: differentialWrites });
  ctx.nbdsnapDiff = half;
  const problems = [
    ...diffRecords('device', half.deviceSha, k.deviceSha, ['nbdsnap', 'kernel']),
    ...diffRecords('status', half.status, k.status, ['nbdsnap', 'kernel']),
    ...checkHalf(half),
  ];
  for (const s of k.layout.snapshots) {
    if (s.store === 'N' || half.fileSha[s.name] === k.fileSha[s.name]) continue;
    problems.push(`COW of ${s.name} differs from the kernel's at byte ${firstDifference(half.files.cows[s.name], k.files.cows[s.name])}`);
  }
  fail(problems);
  log(`identical devices, status and COW files; status ${JSON.stringify(half.status)}`);
}

/** The persistent snapshots of a layout only (a transient store cannot be reactivated). */
function persistentOnly(layout: Layout, files: Files, dir: string): { layout: Layout; files: Files } {
  fs.mkdirSync(dir, { recursive: true });
  const copy = (f: string): string => {
    const to = path.join(dir, path.basename(f));
    fs.copyFileSync(f, to);
    return to;
  };
  const snapshots = layout.snapshots.filter((s) => s.store !== 'N');
  const cows: Record<string, string> = {};
  for (const s of snapshots) cows[s.name] = copy(files.cows[s.name]);
  return { layout: { ...layout, snapshots }, files: { origin: copy(files.origin), cows } };
}

async function crossNbdsnapToKernel(ctx: Context, dir: string): Promise<void> {
  requireDaemon();
  await ctx.prerequisite('nbdsnap-differential');
  const n = ctx.nbdsnapDiff!;
  const { layout, files } = persistentOnly(n.layout, n.files, dir);
  const got = await readBack(new KernelBackend('kx'), layout, files);
  const want = Object.fromEntries(Object.keys(got.deviceSha).map((t) => [t, n.deviceSha[t]]));
  fail([
    ...diffRecords('device', got.deviceSha, want, ['kernel', 'nbdsnap']),
    ...diffRecords('status', got.status, Object.fromEntries(layout.snapshots.map((s) => [s.name, n.status[s.name]])), ['kernel', 'nbdsnap']),
  ]);
  log(`the kernel reads nbdsnap's COW files identically: ${JSON.stringify(got.status)}`);
}

async function crossKernelToNbdsnap(ctx: Context, dir: string): Promise<void> {
  requireDaemon();
  await ctx.prerequisite('kernel-differential');
  const k = ctx.kernelDiff!;
  const { layout, files } = persistentOnly(k.layout, k.files, dir);
  const problems: string[] = [];
  const got = await readBack(new NbdsnapBackend(dir), layout, files);
  const want = Object.fromEntries(Object.keys(got.deviceSha).map((t) => [t, k.deviceSha[t]]));
  problems.push(...diffRecords('device', got.deviceSha, want, ['nbdsnap', 'kernel']));
  problems.push(...diffRecords('status', got.status, Object.fromEntries(layout.snapshots.map((s) => [s.name, k.status[s.name]])), ['nbdsnap', 'kernel']));
  fail(problems);
  // New writes through nbdsnap on top of the kernel's COW, checked against the model and then
  // read back by the kernel.
  const model = ImageModel.continuing(
    new ImageModel(patternImage(k.layout.sectors), k.layout.snapshots.map((s) => s.name)).apply(k.ops),
    layout.snapshots.map((s) => s.name),
  );
  const more = await runWorkloadHalf(new NbdsnapBackend(dir), layout, dir,
    { seed: seed + 1, writes: 100, firstSeq: differentialWrites }, files);
  const expected = expectedSha(layout, more.ops, model);
  problems.push(...diffRecords('after new writes: device', more.deviceSha, expected, ['nbdsnap', 'model']));
  const failed = more.ops.filter((o) => o.error);
  if (failed.length) problems.push(`${failed.length} new writes failed, first ${JSON.stringify(failed[0])}`);
  const back = await readBack(new KernelBackend('ky'), layout, files);
  problems.push(...diffRecords('kernel reading after new writes: device', back.deviceSha, expected, ['kernel', 'model']));
  problems.push(...diffRecords('kernel reading after new writes: status', back.status, more.status, ['kernel', 'nbdsnap']));
  fail(problems);
  log(`nbdsnap serves the kernel's COW identically, takes 100 new writes, and the kernel reads the result: ${JSON.stringify(back.status)}`);
}

async function nbdsnapOverflow(ctx: Context, dir: string): Promise<void> {
  requireDaemon();
  await ctx.prerequisite('kernel-overflow');
  const half = await overflowScenario(() => new NbdsnapBackend(dir), dir);
  const k = ctx.kernelOverflow!;
  fail(diffRecords('origin', { o: half.deviceSha[ORIGIN] }, { o: k.deviceSha[ORIGIN] }, ['nbdsnap', 'kernel']));
}

const tests: TestCase[] = [
  { name: 'kernel-nbd-smoke', daemon: false, run: nbdSmoke },
  {
    name: 'kernel-fixture-replay', daemon: false,
    run: (_c, d) => replayFixture(() => new KernelBackend('kf'), d, ['small-cs16', 'transient-cs16', 'overflow-cs8', 'multiarea-cs8']),
  },
  { name: 'kernel-differential', daemon: false, run: kernelDifferential },
  {
    name: 'kernel-overflow', daemon: false,
    run: async (c, d) => { c.kernelOverflow = await overflowScenario(() => new KernelBackend('ko'), d); },
  },
  { name: 'kernel-merge', daemon: false, run: kernelMerge },
  { name: 'nbdsnap-filesystem', daemon: true, run: nbdsnapFilesystem },
  { name: 'nbdsnap-differential', daemon: true, run: nbdsnapDifferential },
  { name: 'nbdsnap-cross-activation-to-kernel', daemon: true, run: crossNbdsnapToKernel },
  { name: 'nbdsnap-cross-activation-from-kernel', daemon: true, run: crossKernelToNbdsnap },
  { name: 'nbdsnap-overflow', daemon: true, run: nbdsnapOverflow },
  {
    name: 'nbdsnap-fixture-replay', daemon: true,
    // Partial chunks, the transient store and several metadata areas are covered by
    // nbdsnap-differential; this adds an overflow caused by a snapshot write (non-PO).
    run: async (_c, d) => { requireDaemon(); await replayFixture(() => new NbdsnapBackend(d), d, ['overflow-cs8']); },
  },
  { name: 'nbdsnap-io-faults', daemon: true, run: nbdsnapIoFaults },
  { name: 'nbdsnap-tls', daemon: true, run: nbdsnapTls },
  { name: 'nbdsnap-live-restart', daemon: true, run: (_c, d) => (requireDaemon(), nbdsnapLiveRestart(d)) },
  { name: 'nbdsnap-crash-attach', daemon: true, run: async (_c, d) => { requireDaemon(); await nbdsnapCrashAttach(d); } },
  { name: 'nbdsnap-merge-differential', daemon: true, run: nbdsnapMergeDifferential },
  { name: 'nbdsnap-merge-to-kernel', daemon: true, run: nbdsnapMergeToKernel },
  { name: 'nbdsnap-merge-from-kernel', daemon: true, run: nbdsnapMergeFromKernel },
];

/** Unfreezes and unmounts whatever a failed test left mounted under the work directory. */
function unmountAll(): void {
  const mounts = fs.readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1]).filter((m) => m && m.startsWith(workRoot + '/'));
  for (const m of mounts.reverse()) {
    run('fsfreeze', ['-u', m], { allowFail: true });
    run('umount', ['-l', m], { allowFail: true });
  }
}

type Outcome = 'pass' | 'fail' | 'skip';

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--list')) {
    for (const t of tests) process.stdout.write(`${t.name}${t.daemon ? ' (daemon)' : ''}\n`);
    return 0;
  }
  if (process.env.NBDSNAP_VM !== '1') {
    process.stderr.write('test/vm/suite.ts creates and removes loop, dm and nbd devices: run it inside the VM with scripts/vm-test.sh\n');
    return 2;
  }
  const onlyKernel = process.env.NBDSNAP_VM_ONLY_KERNEL === '1';
  const selected = argv.length ? tests.filter((t) => argv.some((a) => t.name.includes(a))) : tests;
  if (selected.length === 0) {
    process.stderr.write(`no test matches ${argv.join(' ')} (see --list)\n`);
    return 2;
  }
  const outcomes = new Map<string, { result: Outcome; detail?: string }>();
  const report = (name: string, result: Outcome, detail?: string): Outcome => {
    outcomes.set(name, { result, detail });
    process.stdout.write(`${result.toUpperCase()} ${name}${detail ? `: ${detail}` : ''}\n`);
    return result;
  };
  const runOne = async (t: TestCase): Promise<Outcome> => {
    const done = outcomes.get(t.name);
    if (done) return done.result;
    if (t.daemon && onlyKernel) return report(t.name, 'skip', 'NBDSNAP_VM_ONLY_KERNEL=1');
    process.stdout.write(`RUN  ${t.name}\n`);
    const dir = freshDir(path.join(workRoot, t.name));
    try {
      await t.run(ctx, dir); // the directory stays: later tests read the files of earlier ones
      return report(t.name, 'pass');
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      if (err instanceof Skip) return report(t.name, 'skip', msg);
      report(t.name, 'fail', msg);
      if (!(err instanceof DaemonUnavailable) && err instanceof Error && err.stack) {
        log(err.stack.split('\n').slice(1, 4).join('\n  '));
      }
      unmountAll();
      await resetDevices();
      return 'fail';
    }
  };
  const ctx: Context = {
    async prerequisite(name) {
      const t = tests.find((x) => x.name === name);
      if (!t) throw new Error(`no test ${name}`);
      if (!outcomes.has(name)) log(`running ${name} first`);
      const r = await runOne(t);
      if (r !== 'pass') throw new Error(`prerequisite ${name} did not pass`);
    },
  };
  for (const t of selected) await runOne(t);
  await stopAllDaemons();
  const all = [...outcomes.entries()].map(([name, o]) => ({ name, ...o }));
  const count = (r: Outcome): number => all.filter((o) => o.result === r).length;
  const share = process.env.NBDSNAP_VM_SHARE;
  if (share && fs.existsSync(share)) fs.writeFileSync(path.join(share, 'results.json'), JSON.stringify({ seed, results: all }, null, 1));
  process.stdout.write(`${count('pass')} passed, ${count('fail')} failed, ${count('skip')} skipped\n`);
  return count('fail') > 0 ? 1 : 0;
}

// Exit explicitly: a child left behind by a failed test must not keep the guest up.
process.exit(await main(process.argv.slice(2)));
