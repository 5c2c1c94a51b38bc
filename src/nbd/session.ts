// The transmission phase of one connection. Requests are parsed as bytes arrive and run
// concurrently; each reply is one buffer written whole, so replies go out in completion order
// and are never interleaved. Flow control: parsing stops (and the socket is paused) while too
// many requests or bytes are in flight or the socket's send buffer is full, so a client that
// never reads cannot make the server buffer more than about maxInflightBytes.
import type { Socket } from 'node:net';
import type { BufferPool } from '../block/buffer-pool.ts';
import type { ByteQueue } from './byte-queue.ts';
import { encodeErrorChunk, encodeSimpleReply, type Request } from './codec.ts';
import { COMMAND_HANDLERS, needsStructuredError, type CommandTarget } from './commands.ts';
import { NbdError, ProtocolError, errorMessage, toNbdErrno } from './errno.ts';
import type { Negotiated } from './handshake.ts';
import type { InflightBudget } from './inflight-budget.ts';
import type { LimitName, NbdLimits } from './limits.ts';
import { RequestReader, type ReaderItem } from './request-reader.ts';
import { validateRequest } from './validate.ts';
import { Cmd, cmdName } from './wire.ts';
import type { BlockDevice } from '../block/device.ts';
import type { Logger } from '../log.ts';

/** What every session of a server shares. */
export interface SessionShared {
  limits: NbdLimits;
  /** Server-wide bound on bytes in flight. */
  budget: InflightBudget;
  /** Server-wide pool for READ replies and WRITE payloads. */
  buffers: BufferPool;
  /** Metrics hooks; absent, the request path pays one null check. */
  observer?: NbdObserver | undefined;
}

/** One export's request accounting (metrics): plain counters, read at scrape time. */
export interface RequestStats {
  /** A request was answered: command, length, errno (0: success), performance.now() at dispatch (-1: rejected before). */
  answered(type: number, length: number, errno: number, startedMs: number): void;
}

/** What the NBD server tells an observer (metrics). nbd/ defines it so that it imports nothing above. */
export interface NbdObserver {
  /** A connection to `exportName` entered transmission; its requests are counted in what this returns. */
  connected(exportName: string): RequestStats;
  /** A limit refused a client or stopped a connection from reading requests. */
  limitHit(limit: LimitName): void;
}

/**
 * Why the session stopped taking new requests. 'handover': paused at a request boundary for a
 * live restart (daemon/restart-*.ts); the requests not parsed yet stay for the successor.
 */
type Stop = 'running' | 'disc' | 'eof' | 'shutdown' | 'handover';

/** How a pause for handover ended: idle at a request boundary, or the connection is ending anyway. */
export type HandoverPause = 'idle' | 'ending';

export class TransmissionSession implements CommandTarget {
  readonly device: BlockDevice;
  readonly structured: boolean;
  readonly negotiated: Negotiated;
  readonly buffers: BufferPool;
  private readonly socket: Socket;
  private readonly queue: ByteQueue;
  private readonly reader: RequestReader;
  private readonly limits: NbdLimits;
  private readonly logger: Logger;
  private readonly budget: InflightBudget;
  private readonly observer: NbdObserver | undefined;
  private readonly stats: RequestStats | undefined;
  private inflightRequests = 0;
  private inflightBytes = 0;
  /** Reply bytes handed to the socket and not yet flushed. */
  private unflushedBytes = 0;
  private stop: Stop = 'running';
  private dead = false;
  private finished = false;
  private corked = false;
  /** Settles the pending pauseForHandover(). */
  private paused: ((how: HandoverPause) => void) | undefined;
  private readonly wake = (): void => this.pump();
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(socket: Socket, queue: ByteQueue, negotiated: Negotiated, shared: SessionShared, logger: Logger) {
    const { limits, budget, buffers } = shared;
    this.socket = socket;
    this.budget = budget;
    this.buffers = buffers;
    this.queue = queue;
    this.negotiated = negotiated;
    this.device = negotiated.export.device;
    this.structured = negotiated.structured;
    this.limits = limits;
    this.logger = logger;
    this.observer = shared.observer;
    this.stats = shared.observer?.connected(negotiated.exportName);
    const ctx = { size: negotiated.size, flags: negotiated.flags, metaContext: negotiated.metaContexts.length > 0, maxPayload: limits.maxPayload };
    this.reader = new RequestReader(queue, (req) => validateRequest(req, ctx), buffers);
  }

