// One handler per NBD command, run only after validateRequest accepted the request. A handler
// sends its own success reply; a thrown error is turned into an error reply by the session.
// Device operations may be slow and may fail: nothing here assumes otherwise.
import type { BufferPool } from '../block/buffer-pool.ts';
import type { BlockDevice, Extent } from '../block/device.ts';
import {
  encodeBlockStatusChunk, encodeSimpleReply, readReplyHeaderSize, writeReadReplyHeader, type Request,
} from './codec.ts';
import { BASE_ALLOCATION_ID } from './handshake.ts';
import { Cmd, CmdFlag } from './wire.ts';

/** What a command handler may use of its connection. */
export interface CommandTarget {
  readonly device: BlockDevice;
  readonly structured: boolean;
  /** Where READ reply buffers come from, and WRITE payload buffers go back to. */
  readonly buffers: BufferPool;
  /** Queue one complete reply (header and payload in one buffer); `flushed` runs once the socket no longer needs it. */
  send(buf: Buffer, flushed?: () => void): void;
}

type Handler = (t: CommandTarget, req: Request, payload: Buffer | undefined) => Promise<void> | void;

function fua(req: Request): { fua: boolean } {
  return { fua: (req.flags & CmdFlag.FUA) !== 0 };
}

function ok(t: CommandTarget, req: Request): void {
  t.send(encodeSimpleReply(0, req.cookie));
}

/** READ: the device fills the buffer right behind the reply header, sent as one write. */
function read(t: CommandTarget, req: Request): Promise<void> {
  const headerSize = readReplyHeaderSize(t.structured);
  const buf = t.buffers.acquire(headerSize + req.length);
  return t.device.read(buf.subarray(headerSize), req.offset).then(() => {
    writeReadReplyHeader(buf, t.structured, req.cookie, req.offset, req.length);
    t.send(buf, () => t.buffers.release(buf));
  });
}

/** The payload goes back to the pool only after a successful write (a failed device may still hold it). */
function write(t: CommandTarget, req: Request, payload: Buffer | undefined): Promise<void> {
  return t.device.write(payload!, req.offset, fua(req)).then(() => {
    t.buffers.release(payload!);
    ok(t, req);
  });
}

async function flush(t: CommandTarget, req: Request): Promise<void> {
  await t.device.flush();
  ok(t, req);
}

async function trim(t: CommandTarget, req: Request): Promise<void> {
  await t.device.trim(req.length, req.offset, fua(req));
  ok(t, req);
}

async function writeZeroes(t: CommandTarget, req: Request): Promise<void> {
  const mayTrim = (req.flags & CmdFlag.NO_HOLE) === 0;
  const fast = (req.flags & CmdFlag.FAST_ZERO) !== 0;
  await t.device.zero(req.length, req.offset, { ...fua(req), mayTrim, fast });
  ok(t, req);
}

/** CACHE is a hint; the range was validated, and the page cache does the rest. */
function cache(t: CommandTarget, req: Request): void {
  ok(t, req);
}

/**
 * Make a device's extent list legal for a reply: contiguous from the request offset, no zero
 * lengths, never past `length` (so every value fits in 32 bits), one extent with REQ_ONE, and
 * at least one extent (all data when the device reported nothing).
 */
export function clipExtents(extents: readonly Extent[], length: number, reqOne: boolean): Extent[] {
  const out: Extent[] = [];
  let covered = 0;
  for (const extent of extents) {
    if (covered >= length || (reqOne && out.length === 1)) break;
    const size = Math.min(extent.length, length - covered);
    if (size <= 0) continue;
    const last = out[out.length - 1];
    if (last && last.flags === extent.flags && !reqOne) last.length += size;
    else out.push({ length: size, flags: extent.flags });
    covered += size;
  }
  return out.length > 0 ? out : [{ length, flags: 0 }];
}

async function blockStatus(t: CommandTarget, req: Request): Promise<void> {
  const reported = t.device.extents ? await t.device.extents(req.length, req.offset) : [];
  const extents = clipExtents(reported, req.length, (req.flags & CmdFlag.REQ_ONE) !== 0);
  t.send(encodeBlockStatusChunk(req.cookie, true, BASE_ALLOCATION_ID, extents));
}

export const COMMAND_HANDLERS: Readonly<Record<number, Handler>> = {
  [Cmd.READ]: read,
  [Cmd.WRITE]: write,
  [Cmd.FLUSH]: flush,
  [Cmd.TRIM]: trim,
  [Cmd.CACHE]: cache,
  [Cmd.WRITE_ZEROES]: writeZeroes,
  [Cmd.BLOCK_STATUS]: blockStatus,
};

/** Commands whose error replies must be structured once STRUCTURED_REPLY was negotiated. */
export function needsStructuredError(type: number): boolean {
  return type === Cmd.READ || type === Cmd.BLOCK_STATUS;
}
