// snapshot-merge in the guest (issue 13): the kernel's snapshot-merge target is the reference,
// nbdsnap's `snapshot merge` is compared with it, and a half-done merge is handed over each way.
//
//   kernel-merge                a seeded workload on the differential layout (16 MiB origin,
//                               dp8 P 8, dn16 N 16, dp16 P 16) on the kernel; dp8 merged as LVM
//                               does it (its own device removed, the origin's table replaced by
//                               snapshot-merge), origin and dp16 writes while it runs; checked
//                               against the model
//   nbdsnap-merge-differential  the same on nbdsnap (/dev/nbdX): byte-identical devices and files,
//                               status lines in the kernel's format and with its numbers
//   nbdsnap-merge-to-kernel     from nbdsnap's files as they were before its merge: nbdsnap
//                               SIGKILLed after merge batch 40 (NBDSNAP_FAULT), the COW checked
//                               half-merged on disk, the kernel finishes the merge
//   nbdsnap-merge-from-kernel   from the kernel's files as they were before its merge: the
//                               kernel's merge suspended part way, the COW checked half-merged,
//                               nbdsnap adopts the files and finishes with `snapshot merge --wait`
//
// Every final origin (and dp16) must equal the model: dp8's image at merge start plus the writes
// made while merging, which is also what kernel-merge produced.
//
// Slowing a merge down: the merging COW sits behind a dm device that is a `delay` target while
// writes run during the merge, and `linear` once they are done. The merge is then still running
// when the writes are issued (checked), and quick afterwards. The kernel's snapshot_copy_throttle
// does not do this here: kcopyd's throttle counts busy time in jiffies, and a copy between
// tmpfs-backed loop devices finishes within one, so a merge at throttle 1 runs at full speed (seen
// in this VM); it only bites once the copies are slow (behind `delay`).
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import {
  DaemonUnavailable, daemonUnavailableReason, dmCreate, dmRemove, loopAttach, loopDetach, nbdDetach, nbdsnapBin,
  run, sectorsOf, waitFor, log, fail, requireDaemon } from './guest.ts';
import {
  KernelBackend, NbdsnapBackend, blankFiles, diffRecords, differentialLayout, readHeader, shaOrError,
  type Devices, type Files, type Layout,
} from './scenarios.ts';
import {
  ImageModel, ORIGIN, SECTOR, applyWorkload, dmStatus, parseStatusLine, patternImage, planWorkload, readAt, sha256Of,
  type TargetStatus, type WriteOp,
} from './workload.ts';

const seed = Number(process.env.NBDSNAP_VM_SEED ?? 6);
/** The snapshot merged, and the other snapshots of the origin (which keep their point in time). */
const MERGED = 'dp8';
const OTHER = 'dp16';
const TRANSIENT = 'dn16';
/** Writes before the merge (dp8 then has about 290 exceptions in 2 metadata areas) and while it runs (origin and dp16). */
const WRITES_BEFORE = 160;
const WRITES_DURING = 60;
/** Each I/O of the merging COW is held this long while writes run during a merge. */
const DELAY_MS = 200;
/** nbdsnap's merge batch (NBDSNAP_MERGE_BATCH_BYTES): one chunk of dp8, so each batch is one of the kernel's runs. */
const BATCH_BYTES = 4096;
/** nbdsnap-merge-to-kernel: killed after this many batches (one run each at BATCH_BYTES). */
const KILL_AFTER_BATCHES = 40;

/** What a one-side merge (kernel-merge, nbdsnap-merge-differential) leaves for the other tests. */
export interface MergeResult {
  /** sha256 after the merge: origin, dp16, dn16 devices */
  deviceSha: Record<string, string>;
  /** status info after the merge: dp16, dn16 */
  status: Record<string, string>;
  /** dp8's status before the merge, and the origin's status lines seen while it merged */
  before: string;
  samples: TargetStatus[];
  /** the origin's status line after LVM's finish (reloaded as snapshot-origin) */
  originAfter: TargetStatus;
  originFileSha: string;
  records: number;
  /** copies of the origin and the persistent COWs as they were just before the merge started */
  preMerge: Files;
}

export interface MergeContext {
  kernelMerge?: MergeResult;
  nbdsnapMerge?: MergeResult;
  /** Runs the named test first unless it already ran; throws unless it passed. */
  prerequisite(name: string): Promise<void>;
}

// ---- the plan and its model ----------------------------------------------------------------------

interface MergePlan {
  layout: Layout;
  before: WriteOp[];
  during: WriteOp[];
  /** images after `before` */
  model: ImageModel;
  /** expected sha256 once the merge is over: origin (dp8's image + `during`), dp16, dn16 */
  expected: Record<string, string>;
}

