// Reading a plaintext connection into buffers the server chooses, instead of a fresh 64 KiB buffer
// per socket read (Node's default): a large WRITE payload is read straight into its pooled buffer,
// with no copy in user space and far fewer reads; everything else goes into slices of a shared slab
// that the ByteQueue takes without copying. This is net.Socket's `onread` mode, which Node offers
// only at construction, switched on for a socket that already exists (an accepted one) through
// the same internal fields the constructor sets. When those fields are missing (another Node
// version), enableDirectReads() returns false and the connection keeps 'data' events.
//
// In this mode the socket emits no 'data' events, socket.read() restarts reading, and pause() /
// resume() stop and start the handle itself. It cannot be switched off: a handle in this mode is
// only ever handed over (a live restart) or closed.
import type { Socket } from 'node:net';

/** Where the bytes go. */
export interface DirectReadSink {
  /** The buffer a large payload still arriving should be read into, if it is the next thing on the wire. */
  payloadTarget(): Uint8Array | undefined;
  /** `n` bytes were read into the buffer payloadTarget() returned. */
  payloadReceived(n: number): void;
  /** Other bytes (headers, small payloads), to be queued; `chunk` is not reused by the reader. */
  received(chunk: Buffer): void;
}

/** A slab slice shorter than this is not offered for a read: a new slab is taken instead. */
const MIN_SLICE_BYTES = 16 * 1024;
const SLAB_BYTES = 64 * 1024; // what Node gives every read by default, so memory use is unchanged

interface OnreadFields {
  buffer: symbol;
  callback: symbol;
  generator: symbol;
}

interface StreamHandle {
  useUserBuffer?: (buf: Uint8Array) => void;
}

function onreadFields(socket: Socket): OnreadFields | undefined {
  const byName = new Map(Object.getOwnPropertySymbols(socket).map((s) => [s.description, s]));
  const buffer = byName.get('kBuffer');
  const callback = byName.get('kBufferCb');
  const generator = byName.get('kBufferGen');
  return buffer && callback && generator ? { buffer, callback, generator } : undefined;
}

/** True if `socket` reads into chosen buffers (enableDirectReads succeeded on it). */
export function readsDirect(socket: Socket): boolean {
  const fields = onreadFields(socket);
  return fields !== undefined && (socket as unknown as Record<symbol, unknown>)[fields.callback] != null;
}

/**
 * Switch `socket` (plaintext, not reading right now or flowing with nothing buffered) to reading
 * into buffers chosen by `sink`. Returns false, changing nothing, when this Node does not allow it.
 */
export function enableDirectReads(socket: Socket, sink: DirectReadSink): boolean {
  const fields = onreadFields(socket);
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  if (!fields || typeof handle?.useUserBuffer !== 'function' || socket.readableLength > 0) return false;
  const reader = new SlabReader(sink, (err) => socket.destroy(err));
  const target = socket as unknown as Record<symbol, unknown>;
  const first = reader.next();
  target[fields.generator] = reader.next;
  target[fields.callback] = reader.onRead;
  target[fields.buffer] = first;
  handle.useUserBuffer(first);
  return true;
}

/** Hands out read buffers and routes what lands in them. */
class SlabReader {
  private readonly sink: DirectReadSink;
  private readonly fail: (err: Error) => void;
  private slab = Buffer.allocUnsafe(0);
  private used = 0;
  /** The buffer handed out for the next read is the payload target. */
  private direct = false;

  constructor(sink: DirectReadSink, fail: (err: Error) => void) {
    this.sink = sink;
    this.fail = fail;
  }

  readonly next = (): Uint8Array => {
    const target = this.sink.payloadTarget();
    this.direct = target !== undefined && target.length > 0;
    if (this.direct) return target!;
    if (this.slab.length - this.used < MIN_SLICE_BYTES) {
      this.slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
      this.used = 0;
    }
    return this.slab.subarray(this.used);
  };

  /**
   * A throw here would skip Node's call for the next buffer, and the next read would land on bytes
   * already handed out: the connection is closed instead.
   */
  readonly onRead = (n: number): boolean => {
    try {
      if (this.direct) this.sink.payloadReceived(n);
      else {
        const chunk = this.slab.subarray(this.used, this.used + n);
        this.used += n;
        this.sink.received(chunk);
      }
      return true;
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
      return false;
    }
  };
}
