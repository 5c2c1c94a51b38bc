// One handler per NBD command, run only after validateRequest accepted the request. A handler
// sends its own success reply; a thrown error is turned into an error reply by the session.
// Device operations may be slow and may fail: nothing here assumes otherwise.
import type { BufferPool } from '../block/buffer-pool.ts';
import type { BlockDevice, Extent } from '../block/device.ts';
import {
  encodeBlockStatusChunk, encodeSimpleReply, readReplyHeaderSize, writeReadReplyHeader, type Request,
} from './codec.ts';
import type { Negotiated } from './handshake.ts';
import { MAX_STATUS_EXTENTS, contextExtents } from './meta-contexts.ts';
import { Cmd, CmdFlag } from './wire.ts';

/** What a command handler may use of its connection. */
export interface CommandTarget {
  readonly device: BlockDevice;
  readonly structured: boolean;
  /** The export and the metadata contexts selected for it (BLOCK_STATUS). */
  readonly negotiated: Pick<Negotiated, 'export' | 'metaContexts'>;
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
 * lengths, never past `length` (so every value fits in 32 bits), one extent with REQ_ONE, at most
 * MAX_STATUS_EXTENTS, and at least one extent (all data when the device reported nothing).
 */
export function clipExtents(extents: readonly Extent[], length: number, reqOne: boolean): Extent[] {
  const out: Extent[] = [];
  const max = reqOne ? 1 : MAX_STATUS_EXTENTS;
  let covered = 0;
  for (const extent of extents) {
    if (covered >= length || out.length === max) break;
    const size = Math.min(extent.length, length - covered);
    if (size <= 0) continue;
    const last = out[out.length - 1];
    if (last && last.flags === extent.flags && !reqOne) last.length += size;
    else out.push({ length: size, flags: extent.flags });
    covered += size;
  }
  return out.length > 0 ? out : [{ length, flags: 0 }];
}

/** One BLOCK_STATUS chunk per selected context, DONE on the last, sent as one reply. */
async function blockStatus(t: CommandTarget, req: Request): Promise<void> {
  const { export: exp, metaContexts } = t.negotiated;
  const reqOne = (req.flags & CmdFlag.REQ_ONE) !== 0;
  const reported = await Promise.all(metaContexts.map((c) => contextExtents(exp, c, req.length, req.offset)));
  const chunks = metaContexts.map((c, i) =>
    encodeBlockStatusChunk(req.cookie, i === metaContexts.length - 1, c.id, clipExtents(reported[i], req.length, reqOne)));
  t.send(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
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