function mergePlan(): MergePlan {
  const layout = differentialLayout();
  const snaps = layout.snapshots.map((s) => s.name);
  const before = planWorkload({ seed, writes: WRITES_BEFORE, sectors: layout.sectors, snapshots: snaps });
  const during = planWorkload({ seed: seed + 13, writes: WRITES_DURING, sectors: layout.sectors, snapshots: [OTHER], originShare: 0.8, firstSeq: WRITES_BEFORE });
  const model = new ImageModel(patternImage(layout.sectors), snaps).apply(before);
  const after = afterMerge(model, during);
  return { layout, before, during, model, expected: { [ORIGIN]: after.sha256(ORIGIN), [OTHER]: after.sha256(OTHER), [TRANSIENT]: model.sha256(TRANSIENT) } };
}

/** The images once dp8 is merged and `during` written: the origin is dp8's image, dp16 goes on. */
function afterMerge(model: ImageModel, during: WriteOp[]): ImageModel {
  const m = new ImageModel(img(model, MERGED), [OTHER]);
  m.images.set(OTHER, Buffer.from(img(model, OTHER)));
  return m.apply(during);
}

function img(model: ImageModel, target: string): Buffer {
  const b = model.images.get(target);
  if (!b) throw new Error(`model has no image for ${target}`);
  return b;
}

/** What a sector holds, read from its first bytes: a workload write ('W', seq, tag) or the pattern. */
function sectorLabel(b: Buffer, off: number): string {
  if (b[off] === 0x57 && b[off + 6] === 0 && b[off + 7] === 0) return `write seq ${b.readUInt32LE(off + 1)} '${String.fromCharCode(b[off + 5])}'`;
  return `pattern ${b.readUInt32LE(off)}`;
}

/** The first sectors where `file` differs from `want` (at most 4 runs), with what each holds. */
function whereDiffers(file: string, want: Buffer): string {
  const got = fs.readFileSync(file);
  const out: string[] = [];
  for (let s = 0; s * SECTOR < want.length && out.length < 4; s++) {
    const o = s * SECTOR;
    if (got.subarray(o, o + SECTOR).equals(want.subarray(o, o + SECTOR))) continue;
    let e = s + 1;
    while (e * SECTOR < want.length && !got.subarray(e * SECTOR, (e + 1) * SECTOR).equals(want.subarray(e * SECTOR, (e + 1) * SECTOR))) e++;
    out.push(`sectors ${s}-${e - 1} (chunk ${Math.floor(s / 8)}): ${sectorLabel(got, o)}, want ${sectorLabel(want, o)}`);
    s = e;
  }
  return out.length ? out.join('; ') : 'no difference';
}

/** The devices the writes during a merge go to: the origin and dp16. */
const duringDevices = (d: Devices): Devices => ({ [ORIGIN]: d[ORIGIN], [OTHER]: d[OTHER] });

function applyChecked(ops: WriteOp[], devices: Devices, what: string): void {
  applyWorkload(ops, devices);
  const failed = ops.filter((o) => o.error);
  if (failed.length) throw new Error(`${what}: ${failed.length} writes failed, first ${JSON.stringify(failed[0])}`);
}

/** The persistent snapshots of the layout only (a transient one does not outlive its activation). */
const persistent = (layout: Layout): Layout => ({ ...layout, snapshots: layout.snapshots.filter((s) => s.store !== 'N') });

/** Copies of the origin and of the persistent COWs (those the layout names) into `dir`. */
function copyFiles(files: Files, dir: string, layout = persistent(differentialLayout())): Files {
  fs.mkdirSync(dir, { recursive: true });
  const copy = (f: string): string => {
    const to = path.join(dir, path.basename(f));
    fs.copyFileSync(f, to);
    return to;
  };
  return { origin: copy(files.origin), cows: Object.fromEntries(layout.snapshots.map((s) => [s.name, copy(files.cows[s.name])])) };
}

// ---- the COW on disk and the kernel's status numbers ---------------------------------------------

interface CowRecord {
  oldChunk: number;
  newChunk: number;
}

/**
 * The exception records of a persistent COW file in table order, read as the kernel's
 * read_exceptions does: metadata areas in order (area i at chunk 1 + i*(epa+1)), each up to its
 * first record with new_chunk 0; the next area only when this one is full.
 */
function cowRecords(file: string): CowRecord[] {
  const h = readHeader(file);
  if (h.magic !== 'SnAp') throw new Error(`${file}: no SnAp header`);
  const chunkBytes = h.chunk * SECTOR;
  const epa = chunkBytes / 16;
  const out: CowRecord[] = [];
  for (let area = 0; ; area++) {
    const buf = readAt(file, (1 + area * (epa + 1)) * chunkBytes, chunkBytes);
    if (buf.length < chunkBytes) return out;
    for (let i = 0; i < epa; i++) {
      const newChunk = Number(buf.readBigUInt64LE(i * 16 + 8));
      if (newChunk === 0) return out;
      out.push({ oldChunk: Number(buf.readBigUInt64LE(i * 16)), newChunk });
    }
  }
}