  /** See RequestReader.payloadTarget (direct-reads.ts). */
  payloadTarget(): Buffer | undefined {
    return this.dead ? undefined : this.reader.payloadTarget();
  }

  /** Bytes of a payload were read into payloadTarget()'s buffer: account them and go on. */
  payloadReceived(n: number): void {
    this.reader.payloadReceived(n);
    this.pump();
  }

  /** Parse and start every complete request the flow limits allow. Call after new bytes or completions. */
  pump(): void {
    if (this.dead || this.finished) return;
    try {
      while (this.stop !== 'disc' && !this.blockedBy()) {
        if (this.stop === 'handover' && !this.reader.partial) break; // a request boundary
        const item = this.reader.next();
        if (!item) break;
        this.dispatch(item);
      }
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.logger.warn(`protocol violation, closing connection: ${err.message}`);
      this.kill();
      return;
    }
    this.updateFlow();
    this.maybeFinish();
  }

  /** The client closed its sending side. A partial request is dropped; in-flight ones finish. */
  onEnd(): void {
    if (this.reader.midRequest) this.logger.info('client closed the connection in the middle of a request');
    if (this.stop === 'running' || this.stop === 'handover') this.stop = 'eof';
    this.settlePause('ending');
    this.maybeFinish();
  }

  /**
   * Live restart: stop parsing at the next request boundary (a WRITE whose payload is arriving is
   * read whole and run), answer every request in flight and flush the replies. Resolves 'idle'
   * then, with the unparsed bytes left in the queue, or 'ending' if the connection is closing.
   */
  pauseForHandover(): Promise<HandoverPause> {
    if (this.dead || this.finished || (this.stop !== 'running' && this.stop !== 'handover')) return Promise.resolve('ending');
    this.settlePause('ending'); // at most one pause at a time
    const paused = new Promise<HandoverPause>((resolve) => (this.paused = resolve));
    this.stop = 'handover';
    this.pump();
    return paused;
  }

  /** The successor did not take over: go on reading requests. */
  resumeAfterHandover(): void {
    if (this.stop !== 'handover') return;
    this.settlePause('ending');
    this.stop = 'running';
    this.pump();
  }

  /** Server shutdown / export removal: finish in-flight requests, refuse new ones with ESHUTDOWN, close. */
  shutdown(): void {
    if (this.stop === 'running' || this.stop === 'eof' || this.stop === 'handover') this.stop = 'shutdown';
    this.settlePause('ending');
    this.pump();
  }

  /**
   * The connection goes on with a new session (a handover abandoned, connection.ts continueWith):
   * this one, idle at a request boundary, must not touch the socket again (a budget wake-up would
   * otherwise pause it for good).
   */
  retire(): void {
    this.dead = true;
    this.settlePause('ending');
    this.budget.forget(this.wake);
  }

  /** Close at once, dropping replies (protocol violations, socket errors). */
  kill(): void {
    this.dead = true;
    this.settlePause('ending');
    this.budget.forget(this.wake);
    this.socket.destroy();
  }

