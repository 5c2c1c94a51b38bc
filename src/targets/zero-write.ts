// WRITE_ZEROES on snapshot targets is an ordinary write of zeroes (the kernel emulates it above
// dm with normal writes), so it takes the copy-on-write path like any other write.
import type { DeviceCaps, WriteOptions } from '../block/device.ts';

const ZEROES = Buffer.alloc(1 << 20);

export async function writeZeroes(
  write: (buf: Uint8Array, offset: number, opts?: WriteOptions) => Promise<void>,
  length: number,
  offset: number,
  opts?: WriteOptions,
): Promise<void> {
  let pos = 0;
  while (pos < length) {
    const n = Math.min(ZEROES.length, length - pos);
    await write(ZEROES.subarray(0, n), offset + pos, opts);
    pos += n;
  }
}

/** Capabilities of both snapshot targets: no discard (the kernel advertises none), zeroes by writing. */
export const SNAPSHOT_CAPS: DeviceCaps = { flush: true, fua: true, trim: false, zero: true, fastZero: false };