/**
 * The kernel's status numbers of a merging store right after the commit that left `left` records
 * (persistent_commit_merge, persistent_usage): area a = floor(left / epa) is current with
 * left - a*epa records, next_free = area_location(a) + committed + 1, metadata = (a + 2) chunks.
 */
function mergeUsage(left: number, chunkSectors: number): { allocated: number; metadata: number } {
  const epa = (chunkSectors * SECTOR) / 16;
  const area = Math.floor(left / epa);
  const committed = left - area * epa;
  return { allocated: (1 + area * (epa + 1) + committed + 1) * chunkSectors, metadata: (area + 2) * chunkSectors };
}

/** Why a status line seen while merging does not fit the kernel's snapshot-merge format, or null. */
function mergeStatusProblem(st: TargetStatus, layout: Layout, totalSectors: number, chunkSectors: number): string | null {
  const line = `"${st.target} ${st.info}"`;
  if (st.target !== 'snapshot-merge' || st.start !== 0 || st.length !== layout.sectors) return `${line} (want 0 ${layout.sectors} snapshot-merge ...)`;
  if (st.state !== 'active' || st.allocated === undefined || st.metadata === undefined) return `${line}: not ALLOC/TOTAL METADATA`;
  if (st.total !== totalSectors) return `${line}: total ${st.total}, want ${totalSectors}`;
  const epa = (chunkSectors * SECTOR) / 16;
  const area = st.metadata / chunkSectors - 2;
  const committed = st.allocated / chunkSectors - 2 - area * (epa + 1);
  // committed == epa + 1: area `area`+1 has just emptied and prepare_merge moved back to `area`
  // (metadata one chunk less) while next_free keeps area_location(area + 1) + 1 until the next commit.
  if (!Number.isInteger(area) || area < 0 || !Number.isInteger(committed) || committed < 0 || committed > epa + 1) {
    return `${line}: not a state of a merging store (area ${area}, ${committed} records in it)`;
  }
  return null;
}

/** Problems with a sequence of status lines of a merge: format, and allocation only going down. */
function checkSamples(samples: TargetStatus[], layout: Layout, totalSectors: number, chunkSectors: number, who: string): string[] {
  const problems: string[] = [];
  samples.forEach((st, i) => {
    const p = mergeStatusProblem(st, layout, totalSectors, chunkSectors);
    if (p) problems.push(`${who} status while merging: ${p}`);
    const prev = samples[i - 1];
    if (prev?.allocated !== undefined && st.allocated !== undefined && st.allocated > prev.allocated) {
      problems.push(`${who} status while merging went up: ${prev.info} then ${st.info}`);
    }
  });
  return problems;
}

/**
 * The kernel's merge runs (persistent_prepare_merge), last first, as record counts: from the end
 * of the table, the records before the last whose old and new chunks both go down by one, within
 * one metadata area.
 */
function mergeRuns(records: CowRecord[], epa: number): number[] {
  const runs: number[] = [];
  for (let end = records.length; end > 0; ) {
    const areaStart = Math.floor((end - 1) / epa) * epa;
    const last = records[end - 1];
    let n = 1;
    while (end - 1 - n >= areaStart && records[end - 1 - n].oldChunk === last.oldChunk - n && records[end - 1 - n].newChunk === last.newChunk - n) n++;
    runs.push(n);
    end -= n;
  }
  return runs;
}

/** Problems with a COW caught part way through a merge: fewer records than at the start, some left, the first ones kept. */
function checkPartial(before: CowRecord[], after: CowRecord[], who: string): string[] {
  const problems: string[] = [];
  if (after.length === 0 || after.length >= before.length) problems.push(`${who}: ${after.length} of ${before.length} records left, want some but not all`);
  // The merge takes runs from the end of the table: what is left is its beginning, unchanged.
  const prefix = before.slice(0, after.length);
  const i = after.findIndex((r, k) => r.oldChunk !== prefix[k].oldChunk || r.newChunk !== prefix[k].newChunk);
  if (i >= 0) problems.push(`${who}: record ${i} is ${JSON.stringify(after[i])}, was ${JSON.stringify(prefix[i])} (a merge removes records from the end only)`);
  return problems;
}

// ---- a dm device that can slow the merging COW down ----------------------------------------------

/** `name` over `dev`: a `delay` target holding every I/O `ms` when ms > 0, else `linear`; switched live. */
class SlowDevice {
  readonly path: string;
  readonly name: string;
  private readonly dev: string;
  private readonly sectors: number;

  constructor(name: string, dev: string, sectors: number, ms: number) {
    this.name = name;
    this.dev = dev;
    this.sectors = sectors;
    this.path = dmCreate(name, this.table(ms));
  }

  private table(ms: number): string {
    return ms > 0 ? `0 ${this.sectors} delay ${this.dev} 0 ${ms}` : `0 ${this.sectors} linear ${this.dev} 0`;
  }

