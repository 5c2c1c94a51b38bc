// Deterministic block workload for the in-guest tests, in the style of
// shared/fixtures/workload.py (and bit-compatible with it for one snapshot):
//
//   * the origin starts as a pattern: sector i holds u32 LE i repeated 128 times;
//   * write seq goes to the origin with probability originShare (0.6), otherwise to a
//     snapshot (chosen uniformly when there are several), covers 1..64 sectors at a random
//     sector, and is filled with one byte except that every sector starts with
//     'W', u32 LE seq, a tag byte ('o' origin; 's' the only snapshot, or 'a', 'b', ... for
//     several), two zero bytes;
//   * writes are issued one at a time, O_DIRECT from page-aligned memory (or plain writes each
//     followed by fsync), so every device sees the same sequence of bios on every backend.
//
// Also: an in-memory model of the expected images, sha256 of a device or file, and a reader
// of `dmsetup status` lines (the same format `nbdsnap status` prints).
//
// CLI (for use from a shell inside the guest):
//   node test/vm/workload.ts init FILE SECTORS
//   node test/vm/workload.ts run --seed S --writes N --sectors M --origin DEV [--snap NAME=DEV]... [--origin-share F] [--buffered]
//   node test/vm/workload.ts sha256 PATH...
//   node test/vm/workload.ts status DM_NAME
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { PyRandom } from './py-random.ts';

export const SECTOR = 512;
export const ORIGIN = 'origin';
// The project's lib (es2024, no DOM) has no WebAssembly types; this is the part used here.
declare const WebAssembly: { Memory: new (d: { initial: number; maximum?: number }) => { buffer: ArrayBuffer } };

const COUNTS = [1, 1, 2, 8, 8, 16, 32, 64];
const MAX_WRITE = 64 * SECTOR;

export interface WriteOp {
  seq: number;
  /** 'origin' or the name of a snapshot */
  target: string;
  sector: number;
  sectors: number;
  fill: number;
  /** set by applyWorkload when the device rejected the write (e.g. EIO from an invalid snapshot) */
  error?: string;
}

export interface PlanOptions {
  seed: number;
  writes: number;
  /** size of every target in sectors (writes stay below it) */
  sectors: number;
  /** names of the snapshot targets, in a fixed order (the order changes the plan) */
  snapshots: string[];
  /** probability of an origin write, default 0.6 */
  originShare?: number;
  /** first seq number (to continue a workload with a second plan), default 0 */
  firstSeq?: number;
}

export function planWorkload(o: PlanOptions): WriteOp[] {
  const rng = new PyRandom(o.seed);
  const share = o.originShare ?? 0.6;
  const first = o.firstSeq ?? 0;
  const ops: WriteOp[] = [];
  if (o.snapshots.length === 0 && share < 1) throw new Error('planWorkload: no snapshots but originShare < 1');
  for (let seq = first; seq < first + o.writes; seq++) {
    let target = ORIGIN;
    if (!(rng.random() < share)) {
      target = o.snapshots.length === 1 ? o.snapshots[0] : o.snapshots[rng.randrange(0, o.snapshots.length)];
    }
    const sectors = rng.choice(COUNTS);
    const sector = rng.randrange(0, o.sectors - sectors + 1);
    const fill = rng.randrange(1, 256);
    ops.push({ seq, target, sector, sectors, fill });
  }
  return ops;
}

/** The tag byte written into every sector: 'o' for the origin, 's' for a lone snapshot, else 'a'+index. */
export function tagOf(target: string, snapshots: string[]): number {
  if (target === ORIGIN) return 0x6f;
  const i = snapshots.indexOf(target);
  if (i < 0) throw new Error(`unknown target ${target}`);
  return snapshots.length === 1 ? 0x73 : 0x61 + i;
}

export function fillOp(buf: Buffer, op: WriteOp, tag: number): Buffer {
  const data = buf.subarray(0, op.sectors * SECTOR);
  data.fill(op.fill);
  for (let s = 0; s < op.sectors; s++) {
    const o = s * SECTOR;
    data[o] = 0x57; // 'W'
    data.writeUInt32LE(op.seq, o + 1);
    data[o + 5] = tag;
    data[o + 6] = 0;
    data[o + 7] = 0;
  }
  return data;
}

/**
 * Page-aligned memory (WebAssembly memory is mmap'ed), as O_DIRECT needs: Node's own
 * Buffers come from malloc and are only 16-byte aligned.
 */
export function alignedBuffer(bytes: number): Buffer {
  const pages = Math.max(1, Math.ceil(bytes / 65536));
  return Buffer.from(new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer, 0, bytes);
}

