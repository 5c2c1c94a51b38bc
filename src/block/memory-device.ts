// A BlockDevice in memory, for tests and for building layers without a disk. Writes are
// "durable" at once; `resize` grows or shrinks it like an LVM extend would.
import { SECTOR_BYTES } from '../common/sectors.ts';
import { BlockError } from './errors.ts';
import type { BlockDevice, DeviceCaps, WriteOptions, ZeroOptions } from './device.ts';

export class MemoryDevice implements BlockDevice {
  readonly blockSize: number;
  readonly readOnly: boolean;
  readonly caps: DeviceCaps;
  private data: Buffer;

  constructor(size: number, opts: { readOnly?: boolean; blockSize?: number; data?: Buffer } = {}) {
    this.data = opts.data ?? Buffer.alloc(size);
    this.blockSize = opts.blockSize ?? SECTOR_BYTES;
    this.readOnly = opts.readOnly ?? false;
    const rw = !this.readOnly;
    this.caps = { flush: rw, fua: rw, trim: rw, zero: rw, fastZero: false };
  }

  get size(): number {
    return this.data.length;
  }

  /** The backing bytes (shared, not copied). */
  get bytes(): Buffer {
    return this.data;
  }

  resize(size: number): void {
    const next = Buffer.alloc(size);
    this.data.copy(next, 0, 0, Math.min(size, this.data.length));
    this.data = next;
  }

  private check(length: number, offset: number, write: boolean): void {
    if (write && this.readOnly) throw new BlockError('EPERM', 'read-only memory device');
    if (offset < 0 || length < 0 || offset + length > this.data.length) {
      throw new BlockError(write ? 'ENOSPC' : 'EINVAL', `I/O beyond end: ${offset}+${length} > ${this.data.length}`);
    }
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    this.check(buf.length, offset, false);
    this.data.copy(buf, 0, offset, offset + buf.length);
  }

  async write(buf: Uint8Array, offset: number, _opts?: WriteOptions): Promise<void> {
    this.check(buf.length, offset, true);
    this.data.set(buf, offset);
  }

  async flush(): Promise<void> {}

  async trim(length: number, offset: number): Promise<void> {
    this.check(length, offset, true);
  }

  async zero(length: number, offset: number, _opts?: ZeroOptions): Promise<void> {
    this.check(length, offset, true);
    this.data.fill(0, offset, offset + length);
  }

  async close(): Promise<void> {}
}