  set(ms: number): void {
    run('dmsetup', ['suspend', this.name]);
    run('dmsetup', ['load', this.name, '--table', this.table(ms)]);
    run('dmsetup', ['resume', this.name]);
  }

  remove(): void {
    dmRemove(this.name);
  }
}

function dmTable(name: string): { target: string; args: string[] } {
  const f = run('dmsetup', ['table', name]).stdout.trim().split(/\s+/);
  return { target: f[2], args: f.slice(3) };
}

// ---- the two sides of a merge ---------------------------------------------------------------------

/** One side's way to merge MERGED into the origin of an active layout. */
interface Merger {
  readonly kind: 'kernel' | 'nbdsnap';
  /** Serves `files` (nbdsnap: MERGED's COW through the slow device when `slowable`). */
  activate(layout: Layout, files: Files): Promise<Devices>;
  /** Starts the merge with the COW slowed to `ms`; from now on the origin reads as MERGED. */
  start(ms: number): Promise<void>;
  slow(ms: number): void;
  /** The origin's status line. */
  originStatus(): TargetStatus;
  /** Whether the merge is over, given the origin's status (kernel: allocated == metadata). */
  over(st: TargetStatus): boolean;
  /** What follows the end of a merge (kernel: LVM reloads the origin as snapshot-origin). */
  finish(): void;
  status(target: string): TargetStatus;
  deactivate(): Promise<void>;
}

/** The kernel as LVM drives it (dm-snapshot.md section 7). */
class KernelMerger implements Merger {
  readonly kind = 'kernel';
  readonly backend: KernelBackend;
  private layout: Layout | null = null;
  private files: Files | null = null;
  private slowDev: SlowDevice | null = null;

  constructor(prefix: string) {
    this.backend = new KernelBackend(prefix);
  }

  activate(layout: Layout, files: Files): Promise<Devices> {
    this.layout = layout;
    this.files = files;
    return this.backend.activate(layout, files);
  }

  private get originDm(): string {
    return this.backend.dmName(ORIGIN, this.layout!);
  }

  /**
   * lvconvert --merge: the origin suspended, the snapshot's own device removed, its COW put
   * behind the slow device, the origin's table replaced by snapshot-merge over the same -real
   * device (the other snapshots stay on it), resumed: the merge starts.
   */
  async start(ms: number): Promise<void> {
    const layout = this.layout!;
    const snapDm = this.backend.dmName(MERGED, layout);
    const real = dmTable(this.originDm).args[0];
    const { args } = dmTable(snapDm); // <origin> <cow> <P|PO> <chunk>
    run('dmsetup', ['suspend', this.originDm]);
    dmRemove(snapDm);
    this.slowDev = new SlowDevice(`${snapDm}-cow`, args[1], sectorsOf(this.files!.cows[MERGED]), ms);
    run('dmsetup', ['load', this.originDm, '--table', `0 ${layout.sectors} snapshot-merge ${real} ${this.slowDev.path} ${args[2]} ${args[3]}`]);
    run('dmsetup', ['resume', this.originDm]);
  }

  slow(ms: number): void {
    this.slowDev!.set(ms);
  }

  originStatus(): TargetStatus {
    return dmStatus(this.originDm);
  }

  over(st: TargetStatus): boolean {
    return st.target === 'snapshot-merge' && st.allocated !== undefined && st.allocated === st.metadata;
  }

  /** LVM's end of a merge with other snapshots left: the origin becomes snapshot-origin again. */
  finish(): void {
    const real = dmTable(this.originDm).args[0];
    run('dmsetup', ['suspend', this.originDm]);
    run('dmsetup', ['load', this.originDm, '--table', `0 ${this.layout!.sectors} snapshot-origin ${real}`]);
    run('dmsetup', ['resume', this.originDm]);
    this.slowDev?.remove();
    this.slowDev = null;
  }

  /** Stops a merge part way: merging stops on presuspend, after the run in progress is committed. */
  stop(): void {
    run('dmsetup', ['suspend', this.originDm]);
  }

  status(target: string): TargetStatus {
    return dmStatus(this.backend.dmName(target, this.layout!));
  }

  async deactivate(): Promise<void> {
    if (this.layout) dmRemove(this.originDm); // before the slow device it stands on
    this.slowDev?.remove();
    this.slowDev = null;
    await this.backend.deactivate();
  }
}

/** nbdsnap: `snapshot merge`, the exports attached with nbd-client. */
class NbdsnapMerger implements Merger {
  readonly kind = 'nbdsnap';
  readonly backend: NbdsnapBackend;
  private layout: Layout | null = null;
  private devices: Devices = {};
  private slowDev: SlowDevice | null = null;
  private cowLoop: string | null = null;
  private readonly slowable: boolean;

  /** `slowable`: MERGED's COW is served through a SlowDevice (a dm device over a loop device). */
  constructor(dir: string, env: Record<string, string>, slowable: boolean) {
    this.backend = new NbdsnapBackend(dir, { env });
    this.slowable = slowable;
  }

