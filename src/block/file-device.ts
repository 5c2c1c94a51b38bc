// A BlockDevice over a regular file or a block device node, using positional I/O on one shared
// descriptor (so every NBD connection to an export sees the same data, and one fdatasync covers
// all of them). The size is read at open and again by refreshSize(), grow(), and an I/O that
// reaches past it (so a device grown underneath is used at once): a file never grows because it
// was written past its end.
//
// Small reads and writes are first tried synchronously on the event loop: when the page cache
// holds the data, that is several times cheaper than a libuv threadpool round trip (measured:
// ~9 vs ~28 us of CPU per 4 KiB read). A synchronous call that turns out slow (a cache miss,
// writeback throttling; two in a row, since one alone is usually the thread being preempted)
// sends the device to the threadpool for a while, with exponential backoff, so a cold or slow
// disk never stalls the event loop for long.
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { SECTOR_BYTES } from '../common/sectors.ts';
import { openClaimed } from './device-claim.ts';
import { BlockError } from './errors.ts';
import type { BlockDevice, DeviceCaps, WriteOptions, ZeroOptions } from './device.ts';

const ZERO_CHUNK = Buffer.alloc(1 << 20);

export interface FileDeviceOptions {
  readOnly?: boolean;
  /** Create the file with this size if it does not exist. */
  createSize?: number;
}

function sysfsNumber(path: string): number | undefined {
  try {
    return Number(fs.readFileSync(path, 'utf8').trim());
  } catch {
    return undefined; // not present (e.g. a partition has no queue/ of its own)
  }
}

export function devNumbers(rdev: number): string {
  // glibc's gnu_dev_major/minor encoding.
  const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
  return `${major}:${minor}`;
}

/** Size and logical block size of an open descriptor, without ioctls (sysfs for block devices). */
export function probeGeometry(fd: number): { size: number; blockSize: number; isBlockDevice: boolean } {
  const st = fs.fstatSync(fd);
  if (st.isFile()) return { size: st.size, blockSize: SECTOR_BYTES, isBlockDevice: false };
  if (!st.isBlockDevice()) throw new BlockError('EINVAL', 'not a regular file or block device');
  const base = `/sys/dev/block/${devNumbers(st.rdev)}`;
  const sectors = sysfsNumber(`${base}/size`);
  if (sectors === undefined) throw new BlockError('EIO', `cannot read ${base}/size`);
  const blockSize = sysfsNumber(`${base}/queue/logical_block_size`) ?? sysfsNumber(`${base}/../queue/logical_block_size`) ?? SECTOR_BYTES;
  return { size: sectors * SECTOR_BYTES, blockSize, isBlockDevice: true }; // sysfs size is in sectors
}

