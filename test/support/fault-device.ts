// A BlockDevice layer that fails chosen operations, for the I/O-fault tests: each rule names an
// operation, an errno (EIO, ENOSPC...), an optional predicate on the request and how many times
// it fires. The error is thrown the way FileDevice's are (a Node system error with code and
// syscall), and the request never reaches the device below. Every injected fault is logged.
import type { BlockDevice, WriteOptions, ZeroOptions } from '../../src/block/device.ts';

export type FaultOp = 'read' | 'write' | 'flush';

export interface FaultRule {
  op: FaultOp;
  errno: 'EIO' | 'ENOSPC';
  /** Which requests fail (all of `op` if absent). */
  match?: (offset: number, length: number, fua: boolean) => boolean;
  /** How many times the rule fires (default: always). */
  times?: number;
}

export interface InjectedFault {
  op: FaultOp;
  offset: number;
  length: number;
  errno: string;
}

const MESSAGES = { EIO: 'i/o error', ENOSPC: 'no space left on device' };
const ERRNO_NUMBERS = { EIO: -5, ENOSPC: -28 };

function systemError(rule: FaultRule): Error {
  const syscall = rule.op === 'flush' ? 'fdatasync' : rule.op;
  return Object.assign(new Error(`${rule.errno}: ${MESSAGES[rule.errno]}, ${syscall} (injected)`), { code: rule.errno, errno: ERRNO_NUMBERS[rule.errno], syscall });
}

export class FaultDevice implements BlockDevice {
  readonly next: BlockDevice;
  readonly injected: InjectedFault[] = [];
  private rules: FaultRule[] = [];

  constructor(next: BlockDevice) {
    this.next = next;
  }

  get size(): number {
    return this.next.size;
  }
  get blockSize(): number {
    return this.next.blockSize;
  }
  get readOnly(): boolean {
    return this.next.readOnly;
  }
  get caps() {
    return this.next.caps;
  }

  /** Add a rule (rules are checked in the order they were added). */
  fail(rule: FaultRule): this {
    this.rules.push({ ...rule });
    return this;
  }

  clear(): void {
    this.rules = [];
  }

  private check(op: FaultOp, offset: number, length: number, fua: boolean): void {
    const rule = this.rules.find((r) => r.op === op && (r.times ?? Infinity) > 0 && (!r.match || r.match(offset, length, fua)));
    if (!rule) return;
    if (rule.times !== undefined) rule.times--;
    this.injected.push({ op, offset, length, errno: rule.errno });
    throw systemError(rule);
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    this.check('read', offset, buf.length, false);
    await this.next.read(buf, offset);
  }

  async write(buf: Uint8Array, offset: number, opts?: WriteOptions): Promise<void> {
    this.check('write', offset, buf.length, !!opts?.fua);
    await this.next.write(buf, offset, opts);
  }

  async flush(): Promise<void> {
    this.check('flush', 0, 0, false);
    await this.next.flush();
  }

  trim(length: number, offset: number, opts?: WriteOptions): Promise<void> {
    return this.next.trim(length, offset, opts);
  }

  async zero(length: number, offset: number, opts?: ZeroOptions): Promise<void> {
    this.check('write', offset, length, !!opts?.fua);
    await this.next.zero(length, offset, opts);
  }

  close(): Promise<void> {
    return this.next.close();
  }
}