  async activate(layout: Layout, files: Files): Promise<Devices> {
    this.layout = layout;
    let served = files;
    if (this.slowable) {
      this.cowLoop = loopAttach(files.cows[MERGED]);
      this.slowDev = new SlowDevice(`n-${MERGED}-cow`, this.cowLoop, sectorsOf(files.cows[MERGED]), 0);
      served = { ...files, cows: { ...files.cows, [MERGED]: this.slowDev.path } };
    }
    this.devices = await this.backend.activate(layout, served);
    return this.devices;
  }

  get daemon(): NbdsnapBackend['daemon'] {
    return this.backend.daemon;
  }

  /** Detaches the snapshot's own /dev/nbdX (a merge stops serving it) and merges. */
  async start(ms: number): Promise<void> {
    await nbdDetach(this.devices[MERGED]);
    if (ms > 0) {
      // The daemon does buffered I/O: drop the COW's page cache, or the merge would read it from there.
      run('blockdev', ['--flushbufs', this.slowDev!.path]);
      this.slow(ms);
    }
    this.daemon.cli('snapshot', 'merge', MERGED);
  }

  slow(ms: number): void {
    if (!this.slowDev) throw new Error('the COW is not behind a slow device');
    this.slowDev.set(ms);
  }

  originStatus(): TargetStatus {
    return this.status(this.layout!.origin);
  }

  /** nbdsnap removes the snapshot at the end: the origin is plain snapshot-origin again. */
  over(st: TargetStatus): boolean {
    return st.target === 'snapshot-origin';
  }

  finish(): void {
    const left = (JSON.parse(this.daemon.cli('snapshot', 'list', '--json')) as { name: string }[]).filter((s) => s.name === MERGED);
    if (left.length) throw new Error(`${MERGED} is still listed after its merge: ${JSON.stringify(left)}`);
  }

  status(target: string): TargetStatus {
    return parseStatusLine(this.daemon.cli('status', target).trim().split('\n')[0]);
  }

  async deactivate(): Promise<void> {
    await this.backend.deactivate();
    this.slowDev?.remove();
    this.slowDev = null;
    if (this.cowLoop) loopDetach(this.cowLoop);
    this.cowLoop = null;
  }
}

// ---- one side's whole merge (kernel-merge, nbdsnap-merge-differential) ----------------------------

/**
 * The workload, dp8's status, copies of the files, the merge started with its COW slowed, the
 * writes during the merge (which must still be running after them), the origin read while
 * merging, the COW back to full speed, the status polled to the end, the end of the merge, sha256
 * and status of what is left, teardown, the files.
 */
async function mergeHalf(m: Merger, dir: string): Promise<MergeResult> {
  const plan = mergePlan();
  const { layout } = plan;
  const files = blankFiles(dir, layout);
  const spec = layout.snapshots.find((s) => s.name === MERGED)!;
  const problems: string[] = [];
  const devices = await m.activate(layout, files);
  let half: MergeResult;
  try {
    applyChecked(plan.before, devices, `${m.kind}: writes before the merge`);
    log(`${m.kind}: ${WRITES_BEFORE} writes done`);
    const records = cowRecords(files.cows[MERGED]).length;
    const beforeStatus = m.status(MERGED);
    const before = beforeStatus.info;
    const preMerge = copyFiles(files, path.join(dir, 'pre-merge')); // every write was flushed
    await m.start(DELAY_MS);
    const samples = [m.originStatus()];
    if ((samples[0].allocated ?? Infinity) > (beforeStatus.allocated ?? 0)) problems.push(`${m.kind}: status at the merge's start ${samples[0].info}, more than ${MERGED}'s ${before}`);
    applyChecked(plan.during, duringDevices(devices), `${m.kind}: writes during the merge`);
    const afterWrites = m.originStatus();
    if (afterWrites.target === 'snapshot-merge') samples.push(afterWrites);
    if (m.over(afterWrites) || afterWrites.allocated === afterWrites.metadata) {
      problems.push(`${m.kind}: the merge was over before the writes during it were done (${afterWrites.target} ${afterWrites.info}): nothing was written during the merge`);
    }
    // Still merging: unmerged chunks read from the COW, the rest from the origin, all as dp8 + the writes.
    if (sha256Of(devices[ORIGIN]) !== plan.expected[ORIGIN]) problems.push(`${m.kind}: the origin read while merging is not ${MERGED} + the writes during the merge`);
    const afterRead = m.originStatus();
    if (afterRead.target === 'snapshot-merge') samples.push(afterRead);
    log(`${m.kind}: ${WRITES_DURING} writes during the merge, then the origin read: status ${afterWrites.info}, then ${afterRead.target} ${afterRead.info}`);
    m.slow(0);
    await waitFor(`the ${m.kind} merge to end`, () => {
      const st = m.originStatus();
      if (st.target === 'snapshot-merge' && st.state !== 'active') throw new Error(`${m.kind}: the merge stopped: ${st.info}`);
      if (st.target === 'snapshot-merge') samples.push(st);
      return m.over(st);
    }, 180_000, 200);
    m.finish();
    const originAfter = m.originStatus();
    log(`${m.kind}: ${records} chunks of ${MERGED} (${before}) merged; status while merging ${samples.map((s) => s.info).join(', ')}; then ${originAfter.target}`);
    problems.push(...checkSamples(samples, layout, spec.cowBytes / SECTOR, spec.chunk, m.kind));
    const deviceSha: Record<string, string> = {};
    for (const t of [ORIGIN, OTHER, TRANSIENT]) deviceSha[t] = shaOrError(devices[t]);
    const status: Record<string, string> = {};
    for (const t of [OTHER, TRANSIENT]) status[t] = m.status(t).info;
    half = { deviceSha, status, before, samples, originAfter, originFileSha: '', records, preMerge };
  } finally {
    await m.deactivate();
  }
  half.originFileSha = sha256Of(files.origin);
  problems.push(...diffRecords(`${m.kind}: device`, half.deviceSha, plan.expected, ['device', 'model']));
  if (half.originFileSha !== plan.expected[ORIGIN]) problems.push(`${m.kind}: the origin file differs from the model after teardown: ${whereDiffers(files.origin, img(afterMerge(plan.model, plan.during), ORIGIN))}`);
  const left = cowRecords(files.cows[MERGED]).length;
  if (left !== 0) problems.push(`${m.kind}: ${left} records left in ${MERGED}'s COW after the merge`);
  fail(problems);
  return half;
}

