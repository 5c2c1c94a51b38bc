// The daemon side of the control API: accepts connections on a 0600 Unix socket, reads one JSON
// request per line (size-capped), validates it (validate.ts) and dispatches by op to the handler
// table. Requests on one connection are answered in order.
import net from 'node:net';
import fs from 'node:fs';
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

/** Resolves when `socket` can take more output (or is gone). */
function writable(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

function errorReply(err: unknown): Reply {
  if (err instanceof ControlError) return { ok: false, error: { code: err.code, message: err.message } };
  return { ok: false, error: { code: 'INTERNAL', message: errorText(err) } };
}

export class ControlServer {
  private readonly server = net.createServer((socket) => this.accept(socket));
  private readonly sockets = new Set<net.Socket>();
  private readonly inFlight = new Set<Promise<void>>();
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

  /** Stop accepting, let requests being handled finish, close connections, remove the socket. */
  async close(): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await Promise.allSettled([...this.inFlight]);
    for (const socket of this.sockets) socket.destroy();
    await closed;
    if (this.path) fs.rmSync(this.path, { force: true });
  }

  private accept(socket: net.Socket): void {
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
    const reply = await this.dispatch(line);
    if (socket.destroyed) return;
    if (!socket.write(JSON.stringify(reply) + '\n')) await writable(socket);
  }

  private async dispatch(line: string): Promise<Reply> {
    let request: Request;
    try {
      if (this.closing) throw new ControlError('SHUTTING_DOWN', 'the daemon is shutting down');
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        throw new ControlError('BAD_REQUEST', 'the request is not valid JSON');
      }
      request = validateRequest(parsed);
    } catch (err) {
      return errorReply(err);
    }
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
