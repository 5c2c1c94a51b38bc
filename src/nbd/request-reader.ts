// Incremental transmission parser: pulls complete requests out of a ByteQueue, however the
// bytes were split. A WRITE's payload is gathered when the request is valid and skipped
// (without buffering) when it is not, so a rejected WRITE still consumes its data.
import type { ByteQueue } from './byte-queue.ts';
import { decodeRequest, type Request } from './codec.ts';
import { ProtocolError, type NbdError } from './errno.ts';
import { ioBuffers } from './buffer-pool.ts';
import { Cmd, REQUEST_MAGIC, Size } from './wire.ts';

export type ReaderItem =
  /** A valid request; `payload` is set for WRITE. */
  | { req: Request; payload?: Buffer; error?: undefined }
  /** A rejected request (its WRITE payload, if any, has been consumed). */
  | { req: Request; error: NbdError; payload?: undefined };

/** Decides, once per header, whether a request is rejected. */
export type Validator = (req: Request) => NbdError | undefined;

export class RequestReader {
  private readonly queue: ByteQueue;
  private readonly validate: Validator;
  /** Header already read, waiting for (or skipping) its WRITE payload. */
  private pending: { req: Request; error: NbdError | undefined; left: number } | undefined;

  constructor(queue: ByteQueue, validate: Validator) {
    this.queue = queue;
    this.validate = validate;
  }

  /** True while part of a request has been consumed (EOF now means a truncated request). */
  get midRequest(): boolean {
    return this.pending !== undefined || (this.queue.length > 0 && this.queue.length < Size.REQUEST);
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
      this.pending = { req, error, left };
    }
    return this.continuePayload(this.pending);
  }

  private continuePayload(p: { req: Request; error: NbdError | undefined; left: number }): ReaderItem | undefined {
    if (p.error) {
      p.left -= this.queue.skip(p.left);
      if (p.left > 0) return undefined;
      this.pending = undefined;
      return { req: p.req, error: p.error };
    }
    if (this.queue.length < p.left) return undefined;
    this.pending = undefined;
    return { req: p.req, payload: this.queue.take(p.left, (n) => ioBuffers.acquire(n)) };
  }
}