// ---- the tests ----------------------------------------------------------------------------------------

export async function kernelMerge(ctx: MergeContext, dir: string): Promise<void> {
  run('modprobe', ['dm-delay']);
  const half = await mergeHalf(new KernelMerger('km'), dir);
  const problems: string[] = [];
  const final = half.samples.at(-1)!;
  const u = mergeUsage(0, 8);
  if (final.allocated !== u.allocated || final.metadata !== u.metadata) problems.push(`the last status while merging is ${final.info}, want ${u.allocated}/... ${u.metadata}`);
  if (half.originAfter.target !== 'snapshot-origin') problems.push(`after LVM's finish the origin is ${half.originAfter.target}`);
  fail(problems);
  ctx.kernelMerge = half;
  log(`origin = ${MERGED} + ${WRITES_DURING} writes during the merge, ${OTHER} and ${TRANSIENT} kept their point in time (status ${JSON.stringify(half.status)})`);
}

/** The single values of a merge half that must match across sides. */
const scalars = (h: MergeResult): Record<string, string> => ({
  [`${MERGED} status before`]: h.before, [`${MERGED} records before`]: String(h.records), 'origin file after': h.originFileSha,
});

export async function nbdsnapMergeDifferential(ctx: MergeContext, dir: string): Promise<void> {
  requireDaemon();
  await ctx.prerequisite('kernel-merge');
  const k = ctx.kernelMerge!;
  run('modprobe', ['dm-delay']);
  const half = await mergeHalf(new NbdsnapMerger(dir, { NBDSNAP_MERGE_BATCH_BYTES: String(BATCH_BYTES) }, true), dir);
  ctx.nbdsnapMerge = half;
  const problems = [
    ...diffRecords('device', half.deviceSha, k.deviceSha, ['nbdsnap', 'kernel']),
    ...diffRecords('status', half.status, k.status, ['nbdsnap', 'kernel']),
    ...diffRecords('merge:', scalars(half), scalars(k), ['nbdsnap', 'kernel']),
  ];
  const after = (st: TargetStatus): string => `${st.start} ${st.length} ${st.target} ${st.info}`.trim();
  if (after(half.originAfter) !== after(k.originAfter)) problems.push(`origin after the merge: nbdsnap "${after(half.originAfter)}", kernel "${after(k.originAfter)}"`);
  fail(problems);
  log(`identical to the kernel's merge: devices, ${OTHER}/${TRANSIENT} status, origin file; status lines in the kernel's format`);
}

/** Final checks of a merge finished by the other side: the model, the one-side merges, no records left. */
function checkFinished(who: string, plan: MergePlan, files: Files, sha: Record<string, string>, status: Record<string, string>, k: MergeResult): string[] {
  const want = (r: Record<string, string>): Record<string, string> => ({ [ORIGIN]: r[ORIGIN], [OTHER]: r[OTHER] });
  const problems = [
    ...diffRecords(`after ${who} finished: device`, sha, want(plan.expected), ['got', 'model']),
    ...diffRecords(`after ${who} finished: device`, sha, want(k.deviceSha), ['got', 'kernel-merge']),
    ...diffRecords(`after ${who} finished: status`, status, { [OTHER]: k.status[OTHER] }, ['got', 'kernel-merge']),
  ];
  if (sha256Of(files.origin) !== k.originFileSha) problems.push(`the origin file differs from kernel-merge's: ${whereDiffers(files.origin, img(afterMerge(plan.model, plan.during), ORIGIN))}`);
  const left = cowRecords(files.cows[MERGED]).length;
  if (left) problems.push(`${left} records left in ${MERGED}'s COW after ${who}'s merge`);
  return problems;
}

