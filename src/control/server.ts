// The daemon side of the control API: accepts connections on a 0600 Unix socket, reads one JSON
// request per line (size-capped), validates it (validate.ts) and dispatches by op to the handler
// table. Requests on one connection are answered in order. During a live restart new connections
// are held unread for the successor (AcceptGate), and requests still waiting when the successor
// takes over are answered RESTARTING (the CLI sends them again, to the successor).
import net from 'node:net';
import fs from 'node:fs';
import { AcceptGate, rawHandle, type RawHandle } from '../common/accept-gate.ts';
import type { Logger } from '../log.ts';
import { silentLogger } from '../log.ts';
import { errorText } from '../common/error-text.ts';
import { clearStaleSocket, listenPrivate } from '../common/unix-socket.ts';
import { ControlError, MAX_REQUEST_BYTES, type Handlers, type Reply, type Request } from './api.ts';
import { validateRequest } from './validate.ts';
import { readLines } from './lines.ts';

export interface ControlServerOptions {
  handlers: Handlers;
  logger?: Logger;
  maxRequestBytes?: number;
}

/** Requests read but not yet answered on one connection before we stop reading from it. */
const MAX_QUEUED_REQUESTS = 32;

function errorReply(err: unknown): Reply {
  if (err instanceof ControlError) return { ok: false, error: { code: err.code, message: err.message } };
  return { ok: false, error: { code: 'INTERNAL', message: errorText(err) } };
}

export class ControlServer {
  private readonly gate = new AcceptGate((socket) => this.accept(socket));
  private readonly server = net.createServer({ pauseOnConnect: true }, this.gate.onConnection);
  private readonly sockets = new Set<net.Socket>();
  private readonly inFlight = new Set<Promise<void>>();
  /** Set by handOver(): the answer to every request still waiting, and to any later one. */
  private abandoned: Reply | undefined;
  private readonly abandon$ = new Set<(reply: Reply) => void>();
  /** While a restart holds requests: settles on release() or handOver(). */
  private held: Promise<void> | undefined;
  private unhold: (() => void) | undefined;
  private readonly opts: ControlServerOptions;
  private readonly log: Logger;
  private path: string | undefined;
  private closing = false;

  constructor(opts: ControlServerOptions) {
    this.opts = opts;
    this.log = opts.logger ?? silentLogger();
  }

  /** Listen on `path` (mode 0600); a stale socket is removed, a live one is an error. */
  async listen(path: string): Promise<void> {
    await clearStaleSocket(path);
    await listenPrivate(this.server, path);
    this.path = path;
    this.log.info({ path }, 'control socket listening');
  }

