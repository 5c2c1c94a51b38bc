// Incremental transmission parser: pulls complete requests out of a ByteQueue, however the
// bytes were split. A WRITE's payload is gathered when the request is valid and skipped
// (without buffering) when it is not, so a rejected WRITE still consumes its data.
import { BufferPool } from '../block/buffer-pool.ts';
import type { ByteQueue } from './byte-queue.ts';
import { decodeRequest, type Request } from './codec.ts';
import { ProtocolError, type NbdError } from './errno.ts';
import { Cmd, REQUEST_MAGIC, Size } from './wire.ts';

export type ReaderItem =
  /** A valid request; `payload` is set for WRITE. */
  | { req: Request; payload?: Buffer; error?: undefined }
  /** A rejected request (its WRITE payload, if any, has been consumed). */
  | { req: Request; error: NbdError; payload?: undefined };

/** Decides, once per header, whether a request is rejected. */
export type Validator = (req: Request) => NbdError | undefined;

/** WRITE payloads at least this large are copied into a pooled buffer as their bytes arrive. */
const STREAM_PAYLOAD_BYTES = 64 * 1024;

/** A header whose WRITE payload is still arriving (or being skipped). */
interface Pending {
  req: Request;
  error: NbdError | undefined;
  /** Bytes of payload still to come. */
  left: number;
  /** Destination for a large accepted payload, filled progressively. */
  target?: Buffer;
}

export class RequestReader {
  private readonly queue: ByteQueue;
  private readonly validate: Validator;
  private readonly buffers: BufferPool;
  private pending: Pending | undefined;

  /** Large WRITE payloads come from `buffers` (the server's pool; by default a pool that keeps nothing). */
  constructor(queue: ByteQueue, validate: Validator, buffers: BufferPool = new BufferPool(0)) {
    this.queue = queue;
    this.validate = validate;
    this.buffers = buffers;
  }

  /** True while part of a request has been consumed (EOF now means a truncated request). */
  get midRequest(): boolean {
    return this.pending !== undefined || (this.queue.length > 0 && this.queue.length < Size.REQUEST);
  }

  /** True while a request's header has been consumed and its WRITE payload is still arriving. */
  get partial(): boolean {
    return this.pending !== undefined;
  }

  /**
   * Where the next bytes on the wire belong when they are the rest of a large payload (nothing of it
   * is queued): read them straight into it, then payloadReceived(). Undefined otherwise.
   */
  payloadTarget(): Buffer | undefined {
    const p = this.pending;
    if (!p?.target || this.queue.length > 0) return undefined;
    return p.target.subarray(p.target.length - p.left);
  }

  /** `n` bytes were read into the buffer payloadTarget() returned. */
  payloadReceived(n: number): void {
    const p = this.pending;
    if (!p?.target || n > p.left) throw new Error(`payloadReceived(${n}) without a payload expecting it`);
    p.left -= n;
  }

  /** The next complete request, or undefined when more bytes are needed. Throws ProtocolError. */
  next(): ReaderItem | undefined {
    if (!this.pending) {
      if (this.queue.length < Size.REQUEST) return undefined;
      const req = decodeRequest(this.queue.take(Size.REQUEST));
      if (req.magic !== REQUEST_MAGIC) throw new ProtocolError(`bad request magic 0x${req.magic.toString(16)}`);
      const error = this.validate(req);
      const left = req.type === Cmd.WRITE ? req.length : 0;
      if (left === 0) return error ? { req, error } : { req };
      const streamed = !error && left >= STREAM_PAYLOAD_BYTES;
      this.pending = { req, error, left, target: streamed ? this.buffers.acquire(left) : undefined };
    }
    return this.continuePayload(this.pending);
  }

  /**
   * Large payloads are copied out of the socket chunks as they arrive, so the chunks die young
   * (cheap for the GC) instead of waiting for the whole payload.
   */
  private continuePayload(p: Pending): ReaderItem | undefined {
    if (p.error) {
      p.left -= this.queue.skip(p.left);
      if (p.left > 0) return undefined;
      this.pending = undefined;
      return { req: p.req, error: p.error };
    }
    if (p.target) {
      p.left -= this.queue.takeInto(p.target, p.target.length - p.left, p.left);
      if (p.left > 0) return undefined;
      this.pending = undefined;
      return { req: p.req, payload: p.target };
    }
    if (this.queue.length < p.left) return undefined;
    this.pending = undefined;
    return { req: p.req, payload: this.queue.take(p.left) };
  }
}