export interface ApplyOptions {
  /** O_DIRECT (default) or plain writes each followed by fsync */
  direct?: boolean;
  /** called after every write, e.g. to log progress */
  onWrite?: (op: WriteOp) => void;
}

/**
 * Issues the writes one at a time, in order, to devices[target]. A failed write is recorded in
 * op.error (its errno code) and the workload goes on: origin writes must never fail, snapshot
 * writes fail with EIO once a snapshot is invalid or overflowed. Returns the ops (same objects).
 */
export function applyWorkload(ops: WriteOp[], devices: Record<string, string>, opts: ApplyOptions = {}): WriteOp[] {
  const direct = opts.direct ?? true;
  const snapshots = Object.keys(devices).filter((t) => t !== ORIGIN);
  const buf = alignedBuffer(MAX_WRITE);
  const fds = new Map<string, number>();
  const fdOf = (target: string): number => {
    let fd = fds.get(target);
    if (fd === undefined) {
      const path = devices[target];
      if (!path) throw new Error(`no device for workload target ${target}`);
      fd = fs.openSync(path, fs.constants.O_RDWR | (direct ? fs.constants.O_DIRECT : 0));
      fds.set(target, fd);
    }
    return fd;
  };
  try {
    for (const op of ops) {
      const fd = fdOf(op.target);
      const data = fillOp(buf, op, tagOf(op.target, snapshots));
      try {
        const n = fs.writeSync(fd, data, 0, data.length, op.sector * SECTOR);
        if (n !== data.length) throw new Error(`short write (${n} of ${data.length} bytes)`);
        if (!direct) fs.fsyncSync(fd);
      } catch (err) {
        op.error = (err as NodeJS.ErrnoException).code ?? String(err);
      }
      opts.onWrite?.(op);
    }
  } finally {
    for (const [target, fd] of fds) {
      try {
        fs.fsyncSync(fd);
      } catch (err) {
        // An invalid snapshot fails the flush too; that is recorded, not fatal.
        if (target === ORIGIN) throw err;
      } finally {
        fs.closeSync(fd);
      }
    }
  }
  return ops;
}

/** The origin's initial contents: sector i holds u32 LE i repeated 128 times. */
export function patternImage(sectors: number): Buffer {
  const img = Buffer.allocUnsafe(sectors * SECTOR);
  for (let i = 0; i < sectors * 128; i++) img.writeUInt32LE(Math.floor(i / 128), i * 4);
  return img;
}

export function writePatternFile(path: string, sectors: number): void {
  fs.writeFileSync(path, patternImage(sectors));
}

/**
 * Expected images: every snapshot starts as the origin at activation and then only sees its
 * own writes; the origin sees only origin writes. Failed writes (op.error) change nothing.
 */
export class ImageModel {
  readonly images = new Map<string, Buffer>();
  private readonly snapshots: string[];
  private readonly scratch = Buffer.alloc(MAX_WRITE);

  constructor(origin: Buffer, snapshots: string[]) {
    this.snapshots = snapshots;
    this.images.set(ORIGIN, Buffer.from(origin));
    for (const s of snapshots) this.images.set(s, Buffer.from(origin));
  }

  /** A model that continues from `from`'s current images, for a workload over `snapshots`. */
  static continuing(from: ImageModel, snapshots: string[]): ImageModel {
    const m = new ImageModel(Buffer.alloc(0), []);
    m.snapshots.push(...snapshots);
    for (const t of [ORIGIN, ...snapshots]) {
      const img = from.images.get(t);
      if (!img) throw new Error(`model has no image for ${t}`);
      m.images.set(t, Buffer.from(img));
    }
    return m;
  }

  apply(ops: WriteOp[]): this {
    for (const op of ops) {
      if (op.error) continue;
      const img = this.images.get(op.target);
      if (!img) throw new Error(`model has no image for ${op.target}`);
      fillOp(this.scratch, op, tagOf(op.target, this.snapshots)).copy(img, op.sector * SECTOR);
    }
    return this;
  }

  sha256(target: string): string {
    const img = this.images.get(target);
    if (!img) throw new Error(`model has no image for ${target}`);
    return createHash('sha256').update(img).digest('hex');
  }
}

export function sizeOf(path: string): number {
  const st = fs.statSync(path);
  if (!st.isBlockDevice()) return st.size;
  return Number(execFileSync('blockdev', ['--getsize64', path], { encoding: 'utf8' }).trim());
}

/**
 * sha256 of the whole device or file (or its first `bytes`). Block devices are read with
 * O_DIRECT so nothing stale comes from the page cache; regular files (tmpfs) normally.
 */
