// Wraps a BlockDevice so every operation completes after a random, seeded delay: turns an
// in-memory device into one where concurrent requests really interleave and finish out of order.
import type { BlockDevice, WriteOptions, ZeroOptions } from '../../src/block/device.ts';
import type { Rng } from './prng.ts';

function pause(rng: Rng): Promise<void> {
  const r = rng.next();
  if (r < 0.3) return Promise.resolve();
  if (r < 0.8) return new Promise((resolve) => setImmediate(resolve));
  return new Promise((resolve) => setTimeout(resolve, Math.floor(r * 3)));
}

export function jitter(next: BlockDevice, rng: Rng): BlockDevice {
  return {
    get size() {
      return next.size;
    },
    get blockSize() {
      return next.blockSize;
    },
    readOnly: next.readOnly,
    caps: next.caps,
    async read(buf: Uint8Array, offset: number) {
      await pause(rng);
      await next.read(buf, offset);
      await pause(rng);
    },
    async write(buf: Uint8Array, offset: number, opts?: WriteOptions) {
      await pause(rng);
      await next.write(buf, offset, opts);
      await pause(rng);
    },
    async flush() {
      await pause(rng);
      await next.flush();
    },
    async trim(length: number, offset: number, opts?: WriteOptions) {
      await next.trim(length, offset, opts);
    },
    async zero(length: number, offset: number, opts?: ZeroOptions) {
      await pause(rng);
      await next.zero(length, offset, opts);
    },
    close: () => next.close(),
  };
}
