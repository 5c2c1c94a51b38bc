// The two ways of serving an origin and its snapshots inside the guest, behind one interface,
// and the scenarios the differential tests run on each:
//
//   KernelBackend  - the reference: loop devices + dm linear (-real) + snapshot + snapshot-origin,
//                    laid out as LVM does.
//   NbdsnapBackend - PLUG-IN POINT for the daemon (issue 6 CLI contract): `nbdsnap daemon`,
//                    `origin add`, `snapshot create`, `status`, and the kernel's nbd-client
//                    attaching every export as /dev/nbdX.
//
// A scenario is a function of (backend, seed, ...) so the kernel half and the nbdsnap half of a
// differential test run exactly the same steps, and results can be compared field by field.
import fs from 'node:fs';
import path from 'node:path';
import {
  dmCreate, dmRemove, loopAttach, loopDetach, sectorsOf, zeroFile,
  freeNbd, nbdAttach, nbdConnected, nbdDetach, nbdSectors, NbdsnapDaemon, waitFor,
} from './guest.ts';
import {
  ORIGIN, ImageModel, applyWorkload, parseStatusLine, patternImage, planWorkload, readAt, sha256Of, dmStatus,
  type TargetStatus, type WriteOp,
} from './workload.ts';

export type StoreType = 'P' | 'PO' | 'N';

export interface SnapshotSpec {
  name: string;
  store: StoreType;
  /** chunk size in sectors */
  chunk: number;
  cowBytes: number;
}

export interface Layout {
  /** origin name (dm name suffix / nbdsnap origin name) */
  origin: string;
  sectors: number;
  snapshots: SnapshotSpec[];
}

/** The backing files: the origin image and one COW file per snapshot. */
export interface Files {
  origin: string;
  cows: Record<string, string>;
}

/** Device paths by workload target: 'origin' and every snapshot name. */
export type Devices = Record<string, string>;

export interface Backend {
  readonly kind: 'kernel' | 'nbdsnap';
  /** Serves the origin file and the snapshots over their COW files (existing or blank). */
  activate(layout: Layout, files: Files): Promise<Devices>;
  /** The snapshot's status line, parsed (dmsetup status / nbdsnap status). */
  status(snapshot: string): Promise<TargetStatus>;
  /** Tears everything down; the files stay. */
  deactivate(): Promise<void>;
}

// ---- kernel ------------------------------------------------------------------------------------

export class KernelBackend implements Backend {
  readonly kind = 'kernel';
  private loops: string[] = [];
  private names: string[] = []; // dm names, in removal order
  private layout: Layout | null = null;
  private readonly prefix: string;

  constructor(prefix = 'k') {
    this.prefix = prefix;
  }

  dmName(target: string, layout: Layout): string {
    return target === ORIGIN ? `${this.prefix}-${layout.origin}` : `${this.prefix}-${target}`;
  }

  async activate(layout: Layout, files: Files): Promise<Devices> {
    try {
      return this.create(layout, files);
    } catch (err) {
      await this.deactivate().catch(() => undefined);
      throw err;
    }
  }

  private create(layout: Layout, files: Files): Devices {
    const sectors = sectorsOf(files.origin);
    const originLoop = loopAttach(files.origin);
    this.loops.push(originLoop);
    const real = `${this.prefix}-${layout.origin}-real`;
    dmCreate(real, `0 ${sectors} linear ${originLoop} 0`);
    this.names.unshift(real);
    const devices: Devices = {};
    // Snapshots first, then the origin: the origin computes its write split (the smallest
    // chunk size) when it resumes, and every snapshot is active before any origin write.
    for (const s of layout.snapshots) {
      const cowLoop = loopAttach(files.cows[s.name]);
      this.loops.push(cowLoop);
      const name = this.dmName(s.name, layout);
      devices[s.name] = dmCreate(name, `0 ${sectors} snapshot /dev/mapper/${real} ${cowLoop} ${s.store} ${s.chunk}`);
      this.names.unshift(name);
    }
    const origin = this.dmName(ORIGIN, layout);
    devices[ORIGIN] = dmCreate(origin, `0 ${sectors} snapshot-origin /dev/mapper/${real}`);
    this.names.unshift(origin);
    this.layout = layout;
    return devices;
  }

  async status(snapshot: string): Promise<TargetStatus> {
    if (!this.layout) throw new Error('not active');
    return dmStatus(this.dmName(snapshot, this.layout));
  }

  async deactivate(): Promise<void> {
    for (const n of this.names) dmRemove(n);
    for (const l of this.loops) loopDetach(l);
    this.names = [];
    this.loops = [];
    this.layout = null;
  }
}