export function sha256Of(path: string, bytes?: number): string {
  const block = fs.statSync(path).isBlockDevice();
  const total = bytes ?? sizeOf(path);
  const chunk = 1 << 20;
  const buf = alignedBuffer(chunk);
  const hash = createHash('sha256');
  const fd = fs.openSync(path, fs.constants.O_RDONLY | (block ? fs.constants.O_DIRECT : 0));
  try {
    for (let off = 0; off < total; ) {
      const want = Math.min(chunk, total - off);
      const n = fs.readSync(fd, buf, 0, want, off);
      if (n <= 0) throw new Error(`${path}: unexpected end at byte ${off} of ${total}`);
      hash.update(buf.subarray(0, n));
      off += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

/** Reads `length` bytes at `offset` (O_DIRECT for block devices; then both must be 512-aligned). */
export function readAt(path: string, offset: number, length: number): Buffer {
  const block = fs.statSync(path).isBlockDevice();
  const buf = alignedBuffer(length);
  const fd = fs.openSync(path, fs.constants.O_RDONLY | (block ? fs.constants.O_DIRECT : 0));
  try {
    const n = fs.readSync(fd, buf, 0, length, offset);
    return Buffer.from(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
}

export interface TargetStatus {
  /** the device name when the line had a "NAME: " prefix (dmsetup status without a name, nbdsnap status) */
  name?: string;
  start: number;
  length: number;
  target: string;
  /** everything after the target type, e.g. "48/8192 32" or "Invalid" */
  info: string;
  /** for snapshot targets: 'Invalid' | 'Overflow' | 'Merge failed' | 'Unknown' | 'active' */
  state?: string;
  allocated?: number;
  total?: number;
  metadata?: number;
}

/** Parses one `dmsetup status` line ("[NAME: ]START LENGTH TARGET INFO..."). */
export function parseStatusLine(line: string): TargetStatus {
  const m = /^(?:(\S+):\s+)?(\d+)\s+(\d+)\s+(\S+)\s*(.*)$/.exec(line.trim());
  if (!m) throw new Error(`not a status line: ${JSON.stringify(line)}`);
  const st: TargetStatus = { start: Number(m[2]), length: Number(m[3]), target: m[4], info: m[5].trim() };
  if (m[1] !== undefined) st.name = m[1];
  if (st.target === 'snapshot' || st.target === 'snapshot-merge') {
    const nums = /^(\d+)\/(\d+)(?:\s+(\d+))?$/.exec(st.info);
    if (nums) {
      st.state = 'active';
      st.allocated = Number(nums[1]);
      st.total = Number(nums[2]);
      if (nums[3] !== undefined) st.metadata = Number(nums[3]);
    } else {
      st.state = st.info;
    }
  }
  return st;
}

/** `dmsetup status NAME`, parsed (single-target tables). */
export function dmStatus(name: string): TargetStatus {
  const out = execFileSync('dmsetup', ['status', name], { encoding: 'utf8' }).trim();
  return parseStatusLine(out.split('\n')[0]);
}

function main(argv: string[]): void {
  const [cmd, ...rest] = argv;
  if (cmd === 'init') {
    writePatternFile(rest[0], Number(rest[1]));
  } else if (cmd === 'run') {
    const { values } = parseArgs({
      args: rest,
      options: {
        seed: { type: 'string' },
        writes: { type: 'string' },
        sectors: { type: 'string' },
        origin: { type: 'string' },
        snap: { type: 'string', multiple: true },
        'origin-share': { type: 'string' },
        buffered: { type: 'boolean' },
      },
    });
    if (!values.seed || !values.writes || !values.sectors || !values.origin) throw new Error('run needs --seed --writes --sectors --origin');
    const devices: Record<string, string> = { [ORIGIN]: values.origin };
    for (const s of values.snap ?? []) {
      const [name, dev] = s.split('=');
      devices[name] = dev;
    }
    const ops = planWorkload({
      seed: Number(values.seed),
      writes: Number(values.writes),
      sectors: Number(values.sectors),
      snapshots: Object.keys(devices).filter((t) => t !== ORIGIN),
      originShare: values['origin-share'] === undefined ? undefined : Number(values['origin-share']),
    });
    applyWorkload(ops, devices, {
      direct: !values.buffered,
      onWrite: (op) => process.stdout.write(JSON.stringify(op) + '\n'),
    });
  } else if (cmd === 'sha256') {
    for (const p of rest) process.stdout.write(`${sha256Of(p)}  ${p}\n`);
  } else if (cmd === 'status') {
    process.stdout.write(JSON.stringify(dmStatus(rest[0])) + '\n');
  } else {
    process.stderr.write('usage: workload.ts init FILE SECTORS | run --seed S --writes N --sectors M --origin DEV [--snap NAME=DEV]... | sha256 PATH... | status NAME\n');
    process.exitCode = 2;
  }
}

if (import.meta.main) main(process.argv.slice(2));
