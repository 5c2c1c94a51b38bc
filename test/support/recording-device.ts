// Wraps a BlockDevice and records every call in one shared log, so tests can check the order in
// which stacked layers reach the devices (COW data, then metadata with FUA, then the origin).
// A `hold` predicate can park calls until released, to force a race to happen in a given order;
// `gateCalls` builds one that also reports when a call is parked, and `quiescent` waits until
// everything else has gone as far as it can, so a test can check what did not happen meanwhile.
import type { BlockDevice, WriteOptions, ZeroOptions } from '../../src/block/device.ts';

export interface Call {
  device: string;
  op: 'read' | 'write' | 'flush' | 'zero' | 'trim';
  offset: number;
  length: number;
  fua: boolean;
}

export type Hold = (call: Call) => Promise<void> | undefined;

export function recording(name: string, next: BlockDevice, log: Call[], hold?: () => Hold | undefined): BlockDevice {
  const record = async (call: Call): Promise<void> => {
    const wait = hold?.()?.(call);
    if (wait) await wait;
    log.push(call);
  };
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
      await record({ device: name, op: 'read', offset, length: buf.length, fua: false });
      await next.read(buf, offset);
    },
    async write(buf: Uint8Array, offset: number, opts?: WriteOptions) {
      await next.write(buf, offset, opts);
      await record({ device: name, op: 'write', offset, length: buf.length, fua: !!opts?.fua });
    },
    async flush() {
      await next.flush();
      await record({ device: name, op: 'flush', offset: 0, length: 0, fua: false });
    },
    async trim(length: number, offset: number, opts?: WriteOptions) {
      await next.trim(length, offset, opts);
      await record({ device: name, op: 'trim', offset, length, fua: !!opts?.fua });
    },
    async zero(length: number, offset: number, opts?: ZeroOptions) {
      await next.zero(length, offset, opts);
      await record({ device: name, op: 'zero', offset, length, fua: !!opts?.fua });
    },
    close: () => next.close(),
  };
}

export interface CallGate {
  /** Pass as `recording`'s hold: parks every call `match` picks until `release()`. */
  hold: Hold;
  /** Resolves with the first call parked: the layers above have reached the device with it. */
  parked: Promise<Call>;
  release(): void;
}

export function gateCalls(match: (call: Call) => boolean): CallGate {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let onParked!: (call: Call) => void;
  const parked = new Promise<Call>((resolve) => (onParked = resolve));
  const hold: Hold = (call) => {
    if (!match(call)) return undefined;
    onParked(call);
    return gate;
  };
  return { hold, parked, release };
}

/**
 * Resolves once every promise chain that waits on no timer and no real I/O has run to its end
 * (the microtask queue is drained before the event loop reaches setImmediate callbacks). Over
 * in-memory devices (MemoryDevice, `recording`) that is the moment everything that can progress
 * has progressed: whatever has not happened by then is parked, however slow the machine is.
 */
export function quiescent(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