// ---- nbdsnap (plug-in point: needs a working `bin/nbdsnap daemon`) -------------------------------

export interface NbdsnapBackendOptions {
  /**
   * How exports are attached. 'nbd-client' calls `nbd-client -unix SOCK DEV -N NAME -b BS`
   * directly (the differential needs 512-byte logical blocks for 1-sector O_DIRECT writes);
   * 'cli' uses `nbdsnap attach NAME DEV` (which the contract defines with -b 4096).
   */
  attach?: 'nbd-client' | 'cli';
  blockSize?: number;
  /** connections per export (-C / --connections) */
  connections?: number;
  /** more environment for the daemon (test hooks: NBDSNAP_FAULT, NBDSNAP_MERGE_BATCH_BYTES) */
  env?: Record<string, string>;
}

export class NbdsnapBackend implements Backend {
  readonly kind = 'nbdsnap';
  readonly daemon: NbdsnapDaemon;
  private attached: string[] = [];
  private readonly opts: NbdsnapBackendOptions;

  /** The daemon gets a new directory (data dir, sockets, log) under `parent`. */
  constructor(parent: string, opts: NbdsnapBackendOptions = {}) {
    fs.mkdirSync(parent, { recursive: true });
    this.daemon = new NbdsnapDaemon(fs.mkdtempSync(path.join(parent, 'daemon-')), [], opts.env);
    this.opts = opts;
  }

  async activate(layout: Layout, files: Files): Promise<Devices> {
    try {
      return await this.serve(layout, files);
    } catch (err) {
      await this.deactivate().catch(() => undefined);
      throw err;
    }
  }

  private async serve(layout: Layout, files: Files): Promise<Devices> {
    if (!this.daemon.running) await this.daemon.start();
    const d = this.daemon;
    d.cli('origin', 'add', layout.origin, files.origin);
    for (const s of layout.snapshots) {
      d.cli('snapshot', 'create', s.name, '--origin', layout.origin, '--cow', files.cows[s.name],
        '--persistent', s.store, '--chunk-size', String(s.chunk));
    }
    const devices: Devices = {};
    for (const name of [layout.origin, ...layout.snapshots.map((s) => s.name)]) {
      const dev = freeNbd(this.attached);
      await this.attach(name, dev);
      devices[name === layout.origin ? ORIGIN : name] = dev;
    }
    return devices;
  }

  async attach(name: string, dev: string): Promise<string> {
    const c = this.opts.connections ?? 1;
    if (this.opts.attach === 'cli') {
      const args = ['attach', name, dev];
      if (c > 1) args.push('--connections', String(c));
      this.daemon.cli(...args);
      await nbdAttachSettled(dev);
    } else {
      await nbdAttach(this.daemon.nbdSocket, dev, { name, blockSize: this.opts.blockSize ?? 512, connections: c });
    }
    this.attached.push(dev);
    return dev;
  }

  async status(snapshot: string): Promise<TargetStatus> {
    return parseStatusLine(this.daemon.cli('status', snapshot).trim().split('\n')[0]);
  }

  async deactivate(): Promise<void> {
    for (const dev of this.attached.reverse()) await nbdDetach(dev);
    this.attached = [];
    await this.daemon.stop();
  }
}

async function nbdAttachSettled(dev: string): Promise<void> {
  await waitFor(`${dev} to connect`, () => nbdConnected(dev) && nbdSectors(dev) > 0, 30_000);
}

// ---- scenarios -----------------------------------------------------------------------------------

/** The differential layout of issue 6: snapshots P cs=8, N cs=16 and P cs=16 of a 16 MiB origin. */
export function differentialLayout(): Layout {
  const cow = 8 << 20;
  return {
    origin: 'dorigin',
    sectors: 32768,
    snapshots: [
      { name: 'dp8', store: 'P', chunk: 8, cowBytes: cow },
      { name: 'dn16', store: 'N', chunk: 16, cowBytes: cow },
      { name: 'dp16', store: 'P', chunk: 16, cowBytes: cow },
    ],
  };
}

export function blankFiles(dir: string, layout: Layout): Files {
  fs.mkdirSync(dir, { recursive: true });
  const origin = path.join(dir, `${layout.origin}.img`);
  fs.writeFileSync(origin, patternImage(layout.sectors));
  const cows: Record<string, string> = {};
  for (const s of layout.snapshots) cows[s.name] = zeroFile(path.join(dir, `${s.name}.cow`), s.cowBytes);
  return { origin, cows };
}

