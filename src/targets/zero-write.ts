// WRITE_ZEROES on snapshot targets is an ordinary write of zeroes (the kernel emulates it above
// dm with normal writes), so it takes the copy-on-write path like any other write.
import type { DeviceCaps, WriteOptions, ZeroOptions } from '../block/device.ts';
import { BlockError } from '../block/errors.ts';

const ZEROES = Buffer.alloc(1 << 20);

export async function writeZeroes(
  write: (buf: Uint8Array, offset: number, opts?: WriteOptions) => Promise<void>,
  length: number,
  offset: number,
  opts?: ZeroOptions,
): Promise<void> {
  // A copy-on-write write is never faster than writing zeroes: FAST_ZERO must fail at once.
  if (opts?.fast) throw new BlockError('ENOTSUP', 'zeroing a snapshot target is a copy-on-write write');
  let pos = 0;
  while (pos < length) {
    const n = Math.min(ZEROES.length, length - pos);
    await write(ZEROES.subarray(0, n), offset + pos, { fua: opts?.fua });
    pos += n;
  }
}

/** Capabilities of both snapshot targets: no discard (the kernel advertises none), zeroes by writing. */
export const SNAPSHOT_CAPS: DeviceCaps = { flush: true, fua: true, trim: false, zero: true, fastZero: false };