  send(buf: Buffer, flushed?: () => void): void {
    if (this.dead) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(this.uncork);
    }
    // Unflushed reply bytes count against the server-wide budget until the socket is done with them.
    this.budget.take(buf.length);
    this.unflushedBytes += buf.length;
    this.socket.write(buf, (err) => {
      this.unflushedBytes -= buf.length;
      this.budget.give(buf.length);
      if (!err) flushed?.();
      if (this.paused) this.maybeFinish();
    });
  }

  /**
   * The limit that keeps this connection from starting a request now, if any. A connection holding
   * nothing (no request, no unflushed reply) may always start one request, so none starves.
   */
  private blockedBy(): LimitName | undefined {
    if (this.inflightBytes >= this.limits.maxInflightBytes) return 'inflight_bytes';
    if (this.inflightRequests >= this.limits.maxInflightRequests) return 'inflight_requests';
    if (this.socket.writableLength >= this.limits.maxInflightBytes) return 'send_buffer';
    if (!this.budget.exhausted || (this.inflightRequests === 0 && this.unflushedBytes === 0)) return undefined;
    this.budget.wait(this.wake);
    return 'server_inflight_bytes';
  }

  private updateFlow(): void {
    // Pausing for a handover, a WRITE payload still arriving is read whole.
    const reading = this.stop === 'running' || (this.stop === 'handover' && this.reader.partial);
    const limit = reading ? this.blockedBy() : undefined;
    const wantPaused = !reading || limit !== undefined;
    if (wantPaused && !this.socket.isPaused()) {
      this.socket.pause();
      if (limit) this.observer?.limitHit(limit);
    } else if (!wantPaused && this.socket.isPaused()) this.socket.resume();
  }

  private dispatch(item: ReaderItem): void {
    const { req } = item;
    if (item.error) return this.reject(req, item.error);
    if (req.type === Cmd.DISC) {
      this.stop = 'disc';
      return;
    }
    if (this.stop === 'shutdown') return this.reject(req, new NbdError('ESHUTDOWN', 'server is shutting down'));
    const cost = req.type === Cmd.READ || req.type === Cmd.WRITE ? req.length : 0;
    this.inflightRequests++;
    this.inflightBytes += cost;
    this.budget.take(cost);
    const started = this.stats ? performance.now() : -1;
    let errno = 0;
    const done = (): void => {
      this.inflightRequests--;
      this.inflightBytes -= cost;
      this.budget.give(cost);
      this.stats?.answered(req.type, req.length, errno, started);
      this.pump();
    };
    try {
      const result = COMMAND_HANDLERS[req.type](this, req, item.payload);
      if (result) result.then(done, (err: unknown) => { errno = this.replyError(req, err); done(); });
      else done();
    } catch (err) {
      errno = this.replyError(req, err);
      done();
    }
  }

  /** Answer a request refused before it ran (validation, shutdown). */
  private reject(req: Request, err: unknown): void {
    const errno = this.replyError(req, err);
    this.stats?.answered(req.type, req.length, errno, -1);
  }

  /** Send the error reply; returns the errno sent. */
  private replyError(req: Request, err: unknown): number {
    const errno = toNbdErrno(err, req.flags, this.logger);
    if (err instanceof NbdError) this.logger.debug(`${cmdName(req.type)} rejected: ${err.message}`);
    if (this.structured && needsStructuredError(req.type)) this.send(encodeErrorChunk(req.cookie, errno, errorMessage(err)));
    else this.send(encodeSimpleReply(errno, req.cookie));
    return errno;
  }

  private settlePause(how: HandoverPause): void {
    const settle = this.paused;
    this.paused = undefined;
    settle?.(how);
  }

  /** Once stopped and idle: flush the replies and close our side (or, pausing for a handover, report idle). */
  private maybeFinish(): void {
    if (this.dead || this.finished || this.stop === 'running' || this.inflightRequests > 0) return;
    if (this.stop === 'handover') {
      if (!this.reader.partial && this.unflushedBytes === 0) this.settlePause('idle');
      return;
    }
    this.finished = true;
    if (this.corked) this.uncork();
    this.socket.end(() => this.socket.destroy());
  }
}