/** Everything one half of a differential run observed, comparable across backends. */
export interface HalfResult {
  backend: string;
  seed: number;
  layout: Layout;
  files: Files;
  ops: WriteOp[];
  /** sha256 of every device read back while active ('origin' and each snapshot) */
  deviceSha: Record<string, string>;
  /** status info per snapshot at quiescence, e.g. "1312/8192 32" or "Invalid" */
  status: Record<string, string>;
  /** after teardown: sha256 of the origin file and of every persistent COW file */
  fileSha: Record<string, string>;
}

export interface WorkloadSpec {
  seed: number;
  writes: number;
  originShare?: number;
  firstSeq?: number;
}

/**
 * One half of the differential: blank files (unless given), activate, the seeded workload,
 * sha256 of every device, status of every snapshot, teardown, sha256 of the files kept.
 * Unreadable devices (an invalid snapshot) hash as 'EIO'.
 */
export async function runWorkloadHalf(backend: Backend, layout: Layout, dir: string, w: WorkloadSpec, files?: Files): Promise<HalfResult> {
  const f = files ?? blankFiles(dir, layout);
  const snaps = layout.snapshots.map((s) => s.name);
  const ops = planWorkload({ seed: w.seed, writes: w.writes, sectors: layout.sectors, snapshots: snaps, originShare: w.originShare, firstSeq: w.firstSeq });
  const devices = await backend.activate(layout, f);
  const res: HalfResult = { backend: backend.kind, seed: w.seed, layout, files: f, ops, deviceSha: {}, status: {}, fileSha: {} };
  try {
    applyWorkload(ops, devices);
    for (const [target, dev] of Object.entries(devices)) res.deviceSha[target] = shaOrError(dev);
    for (const s of snaps) res.status[s] = (await backend.status(s)).info;
  } finally {
    await backend.deactivate();
  }
  res.fileSha[ORIGIN] = sha256Of(f.origin);
  for (const s of layout.snapshots) if (s.store !== 'N') res.fileSha[s.name] = sha256Of(f.cows[s.name]);
  fs.writeFileSync(path.join(dir, `result-${backend.kind}.json`), JSON.stringify({ ...res, ops: undefined }, null, 1));
  return res;
}

export function shaOrError(dev: string): string {
  try {
    return sha256Of(dev);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'ERROR';
  }
}

/** Reads the devices of an already-written pair of files and returns their sha256 and status. */
export async function readBack(backend: Backend, layout: Layout, files: Files): Promise<{ deviceSha: Record<string, string>; status: Record<string, string> }> {
  const devices = await backend.activate(layout, files);
  const out = { deviceSha: {} as Record<string, string>, status: {} as Record<string, string> };
  try {
    for (const [target, dev] of Object.entries(devices)) out.deviceSha[target] = shaOrError(dev);
    for (const s of layout.snapshots) out.status[s.name] = (await backend.status(s.name)).info;
  } finally {
    await backend.deactivate();
  }
  return out;
}

/**
 * Expected device contents: `ops` applied to `base` (default: fresh snapshots of the pattern
 * origin). The model is updated in place and can be continued with ImageModel.continuing.
 */
export function expectedSha(layout: Layout, ops: WriteOp[], base?: ImageModel): Record<string, string> {
  const snaps = layout.snapshots.map((s) => s.name);
  const model = base ?? new ImageModel(patternImage(layout.sectors), snaps);
  model.apply(ops);
  const out: Record<string, string> = { [ORIGIN]: model.sha256(ORIGIN) };
  for (const s of snaps) out[s] = model.sha256(s);
  return out;
}

/** Differences between two records of the same keys, as "key: a != b" strings. */
export function diffRecords(what: string, a: Record<string, string>, b: Record<string, string>, labels = ['got', 'want']): string[] {
  const out: string[] = [];
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (a[k] !== b[k]) out.push(`${what} ${k}: ${labels[0]} ${short(a[k])} != ${labels[1]} ${short(b[k])}`);
  }
  return out;
}

const short = (s: string | undefined): string => (s && /^[0-9a-f]{64}$/.test(s) ? s.slice(0, 12) : String(s));

/** The persistent header of a COW file: magic, valid, version, chunk size. */
export function readHeader(cowFile: string): { magic: string; valid: number; version: number; chunk: number } {
  const h = readAt(cowFile, 0, 16);
  return { magic: h.subarray(0, 4).toString('latin1'), valid: h.readUInt32LE(4), version: h.readUInt32LE(8), chunk: h.readUInt32LE(12) };
}

/** First differing byte offset of two files, or -1. */
export function firstDifference(a: string, b: string): number {
  const x = fs.readFileSync(a);
  const y = fs.readFileSync(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return i;
  return x.length === y.length ? -1 : n;
}
