// A MemoryDevice wrapper for exception-store tests: records every write and flush in order, can
// fail chosen writes, and can hold writes until the test releases them (to keep a metadata write
// in flight while more commits arrive).
import { BlockError } from '../../src/block/errors.ts';
import { MemoryDevice } from '../../src/block/memory-device.ts';
import type { WriteOptions } from '../../src/block/device.ts';

export interface StoreCall {
  op: 'write' | 'flush';
  offset: number;
  length: number;
  fua: boolean;
}

export class StoreTestDevice extends MemoryDevice {
  readonly calls: StoreCall[] = [];
  /** Return true to fail a write with EIO (the data is not written). */
  failWrite: (offset: number, length: number) => boolean = () => false;
  /** Return true to park a write until release() is called. */
  holdWrite: (offset: number, length: number) => boolean = () => false;
  private held: (() => void)[] = [];

  override async write(buf: Uint8Array, offset: number, opts?: WriteOptions): Promise<void> {
    if (this.holdWrite(offset, buf.length)) await new Promise<void>((resolve) => this.held.push(resolve));
    if (this.failWrite(offset, buf.length)) throw new BlockError('EIO', `injected write failure at ${offset}`);
    await super.write(buf, offset, opts);
    this.calls.push({ op: 'write', offset, length: buf.length, fua: !!opts?.fua });
  }

  override async flush(): Promise<void> {
    await super.flush();
    this.calls.push({ op: 'flush', offset: 0, length: 0, fua: false });
  }

  /** Number of writes parked now. */
  get heldCount(): number {
    return this.held.length;
  }

  /** Let every parked write proceed. */
  release(): void {
    const held = this.held;
    this.held = [];
    for (const go of held) go();
  }
}

/** Let pending promise callbacks and timers run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 5));
}