/**
 * nbdsnap-merge-to-kernel: nbdsnap's files from just before its merge (nbdsnap-merge-differential);
 * nbdsnap merges one run per batch and SIGKILLs itself after batch 40; the COW is checked
 * half-merged on disk; the kernel's snapshot-merge finishes it, with the writes during the merge.
 */
export async function nbdsnapMergeToKernel(ctx: MergeContext, dir: string): Promise<void> {
  requireDaemon();
  await ctx.prerequisite('nbdsnap-merge-differential');
  const k = ctx.kernelMerge!;
  const plan = mergePlan();
  const layout = persistent(plan.layout);
  const files = copyFiles(ctx.nbdsnapMerge!.preMerge, dir);
  const problems: string[] = [];
  const recordsBefore = cowRecords(files.cows[MERGED]);
  const n = new NbdsnapMerger(dir, { NBDSNAP_MERGE_BATCH_BYTES: String(BATCH_BYTES), NBDSNAP_FAULT: `snapshot-merge:after-batch@${KILL_AFTER_BATCHES}` }, false);
  await n.activate(layout, files);
  try {
    await n.start(0);
    await waitFor(`the daemon to SIGKILL itself after merge batch ${KILL_AFTER_BATCHES}`, () => !n.daemon.running, 120_000, 200);
  } finally {
    await n.deactivate();
  }
  // ---- on disk: the last 40 runs of the table merged, the origin file holds them
  const recordsAfter = cowRecords(files.cows[MERGED]);
  problems.push(...checkPartial(recordsBefore, recordsAfter, 'nbdsnap killed mid-merge'));
  // A batch of one chunk's bytes is one of the kernel's runs: exactly the last 40 runs are merged.
  const runs = mergeRuns(recordsBefore, (8 * SECTOR) / 16);
  const wantLeft = recordsBefore.length - runs.slice(0, KILL_AFTER_BATCHES).reduce((sum, count) => sum + count, 0);
  if (recordsAfter.length !== wantLeft) {
    problems.push(`${recordsAfter.length} records left of ${recordsBefore.length}, want ${wantLeft} after the last ${KILL_AFTER_BATCHES} of the kernel's ${runs.length} runs`);
  }
  const h = readHeader(files.cows[MERGED]);
  if (h.valid !== 1) problems.push(`${MERGED}'s COW header says valid=${h.valid}`);
  const partial = Buffer.from(img(plan.model, ORIGIN));
  const cb = 8 * SECTOR;
  for (const r of recordsBefore.slice(recordsAfter.length)) img(plan.model, MERGED).copy(partial, r.oldChunk * cb, r.oldChunk * cb, (r.oldChunk + 1) * cb);
  if (!fs.readFileSync(files.origin).equals(partial)) problems.push(`the origin file is not the pre-merge origin plus exactly the merged chunks: ${whereDiffers(files.origin, partial)}`);
  fail(problems);
  log(`nbdsnap SIGKILLed after batch ${KILL_AFTER_BATCHES}: ${recordsAfter.length} of ${recordsBefore.length} records left (the table's beginning), origin file = pre-merge origin + the merged chunks`);
  // ---- the kernel finishes it, with the writes during the merge
  const km = new KernelMerger('kt');
  const kdev = await km.activate(layout, files);
  const sha: Record<string, string> = {};
  const status: Record<string, string> = {};
  try {
    await km.start(DELAY_MS);
    if (sha256Of(kdev[ORIGIN]) !== plan.model.sha256(MERGED)) problems.push(`the kernel's snapshot-merge over nbdsnap's half-merged COW does not read as ${MERGED}`);
    applyChecked(plan.during, duringDevices(kdev), 'kernel: writes during the merge');
    const st = km.originStatus();
    if (km.over(st)) problems.push(`the kernel's merge was over before the writes during it were done (${st.info})`);
    km.slow(0);
    await waitFor('the kernel to finish the merge', () => km.over(km.originStatus()), 180_000, 200);
    km.finish();
    for (const t of [ORIGIN, OTHER]) sha[t] = shaOrError(kdev[t]);
    status[OTHER] = km.status(OTHER).info;
  } finally {
    await km.deactivate();
  }
  problems.push(...checkFinished('the kernel', plan, files, sha, status, k));
  fail(problems);
  log(`the kernel finished nbdsnap's merge: origin and ${OTHER} identical to kernel-merge's (${OTHER} ${status[OTHER]})`);
}