function pread(fd: number, buf: Uint8Array, pos: number, offset: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buf, pos, buf.length - pos, offset, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function pwrite(fd: number, buf: Uint8Array, pos: number, length: number, offset: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.write(fd, buf, pos, length, offset, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

/** Largest request tried synchronously. */
const SYNC_MAX_BYTES = 256 * 1024;
/** A synchronous call slower than this (milliseconds) was not served from memory. */
const SLOW_SYNC_MS = 0.5;
const BACKOFF_MIN_MS = 20;
const BACKOFF_MAX_MS = 2000;

/** Consecutive slow synchronous calls that mean "not in memory" (one alone is often preemption). */
const SLOW_STREAK = 2;

/** Decides whether the next small I/O may run synchronously (see the note at the top). */
class SyncGate {
  private asyncUntil = 0;
  private backoffMs = BACKOFF_MIN_MS;
  private slowStreak = 0;

  allow(length: number): boolean {
    return length <= SYNC_MAX_BYTES && performance.now() >= this.asyncUntil;
  }

  /** Run `op` synchronously and learn from how long it took. */
  run(op: () => void): Promise<void> {
    const start = performance.now();
    try {
      op();
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    } finally {
      this.learn(start, performance.now());
    }
  }

  private learn(start: number, end: number): void {
    if (end - start <= SLOW_SYNC_MS) {
      this.slowStreak = 0;
      this.backoffMs = BACKOFF_MIN_MS;
    } else if (++this.slowStreak >= SLOW_STREAK) {
      this.slowStreak = 0;
      this.asyncUntil = end + this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    }
  }
}

export class FileDevice implements BlockDevice {
  readonly path: string;
  readonly readOnly: boolean;
  readonly isBlockDevice: boolean;
  readonly caps: DeviceCaps;
  blockSize: number;
  size: number;
  private fd: number;
  private readonly gate = new SyncGate();
  /** Ends this process's exclusive claim on the file or device (device-claim.ts). */
  private readonly releaseClaim: () => void;

  private constructor(path: string, fd: number, readOnly: boolean, releaseClaim: () => void) {
    this.path = path;
    this.fd = fd;
    this.releaseClaim = releaseClaim;
    this.readOnly = readOnly;
    const geo = probeGeometry(fd);
    this.size = geo.size;
    this.blockSize = geo.blockSize;
    this.isBlockDevice = geo.isBlockDevice;
    this.caps = { flush: !readOnly, fua: !readOnly, trim: !readOnly, zero: !readOnly, fastZero: !readOnly };
  }

  /**
   * Open synchronously (startup path), claimed exclusively (device-claim.ts); errors are Node
   * system errors with a code, or DeviceInUseError when another program holds it.
   */
  static open(path: string, opts: FileDeviceOptions = {}): FileDevice {
    const readOnly = opts.readOnly ?? false;
    let flags = readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR;
    if (opts.createSize !== undefined) flags |= fs.constants.O_CREAT | fs.constants.O_EXCL;
    const { fd, release } = openClaimed(path, flags, 0o600);
    try {
      if (opts.createSize !== undefined) fs.ftruncateSync(fd, opts.createSize);
      return new FileDevice(path, fd, readOnly, release);
    } catch (err) {
      fs.closeSync(fd);
      release();
      throw err;
    }
  }

  /** Re-read the size (after the file or device was grown underneath). Returns the new size. */
  refreshSize(): number {
    this.size = probeGeometry(this.fd).size;
    return this.size;
  }

  /**
   * Grow a regular file to `size` bytes (never shrinks; a block device is grown by its owner, not
   * here). The new space reads as zeroes and is allocated only when written (sparse).
   */
  grow(size: number): number {
    this.checkWritable();
    if (this.isBlockDevice) throw new BlockError('ENOTSUP', `${this.path} is a block device: grow it with its own tools (lvextend, ...)`);
    if (size > this.refreshSize()) {
      fs.ftruncateSync(this.fd, size);
      this.refreshSize();
    }
    return this.size;
  }

  /**
   * An I/O past the cached size re-reads the size once before it is refused: the file or device
   * may have been grown underneath (the kernel reads the COW's size at every allocation, and its
   * bios reach the grown device), so a grown COW is never refused against a stale size.
   */
  private checkRange(length: number, offset: number): void {
    if (offset < 0 || length < 0) throw new BlockError('EINVAL', `bad I/O range on ${this.path}: ${offset}+${length}`);
    if (offset + length > this.size && offset + length > this.refreshSize()) {
      throw new BlockError('ENOSPC', `I/O beyond end of ${this.path}: ${offset}+${length} > ${this.size}`);
    }
  }

  private checkWritable(): void {
    if (this.readOnly) throw new BlockError('EPERM', `${this.path} is read-only`);
  }

  read(buf: Uint8Array, offset: number): Promise<void> {
    if (this.gate.allow(buf.length)) return this.gate.run(() => this.readSync(buf, offset));
    return this.readAsync(buf, offset);
  }

  private readSync(buf: Uint8Array, offset: number): void {
    let pos = 0;
    while (pos < buf.length) {
      const n = fs.readSync(this.fd, buf, pos, buf.length - pos, offset + pos);
      if (n === 0) throw new BlockError('EIO', `short read from ${this.path} at ${offset + pos}`);
      pos += n;
    }
  }

  private async readAsync(buf: Uint8Array, offset: number): Promise<void> {
    let pos = 0;
    while (pos < buf.length) {
      const n = await pread(this.fd, buf, pos, offset + pos);
      if (n === 0) throw new BlockError('EIO', `short read from ${this.path} at ${offset + pos}`);
      pos += n;
    }
  }

  async write(buf: Uint8Array, offset: number, opts?: WriteOptions): Promise<void> {
    this.checkWritable();
    this.checkRange(buf.length, offset);
    if (!opts?.background && this.gate.allow(buf.length)) await this.gate.run(() => this.writeSync(buf, offset));
    else await this.writeAsync(buf, offset);
    if (opts?.fua) await fdatasync(this.fd);
  }

  private writeSync(buf: Uint8Array, offset: number): void {
    let pos = 0;
    while (pos < buf.length) pos += fs.writeSync(this.fd, buf, pos, buf.length - pos, offset + pos);
  }

  private async writeAsync(buf: Uint8Array, offset: number): Promise<void> {
    let pos = 0;
    while (pos < buf.length) pos += await pwrite(this.fd, buf, pos, buf.length - pos, offset + pos);
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await fdatasync(this.fd);
  }

  async trim(length: number, offset: number, opts?: WriteOptions): Promise<void> {
    // Node offers no fallocate(PUNCH_HOLE); a discard is a hint, so doing nothing is correct.
    this.checkWritable();
    this.checkRange(length, offset);
    if (opts?.fua) await fdatasync(this.fd);
  }

  async zero(length: number, offset: number, opts?: ZeroOptions): Promise<void> {
    this.checkWritable();
    this.checkRange(length, offset);
    if (opts?.fast) throw new BlockError('ENOTSUP', 'fast zeroing is not available for files');
    let pos = 0;
    while (pos < length) {
      const n = Math.min(ZERO_CHUNK.length, length - pos);
      pos += await pwrite(this.fd, ZERO_CHUNK, 0, n, offset + pos);
    }
    if (opts?.fua) await fdatasync(this.fd);
  }

  async close(): Promise<void> {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    try {
      await new Promise<void>((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
    } finally {
      this.releaseClaim();
    }
  }
}