  /** Successor side: listen on the control socket handle a previous daemon gave us. */
  async adoptListener(handle: RawHandle, path: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(handle, () => (this.server.off('error', reject), resolve()));
    });
    this.path = path;
    this.log.info({ path }, 'control socket taken over from the previous daemon');
  }

  /** Successor side: serve a connection the previous daemon accepted but never read. */
  adoptFresh(handle: RawHandle): void {
    this.accept(new net.Socket({ handle, readable: true, writable: true } as net.SocketConstructorOpts));
  }

  /** The listening socket's handle (for a successor), if listening. */
  get listenerHandle(): RawHandle | undefined {
    return rawHandle(this.server);
  }

  /**
   * Live restart: hold new connections unread, and requests arriving on open ones unanswered
   * (the exports are closing); returns a function taking the connections held so far.
   */
  hold(): () => net.Socket[] {
    this.gate.hold();
    this.held = new Promise((resolve) => (this.unhold = resolve));
    return () => this.gate.takeHeld();
  }

  /**
   * The successor serves: new connections go to `forward`; requests held or waiting (on the
   * lock the restart holds) are answered RESTARTING, and the CLI sends them to the successor.
   */
  handOver(forward: (socket: net.Socket) => void): void {
    this.gate.forwardTo(forward);
    this.abandoned = errorReply(new ControlError('RESTARTING', 'the daemon restarted while this request waited; send it again'));
    for (const answer of this.abandon$) answer(this.abandoned);
    this.unhold?.();
  }

  /** The successor failed: serve here again (`held`: held connections not forwarded). */
  release(held: net.Socket[]): void {
    this.held = undefined;
    this.unhold?.();
    for (const socket of held) this.accept(socket);
    this.gate.release();
  }

  /** Resolves when no request is being answered. */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /** Stop accepting, let requests being handled finish, close connections, remove the socket (unless keepSocketFile). */
  async close(keepSocketFile = false): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await Promise.allSettled([...this.inFlight]);
    for (const socket of this.sockets) socket.destroy();
    await closed;
    if (this.path && !keepSocketFile) fs.rmSync(this.path, { force: true });
  }

  private accept(socket: net.Socket): void {
    socket.resume(); // accepted paused (AcceptGate)
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', (err) => this.log.debug({ err }, 'control connection error'));
    let chain = Promise.resolve();
    // Backpressure: a client that pipelines requests without reading the replies gets its input
    // paused, so neither queued requests nor unsent replies can grow without bound.
    let queued = 0;
    const onLine = (line: string): void => {
      if (line.trim() === '') return;
      if (++queued >= MAX_QUEUED_REQUESTS) socket.pause();
      const task = chain
        .then(() => this.answer(socket, line))
        .finally(() => {
          if (--queued < MAX_QUEUED_REQUESTS && socket.isPaused()) socket.resume();
        });
      chain = task;
      this.inFlight.add(task);
      void task.finally(() => this.inFlight.delete(task));
    };
    const onTooLong = (): void => {
      const reply = errorReply(new ControlError('BAD_REQUEST', `request line longer than ${this.maxBytes()} bytes`));
      socket.end(JSON.stringify(reply) + '\n');
    };
    readLines(socket, this.maxBytes(), onLine, onTooLong);
  }

  private maxBytes(): number {
    return this.opts.maxRequestBytes ?? MAX_REQUEST_BYTES;
  }

  private async answer(socket: net.Socket, line: string): Promise<void> {
    const reply = await this.replyTo(line);
    if (socket.destroyed) return;
    // Wait until the reply left this process: after a live restart it exits once control is idle.
    // (The callback also runs, with an error, if the socket is destroyed first.)
    await new Promise<void>((resolve) => socket.write(JSON.stringify(reply) + '\n', () => resolve()));
  }

  private async replyTo(line: string): Promise<Reply> {
    if (this.held) await this.held;
    if (this.abandoned) return this.abandoned;
    const request = this.parse(line);
    if (!('op' in request)) return request;
    if (request.op === 'daemon.restart') return this.run(request); // the one request a restart answers itself
    let answer!: (reply: Reply) => void;
    const abandoned = new Promise<Reply>((resolve) => (answer = resolve));
    this.abandon$.add(answer);
    try {
      return await Promise.race([this.run(request), abandoned]);
    } finally {
      this.abandon$.delete(answer);
    }
  }

  /** The validated request, or the error reply. */
  private parse(line: string): Request | Reply {
    try {
      if (this.closing) throw new ControlError('SHUTTING_DOWN', 'the daemon is shutting down');
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        throw new ControlError('BAD_REQUEST', 'the request is not valid JSON');
      }
      return validateRequest(parsed);
    } catch (err) {
      return errorReply(err);
    }
  }

  private async run(request: Request): Promise<Reply> {
    const log = this.log.child({ op: request.op });
    try {
      const handler = this.opts.handlers[request.op] as (r: Request) => Promise<unknown>;
      const result = await handler(request);
      log.debug('control request done');
      return { ok: true, result } as Reply;
    } catch (err) {
      if (err instanceof ControlError) log.info({ code: err.code, reason: err.message }, 'control request refused');
      else log.error({ err }, 'control request failed');
      return errorReply(err);
    }
  }
}