/**
 * nbdsnap-merge-from-kernel: the kernel's files from just before its merge (kernel-merge); the
 * kernel merges (slowed) with half the writes, is suspended once some runs are merged and torn
 * down; the COW is checked half-merged on disk; nbdsnap adopts the files, serves the snapshot as
 * the merged origin will read, and finishes with `snapshot merge --wait`, the other half of the
 * writes during its merge.
 */
export async function nbdsnapMergeFromKernel(ctx: MergeContext, dir: string): Promise<void> {
  requireDaemon();
  await ctx.prerequisite('kernel-merge');
  const k = ctx.kernelMerge!;
  run('modprobe', ['dm-delay']);
  const plan = mergePlan();
  const layout = persistent(plan.layout);
  const files = copyFiles(k.preMerge, dir);
  const half = Math.floor(plan.during.length / 2);
  const [duringA, duringB] = [plan.during.slice(0, half), plan.during.slice(half)];
  const problems: string[] = [];
  const recordsBefore = cowRecords(files.cows[MERGED]);
  // ---- the kernel: the merge (slowed), half the writes, some runs merged, suspended
  const km = new KernelMerger('kh');
  const kdev = await km.activate(layout, files);
  let stopped: TargetStatus;
  try {
    await km.start(DELAY_MS);
    const startAlloc = km.originStatus().allocated!;
    applyChecked(duringA, duringDevices(kdev), 'kernel: writes during the merge');
    await waitFor('the kernel to merge some chunks', () => km.originStatus().allocated! < startAlloc, 60_000, 100);
    km.stop();
    stopped = km.originStatus();
  } finally {
    await km.deactivate();
  }
  const recordsAfter = cowRecords(files.cows[MERGED]);
  problems.push(...checkPartial(recordsBefore, recordsAfter, 'the kernel stopped mid-merge'));
  const u = mergeUsage(recordsAfter.length, 8);
  if (stopped.allocated !== u.allocated || stopped.metadata !== u.metadata) {
    problems.push(`the kernel's status when stopped is ${stopped.info}, want ${u.allocated}/${stopped.total} ${u.metadata} for ${recordsAfter.length} records left`);
  }
  fail(problems);
  log(`the kernel's merge suspended at ${stopped.info}: ${recordsAfter.length} of ${recordsBefore.length} records left (the table's beginning)`);
  // ---- nbdsnap adopts the files: the snapshot reads as the merged origin will, then merge --wait
  const n = new NbdsnapMerger(dir, { NBDSNAP_MERGE_BATCH_BYTES: String(BATCH_BYTES) }, false);
  const ndev = await n.activate(layout, files);
  const sha: Record<string, string> = {};
  const status: Record<string, string> = {};
  try {
    const adopted = n.status(MERGED);
    if (adopted.info !== stopped.info) problems.push(`nbdsnap's status of the half-merged ${MERGED} is ${adopted.info}, the kernel's was ${stopped.info}`);
    if (sha256Of(ndev[MERGED]) !== afterMerge(plan.model, duringA).sha256(ORIGIN)) {
      problems.push(`nbdsnap's ${MERGED} over the half-merged COW does not read as ${MERGED} + the writes made during the kernel's merge`);
    }
    await nbdDetach(ndev[MERGED]);
    const waiter = spawnCollect(nbdsnapBin, ['snapshot', 'merge', MERGED, '--wait', '--json', '--control', n.daemon.control]);
    // The first progress line comes once the merge has started: writes before it would be rolled back.
    await waiter.firstLine;
    applyChecked(duringB, duringDevices(ndev), 'nbdsnap: writes during the merge');
    const w = await waiter.done;
    const lines = w.stdout.trim().split('\n').filter(Boolean);
    const last = JSON.parse(lines.at(-1) ?? '{}') as { state?: string };
    if (w.code !== 0 || last.state !== 'merged') problems.push(`snapshot merge --wait --json: exit ${w.code}, last line ${lines.at(-1)}: ${w.stderr.trim()}`);
    log(`nbdsnap adopted the files (${MERGED} ${adopted.info}) and merged, ${duringB.length} writes during it; merge --wait --json printed ${lines.length} lines`);
    for (const t of [ORIGIN, OTHER]) sha[t] = shaOrError(ndev[t]);
    status[OTHER] = n.status(OTHER).info;
  } finally {
    await n.deactivate();
  }
  problems.push(...checkFinished('nbdsnap', plan, files, sha, status, k));
  fail(problems);
  log(`nbdsnap finished the kernel's merge: origin and ${OTHER} identical to kernel-merge's`);
}

/** A command running in the background: `firstLine` settles at its first line of output, `done` at its exit. */
function spawnCollect(cmd: string, args: string[]): { firstLine: Promise<void>; done: Promise<{ code: number; stdout: string; stderr: string }> } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let lineSeen!: () => void;
  const firstLine = new Promise<void>((resolve) => (lineSeen = resolve));
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    if (stdout.includes('\n')) lineSeen();
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
  });
  void done.finally(lineSeen).catch(() => undefined); // an early exit ends the wait for a line too
  return { firstLine, done };
}
