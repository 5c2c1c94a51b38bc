// A MemoryDevice wrapper for exception-store tests: records every write and flush in order, can
// fail chosen writes and flushes, and can hold them until the test releases them (to keep a
// metadata write or a flush in flight while more commits arrive). It also keeps the image a
// power cut would leave (`durable`): a write becomes durable when it has FUA, or at a flush
// issued after it completed, so a test can check what is durable at any instant.
import { BlockError } from '../../src/block/errors.ts';
import { MemoryDevice } from '../../src/block/memory-device.ts';
import type { WriteOptions } from '../../src/block/device.ts';

export interface StoreCall {
  op: 'write' | 'flush';
  offset: number;
  length: number;
  fua: boolean;
}

interface CompletedWrite {
  offset: number;
  data: Buffer;
}

export class StoreTestDevice extends MemoryDevice {
  readonly calls: StoreCall[] = [];
  /** What a power cut now would leave: every FUA write, and every write a completed flush covered. */
  durable: Buffer = Buffer.from(this.bytes);
  /** Return true to fail a write with EIO (the data is not written). */
  failWrite: (offset: number, length: number) => boolean = () => false;
  /** Return true to park a write until release() is called. */
  holdWrite: (offset: number, length: number) => boolean = () => false;
  /** Return true to fail a flush with EIO (nothing becomes durable). */
  failFlush: () => boolean = () => false;
  /** Return true to park a flush until release() is called. */
  holdFlush: () => boolean = () => false;
  /** Called as each write is issued (before it is held, failed or done). */
  onWrite: (data: Uint8Array, offset: number, fua: boolean) => void = () => {};
  private held: (() => void)[] = [];
  /** Completed writes no flush has covered yet, oldest first. */
  private unflushed: CompletedWrite[] = [];

  override async write(buf: Uint8Array, offset: number, opts?: WriteOptions): Promise<void> {
    this.onWrite(buf, offset, !!opts?.fua);
    if (this.holdWrite(offset, buf.length)) await this.park();
    if (this.failWrite(offset, buf.length)) throw new BlockError('EIO', `injected write failure at ${offset}`);
    await super.write(buf, offset, opts);
    const done = { offset, data: Buffer.from(buf) };
    this.unflushed.push(done); // also for FUA: a later flush must not bring back an older version
    if (opts?.fua) done.data.copy(this.durable, offset);
    this.calls.push({ op: 'write', offset, length: buf.length, fua: !!opts?.fua });
  }

  override async flush(): Promise<void> {
    const covered = this.unflushed; // a flush covers the writes completed before it was issued
    this.unflushed = [];
    if (this.holdFlush()) await this.park();
    if (this.failFlush()) {
      this.unflushed = covered.concat(this.unflushed);
      throw new BlockError('EIO', 'injected flush failure');
    }
    await super.flush();
    for (const { offset, data } of covered) data.copy(this.durable, offset);
    this.calls.push({ op: 'flush', offset: 0, length: 0, fua: false });
  }

  override resize(size: number): void {
    super.resize(size);
    const durable = Buffer.alloc(size);
    this.durable.copy(durable, 0, 0, Math.min(size, this.durable.length));
    this.durable = durable;
  }

  private park(): Promise<void> {
    return new Promise<void>((resolve) => this.held.push(resolve));
  }

  /** Number of writes and flushes parked now. */
  get heldCount(): number {
    return this.held.length;
  }

  /** Let every parked write and flush proceed. */
  release(): void {
    const held = this.held;
    this.held = [];
    for (const go of held) go();
  }
}

export { quiescent as settle } from './recording-device.ts';
